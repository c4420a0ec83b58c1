"""The bundled library: what `promptlib.load()` ships, checked against the repository's suites.

These tests read only files in the repository (prompts/, evals/suites/, evals/datasets/).
They hold the library to what a consumer relies on: valid versions, examples that render,
every prompt scored by a suite whose metrics fit its output, inputs that the suite can
fill from its dataset, few-shot answers that are valid outputs, and no few-shot text
taken from the rows the prompt is scored on.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import pytest
import semver
from typer.testing import CliRunner

from conftest import REPO
from promptlib import Library, Prompt, load
from promptlib.cli import app
from promptlib.evals.suite import Suite, load_suites
from promptlib.library.messages import Message

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROUGE = {"rouge1", "rouge2", "rougeL", "rougeLsum"}
FITTING_METRICS = {
    "label": {"accuracy"},
    "json": {"json_valid", "json_schema"},
    "text": ROUGE,
}
# A few-shot user turn wraps the example text in one tag, as the final user turn does.
TAGGED = re.compile(r"^\s*<([a-z_]+)>\n(.*)\n</\1>\s*$", re.S)


@cache
def library() -> Library:
    return load()


@cache
def suites() -> tuple[Suite, ...]:
    return tuple(load_suites(REPO))


@cache
def dataset_rows(suite_name: str) -> tuple[dict[str, Any], ...]:
    [suite] = [s for s in suites() if s.name == suite_name]
    return tuple(dict(row) for row in suite.dataset())


def prompts() -> list[Prompt]:
    return list(library().values())


PROMPT_IDS = [p.id for p in prompts()]


def pairs() -> Iterator[tuple[Suite, Prompt]]:
    for suite in suites():
        for prompt in prompts():
            if suite.selects(prompt.id):
                yield suite, prompt


PAIRS = [pytest.param(s.name, p.id, id=f"{s.name}:{p.id}") for s, p in pairs()]


def few_shot(prompt: Prompt) -> list[tuple[Message, Message]]:
    """The (user, assistant) turns between the system message and the final user turn."""
    if not prompt.is_chat:
        return []
    middle = prompt.render(**prompt.examples[0].inputs)[1:-1]
    return list(zip(middle[0::2], middle[1::2], strict=False))


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


# ------------------------------------------------------------------------ the collection


def test_the_bundled_library_has_at_least_50_prompts() -> None:
    assert len(library()) >= 50
    assert library().root is not None
    assert library().warnings == ()


@pytest.mark.parametrize("prompt_id", PROMPT_IDS)
def test_version_is_valid_semver(prompt_id: str) -> None:
    prompt = library()[prompt_id]
    assert prompt.path is not None
    written = re.search(r"^version:\s*(\S+)\s*$", prompt.path.read_text(encoding="utf-8"), re.M)
    assert written is not None, f"{prompt.path}: no top-level version line"
    text = written.group(1).strip("'\"")
    parsed = semver.Version.parse(text)
    assert str(parsed) == text == str(prompt.version)


def test_the_package_version_is_valid_semver() -> None:
    with (REPO / "pyproject.toml").open("rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert str(semver.Version.parse(version)) == version


@pytest.mark.parametrize("prompt_id", PROMPT_IDS)
def test_every_example_renders_with_its_inputs(prompt_id: str) -> None:
    prompt = library()[prompt_id]
    assert len(prompt.examples) >= 1
    for example in prompt.examples:
        messages = prompt.render(**example.inputs)
        assert messages
        assert all(m.content.strip() for m in messages)
        rendered = "\n".join(m.content for m in messages)
        for name, value in example.inputs.items():
            if isinstance(value, str):
                assert value.strip() in rendered, f"{prompt_id}: input {name} is not in the output"


@cache
def _rows_by_id(relative: str) -> dict[str, dict[str, Any]]:
    path = REPO / "evals" / "datasets" / relative
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    return {row["id"]: row for row in rows}


@pytest.mark.parametrize("prompt_id", PROMPT_IDS)
def test_every_example_comes_from_the_row_it_names(prompt_id: str) -> None:
    for example in library()[prompt_id].examples:
        assert example.source, f"{prompt_id}: an example without a source"
        relative, _, row_id = example.source.partition("#")
        row = _rows_by_id(relative).get(row_id)
        assert row is not None, f"{prompt_id}: {example.source} is not a row"
        for name, value in example.inputs.items():
            assert value in row.values(), f"{prompt_id}: input {name} is not a value of {row_id}"


# --------------------------------------------------------------------------------- suites


@pytest.mark.parametrize("prompt_id", PROMPT_IDS)
def test_every_prompt_is_scored_by_a_suite_with_a_fitting_metric(prompt_id: str) -> None:
    prompt = library()[prompt_id]
    fitting = FITTING_METRICS[prompt.output.format]
    scoring = [
        suite.name
        for suite in suites()
        if suite.selects(prompt_id) and fitting & {m.spec.kind for m in suite.metrics}
    ]
    assert scoring, f"{prompt_id} ({prompt.output.format}) has no suite with {sorted(fitting)}"


@pytest.mark.parametrize(("suite_name", "prompt_id"), PAIRS)
def test_suite_fills_every_required_input_from_its_dataset(suite_name: str, prompt_id: str) -> None:
    [suite] = [s for s in suites() if s.name == suite_name]
    prompt = library()[prompt_id]
    required = {name for name, spec in prompt.inputs.items() if spec.required}
    assert required <= set(suite.spec.inputs), (
        f"unmapped: {sorted(required - set(suite.spec.inputs))}"
    )
    rows = dataset_rows(suite_name)
    scored = suite.rows_for(prompt_id, suite.dataset())
    assert scored, f"{suite_name} gives {prompt_id} no rows"
    fields = {suite.spec.inputs[name] for name in prompt.inputs if name in suite.spec.inputs}
    fields |= {m.spec.reference or "" for m in suite.metrics} - {""}
    fields |= set(suite.references)
    for row in rows:
        missing = fields - set(row)
        assert not missing, f"row {row['id']} has no field {sorted(missing)}"
    # And the first scored row renders.
    prompt.render(**suite.inputs_for(scored[0], prompt.inputs))


LABEL_PAIRS = [p for p in PAIRS if library()[p.values[1]].output.format == "label"]


@pytest.mark.parametrize(("suite_name", "prompt_id"), LABEL_PAIRS)
def test_label_references_are_labels_of_the_prompt(suite_name: str, prompt_id: str) -> None:
    [suite] = [s for s in suites() if s.name == suite_name]
    prompt = library()[prompt_id]
    labels = set(prompt.output.labels or ())
    references = {
        ref
        for row in suite.rows_for(prompt_id, suite.dataset())
        for ref in suite.references_for(row)
    }
    assert references <= labels, sorted(references - labels)[:10]


# ----------------------------------------------------------------------- few-shot turns


FEW_SHOT = [p.id for p in prompts() if few_shot(p)]


def test_few_shot_prompts_are_found() -> None:
    assert len(FEW_SHOT) >= 10


@pytest.mark.parametrize("prompt_id", [p.id for p in prompts() if p.is_chat])
def test_chat_prompts_are_system_then_turns_then_the_user_message(prompt_id: str) -> None:
    messages = library()[prompt_id].render(**library()[prompt_id].examples[0].inputs)
    assert messages[0].role == "system"
    assert messages[-1].role == "user"
    middle = [m.role for m in messages[1:-1]]
    assert middle == ["user", "assistant"] * (len(middle) // 2)


@pytest.mark.parametrize(
    "prompt_id", [p for p in FEW_SHOT if library()[p].output.format == "label"]
)
def test_few_shot_answers_of_a_label_prompt_are_its_labels(prompt_id: str) -> None:
    prompt = library()[prompt_id]
    labels = set(prompt.output.labels or ())
    answers = [assistant.content.strip() for _, assistant in few_shot(prompt)]
    assert answers
    assert set(answers) <= labels, sorted(set(answers) - labels)


@pytest.mark.parametrize("prompt_id", [p for p in FEW_SHOT if library()[p].output.format == "json"])
def test_few_shot_answers_of_a_json_prompt_match_its_schema(prompt_id: str) -> None:
    prompt = library()[prompt_id]
    schema = prompt.output.json_schema
    assert schema is not None
    for _, assistant in few_shot(prompt):
        jsonschema.validate(json.loads(assistant.content), schema)


@pytest.mark.parametrize(("suite_name", "prompt_id"), [p for p in PAIRS if p.values[1] in FEW_SHOT])
def test_no_few_shot_text_is_in_the_suites_dataset(suite_name: str, prompt_id: str) -> None:
    [suite] = [s for s in suites() if s.name == suite_name]
    prompt = library()[prompt_id]
    fields = [field for name, field in suite.spec.inputs.items() if name in prompt.inputs]
    assert fields
    scored = {normalise(str(row[field])) for row in dataset_rows(suite_name) for field in fields}
    leaked = []
    for user, _ in few_shot(prompt):
        match = TAGGED.match(user.content)
        assert match, (
            f"{prompt_id}: a few-shot user turn not in <tag>...</tag>: {user.content[:60]!r}"
        )
        if normalise(match.group(2)) in scored:
            leaked.append(match.group(2))
    assert not leaked, leaked


# ------------------------------------------------------------------------------ validate


def test_validate_passes_on_the_repository_with_no_warning() -> None:
    result = CliRunner().invoke(
        app, ["--project", str(REPO), "validate", "--strict", "--no-cache", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["errors"] == []
    assert report["warnings"] == []
    assert report["prompts"] == report["files"] == len(library())
    result = CliRunner().invoke(app, ["--project", str(REPO), "validate", "--no-cache"])
    assert result.exit_code == 0
    count = len(library())
    assert result.stdout == f"{count} files checked: {count} valid prompts, 0 errors, 0 warnings\n"
