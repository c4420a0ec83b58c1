"""promptlib.evals.suite: loading suite files, choosing rows, inputs and references, run keys.

The corpus in tests/corpus/suites/ holds broken suite files. Each starts with one
``# expect: MESSAGE`` line per line of the ``ConfigError`` it must raise (in order) and,
for a known bug, a ``# xfail: REASON`` line. Every file is loaded inside a temporary
project that holds a tiny dataset, so that messages name ``evals/suites/<file>``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import write
from promptlib import load
from promptlib.errors import ConfigError, DatasetError
from promptlib.evals.runner import run_key
from promptlib.evals.suite import Suite, load_suite, load_suites, select_suites
from promptlib.library.prompt import Prompt
from promptlib.providers.contract import Provider, Request, Response

CORPUS = Path(__file__).parent / "corpus" / "suites"
FILES = sorted(CORPUS.glob("*.yaml"))

ROWS: list[dict[str, Any]] = [
    {"id": "r1", "text": "cancel my order", "intent": "cancel_order", "domain": "orders", "label": "CALL_CENTER", "tldrs": ["first tl;dr", "second tl;dr"], "entity_type": "order_number", "stars": 5},
    {"id": "r2", "text": "what is my balance", "intent": "balance", "domain": "banking", "label": "NO_NODES_DETECTED", "tldrs": ["only one"], "entity_type": None, "stars": 1},
    {"id": "r3", "text": "cancel order 42", "intent": "cancel_order", "domain": "orders", "label": "ORDER_STATUS", "tldrs": [], "entity_type": "order_number", "stars": 3},
    {"id": "r4", "text": "freeze my account", "intent": "freeze_account", "domain": "banking", "label": "NO_NODES_DETECTED", "tldrs": ["x"], "entity_type": None, "stars": 2},
    {"id": "r5", "text": "book a flight", "intent": "book_flight", "domain": "travel", "label": "CALL_CENTER", "tldrs": ["y"], "entity_type": None, "stars": 4},
    {"id": "r6", "text": "cancel the purchase", "intent": "cancel_order", "domain": "orders", "label": "CALL_CENTER", "tldrs": ["z"], "entity_type": None, "stars": 5},
]  # fmt: skip

PROMPT = """\
id: demo.{name}
version: 1.0.0
description: Classifies a customer message.
inputs:
  text: {{type: string}}
messages:
  - role: system
    content: "{system}"
  - role: user
    content: "{{{{ text }}}}"
output:
  format: label
  labels: [CALL_CENTER, ORDER_STATUS, NO_NODES_DETECTED]
examples:
  - inputs: {{text: cancel my order}}
