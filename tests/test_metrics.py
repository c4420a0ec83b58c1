"""promptlib.evals.metrics: one score in [0, 1] per example, as a suite configures it.

Every table row is (output, references, options -> expected score). ROUGE rows are
checked against the oracle, rouge-score's own ``RougeScorer``, with exact float equality
and the best F-measure over the references; the other metrics have their expected
scores written out, so that each documented rule (whitespace, case, fences, label
normalisation, null JSON fields) is pinned by a row that fails when the rule changes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from rouge_score import rouge_scorer

from promptlib.errors import ConfigError
from promptlib.evals.metrics import MetricSpec, build_metric, normalize_label, strip_placeholders

ROW: dict[str, Any] = {"id": "r1"}

# --------------------------------------------------------------------------------- ROUGE

# Real shapes: a Bitext reply with {{placeholders}}, SciTLDR TL;DRs (several references per
# paper), and multi-line answers for rougeLsum.
BITEXT_REFERENCE = (
    "I'm here to help you cancel order {{Order Number}}. Please log in to your "
    "{{Online Company Portal Info}} account, open {{Order History}} and click "
    "{{Cancel Order}}. If you need anything else, call {{Customer Support Phone Number}}."
)
BITEXT_OUTPUT = (
    "To cancel order {{Order Number}}, log in to our {{Website Name}}, open your order "
    "history and click Cancel. Call {{Customer Support Hours}} if you need anything else."
)
TLDRS = [
    "We propose a new regulariser that improves the robustness of neural networks.",
    "A regularization method that makes deep networks robust to adversarial examples.",
    "Adversarial robustness through a simple gradient penalty.",
]
TLDR_OUTPUT = "A gradient penalty regularizer makes deep networks robust to adversarial attacks."
MULTILINE_REFERENCE = (
    "Log in to your account.\nOpen the order history.\nClick cancel next to the order."
)
MULTILINE_OUTPUT = "Open your order history.\nFind the order and click cancel.\nLog in first."

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
ROUGE_CASES: list[tuple[str, str, list[str], dict[str, Any]]] = [
    ("tldr-3-refs", TLDR_OUTPUT, TLDRS, {}),
    ("tldr-3-refs-no-stem", TLDR_OUTPUT, TLDRS, {"stemmer": False}),
    ("bitext-placeholders", BITEXT_OUTPUT, [BITEXT_REFERENCE], {"normalize": "placeholders"}),
    ("bitext-raw", BITEXT_OUTPUT, [BITEXT_REFERENCE], {}),
    (
        "bitext-placeholders-no-stem",
        BITEXT_OUTPUT,
        [BITEXT_REFERENCE],
        {"normalize": "placeholders", "stemmer": False},
    ),
    ("multiline", MULTILINE_OUTPUT, [MULTILINE_REFERENCE], {}),
    ("multiline-2-refs", MULTILINE_OUTPUT, [TLDRS[0], MULTILINE_REFERENCE], {}),
]


def oracle(kind: str, output: str, references: Sequence[str], options: dict[str, Any]) -> float:
    """rouge-score's F-measure, best over the references, with the metric's options."""
    if options.get("normalize") == "placeholders":
        output = strip_placeholders(output)
        references = [strip_placeholders(r) for r in references]
    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=options.get("stemmer", True))
    return max(scorer.score(reference, output)[kind].fmeasure for reference in references)


@pytest.mark.parametrize("kind", ROUGE_TYPES)
@pytest.mark.parametrize(
    ("output", "references", "options"),
    [case[1:] for case in ROUGE_CASES],
    ids=[case[0] for case in ROUGE_CASES],
)
def test_rouge_equals_rouge_score_best_over_references(
    kind: str, output: str, references: list[str], options: dict[str, Any]
) -> None:
    metric = build_metric(MetricSpec(kind, options))
    expected = oracle(kind, output, references, options)
    assert 0.0 < expected < 1.0  # every case is a partial match, so the rows can tell apart
    assert metric.score(output, references, ROW) == expected


@pytest.mark.parametrize("kind", ROUGE_TYPES)
def test_rouge_takes_the_best_reference_not_the_first_or_the_mean(kind: str) -> None:
    metric = build_metric(MetricSpec(kind))
    each = [oracle(kind, TLDR_OUTPUT, [ref], {}) for ref in TLDRS]
    assert len(set(each)) == 3
    assert metric.score(TLDR_OUTPUT, TLDRS, ROW) == max(each)
    assert metric.score(TLDR_OUTPUT, list(reversed(TLDRS)), ROW) == max(each)


@pytest.mark.parametrize(
    ("kind", "output", "references", "options", "expected"),
    [
        # Identical and disjoint texts.
        ("rougeL", "cancel my order", ["cancel my order"], {}, 1.0),
        ("rouge1", "cancel my order", ["track a parcel"], {}, 0.0),
        # No reference at all scores 0, never an error.
        ("rouge1", "cancel my order", [], {}, 0.0),
        # Stemming on (the default): "cancelling orders" and "cancel order" are the same stems.
        ("rouge1", "cancelling orders", ["cancel order"], {}, 1.0),
        ("rouge1", "cancelling orders", ["cancel order"], {"stemmer": True}, 1.0),
        ("rouge1", "cancelling orders", ["cancel order"], {"stemmer": False}, 0.0),
        # Placeholders: without normalisation the shared {{...}} words count as overlap;
        # with it they are gone from both sides.
        ("rouge1", "{{Order Number}}", ["{{Order Number}}"], {}, 1.0),
        ("rouge1", "{{Order Number}}", ["{{Order Number}}"], {"normalize": "placeholders"}, 0.0),
        (
            "rougeL",
            "see {{Website Name}} now",
            ["see {{Online Company Portal Info}} now"],
            {"normalize": "placeholders"},
            1.0,
        ),
        # Only the output's placeholders are stripped when the reference has none.
        ("rouge1", "visit {{Website Name}}", ["visit"], {"normalize": "placeholders"}, 1.0),
        # Single braces are not a placeholder span: only {{...}} is removed.
        ("rouge1", "a {b} c", ["a b c"], {"normalize": "placeholders"}, 1.0),
    ],
)
def test_rouge_anchors(
    kind: str, output: str, references: list[str], options: dict[str, Any], expected: float
) -> None:
    assert build_metric(MetricSpec(kind, options)).score(output, references, ROW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Order {{Order Number}} shipped", "Order   shipped"),
        ("{{A}}{{B}}", "  "),
        ("{{ spaced name }} and {{x}}", "  and  "),
        ("{not one}", "{not one}"),
        ("{{unclosed", "{{unclosed"),
    ],
)
def test_strip_placeholders(text: str, expected: str) -> None:
    assert strip_placeholders(text) == expected


def test_rouge_identity_names_promptlibs_algorithm_not_an_installed_version() -> None:
    metric = build_metric(MetricSpec("rougeLsum", {"normalize": "placeholders"}, name="rlsum"))
    assert metric.config() == {
        "name": "rlsum",
        "kind": "rougeLsum",
        "options": {"stemmer": True, "normalize": "placeholders"},
        "reference": None,
    }
    assert metric.identity() == {**metric.config(), "algorithm": "promptlib-rouge/1"}
    # Schema-1 keys held the installed rouge-score version; migration still computes them.
    assert metric.legacy_implementation() == {
        "rouge-score-semantics": metadata.version("rouge-score")
    }
    # Stemming on and off must not share a run key.
    plain = build_metric(MetricSpec("rougeLsum", {"normalize": "placeholders", "stemmer": False}))
    assert plain.config()["options"] != metric.config()["options"]


# --------------------------------------------------------------------------- exact_match

FENCED = '```json\n{"entity_type": "order_number", "entity_value": "123"}\n```'


@pytest.mark.parametrize(
    ("output", "references", "options", "expected"),
    [
        ("order_number", ["order_number"], {}, 1.0),
        ("  order   number \n", ["order number"], {}, 1.0),
        ("order\tnumber", ["order \n number"], {}, 1.0),
        ("Order Number", ["order number"], {}, 0.0),
        ("Order Number", ["order number"], {"ignore_case": True}, 1.0),
        ("order number", ["ORDER NUMBER"], {"ignore_case": True}, 1.0),
        ("order numbers", ["order number"], {}, 0.0),
        ("b", ["a", "b"], {}, 1.0),
        ("c", ["a", "b"], {}, 0.0),
        ("anything", [], {}, 0.0),
        # json_field: one field of a JSON object output.
        ('{"entity_type": "order_number"}', ["order_number"], {"json_field": "entity_type"}, 1.0),
        (FENCED, ["order_number"], {"json_field": "entity_type"}, 1.0),
        (FENCED, ["123"], {"json_field": "entity_value"}, 1.0),
        ('{"entity_value": "Gold"}', ["gold"], {"json_field": "entity_value"}, 0.0),
        (
            '{"entity_value": "Gold"}',
            ["gold"],
            {"json_field": "entity_value", "ignore_case": True},
            1.0,
        ),
        ('{"entity_value": " Gold  card "}', ["Gold card"], {"json_field": "entity_value"}, 1.0),
        ('{"n": 42}', ["42"], {"json_field": "n"}, 1.0),
        # JSON null equals a missing or null reference (no reference), and nothing else.
        ('{"entity_type": null}', [], {"json_field": "entity_type"}, 1.0),
        ("{}", [], {"json_field": "entity_type"}, 1.0),
        ('{"entity_type": "order_number"}', [], {"json_field": "entity_type"}, 0.0),
        ('{"entity_type": null}', ["order_number"], {"json_field": "entity_type"}, 0.0),
        # An empty string, a JSON null and a missing reference all mean "no value".
        ('{"entity_type": ""}', [], {"json_field": "entity_type"}, 1.0),
        # Not JSON, or JSON that is not an object: 0, never an error.
        ("order_number", ["order_number"], {"json_field": "entity_type"}, 0.0),
        ('["order_number"]', ["order_number"], {"json_field": "entity_type"}, 0.0),
        ('{"entity_type": "order_number"', ["order_number"], {"json_field": "entity_type"}, 0.0),
    ],
)
def test_exact_match(
    output: str, references: list[str], options: dict[str, Any], expected: float
) -> None:
    assert (
        build_metric(MetricSpec("exact_match", options)).score(output, references, ROW) == expected
    )


# ------------------------------------------------------------------------------ accuracy


@pytest.mark.parametrize(
    ("output", "references", "expected"),
    [
        ("positive", ["positive"], 1.0),
        ("negative", ["positive"], 0.0),
        ("Positive", ["positive"], 1.0),
        ("POSITIVE", ["Positive"], 1.0),
        ('"positive"', ["positive"], 1.0),
        ("'positive'", ["positive"], 1.0),
        ("`positive`", ["positive"], 1.0),
        ("**positive**", ["positive"], 1.0),
        ("positive.", ["positive"], 1.0),
        ('"positive."', ["positive"], 1.0),
        ("  positive  ", ["positive"], 1.0),
        ("Label: positive", ["positive"], 1.0),
        ("label:positive", ["positive"], 1.0),
        ("LABEL: `Positive`.", ["positive"], 1.0),
        ("**Label:** positive", ["positive"], 1.0),
        # Multi-line output: the first non-empty line is the answer.
        ("\n\n  positive\nBecause the reviewer liked it.", ["positive"], 1.0),
        ("Because the reviewer liked it.\npositive", ["positive"], 0.0),
        # The reference side is normalised the same way.
        ("positive", ["Positive."], 1.0),
        ("positive", ['"Label: positive"'], 1.0),
        # Only the documented characters are stripped; a label is not searched for.
        ("positive!", ["positive"], 0.0),
        ("The label is positive", ["positive"], 0.0),
        ("positive, negative", ["positive"], 0.0),
        ("", ["positive"], 0.0),
        # Banking77's label really ends in "?": it is kept.
        ("reverted_card_payment?", ["reverted_card_payment?"], 1.0),
        ("reverted_card_payment", ["reverted_card_payment?"], 0.0),
        # Several references: any one matches.
        ("in_scope", ["out_of_scope", "in_scope"], 1.0),
        ("in_scope", [], 0.0),
    ],
)
def test_accuracy_label_normalisation(output: str, references: list[str], expected: float) -> None:
    assert build_metric(MetricSpec("accuracy")).score(output, references, ROW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Card_Arrival", "card_arrival"),
        ("\n*`card_arrival`*.\nsecond line", "card_arrival"),
        ("Label: 'card_arrival'.", "card_arrival"),
        ("   \n \t\n", ""),
    ],
)
def test_normalize_label(text: str, expected: str) -> None:
    assert normalize_label(text) == expected


# ------------------------------------------------------------------------------ contains


@pytest.mark.parametrize(
    ("output", "references", "options", "expected"),
    [
        ("Your order 123 is on its way.", ["ORDER 123"], {}, 1.0),
        ("Your order 123 is on its way.", ["order 124"], {}, 0.0),
        ("Your order 123 is on its way.", ["refund", "on its way"], {}, 1.0),
        ("Your order 123 is on its way.", [], {}, 0.0),
        # `text` replaces the references.
        ("Call us at 555-0100.", [], {"text": "CALL US"}, 1.0),
        ("Call us at 555-0100.", ["call us"], {"text": "email us"}, 0.0),
    ],
)
def test_contains(
    output: str, references: list[str], options: dict[str, Any], expected: float
) -> None:
    assert build_metric(MetricSpec("contains", options)).score(output, references, ROW) == expected


# --------------------------------------------------------------------------------- regex


@pytest.mark.parametrize(
    ("output", "pattern", "expected"),
    [
        ("Order #12345 has shipped.", r"#\d{5}\b", 1.0),
        ("Order #1234 has shipped.", r"#\d{5}\b", 0.0),
        ("ORDER shipped", "order", 0.0),
        ("ORDER shipped", "(?i)order", 1.0),
        ("xx order", "^order", 0.0),
        ("first line\norder", "^order", 0.0),
        ("first line\norder", "(?m)^order", 1.0),
    ],
)
def test_regex_searches_the_output(output: str, pattern: str, expected: float) -> None:
    metric = build_metric(MetricSpec("regex", {"pattern": pattern}))
    assert metric.score(output, ["ignored"], ROW) == expected


# ---------------------------------------------------------------------------- json_valid


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"a": 1}', 1.0),
        ("[1, 2, 3]", 1.0),
        ('"just a string"', 1.0),
        ("  \n{}\n", 1.0),
        ('```json\n{"a": 1}\n```', 1.0),
        ("```\n[1, 2]\n```", 1.0),
        ('```json\n{"a": 1}```', 1.0),
        ('  ```json\n{"a": 1}\n```  \n', 1.0),
        ('Here is the JSON: {"a": 1}', 0.0),
        ('{"a": 1}\nHope this helps!', 0.0),
        ('{"a": 1,}', 0.0),
        ("{'a': 1}", 0.0),
        ('```json {"a": 1} ```', 0.0),
        ('```json\n{"a": 1}\n``` and more', 0.0),
        ("", 0.0),
    ],
)
def test_json_valid(output: str, expected: float) -> None:
    assert build_metric(MetricSpec("json_valid")).score(output, [], ROW) == expected


@pytest.mark.parametrize("output", ["NaN", "Infinity", '{"score": NaN}', "[-Infinity]"])
def test_json_valid_rejects_non_standard_constants(output: str) -> None:
    assert build_metric(MetricSpec("json_valid")).score(output, [], ROW) == 0.0


# --------------------------------------------------------------------------- json_schema

ENTITY_SCHEMA = {
    "type": "object",
    "required": ["entity_type", "entity_value"],
    "additionalProperties": False,
    "properties": {
        "entity_type": {"type": ["string", "null"]},
        "entity_value": {"type": ["string", "null"]},
    },
}
ARRAY_SCHEMA = {"type": "array", "items": {"type": "integer"}}
DRAFT_2020 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "array",
    "prefixItems": [{"type": "integer"}, {"type": "integer"}],
}
DRAFT_07 = {**DRAFT_2020, "$schema": "http://json-schema.org/draft-07/schema#"}


@pytest.mark.parametrize(
    ("output", "options", "prompt_schema", "expected"),
    [
        ('{"entity_type": "order_number", "entity_value": "42"}', {}, ENTITY_SCHEMA, 1.0),
        ('{"entity_type": null, "entity_value": null}', {}, ENTITY_SCHEMA, 1.0),
        ('```json\n{"entity_type": null, "entity_value": null}\n```', {}, ENTITY_SCHEMA, 1.0),
        ('{"entity_type": "order_number"}', {}, ENTITY_SCHEMA, 0.0),
        ('{"entity_type": 1, "entity_value": null}', {}, ENTITY_SCHEMA, 0.0),
        ('{"entity_type": null, "entity_value": null, "x": 1}', {}, ENTITY_SCHEMA, 0.0),
        ('{"entity_type": null, "entity_value": null', {}, ENTITY_SCHEMA, 0.0),
        ("no JSON here", {}, ENTITY_SCHEMA, 0.0),
        # The metric's own schema wins over the prompt's.
        ("[1, 2]", {"schema": ARRAY_SCHEMA}, ENTITY_SCHEMA, 1.0),
        (
            '{"entity_type": null, "entity_value": null}',
            {"schema": ARRAY_SCHEMA},
            ENTITY_SCHEMA,
            0.0,
        ),
        ("[1, 2]", {"schema": ARRAY_SCHEMA}, None, 1.0),
        # The schema's own draft: prefixItems exists in 2020-12 and is unknown to draft-07.
        ('[1, "two"]', {"schema": DRAFT_2020}, None, 0.0),
        ('[1, "two"]', {"schema": DRAFT_07}, None, 1.0),
    ],
)
def test_json_schema(
    output: str,
    options: dict[str, Any],
    prompt_schema: dict[str, Any] | None,
    expected: float,
) -> None:
    metric = build_metric(MetricSpec("json_schema", options))
    assert metric.score(output, [], ROW, prompt_schema) == expected


def test_json_schema_without_any_schema_is_a_config_error() -> None:
    metric = build_metric(MetricSpec("json_schema"))
    with pytest.raises(ConfigError) as raised:
        metric.score("{}", [], ROW, None)
    assert str(raised.value) == (
        "metric json_schema: the prompt has no output.schema; give the metric a 'schema'"
    )


@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [
        ("exact_match", "promptlib-exact-match/1"),
        ("accuracy", "promptlib-label-accuracy/1"),
        ("contains", "promptlib-contains/1"),
        ("json_valid", "promptlib-json-valid/1"),
        ("json_schema", "promptlib-json-schema/1"),
    ],
)
def test_every_metric_names_its_algorithm(kind: str, algorithm: str) -> None:
    metric = build_metric(MetricSpec(kind))
    assert metric.identity()["algorithm"] == algorithm
    assert build_metric(MetricSpec("regex", {"pattern": "x"})).algorithm == "promptlib-regex/1"


def test_json_schema_identity_is_not_the_jsonschema_version() -> None:
    metric = build_metric(MetricSpec("json_schema"))
    assert metadata.version("jsonschema") not in str(metric.identity())
    assert metric.legacy_implementation() == {"jsonschema": metadata.version("jsonschema")}


# ------------------------------------------------------------------ python:module:function

_MODULE_NUMBER = itertools.count()


@pytest.fixture
def custom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write a metric module into tmp_path, on sys.path; returns its (unique) module name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"promptlib_test_metric_{next(_MODULE_NUMBER)}"
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        names.append(name)
        return name

    yield make  # type: ignore[misc]
    for name in names:
        sys.modules.pop(name, None)


SOURCE = """\
def constant(output, references, row):
    return {value}
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("True", 1.0), ("False", 0.0), ("0.25", 0.25), ("1", 1.0), ("0", 0.0), ("1.0", 1.0)],
)
def test_custom_metric_returns_bool_or_number(
    custom: Callable[[str], str], value: str, expected: float
) -> None:
    module = custom(SOURCE.format(value=value))
    metric = build_metric(MetricSpec(f"python:{module}:constant"))
    score = metric.score("output", ["ref"], ROW)
    assert score == expected
    assert type(score) is float


