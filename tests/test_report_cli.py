"""``promptlib report`` and ``--html``: the HTML report from the ledger alone, no model call.

The project is the one of ``tests/test_against.py`` (three prompts, two suites, a local
OpenAI-compatible server that counts its requests): ``report`` must make none.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from _llm_server import LLMServer
from test_against import (
    EXTRA_ROWS,
    MAIN_ROWS,
    ROWS,
    answer,
    calls,
    change_alpha,
    cli,
    make_project,
    prompt_file,
    write_prompt,
)

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


@pytest.fixture
def server() -> Any:
    with LLMServer(answer=answer) as running:
        yield running


@pytest.fixture
def released(tmp_path: Path, server: LLMServer) -> Path:
    """Released at 1.0.0, then alpha changed so that it answers wrong (a regression)."""
    root = make_project(tmp_path / "project", server.base_url)
    code, out, err = cli(root, "release")
    assert code == 0, out + err
    change_alpha(root, "[bad] Answer yes.")
    return root


def _verdict_rows(page: str) -> list[str]:
    return re.findall(r'<tr class="[^"]*" data-verdict="([^"]+)" data-prompt="([^"]+)"', page)


def test_eval_against_html_then_report_from_the_ledger_alone(
    released: Path, server: LLMServer
) -> None:
    root = released
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--html", str(root / "eval.html"))
    assert code == 1, out + err  # alpha regressed
    page = (root / "eval.html").read_text(encoding="utf-8")
    assert '<h1 id="status" data-passed="false">' in page
    before = sum(calls(server).values())

    code, out, err = cli(root, "report", "--against", "v1.0.0", "-o", str(root / "report.html"))
    # The same verdicts, the same exit code, and not one request to the model.
    assert code == 1, out + err
    assert sum(calls(server).values()) == before
    assert f"wrote {root / 'report.html'}" in err
    report = (root / "report.html").read_text(encoding="utf-8")
    assert _verdict_rows(report) == _verdict_rows(page)
    assert 'data-verdict="regressed" data-prompt="demo.alpha"' in report
    # The flipped examples of alpha, with both answers.
    assert "right → wrong" in report
    assert '<pre class="baseline">' in report
    assert '<pre class="candidate">' in report
    # The score history of alpha: the release's mean, then this change's.
    history = re.search(r'id="history-demo\.alpha">(.*?)</script>', report)
    assert history is not None  # the charting library is a test dependency
    if history is not None:
        assert '"release": "v1.0.0"' in history.group(1)
        assert '"release": "this change"' in history.group(1)
    # Provenance: the promptlib that wrote it, the provider, the model.
    assert "<th>promptlib</th>" in report
    assert "echo-1" in report


def test_a_report_needs_every_run_in_the_ledger(released: Path, server: LLMServer) -> None:
    root = released
    before = sum(calls(server).values())
    code, out, err = cli(root, "report", "--against", "v1.0.0", "-o", str(root / "report.html"))
    assert code == 2, out + err
    assert "the ledger has no run for 2 job(s)" in err
    assert "main/demo.alpha (candidate, provider local)" in err
    assert "`promptlib eval --against v1.0.0`" in err
    assert "Traceback" not in err
    assert not (root / "report.html").exists()
    assert sum(calls(server).values()) == before


def test_a_passing_comparison_exits_0(tmp_path: Path, server: LLMServer) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    assert cli(root, "release")[0] == 0
    write_prompt(root, "beta", prompt_file("beta", "Answer yes, please.").replace("1.0.0", "1.1.0"))
    assert cli(root, "eval", "--against", "v1.0.0")[0] == 0
    code, out, err = cli(root, "report", "--against", "v1.0.0", "-o", str(root / "ok.html"))
    assert code == 0, out + err
    page = (root / "ok.html").read_text(encoding="utf-8")
    assert '<h1 id="status" data-passed="true">' in page
    # beta answers exactly as before: the report says the provider did not react.
    assert f"Outputs identical on all {ROWS['beta']} examples" in page


def test_report_run_shows_one_run_worst_first(released: Path) -> None:
    root = released
    code, out, err = cli(root, "ledger", "show", "--prompt", "demo.alpha", "--format", "json")
    assert code == 0, err
    key = next(r["key"] for r in json.loads(out) if r["kind"] == "run")
    code, out, err = cli(root, "report", "--run", key[:16], "--html", str(root / "run.html"))
    assert code == 0, out + err
    page = (root / "run.html").read_text(encoding="utf-8")
    assert "<h1>demo.alpha in " in page
    assert key in page
    assert page.count('class="example"') in (MAIN_ROWS, EXTRA_ROWS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one of --against REF or --run KEY"),
        (("--against", "v1.0.0", "--run", "abc"), "give exactly one of"),
        (("--run", "sha256:ffff"), "no run in the ledger match 'sha256:ffff'"),
        (("--run", "abc", "--suite", "main"), "apply to --against, not --run"),
        (("--against", "v9.9.9"), "v9.9.9"),
    ],
)
def test_bad_requests_exit_2(released: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = cli(released, "report", *args)
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in err


def test_an_unknown_run_lists_the_known_ones(released: Path) -> None:
    code, _, err = cli(released, "report", "--run", "sha256:ffff")
    assert code == 2
    assert "demo.alpha / main" in err
    assert "demo.gamma / extra" in err


def test_eval_html(released: Path) -> None:
    code, out, err = cli(
        released, "eval", "--html", str(released / "eval.html"), "--prompt", "demo.beta"
    )
    assert code == 0, out + err
    page = (released / "eval.html").read_text(encoding="utf-8")
    assert '<h1 id="status" data-passed="true">' in page
    assert 'data-prompt="demo.beta"' in page
    assert 'data-prompt="demo.alpha"' not in page


def test_the_summary_points_to_the_html_report(released: Path) -> None:
    code, out, err = cli(
        released,
        "eval",
        "--against",
        "v1.0.0",
        "--format",
        "markdown",
        "--html",
        str(released / "r.html"),
    )
    assert code == 1, out + err
    assert f"Every flipped example, charts and history: {released / 'r.html'}" in out
    assert "<details>" in out  # alpha's flipped examples, in the summary itself


def test_a_schema_1_run_says_its_outputs_were_not_kept(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(GOLDEN / "project", root)
    shutil.copytree(GOLDEN / "prompts", root / "prompts")
    shutil.copy(GOLDEN / "ledger" / "v1" / "ledger.jsonl", root / "evals" / "ledger.jsonl")
    code, out, err = cli(root, "ledger", "show", "--format", "json")
    assert code == 0, err
    key = next(r["key"] for r in json.loads(out) if r.get("kind", "run") == "run" and "key" in r)
    code, out, err = cli(root, "report", "--run", key, "-o", str(root / "old.html"))
    assert code == 0, out + err
    page = (root / "old.html").read_text(encoding="utf-8")
    assert "outputs were not kept for this run" in page


def test_a_recorded_run_with_failed_examples_is_reported_not_completed(tmp_path: Path) -> None:
    # The release's run of alpha lost one example to a 400; `report` shows it as recorded
    # and never asks the model again (eval would complete it).
    with LLMServer(script={"alpha main-3": ["400"]}, answer=answer) as server:
        root = make_project(tmp_path / "project", server.base_url)
        assert cli(root, "release")[0] == 0
        change_alpha(root, "[bad] Answer yes.")
        code, out, err = cli(root, "eval", "--against", "v1.0.0", "--no-retry-errors")
        assert code == 1, out + err
        before = sum(calls(server).values())
        code, out, err = cli(root, "report", "--against", "v1.0.0", "-o", str(root / "r.html"))
        assert code == 1, out + err
        assert sum(calls(server).values()) == before
        assert (root / "r.html").is_file()
