"""Judge metrics end to end: a judge prompt scores each answer through a real provider.

The model under test and the LLM judge are both served by a real OpenAI-compatible server
on 127.0.0.1 (``tests/_llm_server.py``), which counts every request: a request whose system
message starts with ``JUDGE`` is the judge's, any other is the model's. The deterministic
offline judge (a ``python`` provider) is checked on the same project.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _llm_server import LLMServer
from conftest import write
from promptlib.cli import app
from promptlib.evals.judges import MalformedVerdict, parse_verdict
from promptlib.evals.offline_judge import judge as offline_judge
from promptlib.evals.offline_judge import similarity
from promptlib.ledger import Ledger

ROWS = 10
# Rows whose text holds "odd" get a wrong answer from the model ("no" where "yes" is right).
ODD = {3, 6, 9}

ANSWER = """\
id: demo.answer
version: 1.0.0
description: Answers yes or no.
inputs:
  text: {type: string}
messages:
  - role: system
    content: "Answer yes."
  - role: user
    content: "{{ text }}"
examples:
  - inputs: {text: row-1}
"""

JUDGE = """\
id: judges.check
version: 1.0.0
description: A judge of yes/no answers.
inputs:
  question: {type: string}
  answer: {type: string}
  reference: {type: string}
messages:
  - role: system
    content: "JUDGE SYSTEM"
  - role: user
    content: "judge {{ question }} | {{ answer }} | {{ reference }}"
examples:
  - inputs: {question: q, answer: a, reference: r}
"""

SUITE = """\
dataset: evals/datasets/rows.jsonl
prompts: [demo.answer]
inputs: {text: text}
references: label
metrics:
  - exact_match
  - {kind: judge, name: verdict, prompt: judges.check, provider: JUDGE_PROVIDER,
     scale: binary, aggregate: mean, inputs: {question: text}}
provider: model
"""

CALIBRATION_SUITE = """\
dataset: evals/datasets/labelled.jsonl
prompts: [judges.check]
inputs: {question: text, answer: candidate, reference: label}
metrics: [json_valid]
provider: judge
"""


def server_answer(messages: list[dict[str, Any]]) -> str:
    """The model says "no" to odd rows and "yes" otherwise; the judge says 1 exactly when
    the answer equals the reference."""
    if messages[0]["content"].startswith("JUDGE"):
        _, rest = messages[-1]["content"].split(" ", 1)
        _question, answer, reference = (part.strip() for part in rest.split("|"))
        score = int(answer == reference)
        return json.dumps({"score": score, "reason": f"{answer!r} vs {reference!r}"})
    return "no" if "odd" in messages[-1]["content"] else "yes"


def is_judge(seen: Any) -> bool:
    return bool(seen.body["messages"][0]["content"].startswith("JUDGE"))


def counts(server: LLMServer, before: int = 0) -> tuple[int, int]:
    """(model requests, judge requests) received since the ``before``-th."""
    seen = server.requests[before:]
    judged = sum(1 for s in seen if is_judge(s))
    return len(seen) - judged, judged


def text_of(i: int) -> str:
    return f"row-{i} odd" if i in ODD else f"row-{i}"


def make_project(
    root: Path, base_url: str, *, judge_provider: str = "judge", extra: str = ""
) -> Path:
    write(
        root / "pyproject.toml",
        f"""[project]
name = "demo"
version = "1.0.0"

[tool.promptlib.providers.model]
type = "openai"
model = "echo-1"
base_url = "{base_url}"
api_key_env = "DEMO_API_KEY"
timeout = 5

[tool.promptlib.providers.judge]
type = "openai"
model = "judge-1"
base_url = "{base_url}"
api_key_env = "DEMO_API_KEY"
timeout = 5

[tool.promptlib.providers.offline]
type = "python"
callable = "promptlib.evals.offline_judge:judge"

