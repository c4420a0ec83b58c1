"""A report is never greener than the exit code: failed jobs and baselines in every format.

The project has one prompt scored with ``exact_match`` on 460 rows by a ``python``
provider (``tests/_answers.py``) steered by markers in the prompt's system message, so a
test can make the candidate or the baseline fail, entirely or on some rows.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write
from promptlib.cli import app

ROWS = 460

PROMPT = """\
id: demo.alpha
version: {version}
description: The alpha prompt.
inputs:
  text: {{type: string}}
messages:
  - role: system
    content: "{system}"
  - role: user
    content: "{{{{ text }}}}"
examples:
  - inputs: {{text: row-1}}
"""


def make_project(root: Path, system: str = "Answer yes.") -> Path:
    write(
        root / "pyproject.toml",
        """[project]
name = "demo"
version = "1.0.0"

[tool.promptlib]
default-provider = "py"

[tool.promptlib.providers.py]
type = "python"
callable = "_answers:answer"

[tool.promptlib.providers.strict]
type = "python"
callable = "_answers:strict"
""",
    )
    write(root / "prompts" / "demo" / "alpha.yaml", PROMPT.format(version="1.0.0", system=system))
    rows = [
        json.dumps({"id": f"r{i:03d}", "text": f"row-{i}", "label": "yes"})
        for i in range(1, ROWS + 1)
    ]
    write(root / "evals" / "datasets" / "main.jsonl", "\n".join(rows) + "\n")
    write(
        root / "evals" / "suites" / "main.yaml",
        "dataset: evals/datasets/main.jsonl\nprompts: [demo.alpha]\ninputs: {text: text}\n"
        "references: label\nmetrics: [exact_match]\n",
    )
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n\n- `demo.alpha` changed.\n")
    return root


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def change(root: Path, system: str) -> None:
    write(root / "prompts" / "demo" / "alpha.yaml", PROMPT.format(version="1.1.0", system=system))


@pytest.fixture
def released(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "project", system="Answer yes. [old]")
    code, out, err = cli(root, "release")
    assert code == 0, out + err
    return root


def test_a_failed_job_shows_in_every_eval_format(tmp_path: Path) -> None:
    root = make_project(tmp_path, system="Answer yes. [fail]")
    code, out, _ = cli(root, "eval")
    assert code == 3
    assert "failed: 460 of 460 examples failed" in out
    code, out, _ = cli(root, "eval", "--format", "markdown")
    assert code == 3
    assert out.startswith("### ❌ promptlib eval (py): 1 job(s) failed\n")
    assert "- ❌ job failed: `demo.alpha` (main, candidate): 460 of 460 examples failed" in out
    code, out, _ = cli(root, "eval", "--format", "junit")
    assert code == 3
    suite = ET.fromstring(out)
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("1", "1", "0")
    [error] = list(suite.iter("error"))
    assert "the model is down" in (error.get("message") or "")
    code, out, _ = cli(root, "eval", "--format", "json")
    assert code == 3
    report = json.loads(out)
    assert report["passed"] is False
    assert [(f["side"], f["prompt"]) for f in report["failures"]] == [("candidate", "demo.alpha")]


def test_a_failed_candidate_job_under_against_exits_3_and_says_so(released: Path) -> None:
    change(released, "Answer yes. [fail]")
    summary = released / "summary.md"
    result = CliRunner().invoke(
        app,
        ["--project", str(released), "eval", "--against", "v1.0.0", "--format", "junit"],
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.exit_code == 3
    suite = ET.fromstring(result.stdout)
    assert suite.get("errors") == "1"
    assert int(suite.get("tests") or 0) >= 1  # never tests="0" beside a failure
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("### ❌ promptlib eval --against v1.0.0: 1 job(s) failed\n")
    assert "No prompt changed behaviour" not in text
    assert "- ❌ `demo.alpha`: changed, not compared (candidate failed in main: " in text


def test_a_failed_baseline_is_never_silently_dropped(released: Path) -> None:
    # The `strict` provider cannot serve the released prompt ("[old]" in its system
    # message): the baseline must be evaluated (no ledger run for this provider) and fails.
    # Before, the comparison was dropped and the build passed with "comparisons": [].
    change(released, "Answer yes.")
    code, out, err = cli(
        released, "eval", "--against", "v1.0.0", "--provider", "strict", "--format", "json"
    )
    assert code == 3, out + err
    report = json.loads(out)
    assert report["passed"] is False
    assert report["comparisons"] == []
    assert report["prompts"]["demo.alpha"] == "not compared"
    assert report["not_compared"]["demo.alpha"].startswith("baseline failed in main: 460 of 460")
    assert [(f["side"], f["prompt"]) for f in report["failures"]] == [("baseline", "demo.alpha")]
    code, out, _ = cli(
        released, "eval", "--against", "v1.0.0", "--provider", "strict", "--format", "markdown"
    )
    assert code == 3
    assert out.startswith("### ❌ promptlib eval --against v1.0.0: 1 job(s) failed\n")
    assert "- ❌ job failed: `demo.alpha` (main, baseline): 460 of 460 examples failed" in out
    assert "changed, not compared (baseline failed in main" in out
    assert "No prompt changed behaviour" not in out
    code, out, err = cli(released, "eval", "--against", "v1.0.0", "--provider", "strict")
    assert code == 3
    assert "demo.alpha: changed, not compared (baseline failed in main" in err


def test_failures_on_one_side_count_against_that_side(released: Path) -> None:
    # The candidate answers like the baseline but fails on the 41 rows whose number is a
    # multiple of 11: within the 10% error budget, so the job is recorded. Before, the
    # failed rows were dropped and the comparison said "no significant change" (exit 0);
    # counted as wrong, they are a significant regression.
    change(released, "Answer yes. [old] [fail-every-11]")
    code, out, err = cli(released, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 1, out + err
    [c] = json.loads(out)["comparisons"]
    assert (c["n"], c["n_shared"], c["failed_baseline"], c["failed_candidate"]) == (460, 419, 0, 41)
    assert (c["baseline"], c["candidate"]) == (1.0, 419 / 460)
    assert c["verdict"] == "regressed"
    assert c["p_holm"] == pytest.approx(2 / 2**41)


def test_no_change_is_said_only_when_nothing_changed(released: Path) -> None:
    code, out, err = cli(released, "eval", "--against", "v1.0.0", "--format", "markdown")
    assert code == 0, out + err
    assert out.startswith("### ✅ promptlib eval --against v1.0.0\n")
    assert "No prompt changed behaviour." in out
