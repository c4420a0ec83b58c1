"""``promptlib eval --against``: incremental reuse counted at a real local server, reports.

The project has three prompts, each sending ``"<name> <row text>"`` as its user message, so
the server (``tests/_llm_server.py``) can tell whose call it received. Two suites score
them with ``exact_match`` on two small datasets: ``main`` scores alpha and beta on 40 rows,
``extra`` scores alpha and gamma on 15 other rows. The server answers ``yes`` (right),
or ``no`` (wrong) when the prompt's system message contains ``[bad]``.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _llm_server import LLMServer
from conftest import write
from promptlib.cli import app
from promptlib.ledger import Ledger

MAIN_ROWS, EXTRA_ROWS = 40, 15
ROWS = {"alpha": MAIN_ROWS + EXTRA_ROWS, "beta": MAIN_ROWS, "gamma": EXTRA_ROWS}

PROMPT = """\
id: demo.{name}
version: 1.0.0
description: The {name} prompt.
inputs:
  {input}: {{type: string}}
messages:
  - role: system
    content: "{system}"
  - role: user
    content: "{name} {{{{ {input} }}}}"
examples:
  - inputs: {{{input}: ex-1}}
"""

SUITE = """\
dataset: evals/datasets/{dataset}.jsonl
prompts: {prompts}
inputs: {inputs}
references: label
metrics: [exact_match]
provider: local
"""

INPUTS = {"alpha": "text", "beta": "query", "gamma": "query", "delta": "query"}


def answer(messages: list[dict[str, Any]]) -> str:
    return "no" if "[bad]" in messages[0]["content"] else "yes"


def prompt_file(name: str, system: str = "Answer yes.", input_name: str | None = None) -> str:
    return PROMPT.format(name=name, input=input_name or INPUTS[name], system=system)


def write_prompt(root: Path, name: str, text: str) -> None:
    write(root / "prompts" / "demo" / f"{name}.yaml", text)


def write_suites(root: Path, inputs: str = "{text: text, query: text}") -> None:
    for name, dataset, prompts in (
        ("main", "main", '["demo.*", "!demo.gamma"]'),
        ("extra", "extra", "[demo.alpha, demo.gamma]"),
    ):
        write(
            root / "evals" / "suites" / f"{name}.yaml",
            SUITE.format(dataset=dataset, prompts=prompts, inputs=inputs),
        )


def make_project(root: Path, base_url: str, alpha_system: str = "Answer yes.") -> Path:
    write(
        root / "pyproject.toml",
        f"""[project]
name = "demo"
version = "1.0.0"

[tool.promptlib.providers.local]
type = "openai"
model = "echo-1"
base_url = "{base_url}"
api_key_env = "DEMO_API_KEY"
timeout = 5
concurrency = 4