@pytest.mark.parametrize("value", ["1.5", "-0.1", "2", "float('nan')", "float('inf')"])
def test_custom_metric_outside_0_1_raises(custom: Callable[[str], str], value: str) -> None:
    module = custom(SOURCE.format(value=value))
    metric = build_metric(MetricSpec(f"python:{module}:constant"))
    with pytest.raises(
        ValueError, match=rf"custom metric python:{module}:constant returned .*, outside \[0, 1\]"
    ):
        metric.score("output", ["ref"], ROW)


def test_custom_metric_gets_output_references_and_row(custom: Callable[[str], str]) -> None:
    module = custom(
        "SEEN = []\n"
        "def score(output, references, row):\n"
        "    SEEN.append((output, references, row))\n"
        "    return output.lower() in [r.lower() for r in references]\n"
    )
    metric = build_metric(MetricSpec(f"python:{module}:score"))
    row = {"id": "bitext-0001", "intent": "cancel_order"}
    assert metric.score("Cancel_Order", ("x", "cancel_order"), row) == 1.0
    assert metric.score("track_order", ["cancel_order"], row) == 0.0
    seen = sys.modules[module].SEEN
    assert seen[0] == ("Cancel_Order", ["x", "cancel_order"], row)
    assert isinstance(seen[0][1], list)


