"""A released wheel, installed by version in fresh virtual environments, used downstream.

The wheel is built from this repository; ``examples/downstream`` (a support responder with
its own manifest, lock and tests) runs against it from outside the repository. Then
wheels that drift from the example's lock are installed, one at a time, and both
``promptlib manifest check`` and ``promptlib.load(manifest=...)`` must fail closed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import REPO, build_wheel, fresh_venv, pip_install, run_checked
from promptlib.versions import Bump, apply_bump, parse_version

EXAMPLE = REPO / "examples" / "downstream"
VERSION = version("promptlib")


def _copy_example(where: Path) -> Path:
    target = where / "downstream"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return target


def test_the_downstream_example_passes_against_the_installed_release(
    repo_wheel: Path, tmp_path: Path
) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, f"promptlib=={VERSION}", "pytest", find_links=[repo_wheel.parent])
    project = _copy_example(tmp_path)
    result = run_checked(
        [bin_dir / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project
    )
    assert " passed" in result.stdout
    assert "failed" not in result.stdout


def _source_copy(where: Path) -> Path:
    """The files a wheel is built from, in a scratch folder we may modify."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, where / name)
    shutil.copytree(REPO / "src", where / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "prompts", where / "prompts")
    return where


def _edit(path: Path, pattern: str, replacement: str) -> None:
    text = path.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.M)
    assert count == 1, (path, pattern)
    path.write_text(new, encoding="utf-8")


def _template_changed(src: Path) -> None:
    _edit(src / "prompts/support/answer/general.yaml", r"^(      You are )", r"\1definitely ")


def _prompt_removed(src: Path) -> None:
    (src / "prompts/support/answer/cancel_order.yaml").unlink()


def _version_outside_range(src: Path) -> None:
    _edit(src / "prompts/support/classify/intent_fewshot.yaml", r"^version: .*$", "version: 3.0.0")


def _library_outside_requirement(src: Path) -> None:
    _edit(src / "pyproject.toml", r'^version = ".*"$', 'version = "3.0.0"')


# A release inside the example's requirement, with the same prompts: not the one locked.
OTHER_RELEASE = str(apply_bump(parse_version(VERSION), Bump.PATCH))


def _other_release(src: Path) -> None:
    _edit(src / "pyproject.toml", r'^version = ".*"$', f'version = "{OTHER_RELEASE}"')


DRIFTS: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "template changed",
        _template_changed,
        "drift: support.answer.general: installed fingerprint sha256:",
    ),
    (
        "prompt removed",
        _prompt_removed,
        "drift: support.answer.cancel_order: not in the installed library",
    ),
    (
        "version outside range",
        _version_outside_range,
        "drift: support.classify.intent_fewshot: installed version 3.0.0 is outside '^2.0'",
    ),
    (
        "library outside requirement",
        _library_outside_requirement,
        "drift: installed promptlib 3.0.0 is outside 'promptlib>=2.1,<3'",
    ),
    (
        "another release than the lock's",
        _other_release,
        f"drift: prompt_manifest.lock was made against promptlib {VERSION} but promptlib "
        f"{OTHER_RELEASE} is installed",
    ),
]


@pytest.fixture(scope="module")
def drift_env(repo_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A venv with this release installed (for its dependencies) and the example beside it."""
    where = tmp_path_factory.mktemp("drift")
    bin_dir = fresh_venv(where / "venv")
    pip_install(bin_dir, f"promptlib=={VERSION}", find_links=[repo_wheel.parent])
    return bin_dir, _copy_example(where)


@pytest.mark.parametrize(("case", "change", "message"), DRIFTS, ids=[d[0] for d in DRIFTS])
def test_a_drifted_wheel_fails_closed(
    drift_env: tuple[Path, Path],
    tmp_path: Path,
    case: str,
    change: Callable[[Path], None],
    message: str,
) -> None:
    bin_dir, project = drift_env
    source = tmp_path / "source"
    source.mkdir()
    change(_source_copy(source))
    wheel = build_wheel(source, tmp_path / "dist")
    run_checked(
        [
            bin_dir / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--force-reinstall",
            wheel,
        ]
    )
    import subprocess

    check = subprocess.run(
        [str(bin_dir / "promptlib"), "manifest", "check"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert message in check.stdout
    assert "Traceback" not in check.stderr
    runtime = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import promptlib\npromptlib.load(manifest='prompt_manifest.yaml')",
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert runtime.returncode == 1
    assert "promptlib.errors.DriftError: prompt manifest drift:" in runtime.stderr
    assert message.removeprefix("drift: ") in runtime.stderr