[tool.promptlib.retry]
max-attempts = 2
base-delay = 0.01
max-delay = 0.05
{extra}""",
    )
    write(root / "prompts" / "demo" / "answer.yaml", ANSWER)
    write(root / "prompts" / "judges" / "check.yaml", JUDGE)
    lines = [
        json.dumps({"id": f"r{i:02d}", "text": text_of(i), "label": "yes"})
        for i in range(1, ROWS + 1)
    ]
    write(root / "evals" / "datasets" / "rows.jsonl", "\n".join(lines) + "\n")
    write(
        root / "evals" / "suites" / "answers.yaml",
        SUITE.replace("JUDGE_PROVIDER", judge_provider),
    )
    return root


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def runs(root: Path) -> list[Any]:
    return list(Ledger(root / "evals" / "ledger").read().runs)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


@pytest.fixture
def server() -> Any:
    with LLMServer(answer=server_answer) as running:
        yield running


# -- verdicts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scale", "expected"),
    [
        ('{"score": 1, "reason": "right"}', "binary", (1, 1.0, "right")),
        ('{"score": 0, "reason": "wrong"}', "binary", (0, 0.0, "wrong")),
        ('{"score": true, "reason": "r"}', "binary", (1, 1.0, "r")),
        ('```json\n{"score": 0, "reason": "fenced"}\n```', "binary", (0, 0.0, "fenced")),
        ('{"score": 5, "reason": "r"}', "1-5", (5, 1.0, "r")),
        ('{"score": 1, "reason": "r"}', "1-5", (1, 0.0, "r")),
        ('{"score": 3, "reason": "r"}', "1-5", (3, 0.5, "r")),
        ("yes", "binary", "not JSON"),
        ('["score", 1]', "binary", "not a JSON object"),
        ('{"score": 1}', "binary", "needs both 'score' and 'reason'"),
        ('{"score": 2, "reason": "r"}', "binary", "score 2 is not 0 or 1"),
        ('{"score": 0.5, "reason": "r"}', "binary", "score 0.5 is not 0 or 1"),
        ('{"score": 6, "reason": "r"}', "1-5", "score 6 is not an integer from 1 to 5"),
        ('{"score": 4.5, "reason": "r"}', "1-5", "score 4.5 is not an integer from 1 to 5"),
        ('{"score": 1, "reason": 3}', "binary", "'reason' must be a string"),
    ],
)
def test_parse_verdict(text: str, scale: str, expected: Any) -> None:
    if isinstance(expected, str):
        with pytest.raises(MalformedVerdict, match=re.escape(expected)):
            parse_verdict(text, scale)
        return
    verdict = parse_verdict(text, scale)
    assert (verdict.raw, verdict.score, verdict.reason) == expected


# -- the offline judge -----------------------------------------------------------------


def test_offline_judge_scores_word_overlap_on_the_scale_its_prompt_names() -> None:
    def messages(scale: str, user: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": f"Grade.\n\nScale: {scale}\n- 1: good"},
            {"role": "user", "content": user},
        ]

    same = "<question>\nq\n</question>\n<reference>\nreset your password\n</reference>\n<answer>\nreset your password\n</answer>"
    other = "<question>\nq\n</question>\n<reference>\nreset your password\n</reference>\n<answer>\ntrack the parcel\n</answer>"
    assert json.loads(offline_judge(messages("1-5", same), {}))["score"] == 5
    assert json.loads(offline_judge(messages("1-5", other), {}))["score"] == 1
    assert json.loads(offline_judge(messages("binary", same), {}))["score"] == 1
    assert json.loads(offline_judge(messages("binary", other), {}))["score"] == 0
    verdict = json.loads(offline_judge(messages("binary", same), {}))
    assert set(verdict) == {"score", "reason"}
    # Intent matching: the best overlap of the question with an example line.
    assert similarity("cancel my order", "ORDER_CANCEL", None, "cancel order\nrefund") == 1.0
    assert similarity("hello there", "EMI", None, "emi options\nzero emi") == 0.0


# -- judge metrics through the LLM server ----------------------------------------------


def test_judge_metric_scores_every_answer_and_keeps_verdicts_and_judge_usage(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    code, out, err = cli(root, "eval")
    assert code == 0, out + err
    assert counts(server) == (ROWS, ROWS)
    [run] = runs(root)
    assert run.results["verdict"].mean == pytest.approx(0.7)
    assert run.results["verdict"].n == ROWS
    assert run.results["exact_match"].mean == pytest.approx(0.7)
    # The judge's calls and tokens are counted apart from the model's.
    judge_requests = [s for s in server.requests if is_judge(s)]
    assert run.judge_usage is not None
    assert run.judge_usage.calls == ROWS
    assert run.timing.calls == ROWS
    judge_words = sum(len(s.body["messages"][-1]["content"].split()) for s in judge_requests)
    assert run.judge_usage.prompt_tokens is not None
    assert run.judge_usage.prompt_tokens >= judge_words
    assert run.usage.completion_tokens == ROWS  # "yes" or "no": one word each
    assert run.judge_usage.completion_tokens is not None
    assert run.judge_usage.completion_tokens > run.usage.completion_tokens
    # Verdicts and reasons are kept with the outputs and shown by `promptlib outputs`.
    code, out, err = cli(root, "outputs", "demo.answer")
    assert code == 0, err
    assert "judge verdict: 0 ('no' vs 'yes')" in out
    assert "judge verdict: 1 ('yes' vs 'yes')" in out
    code, out, _ = cli(root, "outputs", "demo.answer", "--format", "json")
    examples = json.loads(out)[0]["examples"]
    by_id = {e["id"]: e for e in examples}
    assert by_id["r03"]["verdicts"] == {"verdict": [{"score": 0, "reason": "'no' vs 'yes'"}]}
    assert by_id["r03"]["scores"]["verdict"] == 0


def test_unchanged_judge_reuses_the_run_and_a_changed_judge_rescores_without_the_model(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    assert cli(root, "eval")[0] == 0
    before = server.total
    code, out, err = cli(root, "eval")
    assert code == 0, out + err
    assert counts(server, before) == (0, 0)
    [first] = runs(root)
    # A new judge prompt: a new run key; the model's answers come from the response cache.
    judge = JUDGE.replace("JUDGE SYSTEM", "JUDGE SYSTEM, strictly").replace("1.0.0", "1.1.0")
    write(root / "prompts" / "judges" / "check.yaml", judge)
    before = server.total
    code, out, err = cli(root, "eval")
    assert code == 0, out + err
    assert counts(server, before) == (0, ROWS)
    [second] = [run for run in runs(root) if run.key != first.key]
    assert first.prompt.fingerprint == second.prompt.fingerprint
    assert second.timing.cached == ROWS
    assert second.results["verdict"].mean == pytest.approx(0.7)


def test_judge_provider_change_rescores_without_the_model(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    assert cli(root, "eval")[0] == 0
    [first] = runs(root)
    write(
        root / "evals" / "suites" / "answers.yaml",
        SUITE.replace("JUDGE_PROVIDER", "offline"),
    )
    before = server.total
    code, out, err = cli(root, "eval")
    assert code == 0, out + err
    assert counts(server, before) == (0, 0)  # the model from the cache, the judge is local
    [second] = [run for run in runs(root) if run.key != first.key]
    assert second.timing.cached == ROWS
    assert second.judge_usage is not None
    assert second.judge_usage.calls == ROWS


def test_malformed_verdict_is_asked_once_more_then_counted_as_a_metric_error(
    tmp_path: Path,
) -> None:
    once = "judge row-2 | yes | yes"
    always = "judge row-4 | yes | yes"
    malformed_once: set[str] = set()

    def answer(messages: list[dict[str, Any]]) -> str:
        key = messages[-1]["content"]
        if key == always or (key == once and key not in malformed_once):
            malformed_once.add(key)
            return "I think it is fine."
        return server_answer(messages)

    with LLMServer(answer=answer) as server:
        root = make_project(tmp_path / "p", server.base_url)
        code, out, err = cli(root, "eval", "--error-budget", "0.2")
        assert code == 0, out + err
        assert server.counts[once] == 2
        assert server.counts[always] == 2
    [run] = runs(root)
    assert run.errors == 1
    assert run.results["verdict"].n == ROWS - 1  # never a silent 0
    scores = Ledger(root / "evals" / "ledger").read().scores(run)
    index = scores.ids.index("r04")
    assert scores.scores["verdict"][index] is None
    assert "judge verdict: malformed verdict twice (not JSON" in scores.errors["r04"]


def test_judge_provider_outage_exits_3_and_records_nothing(tmp_path: Path) -> None:
    def answer(messages: list[dict[str, Any]]) -> str:
        return server_answer(messages)

    with LLMServer(answer=answer) as model:
        root = make_project(tmp_path / "p", model.base_url)
        # The judge's endpoint: a server that was stopped (connection refused).
        with LLMServer() as gone:
            dead = gone.base_url
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
        head, judge_table = text.split("[tool.promptlib.providers.judge]")
        judge_table = judge_table.replace(model.base_url, dead, 1)
        write(root / "pyproject.toml", head + "[tool.promptlib.providers.judge]" + judge_table)
        code, out, err = cli(root, "eval")
        assert counts(model)[1] == 0
    assert code == 3, out + err
    assert "judge verdict:" in out + err
    assert runs(root) == []


def test_judge_metric_errors_are_config_errors(tmp_path: Path, server: LLMServer) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    suite = root / "evals" / "suites" / "answers.yaml"
    suite.write_text(
        SUITE.replace("judges.check", "judges.nope").replace("JUDGE_PROVIDER", "judge")
    )
    code, _out, err = cli(root, "eval")
    assert code == 2
    assert "metric verdict: no prompt 'judges.nope' in the library (judges: judges.check)" in err
    suite.write_text(
        SUITE.replace("scale: binary", "scale: 1-10").replace("JUDGE_PROVIDER", "judge")
    )
    code, _out, err = cli(root, "eval")
    assert code == 2
    assert (
        "evals/suites/answers.yaml:7: metric verdict: scale must be binary or 1-5, not '1-10'"
        in err
    )
    assert server.total == 0


# -- calibration -----------------------------------------------------------------------


def write_labelled(root: Path, rows: list[tuple[str, str, str, int]]) -> None:
    lines = [
        json.dumps({"id": f"c{i:02d}", "text": t, "candidate": a, "label": ref, "human": h})
        for i, (t, a, ref, h) in enumerate(rows, start=1)
    ]
    write(root / "evals" / "datasets" / "labelled.jsonl", "\n".join(lines) + "\n")
    write(root / "evals" / "suites" / "calibration.yaml", CALIBRATION_SUITE)


# (question, candidate answer, reference, human label). The judge says 1 when answer ==
# reference; the humans disagree on two rows: 2x2 table [[3, 1], [1, 3]] (rows: human).
LABELLED = [
    ("q1", "yes", "yes", 1),
    ("q2", "yes", "yes", 1),
    ("q3", "yes", "yes", 1),
    ("q4", "yes", "yes", 0),
    ("q5", "no", "yes", 0),
    ("q6", "no", "yes", 0),
    ("q7", "no", "yes", 0),
    ("q8", "no", "yes", 1),
]


def test_calibrate_reports_agreement_records_it_and_judge_metrics_read_it(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    write_labelled(root, LABELLED)
    # No calibration yet: the judge metric warns.
    code, out, err = cli(root, "eval", "--suite", "answers")
    assert code == 0, err
    assert (
        "warning: judge judges.check 1.0.0 with provider judge (metric verdict of answers) has no calibration"
        in err
    )
    code, out, err = cli(
        root, "judge", "calibrate", "calibration", "--labels", "human", "--format", "json"
    )
    assert code == 0, out + err
    result = json.loads(out)
    # p_o = 6/8, p_e = (4*4 + 4*4) / 64 = 0.5: kappa = (0.75 - 0.5) / 0.5 = 0.5.
    assert result["n"] == 8
    assert result["raw_agreement"] == pytest.approx(0.75)
    assert result["kappa"] == pytest.approx(0.5)
    assert result["bias"] == pytest.approx(0.0)
    assert result["confusion"] == {"categories": [0, 1], "counts": [[3, 1], [1, 3]]}
    low, high = result["kappa_interval"]
    assert -1 <= low <= 0.5 <= high <= 1
    assert result["record"]["status"] == "recorded"
    records = [r for r in runs(root) if "kappa" in r.results]
    assert len(records) == 1
    assert records[0].results["kappa"].mean == pytest.approx(0.5)
    assert records[0].results["kappa"].n == 8
    assert records[0].prompt.id == "judges.check"
    # The same calibration again: reused, nothing appended, no judge call.
    before = server.total
    code, out, err = cli(root, "judge", "calibrate", "calibration", "--labels", "human")
    assert code == 0, err
    assert "Cohen's kappa    0.500" in out
    assert "calibration reused" in out
    assert server.total == before
    assert len([r for r in runs(root) if "kappa" in r.results]) == 1
    # Calibrated above min-kappa (0.4 by default): no warning any more.
    code, out, err = cli(root, "eval", "--suite", "answers")
    assert code == 0
    assert "warning" not in err
    # Above it: a warning names the kappa.
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    write(root / "pyproject.toml", text + "\n[tool.promptlib.judges]\nmin-kappa = 0.6\n")
    code, out, err = cli(root, "eval", "--suite", "answers")
    assert code == 0
    assert (
        "agrees with human labels at kappa 0.500 (suite calibration, n=8), below min-kappa 0.6"
        in err
    )
    # Another judge provider has no calibration of its own.
    write(root / "evals" / "suites" / "answers.yaml", SUITE.replace("JUDGE_PROVIDER", "offline"))
    code, out, err = cli(root, "eval", "--suite", "answers")
    assert (
        "judge judges.check 1.0.0 with provider offline (metric verdict of answers) has no calibration"
        in err
    )


def test_calibrate_refuses_a_label_that_is_not_an_integer(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    write_labelled(root, LABELLED)
    path = root / "evals" / "datasets" / "labelled.jsonl"
    path.write_text(path.read_text().replace('"human": 0}', '"human": "maybe"}', 1))
    code, _out, err = cli(root, "judge", "calibrate", "calibration", "--labels", "human")
    assert code == 2
    assert "row 'c04' has human = 'maybe'; calibration labels are integers" in err
    assert runs(root) == []  # checked before any call: nothing evaluated, nothing recorded
    assert server.total == 0
    code, _out, err = cli(root, "judge", "calibrate", "calibration", "--labels", "nope")
    assert code == 2
    assert "row 'c01' has no label column 'nope'" in err


def test_run_report_shows_each_verdict_under_its_answer(tmp_path: Path, server: LLMServer) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    assert cli(root, "eval")[0] == 0
    [run] = runs(root)
    page = tmp_path / "run.html"
    code, out, err = cli(root, "report", "--run", run.key, "--output", str(page))
    assert code == 0, out + err
    html = page.read_text(encoding="utf-8")
    assert "<dt>judge verdict: 0</dt><dd>&#x27;no&#x27; vs &#x27;yes&#x27;</dd>" in html
    assert html.count("<dt>judge verdict: ") == ROWS


def test_judge_outage_in_a_comparison_fails_each_side_and_exits_3(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "p", server.base_url)
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n")
    code, out, err = cli(root, "release")
    assert code == 0, out + err
    # A new answer prompt, and a judge provider that is down: both sides need the new
    # judge (its fingerprint is in both run keys), and neither can be judged.
    write(
        root / "prompts" / "demo" / "answer.yaml",
        ANSWER.replace("Answer yes.", "Answer yes, please.").replace("1.0.0", "1.1.0"),
    )
    with LLMServer() as gone:
        dead = gone.base_url
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    write(
        root / "pyproject.toml",
        text + f'\n[tool.promptlib.providers.judge2]\ntype = "openai"\nmodel = "judge-2"\n'
        f'base_url = "{dead}"\napi_key_env = "DEMO_API_KEY"\ntimeout = 5\n',
    )
    write(root / "evals" / "suites" / "answers.yaml", SUITE.replace("JUDGE_PROVIDER", "judge2"))
    recorded = len(runs(root))
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 3, out + err
    failures = {f["side"]: f for f in json.loads(out)["failures"]}
    assert set(failures) == {"baseline", "candidate"}
    for failure in failures.values():
        assert failure["prompt"] == "demo.answer"
        assert failure["reason"].startswith("10 of 10 examples failed (budget 10%); first: ")
        assert "judge verdict: provider 'judge2'" in failure["reason"]
    assert len(runs(root)) == recorded


def test_dry_run_predicts_the_model_and_the_judge_calls_apart(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "p", server.base_url)

    def predicted() -> tuple[int, int, int, int]:
        code, out, err = cli(root, "eval", "--dry-run", "--format", "json")
        assert code == 0, out + err
        [job] = json.loads(out)["jobs"]
        return job["calls"], job["cached"], job["judge_calls"], job["judge_cached"]

    assert predicted() == (ROWS, 0, ROWS, 0)
    # Answers and verdicts in the response cache, nothing recorded: all cached.
    assert cli(root, "eval", "--no-record")[0] == 0
    before = server.total
    assert predicted() == (0, ROWS, 0, ROWS)
    # A new judge: the model's answers are cached, the verdicts are not.
    judge = JUDGE.replace("JUDGE SYSTEM", "JUDGE SYSTEM, strictly").replace("1.0.0", "1.1.0")
    write(root / "prompts" / "judges" / "check.yaml", judge)
    assert predicted() == (0, ROWS, ROWS, 0)
    code, out, err = cli(root, "eval", "--dry-run")
    assert code == 0, err
    assert f"{ROWS} examples, {ROWS} cached, 0 calls; judges: 0 cached, {ROWS} calls" in out
    assert f"dry run: {ROWS} judge call(s) would be made" in err
    # Predicted, not made.
    assert counts(server, before) == (0, 0)


# -- pairwise judging in eval --against -------------------------------------------------

PAIR_JUDGE = """\
id: judges.pair
version: 1.0.0
description: A pairwise judge of yes/no answers.
inputs:
  question: {type: string}
  answer_a: {type: string}
  answer_b: {type: string}
  reference: {type: string}