def test_custom_metric_identity_includes_its_source_hash(
    custom: Callable[[str], str], tmp_path: Path
) -> None:
    module = custom(SOURCE.format(value="1"))
    metric = build_metric(MetricSpec(f"python:{module}:constant", {"binary": True}))
    digest = hashlib.sha256((tmp_path / f"{module}.py").read_bytes()).hexdigest()
    assert metric.identity()["algorithm"] == f"python:{module}:constant@sha256:{digest}"
    assert metric.binary is True
    assert build_metric(MetricSpec(f"python:{module}:constant")).binary is False


CUSTOM_ERRORS = [
    (None, "python:promptlib_no_such_module:score", "metric 'python:promptlib_no_such_module:score': cannot import it: No module named 'promptlib_no_such_module'"),
    (SOURCE.format(value="1"), "python:{module}:missing", "metric 'python:{module}:missing': cannot import it: module '{module}' has no attribute 'missing'"),
    ("VALUE = 0.5\n", "python:{module}:VALUE", "metric 'python:{module}:VALUE': VALUE is not callable"),
    (SOURCE.format(value="1"), "python:{module}", "metric 'python:{module}': write custom metrics as python:module:function"),
    (SOURCE.format(value="1"), "python::constant", "metric 'python::constant': write custom metrics as python:module:function"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "target", "message"), CUSTOM_ERRORS)