"""

BASE: dict[str, Any] = {
    "description": "Labels of the tiny dataset.",
    "dataset": "evals/datasets/tiny.jsonl",
    "prompts": ["demo.*"],
    "inputs": {"text": "text"},
    "references": "label",
    "metrics": ["accuracy"],
    "gates": {"accuracy": 0.5},
}


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def make_project(root: Path, system: str = "Answer with one label.") -> Path:
    write(root / "pyproject.toml", "[project]\nname = 'demo'\nversion = '1.0.0'\n")
    write(
        root / "prompts" / "demo" / "classify.yaml", PROMPT.format(name="classify", system=system)
    )
    write(root / "evals" / "datasets" / "tiny.jsonl", jsonl(ROWS))
    write(root / "evals" / "datasets" / "other.jsonl", jsonl(ROWS[:3]))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def suite_file(root: Path, fields: Mapping[str, Any], name: str = "tiny") -> Path:
    return write(root / "evals" / "suites" / f"{name}.yaml", yaml.safe_dump(dict(fields)))


def suite_of(root: Path, name: str = "tiny", **changes: Any) -> Suite:
    fields = {**BASE, **changes}
    return load_suite(suite_file(root, fields, name), root)


# ---------------------------------------------------------------------------- the corpus


def expectation(path: Path) -> tuple[str, str | None]:
    expected: list[str] = []
    xfail = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# expect: "):
            expected.append(line.removeprefix("# expect: "))
        elif line.startswith("# xfail: "):
            xfail = line.removeprefix("# xfail: ")
        else:
            break
    return "\n".join(expected), xfail


def corpus_params() -> list[Any]:
    params = []
    for path in FILES:
        _, xfail = expectation(path)
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 10
    assert all(expectation(path)[0] for path in FILES)


@pytest.mark.parametrize("path", corpus_params())
def test_broken_suite_raises_its_exact_message(path: Path, tmp_path: Path) -> None:
    expected, _ = expectation(path)
    root = make_project(tmp_path)
    target = root / "evals" / "suites" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    with pytest.raises(ConfigError) as raised:
        load_suite(target, root)
    assert str(raised.value) == expected


def test_load_suites_reports_a_broken_file(project: Path) -> None:
    suite_of(project, "good")
    shutil.copyfile(CORPUS / "unknown_metric.yaml", project / "evals" / "suites" / "z.yaml")
    with pytest.raises(ConfigError, match=r"^evals/suites/z\.yaml:7: unknown metric 'bleu'"):
        load_suites(project)


def test_a_valid_suite_loads_with_everything_resolved(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The dataset path is relative to the project, whatever the current directory.
    monkeypatch.chdir(tmp_path)
    suite = suite_of(
        project,
        "support",
        metrics=[
            {"kind": "rougeL", "normalize": "placeholders"},
            {
                "kind": "exact_match",
                "name": "entity",
                "json_field": "entity_type",
                "reference": "entity_type",
            },
            "json_valid",
        ],
        gates={"rougeL": 0.2, "entity": 0.5},
    )
    assert suite.name == "support"
    assert suite.dataset_path == (project / "evals" / "datasets" / "tiny.jsonl").resolve()
    assert [m.name for m in suite.metrics] == ["rougeL", "entity", "json_valid"]
    assert suite.metrics[1].spec.reference == "entity_type"
    assert suite.metrics[1].spec.options == {"json_field": "entity_type"}
    assert suite.references == ["label"]
    dataset = suite.dataset()
    assert dataset.relative == "evals/datasets/tiny.jsonl"
    assert [row["id"] for row in dataset] == [row["id"] for row in ROWS]


def test_metrics_with_their_own_reference_need_no_references_field(project: Path) -> None:
    fields = {k: v for k, v in BASE.items() if k not in ("references", "gates")}
    fields["metrics"] = [
        "json_valid",
        {
            "kind": "exact_match",
            "name": "entity",
            "json_field": "entity_type",
            "reference": "entity_type",
        },
        {"kind": "contains", "text": "order"},
        {"kind": "regex", "pattern": "^[A-Z_]+$"},
    ]
    suite = load_suite(suite_file(project, fields), project)
    assert suite.references == []


# ------------------------------------------------------------------------------- selects


@pytest.mark.parametrize(
    ("patterns", "prompt_id", "selected"),
    [
        (["support.answer.*", "!support.answer.general"], "support.answer.get_refund", True),
        (["support.answer.*", "!support.answer.general"], "support.answer.general", False),
        (["support.answer.*", "!support.answer.general"], "support.classify.intent", False),
        (["banking.intent*"], "banking.intent", True),
        (["banking.intent*"], "banking.intent_fewshot", True),
        (["routing.scope"], "routing.scope_fewshot", False),
        (["routing.scope"], "routing.scope", True),
        (["summarize.tldr", "rewrite.one_sentence"], "rewrite.one_sentence", True),
        (["*", "!support.*"], "banking.intent", True),
        (["*", "!support.*"], "support.answer.general", False),
        (["!support.answer.general"], "support.answer.get_refund", False),
        (["stores.*.scope"], "stores.curekart.scope", True),
        (["stores.*.scope"], "stores.curekart.intent", False),
        (["stores.?ure*.intent"], "stores.curekart.intent", True),
        (["Support.*"], "support.answer.general", False),
        (["support.answer.[ct]*", "!*.check_*"], "support.answer.track_order", True),
        (["support.answer.[ct]*", "!*.check_*"], "support.answer.check_invoice", False),
        (["support.answer.[ct]*", "!*.check_*"], "support.answer.get_refund", False),
    ],
)
def test_selects(project: Path, patterns: list[str], prompt_id: str, selected: bool) -> None:
    assert suite_of(project, prompts=patterns).selects(prompt_id) is selected


# ------------------------------------------------------------------------------ rows_for


@pytest.mark.parametrize(
    ("changes", "prompt_id", "expected"),
    [
        ({}, "demo.classify", ["r1", "r2", "r3", "r4", "r5", "r6"]),
        ({"match": "intent"}, "support.answer.cancel_order", ["r1", "r3", "r6"]),
        ({"match": "intent"}, "banking.balance", ["r2"]),
        ({"match": "intent"}, "support.answer.unknown_intent", []),
        ({"match": "domain"}, "routing.travel", ["r5"]),
        ({"where": {"domain": "banking"}}, "demo.classify", ["r2", "r4"]),
        ({"where": {"domain": ["banking", "travel"]}}, "demo.classify", ["r2", "r4", "r5"]),
        ({"where": {"domain": "orders", "label": "CALL_CENTER"}}, "demo.classify", ["r1", "r6"]),
        ({"where": {"domain": "nowhere"}}, "demo.classify", []),
        ({"where": {"stars": 5}}, "demo.classify", ["r1", "r6"]),
        ({"where": {"stars": [1, 2]}}, "demo.classify", ["r2", "r4"]),
        ({"where": {"no_such_field": "x"}}, "demo.classify", []),
        ({"limit": 2}, "demo.classify", ["r1", "r2"]),
        ({"limit": 100}, "demo.classify", ["r1", "r2", "r3", "r4", "r5", "r6"]),
        # limit applies after where and match: the first N rows the prompt would get.
        ({"where": {"domain": "banking"}, "limit": 1}, "demo.classify", ["r2"]),
        ({"match": "intent", "limit": 2}, "x.cancel_order", ["r1", "r3"]),
        (
            {"match": "intent", "where": {"label": "CALL_CENTER"}, "limit": 5},
            "x.cancel_order",
            ["r1", "r6"],
        ),
    ],
)
def test_rows_for(
    project: Path, changes: dict[str, Any], prompt_id: str, expected: list[str]
) -> None:
    suite = suite_of(project, **changes)
    rows = suite.rows_for(prompt_id, suite.dataset())
    assert [row["id"] for row in rows] == expected


# ----------------------------------------------------------------------------- inputs_for

ROW = ROWS[0]


@pytest.mark.parametrize(
    ("mapping", "declared", "expected", "error"),
    [
        ({"text": "text"}, {"text"}, {"text": "cancel my order"}, None),
        ({"text": "text", "domain": "domain"}, {"text"}, {"text": "cancel my order"}, None),
        (
            {"text": "text", "domain": "domain"},
            {"text", "domain"},
            {"text": "cancel my order", "domain": "orders"},
            None,
        ),
        ({"query": "text"}, {"query", "extra"}, {"query": "cancel my order"}, None),
        ({"tldrs": "tldrs"}, {"tldrs"}, {"tldrs": ["first tl;dr", "second tl;dr"]}, None),
        ({"text": "text"}, set(), {}, None),
        # A missing field of an undeclared input is never read; a declared one is named.
        ({"text": "text", "extra": "no_such_field"}, {"text"}, {"text": "cancel my order"}, None),
        (
            {"utterance": "utterance"},
            {"utterance"},
            None,
            "row 'r1' of evals/datasets/tiny.jsonl has no field 'utterance'",
        ),
        (
            {"text": "text", "question": "query"},
            {"text", "question"},
            None,
            "row 'r1' of evals/datasets/tiny.jsonl has no field 'query'",
        ),
    ],
)
def test_inputs_for(
    project: Path,
    mapping: dict[str, str],
    declared: set[str],
    expected: dict[str, Any] | None,
    error: str | None,
) -> None:
    suite = suite_of(project, inputs=mapping)
    if error is not None:
        with pytest.raises(DatasetError) as raised:
            suite.inputs_for(ROW, declared)
        assert str(raised.value) == error
        return
    assert suite.inputs_for(ROW, declared) == expected


# ------------------------------------------------------------------------- references_for

SCOPE_MAP = {"NO_NODES_DETECTED": "out_of_scope", "*": "in_scope"}


@pytest.mark.parametrize(
    ("changes", "row", "field", "expected"),
    [
        ({"references": "label"}, ROWS[0], None, ["CALL_CENTER"]),
        ({"references": ["label"]}, ROWS[0], None, ["CALL_CENTER"]),
        ({"references": ["intent", "domain"]}, ROWS[0], None, ["cancel_order", "orders"]),
        ({"references": "tldrs"}, ROWS[0], None, ["first tl;dr", "second tl;dr"]),
        ({"references": ["tldrs", "label"]}, ROWS[1], None, ["only one", "NO_NODES_DETECTED"]),
        ({"references": "tldrs"}, ROWS[2], None, []),
        ({"references": "stars"}, ROWS[0], None, ["5"]),
        # A metric's own reference field replaces the suite's.
        ({"references": "label"}, ROWS[0], "domain", ["orders"]),
        ({"references": "label"}, ROWS[0], "entity_type", ["order_number"]),
        # label_map: exact keys first, "*" for every other value.
        ({"label_map": SCOPE_MAP}, ROWS[1], None, ["out_of_scope"]),
        ({"label_map": SCOPE_MAP}, ROWS[0], None, ["in_scope"]),
        ({"label_map": SCOPE_MAP}, ROWS[2], None, ["in_scope"]),
        ({"label_map": {"NO_NODES_DETECTED": "out_of_scope"}}, ROWS[0], None, ["CALL_CENTER"]),
        ({"label_map": {"NO_NODES_DETECTED": "out_of_scope"}}, ROWS[1], None, ["out_of_scope"]),
        (
            {"references": "tldrs", "label_map": {"only one": "mapped"}},
            ROWS[1],
            None,
            ["mapped"],
        ),
    ],
)
def test_references_for(
    project: Path,
    changes: dict[str, Any],
    row: dict[str, Any],
    field: str | None,
    expected: list[str],
) -> None:
    assert suite_of(project, **changes).references_for(row, field) == expected


ENTITY_METRIC = {
    "kind": "exact_match",
    "name": "entity_type",
    "json_field": "entity_type",
    "reference": "entity_type",
}


def entity_score(project: Path, row: dict[str, Any], output: str) -> float:
    fields = {k: v for k, v in BASE.items() if k not in ("references", "gates")}
    suite = load_suite(suite_file(project, {**fields, "metrics": [ENTITY_METRIC]}), project)
    [metric] = suite.metrics
    return metric.score(output, suite.references_for(row, metric.spec.reference), row)


@pytest.mark.parametrize(
    ("row", "output", "expected"),
    [
        (ROWS[0], '{"entity_type": "order_number", "entity_value": "42"}', 1.0),
        (ROWS[0], '{"entity_type": null, "entity_value": null}', 0.0),
        (ROWS[1], '{"entity_type": "order_number", "entity_value": "42"}', 0.0),
    ],
)
def test_json_field_scores_through_the_suite(
    project: Path, row: dict[str, Any], output: str, expected: float
) -> None:
    assert entity_score(project, row, output) == expected


def test_null_answer_for_a_null_field_scores_1_through_the_suite(project: Path) -> None:
    assert entity_score(project, ROWS[1], '{"entity_type": null, "entity_value": null}') == 1.0


# ------------------------------------------------------------------- load and select suites


def test_load_suites_sorted_by_name(project: Path) -> None:
    for name in ("b_second", "a_first", "c_third"):
        suite_of(project, name)
    (project / "evals" / "suites" / "b_second.yaml").rename(
        project / "evals" / "suites" / "b_second.yml"
    )
    (project / "evals" / "suites" / "notes.txt").write_text("not a suite", encoding="utf-8")
    suites = load_suites(project)
    assert [s.name for s in suites] == ["a_first", "b_second", "c_third"]
    assert [s.path.name for s in suites] == ["a_first.yaml", "b_second.yml", "c_third.yaml"]


def test_load_suites_without_a_suites_folder_is_empty(tmp_path: Path) -> None:
    assert load_suites(tmp_path) == []


def test_two_suite_files_with_one_name_are_an_error(project: Path) -> None:
    suite_of(project, "same")
    suite_file(project, {**BASE, "prompts": ["other.*"]}, "other")
    (project / "evals" / "suites" / "other.yaml").rename(project / "evals" / "suites" / "same.yml")
    with pytest.raises(ConfigError, match="same"):
        load_suites(project)


@pytest.mark.parametrize(
    ("names", "expected", "error"),
    [
        ([], ["alpha", "beta", "gamma"], None),
        (["beta"], ["beta"], None),
        (["gamma", "alpha"], ["gamma", "alpha"], None),
        (["delta"], None, "unknown suite 'delta'; suites: alpha, beta, gamma"),
        (["alpha", "Beta"], None, "unknown suite 'Beta'; suites: alpha, beta, gamma"),
        (["beta.yaml"], None, "unknown suite 'beta.yaml'; suites: alpha, beta, gamma"),
    ],
)
def test_select_suites(
    project: Path, names: list[str], expected: list[str] | None, error: str | None
) -> None:
    for name in ("gamma", "alpha", "beta"):
        suite_of(project, name)
    suites = load_suites(project)
    if error is not None:
        with pytest.raises(ConfigError) as raised:
            select_suites(suites, names)
        assert str(raised.value) == error
        return
    assert [s.name for s in select_suites(suites, names)] == expected


def test_select_suites_when_there_are_none() -> None:
    with pytest.raises(ConfigError) as raised:
        select_suites([], ["support"])
    assert str(raised.value) == "unknown suite 'support'; suites: none"


# ------------------------------------------------------------------------------- run keys


class StubProvider(Provider):
    """A provider whose fingerprint is whatever the test says."""

    type = "stub"

    def __init__(self, name: str = "stub", model: str = "stub-1") -> None:
        super().__init__(name)
        self._model = model

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Provider:
        return cls(name, **options)

    def fingerprint_data(self) -> dict[str, Any]:
        return {"type": self.type, "model": self._model}

    async def complete(self, request: Request) -> Response:
        return Response("CALL_CENTER")


def prompt_of(root: Path) -> Prompt:
    return load(root)["demo.classify"]


def key_of(root: Path, suite: Suite, provider: Provider | None = None, repeats: int = 1) -> str:
    return run_key(suite, prompt_of(root), suite.dataset(), provider or StubProvider(), repeats)


@pytest.mark.parametrize(
    ("changes", "changes_key"),
    [
        # Everything that decides which rows are scored and how.
        ({"dataset": "evals/datasets/other.jsonl"}, True),
        ({"match": "intent"}, True),
        ({"where": {"domain": "banking"}}, True),
        ({"where": {"domain": ["banking", "travel"]}}, True),
        ({"limit": 3}, True),
        ({"inputs": {"text": "intent"}}, True),
        ({"inputs": {"text": "text", "domain": "domain"}}, True),
        ({"references": "intent"}, True),
        ({"references": ["label", "intent"]}, True),
        ({"label_map": SCOPE_MAP}, True),
        ({"params": {"temperature": 0.7}}, True),
        ({"params": {"max_tokens": 8}}, True),
        ({"metrics": ["accuracy", "exact_match"]}, True),
        ({"metrics": ["exact_match"], "gates": {}}, True),
        ({"metrics": [{"kind": "accuracy", "name": "acc"}], "gates": {}}, True),
        ({"metrics": [{"kind": "accuracy", "reference": "intent"}]}, True),
        ({"metrics": ["rougeL"], "gates": {}}, True),
        # What does not change a single score reuses the run.
        ({}, False),
        ({"references": ["label"]}, False),
        ({"description": "Another description."}, False),
        ({"gates": {"accuracy": 0.9}}, False),
        ({"gates": {}}, False),
        ({"prompts": ["demo.classify", "other.*"]}, False),
        ({"provider": "somewhere-else"}, False),
    ],
)
def test_run_key_covers_the_eval_configuration(
    project: Path, changes: dict[str, Any], changes_key: bool
) -> None:
    base = key_of(project, suite_of(project))
    changed = key_of(project, suite_of(project, **changes))
    assert (changed != base) is changes_key
    assert changed.startswith("sha256:")
    assert len(changed) == len("sha256:") + 64


def test_run_key_covers_rouge_options(project: Path) -> None:
    keys = {
        key_of(project, suite_of(project, metrics=[metric], gates={}))
        for metric in (
            "rougeL",
            {"kind": "rougeL", "stemmer": False},
            {"kind": "rougeL", "normalize": "placeholders"},
        )
    }
    assert len(keys) == 3
    # The default written out is the same configuration as the default left out.
    assert key_of(project, suite_of(project, metrics=["rougeL"], gates={})) == key_of(
        project, suite_of(project, metrics=[{"kind": "rougeL", "stemmer": True}], gates={})
    )


def test_run_key_covers_dataset_content_prompt_provider_suite_and_repeats(
    project: Path, tmp_path: Path
) -> None:
    suite = suite_of(project)
    base = key_of(project, suite)
    assert key_of(project, suite) == base
    assert key_of(project, suite, StubProvider("renamed", "stub-1")) == base
    assert key_of(project, suite, StubProvider("stub", "stub-2")) != base
    assert key_of(project, suite, repeats=3) != base
    assert key_of(project, suite_of(project, "renamed_suite")) != base
    other = make_project(tmp_path / "other", system="Answer with exactly one label.")
    assert run_key(suite, prompt_of(other), suite.dataset(), StubProvider(), 1) != base
    # Same path, new content: the dataset's sha256 changes the key.
    dataset = project / "evals" / "datasets" / "tiny.jsonl"
    dataset.write_text(jsonl([{**ROWS[0], "label": "ORDER_STATUS"}, *ROWS[1:]]), encoding="utf-8")
    assert key_of(project, suite) != base


def test_run_key_changes_when_a_custom_metric_changes(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    module = folder / "promptlib_test_suite_metric.py"
    monkeypatch.syspath_prepend(str(folder))
    kind = "python:promptlib_test_suite_metric:score"
    try:
        module.write_text("def score(output, references, row):\n    return 1.0\n")
        before = key_of(project, suite_of(project, metrics=[kind], gates={}))
        sys.modules.pop("promptlib_test_suite_metric", None)
        module.write_text("def score(output, references, row):\n    return 0.0\n")
        after = key_of(project, suite_of(project, metrics=[kind], gates={}))
    finally:
        sys.modules.pop("promptlib_test_suite_metric", None)
    assert after != before
