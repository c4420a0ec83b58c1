"""Repeats and flakiness: consistency numbers, the ``flaky`` status, and its gate.

The end-to-end project scores two prompts with ``exact_match`` on 10 rows through a
``python`` provider (``tests/_unstable.py``) that answers from the row number and the
repeat index: deterministic, so the numbers below are computed by hand. With
``--repeats 3``, ``demo.shaky`` answers rows 5 and 10 wrongly on repeat 1 only (yes, no,
yes) and row 7 wrongly every time; ``demo.steady`` answers every row rightly every time.

For ``demo.shaky``: 2 of 10 examples disagree (0.2); pass^3 = 7/10 (the rows right every
time); pass@3 = 9/10 (all but row 7); the variance of (1, 0, 1) is 2/9, so the mean
variance is 2 * (2/9) / 10 = 2/45; the mean score is (7 + 2 * 2/3) / 10 = 5/6.
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import DEMO_PROMPT, write
from promptlib.cli import app
from promptlib.evals.consistency import (
    consistency,
    disagreement,
    mean_variance,
    pass_at_k,
    pass_hat_k,
)

ROWS = 10


SUITE = """\
dataset: evals/datasets/main.jsonl
prompts: ["demo.*"]
inputs: {text: text}
references: label
metrics: [exact_match]
"""


def make_project(root: Path, *, settings: str = "", suite: str = "") -> Path:
    write(
        root / "pyproject.toml",
        f"""[project]
name = "demo"
version = "1.0.0"

[tool.promptlib]
default-provider = "py"