def test_custom_metric_errors(
    custom: Callable[[str], str], source: str | None, target: str, message: str
) -> None:
    module = custom(source) if source is not None else "unused"
    with pytest.raises(ConfigError) as raised:
        build_metric(MetricSpec(target.format(module=module)))
    assert str(raised.value) == message.format(module=module)


@pytest.mark.parametrize(
    "source",
    ["def score(output, references, row)\n    return 1\n", "raise RuntimeError('no config')\n"],
    ids=["syntax-error", "raises-at-import"],
)
def test_custom_metric_that_cannot_be_imported_is_a_config_error(
    custom: Callable[[str], str], source: str
) -> None:
    module = custom(source)
    with pytest.raises(ConfigError, match=rf"metric 'python:{module}:score': cannot import it"):
        build_metric(MetricSpec(f"python:{module}:score"))


def test_custom_metric_unknown_option_is_a_config_error(custom: Callable[[str], str]) -> None:
    module = custom(SOURCE.format(value="1"))
    with pytest.raises(ConfigError, match=r"its options \['threshold'\] do not fit constant"):
        build_metric(MetricSpec(f"python:{module}:constant", {"threshold": 0.5}))


# ------------------------------------------------------------------ kinds, options, errors


@pytest.mark.parametrize(
    ("kind", "options", "binary", "uses_references"),
    [
        ("rouge1", {}, False, True),
        ("rougeLsum", {}, False, True),
        ("exact_match", {}, True, True),
        ("accuracy", {}, True, True),
        ("contains", {}, True, True),
        ("contains", {"text": "sorry"}, True, False),
        ("regex", {"pattern": "x"}, True, False),
        ("json_valid", {}, True, False),
        ("json_schema", {}, True, False),
    ],
)
def test_metric_properties(
    kind: str, options: dict[str, Any], binary: bool, uses_references: bool
) -> None:
    metric = build_metric(MetricSpec(kind, options))
    assert (metric.binary, metric.uses_references) == (binary, uses_references)
    assert metric.name == kind


