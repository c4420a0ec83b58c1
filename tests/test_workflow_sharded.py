"""The sharded pull-request workflow: its shape, and its steps run for real.

The last tests run the workflow's own ``run`` steps with bash, as the runner would: each
matrix entry in its own ``git clone --depth 1`` of this repository, its shard ledger then
copied where ``download-artifact`` puts it in the merge job's clone, whose steps merge and
compare. The merged comparison must be the one the unsharded check writes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO
from promptlib.cli import app

WORKFLOW = REPO / ".github" / "workflows" / "prompt-eval-sharded.yml"
BIN = str(Path(sys.executable).parent)


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _steps(job: str) -> list[dict[str, Any]]:
    steps = _workflow()["jobs"][job]["steps"]
    assert isinstance(steps, list)
    return steps


def _runs(job: str) -> list[str]:
    return [step["run"] for step in _steps(job) if "run" in step]


def _uses(job: str, action: str) -> dict[str, Any]:
    [step] = [s for s in _steps(job) if s.get("uses", "").startswith(f"actions/{action}@")]
    return step


def _shards() -> list[int]:
    shards = _workflow()["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    assert isinstance(shards, list)
    return shards


def test_the_matrix_uploads_one_shard_ledger_per_entry_and_the_merge_takes_them_all() -> None:
    data = _workflow()
    trigger = data.get("on", data.get(True))  # YAML 1.1 reads the key `on` as true
    for wanted in ("prompts/**", "evals/suites/**", "evals/datasets/**"):
        assert wanted in trigger["pull_request"]["paths"]
    assert _shards() == list(range(1, len(_shards()) + 1))
    assert data["jobs"]["shard"]["strategy"]["fail-fast"] is False
    [evaluate] = [r for r in _runs("shard") if r.startswith("promptlib eval")]
    assert " --shard ${{ matrix.shard }}/${{ strategy.job-total }} " in evaluate
    words = shlex.split(evaluate)
    ledger = words[words.index("--ledger") + 1]
    upload = _uses("shard", "upload-artifact")["with"]
    assert upload["name"] == "shard-ledger-${{ matrix.shard }}"
    assert upload["path"].rstrip("/") == ledger
    merge = data["jobs"]["merge"]
    assert merge["needs"] == "shard"
    download = _uses("merge", "download-artifact")["with"]
    assert download == {"pattern": "shard-ledger-*", "path": "shards"}
    assert "promptlib ledger merge shards/*" in _runs("merge")


def test_its_steps_name_only_commands_the_repository_provides() -> None:
    import typer.main

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    for job in ("shard", "merge"):
        runs = _runs(job)
        assert runs[0].startswith("python -m pip install -e ")
        for run in runs[1:]:
            words = shlex.split(run)
            assert words[0] == "promptlib", run
            assert words[1] in commands, run
    assert [shlex.split(r)[1:3] for r in _runs("merge")[1:]] == [
        ["ledger", "merge"],
        ["eval", "--against"],
        ["eval", "--against"],
    ]


def _clone(where: Path) -> Path:
    # actions/checkout's default: the one commit, no tags.
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", "--no-tags", f"file://{REPO}", str(where)],
        check=True,
    )
    return where


def _bash(run: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", run], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )


def _regress(clone: Path) -> None:
    """Drop the label descriptions of the domain router: a change that makes it worse."""
    path = clone / "prompts" / "routing" / "domain.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["messages"][0]["content"] = "Classify the user's request into one of the domains.\n"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize("changed", [False, True], ids=["unchanged", "regressing"])
def test_the_sharded_steps_report_what_the_unsharded_check_does(
    tmp_path: Path, changed: bool
) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    count = len(_shards())
    merge_clone = _clone(tmp_path / "merge")
    for k in _shards():
        clone = _clone(tmp_path / f"shard-{k}")
        if changed:
            _regress(clone)
        for run in _runs("shard")[1:]:  # the package is already installed here
            run = run.replace("${{ matrix.shard }}", str(k))
            run = run.replace("${{ strategy.job-total }}", str(count))
            assert "${{" not in run
            result = _bash(run, clone, env)
            assert result.returncode == 0, result.stderr
        # What upload-artifact and download-artifact do with the shard ledger.
        shutil.copytree(clone / "shard-ledger", merge_clone / "shards" / f"shard-ledger-{k}")
        # A shard never writes the committed ledger.
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "evals/ledger"],
            cwd=clone,
            capture_output=True,
            text=True,
            check=True,
        )
        assert status.stdout == ""
    if changed:
        _regress(merge_clone)
    summary = tmp_path / "summary.md"
    results = []
    for run in _runs("merge")[1:]:
        result = _bash(run, merge_clone, {**env, "GITHUB_STEP_SUMMARY": str(summary)})
        results.append(result)
        if result.returncode != 0:
            break
    expected = [0, 0, 1] if changed else [0, 0, 0]
    assert [r.returncode for r in results] == expected, [r.stderr for r in results]
    # The dry run before the comparison: every run of both sides is in the merged ledger.
    assert "would run:" not in results[1].stdout
    assert "0 provider call(s) would be made" in results[1].stderr
    # The unsharded check on the same change writes the same report.
    reference = _clone(tmp_path / "reference")
    if changed:
        _regress(reference)
    unsharded = _bash(_runs("merge")[-1], reference, env)  # the same command, unsharded
    assert unsharded.returncode == expected[-1], unsharded.stderr
    report = (merge_clone / "prompt-eval.md").read_text(encoding="utf-8")
    assert report == (reference / "prompt-eval.md").read_text(encoding="utf-8")
    assert summary.read_text(encoding="utf-8").strip() == report.strip()
    if changed:
        assert "🔴 regressed" in report
        assert "regressed: routing.domain routing_domain accuracy" in results[-1].stderr
    else:
        assert "No prompt changed behaviour." in report