[tool.promptlib.providers.py]
type = "python"
callable = "_unstable:answer"
{settings}""",
    )
    write(
        root / "prompts" / "demo" / "shaky.yaml",
        DEMO_PROMPT.format(name="shaky", system="Answer yes. [unstable]"),
    )
    write(
        root / "prompts" / "demo" / "steady.yaml", DEMO_PROMPT.format(name="steady", system="Yes.")
    )
    rows = [
        json.dumps({"id": f"r{i:02d}", "text": f"row-{i}", "label": "yes"})
        for i in range(1, ROWS + 1)
    ]
    write(root / "evals" / "datasets" / "main.jsonl", "\n".join(rows) + "\n")
    write(root / "evals" / "suites" / "main.yaml", SUITE + suite)
    return root


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def by_prompt(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["prompt"]: r for r in report["results"]}


def index(root: Path) -> list[dict[str, Any]]:
    path = root / "evals" / "ledger" / "index.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_object(root: Path, reference: str) -> Any:
    digest = reference.removeprefix("sha256:")
    path = root / "evals" / "ledger" / "objects" / digest[:2] / f"{digest[2:]}.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


# -- the numbers ------------------------------------------------------------------------------

# Each row: per-example repeat scores, k, pass@k, pass^k (computed by hand).
PASS_CASES = [
    # k = n: pass@k is "passed at least once", pass^k is "passed every time".
    ([[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 1, 0]], 3, 3 / 4, 1 / 4),
    # k < n, the unbiased estimators: c = 1 of n = 3, k = 2: pass@2 = 1 - C(2,2)/C(3,2)
    # = 2/3 and pass^2 = C(1,2)/C(3,2) = 0; c = 2: pass@2 = 1, pass^2 = C(2,2)/C(3,2) = 1/3.
    ([[1, 0, 0]], 2, 2 / 3, 0.0),
    ([[1, 1, 0]], 2, 1.0, 1 / 3),
    # k = 1 is the plain mean of the per-example pass rates: (1/3 + 2/3) / 2.
    ([[1, 0, 0], [1, 1, 0]], 1, 1 / 2, 1 / 2),
    # Four repeats, c = 2, k = 2: pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass^2 = 1/6.
    ([[1, 0, 1, 0]], 2, 5 / 6, 1 / 6),
    # A failed example (None) is left out, as it is from the means.
    ([[1, 1], None, [0, 1]], 2, 1.0, 1 / 2),
]


@pytest.mark.parametrize(("repeats", "k", "at_k", "hat_k"), PASS_CASES)
def test_pass_at_k_and_pass_hat_k_by_hand(
    repeats: list[list[int] | None], k: int, at_k: float, hat_k: float
) -> None:
    assert pass_at_k(repeats, k) == pytest.approx(at_k)
    assert pass_hat_k(repeats, k) == pytest.approx(hat_k)


@pytest.mark.parametrize(
    ("repeats", "k", "message"),
    [
        ([[1, 0.5, 1]], 3, "0/1 scores"),
        ([[1, 0, 1]], 4, "k = 4 exceeds the repeats of an example (3)"),
        ([[1, 0, 1]], 0, "k must be at least 1"),
    ],
)
def test_pass_at_k_refuses_what_it_cannot_estimate(
    repeats: list[list[float]], k: int, message: str
) -> None:
    for function in (pass_at_k, pass_hat_k):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            function(repeats, k)


def test_disagreement_and_variance_by_hand() -> None:
    repeats = [[1, 1, 1], [1, 0, 1], None, [0.5, 0.5, 0.5], [0.2, 0.4, 0.6]]
    # Two of the four scored examples disagree.
    assert disagreement(repeats) == pytest.approx(2 / 4)
    # Variances: 0, 2/9, 0, ((0.2)^2 + 0 + (0.2)^2) / 3 = 0.08/3.
    assert mean_variance(repeats) == pytest.approx((2 / 9 + 0.08 / 3) / 4)
    found = consistency(repeats, 3, binary=False)
    assert found is not None
    assert (found.n, found.pass_at_k, found.pass_hat_k) == (4, None, None)
    assert consistency([None, None], 3, binary=True) is None
    assert pass_at_k([None], 1) is None
    assert disagreement([]) is None


# -- end to end --------------------------------------------------------------------------------


def test_repeats_report_consistency_and_flag_the_unstable_prompt(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    code, out, err = cli(root, "eval", "--repeats", "3", "--format", "json")
    assert code == 0, out + err  # flaky is reported, not gated, by default
    report = json.loads(out)
    assert report["passed"] is True
    results = by_prompt(report)
    shaky, steady = results["demo.shaky"], results["demo.steady"]
    assert shaky["metrics"]["exact_match"]["mean"] == pytest.approx(5 / 6, abs=1e-6)
    assert shaky["consistency"]["exact_match"] == {
        "n": 10,
        "disagreement": pytest.approx(0.2),
        "mean_variance": pytest.approx(2 / 45, abs=1e-6),
        "pass_at_k": pytest.approx(0.9),
        "pass_hat_k": pytest.approx(0.7),
    }
    assert (shaky["flaky"], shaky["flaky_metrics"], shaky["flaky_threshold"]) == (
        True,
        ["exact_match"],
        0.1,
    )
    assert steady["flaky"] is False
    assert steady["consistency"]["exact_match"]["disagreement"] == 0
    assert steady["consistency"]["exact_match"]["pass_hat_k"] == 1

    # The ledger keeps what the numbers are computed from: every repeat's score.
    records = {r["prompt"]["id"]: r for r in index(root) if r["kind"] == "run"}
    record = records["demo.shaky"]
    assert record["consistency"]["exact_match"] == shaky["consistency"]["exact_match"]
    scores = load_object(root, record["scores"])
    per_repeat = scores["repeats"]["exact_match"]
    assert per_repeat[4] == [1, 0, 1]
    assert per_repeat[6] == [0, 0, 0]
    assert pass_hat_k(per_repeat, 3) == pytest.approx(0.7)

    # Reused from the ledger: the same numbers, and every format shows the status.
    code, out, err = cli(root, "eval", "--repeats", "3")
    assert code == 0, out + err
    assert "0 evaluated, 2 reused" in err
    assert "ran, flaky" not in out
    assert "reused, flaky" in out
    assert "consistency over 3 repeats" in out
    assert "pass@3 0.900, pass^3 0.700, disagree 20%, variance 0.044 (n 10)" in out
    assert "flaky: exact_match disagrees on 20% of examples over 3 repeats" in out
    code, out, _ = cli(root, "eval", "--repeats", "3", "--format", "markdown")
    assert code == 0
    assert out.startswith("### ✅ promptlib eval (py)\n")
    assert "- ⚠️ `demo.shaky` (main): flaky: exact_match disagrees on 20%" in out
    assert "| `demo.shaky` | 1.0.0 | 0.833 | 10 | ⚠️ reused, flaky |" in out
    assert "| `demo.shaky` | main | exact_match | 3 | 0.900 | 0.700 | 20% ⚠️ | 0.044 | 10 |" in out
    code, out, _ = cli(root, "eval", "--repeats", "3", "--format", "junit")
    assert code == 0
    suite = ET.fromstring(out)
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    outs = {c.get("name"): c.findtext("system-out") for c in suite.iter("testcase")}
    assert "flaky: exact_match disagrees on 20%" in (outs["main/demo.shaky"] or "")
    assert outs["main/demo.steady"] is None
    html = tmp_path / "report.html"
    code, _, _ = cli(root, "eval", "--repeats", "3", "--html", str(html))
    assert code == 0
    page = html.read_text()
    assert 'data-passed="true"' in page
    assert 'data-verdict="flaky" data-prompt="demo.shaky"' in page
    assert 'data-verdict="passed" data-prompt="demo.steady"' in page
    # The recorded run's own page shows its consistency too.
    code, out, err = cli(root, "report", "--run", record["key"], "--html", str(html))
    assert code == 0, out + err
    page = html.read_text()
    assert "<h2>Consistency over 3 repeats</h2>" in page
    assert "<td>disagree 20.0%</td><td>variance 0.0444</td><td>pass@3 0.9000</td>" in page


def test_a_gated_flaky_prompt_fails_in_every_format(tmp_path: Path) -> None:
    root = make_project(tmp_path, settings="\n[tool.promptlib.flaky]\ngate = true\n")
    code, out, err = cli(root, "eval", "--repeats", "3")
    assert code == 1
    assert "gate failed: main/demo.shaky: flaky: exact_match disagrees on 20%" in err
    assert "demo.steady" not in err
    code, out, _ = cli(root, "eval", "--repeats", "3", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["passed"] is False
    assert by_prompt(report)["demo.shaky"]["flaky_gated"] is True
    code, out, _ = cli(root, "eval", "--repeats", "3", "--format", "markdown")
    assert code == 1
    assert out.startswith("### ❌ promptlib eval (py): 1 gate(s) failed\n")
    assert "- ❌ gate failed: `demo.shaky` (main): flaky: exact_match" in out
    assert "| ❌ flaky |" in out
    code, out, _ = cli(root, "eval", "--repeats", "3", "--format", "junit")
    assert code == 1
    suite = ET.fromstring(out)
    assert suite.get("failures") == "1"
    [failure] = list(suite.iter("failure"))
    assert "flaky: exact_match disagrees on 20%" in (failure.get("message") or "")
    html = tmp_path / "report.html"
    code, _, _ = cli(root, "eval", "--repeats", "3", "--html", str(html))
    assert code == 1
    page = html.read_text()
    assert 'data-passed="false"' in page
    assert "gate failed, flaky" in page


def test_the_suite_threshold_overrides_the_settings(tmp_path: Path) -> None:
    # 20% of examples disagree: flaky above a 10% threshold, not above 25%.
    root = make_project(
        tmp_path, settings="\n[tool.promptlib.flaky]\ngate = true\n", suite="flaky: 0.25\n"
    )
    code, out, err = cli(root, "eval", "--repeats", "3", "--format", "json")
    assert code == 0, out + err
    shaky = by_prompt(json.loads(out))["demo.shaky"]
    assert (shaky["flaky"], shaky["flaky_threshold"]) == (False, 0.25)


def test_without_repeats_nothing_changes(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    code, out, err = cli(root, "eval", "--format", "json")
    assert code == 0, out + err
    for result in json.loads(out)["results"]:
        assert result["flaky"] is False
        assert "consistency" not in result
    for record in index(root):
        assert "consistency" not in record
        scores = load_object(root, record["scores"])
        assert "repeats" not in scores
        assert "variance" not in scores
    code, out, _ = cli(root, "eval")
    assert "consistency" not in out


@pytest.mark.parametrize(
    ("settings", "suite", "message"),
    [
        (
            "\n[tool.promptlib.flaky]\nthreshold = 1.5\n",
            "",
            "[flaky]: threshold must be at least 0 and below 1",
        ),
        ("\n[tool.promptlib.flaky]\ngate = 'yes'\n", "", "[flaky]: gate must be true or false"),
        ("\n[tool.promptlib.flaky]\nlimit = 3\n", "", "[flaky]: unknown key(s) limit"),
        ("", "flaky: true\n", "main.yaml:6: flaky: input should be a share of examples"),
        ("", "flaky: 1\n", "main.yaml:6: flaky: Input should be less than 1"),
    ],
)
def test_bad_flaky_configuration_is_refused(
    tmp_path: Path, settings: str, suite: str, message: str
) -> None:
    root = make_project(tmp_path, settings=settings, suite=suite)
    code, out, err = cli(root, "eval", "--repeats", "3")
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in err
    assert not (root / "evals" / "ledger" / "index.jsonl").exists()


def test_a_completed_run_keeps_the_recorded_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path)
    monkeypatch.setenv("UNSTABLE_DOWN_ROW", "3")
    code, out, err = cli(root, "eval", "--repeats", "3", "--prompt", "demo.shaky")
    assert code == 0, out + err
    [first] = [r for r in index(root) if r["kind"] == "run"]
    assert first["errors"] == 1
    # Row 3 failed: 2 of the 9 scored examples disagree.
    assert first["consistency"]["exact_match"]["n"] == 9
    assert first["consistency"]["exact_match"]["disagreement"] == pytest.approx(2 / 9, abs=1e-6)
    monkeypatch.delenv("UNSTABLE_DOWN_ROW")
    code, out, err = cli(root, "eval", "--repeats", "3", "--prompt", "demo.shaky")
    assert code == 0, out + err
    assert "retried the 1 failed example(s)" in err
    latest = [r for r in index(root) if r["kind"] == "run"][-1]
    assert latest["key"] == first["key"]
    assert latest["errors"] == 0
    # Only row 3 was asked again; the other nine kept their recorded repeats.
    assert latest["consistency"]["exact_match"] == {
        "n": 10,
        "disagreement": pytest.approx(0.2),
        "mean_variance": pytest.approx(2 / 45, abs=1e-6),
        "pass_at_k": pytest.approx(0.9),
        "pass_hat_k": pytest.approx(0.7),
    }
    per_repeat = load_object(root, latest["scores"])["repeats"]["exact_match"]
    assert per_repeat == [[1, 1, 1]] * 4 + [[1, 0, 1], [1, 1, 1], [0, 0, 0]] + [[1, 1, 1]] * 2 + [
        [1, 0, 1]
    ]


@pytest.mark.parametrize("gate", [True, False])
def test_against_with_repeats_compares_examples_and_reports_a_flaky_candidate(
    tmp_path: Path, gate: bool
) -> None:
    settings = f"\n[tool.promptlib.flaky]\ngate = {str(gate).lower()}\n"
    root = make_project(tmp_path, settings=settings)
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n\n- First.\n")
    code, out, err = cli(root, "release")
    assert code == 0, out + err
    write(
        root / "prompts" / "demo" / "shaky.yaml",
        DEMO_PROMPT.format(name="shaky", system="Answer yes, briefly. [unstable]").replace(
            "1.0.0", "1.1.0"
        ),
    )
    against = ("eval", "--against", "v1.0.0", "--repeats", "3")
    code, out, err = cli(root, *against, "--format", "json")
    assert code == (1 if gate else 0), out + err
    report = json.loads(out)
    assert report["passed"] is not gate
    [comparison] = report["comparisons"]
    # The example is the unit: 10 examples, each scored by its mean over 3 repeats.
    assert (comparison["prompt"], comparison["n"]) == ("demo.shaky", 10)
    assert comparison["candidate"] == pytest.approx(5 / 6, abs=1e-6)
    assert report["gate_failures"] == (
        [{"suite": "main", "prompt": "demo.shaky", "gates": {}, "flaky": True}] if gate else []
    )
    assert [(f["prompt"], f["gated"]) for f in report["flaky"]] == [("demo.shaky", gate)]
    code, out, err = cli(root, *against)
    assert code == (1 if gate else 0)
    said = "gate failed: main/demo.shaky: flaky:" if gate else "warning: main/demo.shaky: flaky:"
    assert said in err
    code, out, _ = cli(root, *against, "--format", "markdown")
    if gate:
        assert "- ❌ gate failed: `demo.shaky` (main): flaky: exact_match" in out
    else:
        assert out.startswith("### ✅")
        assert "- ⚠️ `demo.shaky` (main): flaky: exact_match disagrees on 20%" in out
    code, out, _ = cli(root, *against, "--format", "junit")
    suite = ET.fromstring(out)
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    if gate:
        [failure] = [f for f in suite.iter("failure") if "flaky" in (f.get("message") or "")]
        assert "exact_match disagrees on 20%" in (failure.get("message") or "")
        assert "flaky" not in properties
    else:
        assert suite.get("failures") == "0"
        assert "main/demo.shaky: flaky: exact_match" in (properties.get("flaky") or "")