CONFIG_ERRORS = [
    (MetricSpec("bleu"), "unknown metric 'bleu'; known metrics: rouge1, rouge2, rougeL, rougeLsum, exact_match, accuracy, contains, regex, json_valid, json_schema, judge, python:module:function"),
    (MetricSpec("RougeL"), "unknown metric 'RougeL'; known metrics: rouge1, rouge2, rougeL, rougeLsum, exact_match, accuracy, contains, regex, json_valid, json_schema, judge, python:module:function"),
    (MetricSpec("rouge3"), "unknown metric 'rouge3'; known metrics: rouge1, rouge2, rougeL, rougeLsum, exact_match, accuracy, contains, regex, json_valid, json_schema, judge, python:module:function"),
    (MetricSpec("rougeL", {"stemming": False}), "metric rougeL: unknown option(s) stemming; allowed: normalize, stemmer"),
    (MetricSpec("rougeL", {"x": 1}, name="rl"), "metric rl: unknown option(s) x; allowed: normalize, stemmer"),
    (MetricSpec("rouge1", {"normalize": "lowercase"}), "metric rouge1: normalize must be 'placeholders'"),
    (MetricSpec("exact_match", {"case": "ignore"}), "metric exact_match: unknown option(s) case; allowed: ignore_case, json_field"),
    (MetricSpec("accuracy", {"ignore_case": True}), "metric accuracy: unknown option(s) ignore_case; allowed: none"),
    (MetricSpec("accuracy", {"b": 1, "a": 2}), "metric accuracy: unknown option(s) a, b; allowed: none"),
    (MetricSpec("contains", {"texts": ["a"]}), "metric contains: unknown option(s) texts; allowed: text"),
    (MetricSpec("regex", {"pattern": "x", "flags": "i"}), "metric regex: unknown option(s) flags; allowed: pattern"),
    (MetricSpec("regex"), "metric regex: needs a 'pattern' string"),
    (MetricSpec("regex", {"pattern": 5}), "metric regex: needs a 'pattern' string"),
    (MetricSpec("regex", {"pattern": "order (\\d+"}), "metric regex: invalid pattern: missing ), unterminated subpattern at position 6"),
    (MetricSpec("regex", {"pattern": "*x"}, name="starts"), "metric starts: invalid pattern: nothing to repeat at position 0"),
    (MetricSpec("json_valid", {"strict": True}), "metric json_valid: unknown option(s) strict; allowed: none"),
    (MetricSpec("json_schema", {"draft": 7}), "metric json_schema: unknown option(s) draft; allowed: schema"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), CONFIG_ERRORS)