messages:
  - role: system
    content: "PAIRJUDGE"
  - role: user
    content: "pair {{ question }} | {{ answer_a }} | {{ answer_b }} | {{ reference }}"
examples:
  - inputs: {question: q, answer_a: a, answer_b: b, reference: r}
"""


def pairwise_answer(biased: bool) -> Any:
    """The model says "no" to odd rows unless its system message says "please"; the
    pairwise judge names the answer equal to the reference (or, ``biased``, always A)."""

    def answer(messages: list[dict[str, Any]]) -> str:
        system, last = messages[0]["content"], messages[-1]["content"]
        if system == "PAIRJUDGE":
            _, rest = last.split(" ", 1)
            _q, a, b, reference = (part.strip() for part in rest.split("|"))
            if biased:
                winner = "A"
            else:
                winner = (
                    "tie"
                    if (a == reference) == (b == reference)
                    else ("A" if a == reference else "B")
                )
            return json.dumps({"winner": winner, "reason": f"{a} / {b}"})
        if system.startswith("JUDGE"):
            return server_answer(messages)
        return "no" if "odd" in last and "please" not in system else "yes"

    return answer


def pairwise_project(root: Path, base_url: str, odd_rows: int) -> Path:
    make_project(root, base_url)
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n")
    write(root / "prompts" / "judges" / "pair.yaml", PAIR_JUDGE)
    lines = [
        json.dumps(
            {
                "id": f"r{i:02d}",
                "text": f"row-{i} odd" if i <= odd_rows else f"row-{i}",
                "label": "yes",
            }
        )
        for i in range(1, ROWS + 1)
    ]
    write(root / "evals" / "datasets" / "rows.jsonl", "\n".join(lines) + "\n")
    return root


def add_pairwise(root: Path) -> None:
    entry = (
        "  - {kind: judge_pairwise, name: pref, prompt: judges.pair, provider: judge,\n"
        "     inputs: {question: text}}\n"
    )
    suite = SUITE.replace("JUDGE_PROVIDER", "judge").replace(
        "provider: model", entry + "provider: model"
    )
    write(root / "evals" / "suites" / "answers.yaml", suite)


def change_answer(root: Path) -> None:
    write(
        root / "prompts" / "demo" / "answer.yaml",
        ANSWER.replace("Answer yes.", "Answer yes, please.").replace("1.0.0", "1.1.0"),
    )


@pytest.mark.parametrize(
    ("odd_rows", "biased", "expected"),
    [
        # The baseline is wrong on every row, the candidate right: 10 consistent wins, sign
        # test p = 2 / 2**10.
        (
            ROWS,
            False,
            {
                "candidate": ROWS,
                "baseline": 0,
                "ties": 0,
                "inconsistent": 0,
                "position_biased": 0,
                "p_value": 2 / 2**ROWS,
                "verdict": "candidate preferred",
            },
        ),
        # Wrong on 3 rows: 3 wins, 7 ties; p = 2 / 2**3: no preference shown.
        (
            3,
            False,
            {
                "candidate": 3,
                "baseline": 0,
                "ties": ROWS - 3,
                "inconsistent": 0,
                "position_biased": 0,
                "p_value": 0.25,
                "verdict": "no preference shown",
            },
        ),
        # A judge that always names A: every example inconsistent and position-biased.
        (
            ROWS,
            True,
            {
                "candidate": 0,
                "baseline": 0,
                "ties": 0,
                "inconsistent": ROWS,
                "position_biased": ROWS,
                "p_value": 1.0,
                "verdict": "no preference shown",
            },
        ),
    ],
)
def test_pairwise_judge_sees_both_orders_and_counts_only_consistent_preferences(
    tmp_path: Path, odd_rows: int, biased: bool, expected: dict[str, Any]
) -> None:
    with LLMServer(answer=pairwise_answer(biased)) as server:
        root = pairwise_project(tmp_path / "p", server.base_url, odd_rows)
        code, out, err = cli(root, "release")
        assert code == 0, out + err
        keys = {r.key for r in runs(root)}
        add_pairwise(root)
        # A pairwise entry changes no run key.
        before = server.total
        code, out, err = cli(root, "eval")
        assert code == 0, out + err
        assert server.total == before
        assert {r.key for r in runs(root)} == keys
        change_answer(root)
        before = server.total
        code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
        assert code == 0, out + err
        pair_requests = [
            s for s in server.requests[before:] if s.body["messages"][0]["content"] == "PAIRJUDGE"
        ]
    [result] = json.loads(out)["pairwise"]
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    assert result["n"] == ROWS
    assert result["position_bias_rate"] == pytest.approx(expected["position_biased"] / ROWS)
    assert result["p_adjusted"] == pytest.approx(expected["p_value"])  # a family of one
    # Each example was shown in both orders, baseline first then candidate first; where
    # both answers are the same the two orders are one request, answered once (the
    # response cache serves the second).
    assert len(pair_requests) == ROWS + odd_rows
    shown = {s.key for s in pair_requests}
    assert "pair row-1 odd | no | yes | yes" in shown
    assert "pair row-1 odd | yes | no | yes" in shown


def test_pairwise_result_is_shown_beside_the_pointwise_table(tmp_path: Path) -> None:
    with LLMServer(answer=pairwise_answer(False)) as server:
        root = pairwise_project(tmp_path / "p", server.base_url, ROWS)
        assert cli(root, "release")[0] == 0
        add_pairwise(root)
        change_answer(root)
        code, out, err = cli(root, "eval", "--against", "v1.0.0")
        assert code == 0, out + err
        assert (
            "pairwise pref (judges.pair, judge) demo.answer · answers: candidate 10, "
            "baseline 0, ties 0, inconsistent 0 of 10; sign test p (Holm) 0.00195: candidate "
            "preferred; position bias 0%"
        ) in " ".join(out.split())
        code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "markdown")
        assert code == 0, out + err
        page = tmp_path / "against.html"
        code, _, err = cli(root, "eval", "--against", "v1.0.0", "--html", str(page))
        assert code == 0, err
    assert (
        "- `demo.answer` answers pairwise judge pref (`judges.pair`, judge): candidate 10, "
        "baseline 0, ties 0, inconsistent 0 of 10; sign test p (Holm) 0.00195: candidate "
        "preferred; position bias 0%"
    ) in out
    html = page.read_text(encoding="utf-8")
    assert "<h2>Pairwise judges</h2>" in html
    assert (
        "<td><code>demo.answer</code></td><td>answers</td>"
        "<td>pref (<code>judges.pair</code>, judge)</td>"
        '<td class="num">10</td><td class="num">10</td><td class="num">0</td>'
        '<td class="num">0</td><td class="num">0</td><td class="num">0.00195</td>'
        '<td>candidate preferred</td><td class="num">0%</td>'
    ) in html


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("min-kappa = 2", "[judges]: min-kappa must be between -1 and 1, not 2.0"),
        ('min-kappa = "high"', "[judges]: min-kappa must be a number, not 'high'"),
        ("kappa = 0.5", "[judges]: unknown key(s) kappa; known: min-kappa"),
    ],
)
def test_bad_judges_settings_are_usage_errors(
    tmp_path: Path, server: LLMServer, table: str, message: str
) -> None:
    root = make_project(
        tmp_path / "p", server.base_url, extra=f"\n[tool.promptlib.judges]\n{table}\n"
    )
    code, _out, err = cli(root, "eval")
    assert code == 2
    assert message in err
    assert server.total == 0


def test_judge_tokens_and_cost_are_recorded_apart_from_the_model(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(
        tmp_path / "p",
        server.base_url,
        judge_provider="priced",
        extra='\n[tool.promptlib.providers.priced]\ntype = "python"\n'
        'callable = "_judge_callables:priced_verdict"\n',
    )
    code, out, err = cli(root, "eval")
    assert code == 0, out + err
    [run] = runs(root)
    assert run.results["verdict"].mean == pytest.approx(0.7)
    assert run.judge_usage is not None
    assert run.judge_usage.calls == ROWS
    assert run.judge_usage.prompt_tokens == 40 * ROWS
    assert run.judge_usage.completion_tokens == 9 * ROWS
    assert run.judge_usage.cost == pytest.approx(0.00125 * ROWS)
    # The model under test: its own tokens, and no cost (the server reports none).
    assert run.usage.completion_tokens == ROWS
    assert run.usage.cost is None


def test_a_judged_run_split_over_shards_merges_to_the_same_judge_usage(
    tmp_path: Path, server: LLMServer
) -> None:
    """The judges' calls, tokens and cost of a job split into parts are summed by the merge
    to what one process records."""
    root = make_project(
        tmp_path / "p",
        server.base_url,
        judge_provider="priced",
        extra='\n[tool.promptlib.providers.priced]\ntype = "python"\n'
        'callable = "_judge_callables:priced_verdict"\n',
    )
    # The cache off: the shards ask the judge again instead of reading its answers.
    code, out, err = cli(root, "eval", "--cache", "off", "--ledger", str(root / "whole"))
    assert code == 0, out + err
    folders = []
    for k in (1, 2, 3):
        folder = root / f"shard-{k}"
        code, out, err = cli(
            root,
            "eval",
            "--cache",
            "off",
            "--shard",
            f"{k}/3",
            "--split-above",
            "4",
            "--ledger",
            str(folder),
        )
        assert code == 0, out + err
        folders.append(str(folder))
    code, out, err = cli(root, "ledger", "merge", *folders, "--into", str(root / "merged"))
    assert code == 0, out + err
    assert "(1 joined from parts)" in out
    [whole] = Ledger(root / "whole").read().latest_runs().values()
    [merged] = Ledger(root / "merged").read().latest_runs().values()
    assert merged.judge_usage is not None
    assert merged.judge_usage == whole.judge_usage
    assert (merged.judge_usage.calls, merged.judge_usage.prompt_tokens) == (ROWS, 40 * ROWS)
    assert merged.judge_usage.cost == pytest.approx(0.00125 * ROWS)
    assert merged.results == whole.results


def test_report_against_calls_no_pairwise_judge(tmp_path: Path) -> None:
    with LLMServer(answer=pairwise_answer(False)) as server:
        root = pairwise_project(tmp_path / "p", server.base_url, ROWS)
        assert cli(root, "release")[0] == 0
        add_pairwise(root)
        change_answer(root)
        assert cli(root, "eval", "--against", "v1.0.0")[0] == 0
        before = server.total
        page = tmp_path / "against.html"
        code, out, err = cli(root, "report", "--against", "v1.0.0", "--output", str(page))
        assert code == 0, out + err
        assert server.total == before
    assert "demo.answer" in page.read_text(encoding="utf-8")
