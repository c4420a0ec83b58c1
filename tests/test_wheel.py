"""The wheel carries the bundled library and works from a fresh virtual environment."""

from __future__ import annotations

import json
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import promptlib
from conftest import REPO, fresh_venv, pip_install, run_checked


def _version() -> str:
    return version("promptlib")


def test_wheel_carries_prompts_and_partials_but_no_datasets(repo_wheel: Path) -> None:
    names = zipfile.ZipFile(repo_wheel).namelist()
    prompts = [
        n for n in names if n.startswith("promptlib/_bundled/prompts/") and n.endswith(".yaml")
    ]
    sources = sorted(
        p.relative_to(REPO / "prompts").as_posix() for p in (REPO / "prompts").rglob("*.yaml")
    )
    assert sorted(n.removeprefix("promptlib/_bundled/prompts/") for n in prompts) == sources
    assert any(n.startswith("promptlib/_bundled/prompts/_partials/") for n in names)
    assert not [n for n in names if n.endswith(".jsonl") or "/datasets/" in n]


def test_installed_by_version_works_outside_the_repo(repo_wheel: Path, tmp_path: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    version = _version()
    pip_install(bin_dir, f"promptlib=={version}", find_links=[repo_wheel.parent])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = run_checked([bin_dir / "promptlib", "--version"], cwd=outside)
    assert out.stdout.strip() == f"promptlib {version}"
    listed = json.loads(
        run_checked([bin_dir / "promptlib", "list", "--format", "json"], cwd=outside).stdout
    )
    assert len(listed) >= 50
    code = (
        "import json, promptlib\n"
        "lib = promptlib.load()\n"
        "assert '_bundled' in str(lib.root), lib.root\n"
        "first = next(iter(lib.values()))\n"
        "messages = first.render(**first.examples[0].inputs)\n"
        "print(json.dumps({'n': len(lib), 'id': first.id, 'fp': first.fingerprint, 'roles': [m.role for m in messages]}))\n"
    )
    result = json.loads(run_checked([bin_dir / "python", "-c", code], cwd=outside).stdout)
    assert result["n"] == len(listed)
    installed = {p["id"]: p["fingerprint"] for p in listed}
    here = {pid: p.fingerprint for pid, p in promptlib.load().items()}
    assert installed == here
    assert here[result["id"]] == result["fp"]
    assert result["roles"][-1] == "user"
    rendered = run_checked(
        [bin_dir / "promptlib", "render", result["id"], "--example", "0"], cwd=outside
    )
    assert rendered.stdout.strip()


def test_sdist_carries_the_prompts_but_no_datasets(tmp_path: Path) -> None:
    import tarfile

    from conftest import run_checked

    run_checked(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", tmp_path, REPO]
    )
    [sdist] = list(tmp_path.glob("promptlib-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    top = names[0].split("/")[0]
    inside = {n.removeprefix(top + "/") for n in names}
    assert "prompts/support/answer/cancel_order.yaml" in inside
    assert "prompts/_partials/support_voice.j2" in inside
    assert "src/promptlib/library/render.py" in inside
    assert not [n for n in inside if n.startswith("evals/") or n.endswith(".jsonl")]