def test_configuration_errors(spec: MetricSpec, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_metric(spec)
    assert str(raised.value) == message


def test_every_score_is_a_float_in_the_unit_interval() -> None:
    outputs = ["", "positive", '{"a": 1}', BITEXT_OUTPUT, TLDR_OUTPUT]
    specs = [
        *(MetricSpec(kind) for kind in ROUGE_TYPES),
        MetricSpec("exact_match"),
        MetricSpec("accuracy"),
        MetricSpec("contains"),
        MetricSpec("regex", {"pattern": "a"}),
        MetricSpec("json_valid"),
        MetricSpec("json_schema", {"schema": {"type": "object"}}),
    ]
    for spec, output in itertools.product(specs, outputs):
        value = build_metric(spec).score(output, TLDRS, ROW)
        assert type(value) is float, spec
        assert 0.0 <= value <= 1.0, spec
        assert not math.isnan(value)


def test_custom_metric_options_are_passed_as_keyword_arguments(
    custom: Callable[[str], str],
) -> None:
    module = custom(
        "def longer_than(output, references, row, words=3):\n"
        "    return len(output.split()) > words\n"
    )
    metric = build_metric(MetricSpec(f"python:{module}:longer_than", {"words": 1, "binary": True}))
    assert metric.binary is True
    assert metric.score("two words", [], {}) == 1.0
    assert (
        build_metric(MetricSpec(f"python:{module}:longer_than", {})).score("two words", [], {})
        == 0.0
    )