[tool.promptlib.retry]
max-attempts = 2
base-delay = 0.01
max-delay = 0.05
""",
    )
    write_prompt(root, "alpha", prompt_file("alpha", alpha_system))
    write_prompt(root, "beta", prompt_file("beta"))
    write_prompt(root, "gamma", prompt_file("gamma"))
    for dataset, rows in (("main", MAIN_ROWS), ("extra", EXTRA_ROWS)):
        lines = [
            json.dumps({"id": f"{dataset}{i:03d}", "text": f"{dataset}-{i}", "label": "yes"})
            for i in range(1, rows + 1)
        ]
        write(root / "evals" / "datasets" / f"{dataset}.jsonl", "\n".join(lines) + "\n")
    write_suites(root)
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n")
    return root


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def calls(server: LLMServer) -> Counter[str]:
    """Requests received so far, by prompt (the first word of the user message)."""
    return Counter(seen.key.split()[0] for seen in server.requests)


def since(server: LLMServer, before: Counter[str]) -> dict[str, int]:
    now = calls(server)
    return {name: now[name] - before[name] for name in sorted(set(now) | set(before))}


def run_count(root: Path) -> int:
    return len(Ledger(root / "evals" / "ledger").read().runs)


def change_alpha(root: Path, system: str, version: str = "1.1.0") -> None:
    write_prompt(root, "alpha", prompt_file("alpha", system).replace("1.0.0", version))


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


@pytest.fixture
def server() -> Any:
    with LLMServer(answer=answer) as running:
        yield running


def release(root: Path, server: LLMServer) -> None:
    code, out, err = cli(root, "release")
    assert code == 0, out + err
    # The first release evaluates every (suite, prompt) pair: one call per row.
    assert dict(calls(server)) == ROWS
    assert run_count(root) == 4


def test_only_the_changed_prompt_calls_the_provider(
    tmp_path: Path, server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    release(root, server)
    change_alpha(root, "Answer yes, please.")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    before = calls(server)
    # With the response cache off, a call not made is a run reused from the ledger.
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--cache", "off")
    assert code == 0, out + err
    # Only alpha's rows, in both suites; the baseline and the unchanged prompts come from
    # the ledger.
    assert since(server, before) == {"alpha": ROWS["alpha"], "beta": 0, "gamma": 0}
    assert run_count(root) == 6
    assert "against v1.0.0 (ledger release record): 1 changed, 2 unchanged" in out
    rows = [line.split() for line in out.splitlines() if line.lstrip().startswith("demo.alpha")]
    assert [(r[1], r[2], r[3], r[10]) for r in rows] == [
        ("extra", "exact_match", str(EXTRA_ROWS), "inconclusive"),
        ("main", "exact_match", str(MAIN_ROWS), "inconclusive"),
    ]
    # The server answered exactly as before: the table says so, instead of asking for more
    # rows that would not decide anything.
    assert (
        f"inconclusive (outputs identical on all {MAIN_ROWS} examples: the provider did not "
        "react to this change)"
    ) in out
    assert "family: 2 gated comparisons (Holm); alpha 0.05, margin ±0.02, mode lenient" in out

    # The Markdown report was appended to the step summary, after what was there.
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n### ✅ promptlib eval --against v1.0.0\n")
    assert (
        "| prompt | suite | metric | n | failed (base / cand) | baseline | candidate | Δ "
        "| 95% CI | p (Holm) | verdict |"
    ) in text
    # No discordant pair among 40 is not a certainty: Tango's interval is +-z^2 / (n + z^2).
    assert (
        f"| `demo.alpha` | main | exact_match | {MAIN_ROWS} | 0 / 0 | 1.000 | 1.000 | +0.000 | "
        "[-0.088, +0.088] | 1 | ⚪ inconclusive (outputs identical on all "
        f"{MAIN_ROWS} examples: the provider did not react to this change) |"
    ) in text
    assert "Prompts: 1 changed, 2 unchanged." in text

    # A second run reuses everything, and appends a second report.
    before = calls(server)
    code, out, err = cli(root, "eval", "--against", "1.0.0", "--format", "json")
    assert code == 0, err
    assert since(server, before) == {"alpha": 0, "beta": 0, "gamma": 0}
    assert run_count(root) == 6
    assert summary.read_text(encoding="utf-8").count("### ✅ promptlib eval --against") == 2
    report = json.loads(out)
    assert report["passed"] is True
    assert report["prompts"] == {
        "demo.alpha": "changed",
        "demo.beta": "unchanged",
        "demo.gamma": "unchanged",
    }
    assert report["rule"] == {
        "alpha": 0.05,
        "min_effect": 0.02,
        "mode": "lenient",
        "correction": "holm",
        "family": 2,
        "tost_level": 0.95,
        "failures": "an example that failed on one side counts as 0 on that side",
        "numpy": importlib.metadata.version("numpy"),
    }
    assert [
        (c["suite"], c["prompt"], c["metric"], c["n"], c["verdict"], c["p"], c["p_holm"])
        for c in report["comparisons"]
    ] == [
        ("extra", "demo.alpha", "exact_match", EXTRA_ROWS, "inconclusive", 1.0, 1.0),
        ("main", "demo.alpha", "exact_match", MAIN_ROWS, "inconclusive", 1.0, 1.0),
    ]


@pytest.mark.parametrize(
    ("system_before", "system_after", "code", "verdict", "mark"),
    [
        ("Answer yes.", "[bad] Answer yes.", 1, "regressed", "🔴 regressed"),
        ("[bad] Answer yes.", "Answer yes.", 0, "improved", "🟢 improved"),
    ],
    ids=["regression", "improvement"],
)
def test_verdicts_and_exit_codes(
    tmp_path: Path,
    server: LLMServer,
    system_before: str,
    system_after: str,
    code: int,
    verdict: str,
    mark: str,
) -> None:
    root = make_project(tmp_path / "project", server.base_url, alpha_system=system_before)
    release(root, server)
    change_alpha(root, system_after)
    before = calls(server)
    out_file = tmp_path / "report.json"
    exit_code, out, err = cli(
        root, "eval", "--against", "v1.0.0", "--format", "json", "--output", str(out_file)
    )
    assert exit_code == code, out + err
    assert since(server, before) == {"alpha": ROWS["alpha"], "beta": 0, "gamma": 0}
    report = json.loads(out)
    assert json.loads(out_file.read_text(encoding="utf-8")) == report
    assert report["passed"] is (code == 0)
    scores = (0.0, 1.0) if verdict == "improved" else (1.0, 0.0)
    for c in report["comparisons"]:
        assert c["verdict"] == verdict
        assert (c["baseline"], c["candidate"]) == scores
        assert c["diff"] == scores[1] - scores[0]
        # Every pair differs by the same amount: the interval reaches the extreme on that
        # side and stops short of 0 on the other (Tango's score interval).
        low, high = c["ci95"]
        assert (low == -1.0 and -1.0 < high < 0) or (0 < low < 1.0 and high == 1.0)
        assert (c["test"], c["interval"]) == ("mid-p McNemar", "Tango score interval")
        assert c["primary"] is True
    # Every row is discordant: mid-p McNemar p = 1 / 2**n. Holm multiplies the smaller p
    # by 2 and the larger by 1.
    assert report["rule"]["family"] == 2
    by_suite = {c["suite"]: c for c in report["comparisons"]}
    assert by_suite["extra"]["p"] == pytest.approx(1 / 2**EXTRA_ROWS)
    assert by_suite["extra"]["p_holm"] == pytest.approx(1 / 2**EXTRA_ROWS)
    assert by_suite["main"]["p"] == pytest.approx(1 / 2**MAIN_ROWS)
    assert by_suite["main"]["p_holm"] == pytest.approx(2 / 2**MAIN_ROWS)
    if verdict == "regressed":
        assert "regressed: demo.alpha extra exact_match 1.000 -> 0.000 (p_holm=3.05e-05)" in err
        assert "regressed: demo.alpha main exact_match 1.000 -> 0.000 (p_holm=1.82e-12)" in err
    else:
        assert "regressed" not in err

    exit_code, out, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "markdown")
    assert exit_code == code
    head = "### ❌ promptlib eval --against v1.0.0: 2 regression(s)\n"
    assert out.startswith(head if code else "### ✅ promptlib eval --against v1.0.0\n")
    assert out.count(mark) == 2

    exit_code, out, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "junit")
    assert exit_code == code
    suite = ET.fromstring(out)
    assert suite.tag == "testsuite"
    assert suite.get("tests") == "2"
    assert suite.get("failures") == ("2" if code else "0")
    names = [case.get("name") for case in suite.iter("testcase")]
    assert names == ["extra/demo.alpha/exact_match", "main/demo.alpha/exact_match"]
    failures = [f.get("message") for f in suite.iter("failure")]
    if code:
        assert failures[1] == "exact_match 1.0000 -> 0.0000 (-1.0000), p_holm=1.82e-12: regressed"
    else:
        assert failures == []


def test_a_renamed_required_input_is_not_comparable(tmp_path: Path, server: LLMServer) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    release(root, server)
    # alpha's input `text` becomes `body`, and the suites map the row's text to it.
    write_prompt(root, "alpha", prompt_file("alpha", input_name="body").replace("1.0.0", "2.0.0"))
    write_suites(root, inputs="{body: text, query: text}")
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["prompts"]["demo.alpha"] == "not comparable"
    assert report["not_comparable"] == {
        "demo.alpha": "suite extra maps no value to required input(s) text"
    }
    assert report["comparisons"] == []
    code, out, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "markdown")
    assert code == 0
    assert (
        "- `demo.alpha`: not comparable (suite extra maps no value to required input(s) text)"
        in out
    )


def test_the_summary_does_not_say_nothing_changed_when_a_prompt_is_not_comparable(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    release(root, server)
    write_prompt(root, "alpha", prompt_file("alpha", input_name="body").replace("1.0.0", "2.0.0"))
    write_suites(root, inputs="{body: text, query: text}")
    code, out, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "markdown")
    assert code == 0
    assert "not comparable" in out
    assert "No prompt changed behaviour." not in out


def test_a_baseline_missing_from_the_ledger_is_evaluated_from_the_release_record(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    release(root, server)
    # Keep only the release record (as if the runs had been made with another provider),
    # and drop the response cache: every score must come from the provider again.
    ledger = root / "evals" / "ledger" / "index.jsonl"
    lines = ledger.read_text(encoding="utf-8").splitlines(keepends=True)
    ledger.write_text("".join(x for x in lines if '"kind":"release"' in x), encoding="utf-8")
    assert run_count(root) == 0
    for path in (root / ".promptlib").iterdir():
        path.unlink()
    change_alpha(root, "Answer yes, please.")
    before = calls(server)
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 0, out + err
    # alpha twice (its candidate and its release-record baseline); the unchanged prompts
    # are not evaluated at all (they have nothing to compare; --gates-all would add them).
    assert since(server, before) == {"alpha": 2 * ROWS["alpha"], "beta": 0, "gamma": 0}
    assert run_count(root) == 4
    report = json.loads(out)
    assert [(c["suite"], c["n"]) for c in report["comparisons"]] == [
        ("extra", EXTRA_ROWS),
        ("main", MAIN_ROWS),
    ]
    before = calls(server)
    assert cli(root, "eval", "--against", "v1.0.0")[0] == 0
    assert sum(since(server, before).values()) == 0  # now all in the ledger


def test_added_and_removed_prompts_are_listed(tmp_path: Path, server: LLMServer) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    release(root, server)
    write_prompt(root, "delta", prompt_file("delta"))
    (root / "prompts" / "demo" / "gamma.yaml").unlink()
    before = calls(server)
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--cache", "off")
    assert code == 0, out + err
    # The new prompt is evaluated (the main suite selects demo.*); nothing else is.
    assert since(server, before) == {"alpha": 0, "beta": 0, "delta": MAIN_ROWS, "gamma": 0}
    assert "1 added, 1 removed, 2 unchanged" in out
    assert re.search(r"(?m)^demo\.delta: added$", out)
    assert re.search(r"(?m)^demo\.gamma: removed$", out)
    code, out, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 0
    assert json.loads(out)["prompts"] == {
        "demo.alpha": "unchanged",
        "demo.beta": "unchanged",
        "demo.delta": "added",
        "demo.gamma": "removed",
    }
    code, out, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "markdown")
    assert "- `demo.delta`: added\n" in out
    assert "- `demo.gamma`: removed\n" in out
    assert "No prompt changed behaviour." in out


def _strict(root: Path) -> None:
    path = root / "pyproject.toml"
    path.write_text(
        path.read_text(encoding="utf-8") + '\n[tool.promptlib.compare]\nmode = "strict"\n',
        encoding="utf-8",
    )


@pytest.mark.parametrize("mode", ["lenient", "strict"])
def test_strict_mode_fails_what_lenient_mode_passes_with_the_n_needed(
    tmp_path: Path, server: LLMServer, mode: str
) -> None:
    # alpha changes wording, the server answers exactly as before: nothing moved, but 40
    # and 15 examples cannot show that the change is within 2 points.
    root = make_project(tmp_path / "project", server.base_url)
    if mode == "strict":
        _strict(root)
    release(root, server)
    change_alpha(root, "Answer yes, please.")
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
    report = json.loads(out)
    assert report["rule"]["mode"] == mode
    for c in report["comparisons"]:
        assert c["verdict"] == "inconclusive"
        assert c["n_needed"] == 473  # Connor's n for 2 points at 2% discordance, alpha / 2
        assert c["unit"] == "examples"
        assert 0 < c["power"] < 0.1
        assert c["outputs_identical"] is True
        assert c["fails_gate"] is (mode == "strict")
    _, markdown, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "markdown")
    _, junit, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "junit")
    failures = [f.get("message") for f in ET.fromstring(junit).iter("failure")]
    properties = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert properties == {
        "family": "2",
        "alpha": "0.05",
        "min-effect": "0.02",
        "mode": mode,
        # Only alpha was evaluated, so only its thresholds were checked: the report says so.
        "gates": "Thresholds (gates) checked for the 1 changed or added prompt(s) evaluated; "
        "2 unchanged prompt(s) not evaluated, their thresholds not checked (`promptlib eval` "
        "checks them; --gates-all adds them here).",
    }
    if mode == "lenient":
        assert code == 0, err
        assert report["passed"] is True
        assert markdown.startswith("### ✅")
        assert "outputs identical on all 40 examples: the provider did not react" in markdown
        assert failures == []
        return
    assert code == 1, err
    assert report["passed"] is False
    assert (
        "not shown non-inferior (strict mode): demo.alpha main exact_match +0.000; its 95.0% "
        "interval [-0.088, +0.088] reaches below -0.02; 473 examples needed"
    ) in err
    assert markdown.startswith(
        "### ❌ promptlib eval --against v1.0.0: 2 not shown non-inferior (strict)\n"
    )
    assert markdown.count("| ❌ inconclusive") == 2
    assert (
        failures
        == ["exact_match 1.0000 -> 1.0000 (+0.0000), p_holm=1: not shown non-inferior (strict)"] * 2
    )


def test_only_the_primary_metric_gates_and_counts_in_the_family(tmp_path: Path) -> None:
    # Two metrics per suite; `contains` is primary. A verbose answer keeps `contains` and
    # breaks `exact_match` on every row: a secondary regression is reported, not gated.
    def verbose(messages: list[dict[str, Any]]) -> str:
        return "yes indeed" if "[verbose]" in messages[0]["content"] else answer(messages)

    with LLMServer(answer=verbose) as server:
        root = make_project(tmp_path / "project", server.base_url)
        for name in ("main", "extra"):
            path = root / "evals" / "suites" / f"{name}.yaml"
            text = path.read_text(encoding="utf-8")
            path.write_text(
                text.replace("metrics: [exact_match]", "metrics: [exact_match, contains]")
                + "primary: contains\n",
                encoding="utf-8",
            )
        assert cli(root, "release")[0] == 0
        change_alpha(root, "[verbose] Answer yes.")
        code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
        assert code == 0, out + err
        report = json.loads(out)
        assert report["rule"]["family"] == 2
        by_metric = {(c["suite"], c["metric"]): c for c in report["comparisons"]}
        secondary = by_metric[("main", "exact_match")]
        assert (secondary["verdict"], secondary["primary"]) == ("regressed", False)
        assert secondary["p_holm"] is None
        assert secondary["p"] == pytest.approx(1 / 2**MAIN_ROWS)
        primary = by_metric[("main", "contains")]
        assert (primary["verdict"], primary["primary"]) == ("inconclusive", True)
        assert "regressed:" not in err
        _, table, _ = cli(root, "eval", "--against", "v1.0.0")
        assert "regressed [secondary]" in table
        _, junit, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "junit")
        skipped = [
            case.get("name")
            for case in ET.fromstring(junit).iter("testcase")
            if case.find("skipped") is not None
        ]
        assert skipped == ["extra/demo.alpha/exact_match", "main/demo.alpha/exact_match"]
