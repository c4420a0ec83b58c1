"""The pull-request workflow: valid, names only real commands, and works in a shallow clone.

The last test runs the workflow's commands, in order, in a ``git clone --depth 1`` of this
repository (no tags, no history): unchanged it passes; with a prompt made worse (and its
versions and changelog bumped, so that ``check`` passes) the eval step exits 1 and its
Markdown, appended to ``$GITHUB_STEP_SUMMARY``, names the regression.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO
from promptlib.cli import app

WORKFLOW = REPO / ".github" / "workflows" / "prompt-check.yml"
PROMPTLIB = str(Path(sys.executable).with_name("promptlib"))


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _runs() -> list[str]:
    steps = _workflow()["jobs"]["prompt-check"]["steps"]
    return [step["run"] for step in steps if "run" in step]


def test_the_workflow_triggers_on_prompt_changes() -> None:
    data = _workflow()
    trigger = data.get("on", data.get(True))  # YAML 1.1 reads the key `on` as true
    paths = trigger["pull_request"]["paths"]
    for wanted in ("prompts/**", "evals/suites/**", "evals/datasets/**"):
        assert wanted in paths
    checkout = data["jobs"]["prompt-check"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert "fetch-depth" not in checkout.get("with", {})  # the default shallow checkout


def test_its_steps_name_only_commands_the_repository_provides() -> None:
    import typer.main

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    runs = _runs()
    assert runs[0] == 'python -m pip install -e ".[html]"'
    for run in runs[1:]:
        words = shlex.split(run)
        assert words[0] == "promptlib", run
        assert words[1] in commands, run
    assert [shlex.split(r)[1] for r in runs[1:]] == ["validate", "check", "eval"]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def _run_steps(clone: Path, summary: Path) -> list[subprocess.CompletedProcess[str]]:
    env_summary = {"GITHUB_STEP_SUMMARY": str(summary)}
    results = []
    for run in _runs()[1:]:  # the package is already installed in this environment
        words = shlex.split(run)
        import os

        result = subprocess.run(
            [PROMPTLIB, *words[1:]],
            cwd=clone,
            capture_output=True,
            text=True,
            env={**os.environ, **env_summary},
        )
        results.append(result)
        if result.returncode != 0:
            break
    return results


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "clone"
    # actions/checkout's default: the one commit, no tags.
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", "--no-tags", f"file://{REPO}", str(target)],
        check=True,
    )
    assert _git(target, "tag").strip() == ""  # a CI checkout: shallow and tagless
    return target


def test_the_steps_pass_on_the_released_library(clone: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    results = _run_steps(clone, summary)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stdout + r.stderr for r in results]
    report = (clone / "prompt-eval.md").read_text(encoding="utf-8")
    assert report.startswith("### ✅ promptlib eval --against latest")
    assert "No prompt changed behaviour." in report
    assert summary.read_text(encoding="utf-8").strip() == report.strip()


def _bump_minor(text: str) -> str:
    major, minor, _ = text.split(".")
    return f"{major}.{int(minor) + 1}.0"


def test_the_steps_fail_on_a_regressing_change(clone: Path, tmp_path: Path) -> None:
    # Drop the label descriptions of the domain router: a change that makes it worse.
    path = clone / "prompts" / "routing" / "domain.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["messages"][0]["content"] = "Classify the user's request into one of the domains.\n"
    data["version"] = _bump_minor(data["version"])
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    pyproject = clone / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    current = text.split('\nversion = "', 1)[1].split('"', 1)[0]
    pyproject.write_text(
        text.replace(f'version = "{current}"', f'version = "{_bump_minor(current)}"', 1),
        encoding="utf-8",
    )
    changelog = clone / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text(encoding="utf-8").replace(
            "## [Unreleased]\n", "## [Unreleased]\n\n- `routing.domain`: shorter instructions.\n", 1
        ),
        encoding="utf-8",
    )
    summary = tmp_path / "summary.md"
    results = _run_steps(clone, summary)
    assert [r.returncode for r in results] == [0, 0, 1], [r.stdout + r.stderr for r in results]
    report = (clone / "prompt-eval.md").read_text(encoding="utf-8")
    assert report.startswith("### ❌ promptlib eval --against latest")
    assert "| `routing.domain` | routing_domain | accuracy | 5500 (151 groups) |" in report
    assert "Every flipped example, charts and history: prompt-eval.html" in report
    assert "<details>" in report  # the top flipped examples of routing.domain
    page = (clone / "prompt-eval.html").read_text(encoding="utf-8")
    assert '<h1 id="status" data-passed="false">' in page
    assert 'data-verdict="regressed" data-prompt="routing.domain"' in page
    assert "🔴 regressed" in report
    assert "regressed: routing.domain routing_domain accuracy" in results[-1].stderr
    assert summary.read_text(encoding="utf-8").strip() == report.strip()
