"""`promptlib new prompt`, `new suite`, `init` and the suite-file schema (cli/_new.py)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO, write
from promptlib.cli import app
from promptlib.cli._new import INIT_ROWS, init_files, propose_inputs, propose_reference
from promptlib.evals.suite import suite_file_schema

SUITE_SCHEMA_LINE = "# yaml-language-server: $schema=../../schema/suite.schema.json"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (pyproject.toml and prompts/), the current directory."""
    write(tmp_path / "pyproject.toml", '[tool.promptlib]\ndefault-provider = "retrieval"\n')
    (tmp_path / "prompts").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


LABEL_PROMPT = """\
id: {id}
version: 1.0.0
description: Classifies.
inputs:
{inputs}
template: "{template}"
output: {{format: label, labels: [a, b]}}
"""


def label_prompt(root: Path, prompt_id: str, *inputs: str) -> None:
    declared = "\n".join(f"  {name}: {{type: string}}" for name in inputs)
    template = " ".join(f"{{{{ {name} }}}}" for name in inputs)
    path = root / "prompts" / Path(*prompt_id.split(".")).with_suffix(".yaml")
    write(path, LABEL_PROMPT.format(id=prompt_id, inputs=declared, template=template))


# --- new prompt ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt_id", "path"),
    [
        ("greet", "prompts/greet.yaml"),
        ("support.answer.refund", "prompts/support/answer/refund.yaml"),
        ("a1.b_2", "prompts/a1/b_2.yaml"),
    ],
)
def test_new_prompt_writes_a_skeleton_that_validates(
    project: Path, prompt_id: str, path: str
) -> None:
    code, out, err = run("new", "prompt", prompt_id)
    assert code == 0, err
    assert f"wrote {path}" in out
    data = yaml.safe_load((project / path).read_text(encoding="utf-8"))
    assert data["id"] == prompt_id
    code, out, _ = run("validate", "--no-cache")
    assert code == 0, out
    assert "1 valid prompts, 0 errors, 0 warnings" in out
    code, out, _ = run("render", prompt_id, "--example", "0")
    assert code == 0
    assert "TODO: a typical input" in out


def test_new_prompt_points_at_the_schema_when_the_project_keeps_one(project: Path) -> None:
    write(project / "schema" / "prompt.schema.json", "{}")
    assert run("new", "prompt", "a.b.c")[0] == 0
    first = (project / "prompts/a/b/c.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../../schema/prompt.schema.json"


@pytest.mark.parametrize(
    ("prompt_id", "error"),
    [
        ("Support.answer", "'Support.answer' is not a prompt id"),
        ("support..answer", "is not a prompt id"),
        ("support/answer", "is not a prompt id"),
        ("1abc", "is not a prompt id"),
        ("_partials.x", "is not a prompt id"),
        ("", "is not a prompt id"),
    ],
)
def test_new_prompt_refuses_a_bad_id(project: Path, prompt_id: str, error: str) -> None:
    code, _, err = run("new", "prompt", prompt_id)
    assert code == 2
    assert error in err
    assert not any((project / "prompts").iterdir())


@pytest.mark.parametrize("existing", ["a/b.yaml", "a/b.yml"])
def test_new_prompt_refuses_an_existing_file(project: Path, existing: str) -> None:
    write(project / "prompts" / existing, "keep me\n")
    code, _, err = run("new", "prompt", "a.b")
    assert code == 2
    assert "exists already" in err
    assert (project / "prompts" / existing).read_text(encoding="utf-8") == "keep me\n"


def test_new_prompt_outside_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run("new", "prompt", "a.b")
    assert code == 2
    assert "not inside a promptlib project" in err


# --- new suite ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "columns", "expected"),
    [
        (["text"], ["text", "label"], {"text": ("text", False)}),
        (["answerKey"], ["answer_key"], {"answerKey": ("answer_key", False)}),
        (["message"], ["instruction", "intent"], {"message": ("instruction", True)}),
        # Two candidate text columns: no guess.
        (["message"], ["question", "context"], {"message": ("question", True)}),
        (["message"], ["question", "text"], {"message": (None, False)}),
        (["customer"], ["text"], {"customer": (None, False)}),
    ],
)
def test_propose_inputs(
    inputs: list[str], columns: list[str], expected: dict[str, tuple[str | None, bool]]
) -> None:
    assert propose_inputs(inputs, columns) == expected


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["text", "label"], "label"),
        (["question", "answer"], "answer"),
        (["dialogue", "Summary"], "Summary"),
        (["instruction", "intent", "response"], "response"),
        (["text", "source"], None),
    ],
)
def test_propose_reference(columns: list[str], expected: str | None) -> None:
    assert propose_reference(columns) == expected


JSONL = '{"id": "r1", "text": "hello", "label": "a"}\n{"id": "r2", "text": "bye", "label": "b"}\n'
CSV = "id,text,label\nr1,hello,a\nr2,bye,b\n"


@pytest.mark.parametrize(("name", "data"), [("data.jsonl", JSONL), ("data.csv", CSV)])
def test_new_suite_complete_proposal_validates_and_runs(
    project: Path, name: str, data: str
) -> None:
    label_prompt(project, "cls.intent", "text")
    write(project / "evals" / "datasets" / name, data)
    code, out, err = run(
        "new", "suite", "cls", "--dataset", f"evals/datasets/{name}", "--prompt", "cls.intent"
    )
    assert code == 0, err
    assert "wrote evals/suites/cls.yaml;" in out
    spec = yaml.safe_load((project / "evals/suites/cls.yaml").read_text(encoding="utf-8"))
    assert spec["dataset"] == f"evals/datasets/{name}"
    assert spec["prompts"] == ["cls.intent"]
    assert spec["inputs"] == {"text": "text"}
    assert spec["references"] == "label"
    assert spec["metrics"] == ["accuracy"]
    jsonschema.validate(spec, suite_file_schema())
    code, out, _ = run("validate", "--no-cache")
    assert code == 0, out
    code, out, err = run("eval", "--no-record")
    assert code == 0, err
    assert "cls.intent" in out


def test_new_suite_leaves_a_todo_that_validate_reports(project: Path) -> None:
    label_prompt(project, "cls.intent", "message", "customer_tier")
    write(project / "evals/datasets/d.jsonl", JSONL)
    code, out, _ = run(
        "new", "suite", "cls", "--dataset", "evals/datasets/d.jsonl", "--prompt", "cls.intent"
    )
    assert code == 0
    assert "with 1 TODO(s) to fill in" in out
    text = (project / "evals/suites/cls.yaml").read_text(encoding="utf-8")
    assert "  message: text   # guessed from the name: check it" in text
    assert "  # TODO customer_tier: <column>" in text
    code, out, _ = run("validate", "--no-cache")
    assert code == 1
    assert "needs `customer_tier`" in out
    # Doing the TODO makes it pass.
    write(project / "evals/datasets/d.jsonl", JSONL.replace('"label"', '"tier": "gold", "label"'))
    (project / "evals/suites/cls.yaml").write_text(
        text.replace("  # TODO customer_tier: <column>", "  customer_tier: tier"),
        encoding="utf-8",
    )
    code, out, _ = run("validate", "--no-cache")
    assert code == 0, out


def test_new_suite_without_prompts_or_reference(project: Path) -> None:
    write(project / "evals/datasets/d.jsonl", '{"id": "1", "document": "x"}\n')
    code, out, _ = run("new", "suite", "s", "--dataset", "evals/datasets/d.jsonl")
    assert code == 0
    assert "with 2 TODO(s)" in out
    text = (project / "evals/suites/s.yaml").read_text(encoding="utf-8")
    assert 'prompts: ["TODO.*"]' in text
    assert "# references: <column>" in text
    assert "(columns: document)" in text


def test_new_suite_points_at_the_schema_when_the_project_keeps_one(project: Path) -> None:
    write(project / "schema" / "suite.schema.json", "{}")
    write(project / "evals/datasets/d.jsonl", JSONL)
    assert run("new", "suite", "s", "--dataset", "evals/datasets/d.jsonl")[0] == 0
    text = (project / "evals/suites/s.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == SUITE_SCHEMA_LINE


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["Bad-Name", "--dataset", "evals/datasets/d.jsonl"], "is not a suite name"),
        (["s", "--dataset", "evals/datasets/none.jsonl"], "dataset file not found"),
        (["s", "--dataset", "evals/datasets/d.txt"], "datasets are .jsonl or .csv files"),
        (["s", "--dataset", "../outside.jsonl"], "must be inside the project"),
        (["s", "--dataset", "evals/datasets/d.jsonl", "--prompt", "no.such"], "no such prompt"),
        (["taken", "--dataset", "evals/datasets/d.jsonl"], "exists already"),
    ],
)
def test_new_suite_refuses(project: Path, args: list[str], error: str) -> None:
    write(project / "evals/datasets/d.jsonl", JSONL)
    write(project / "evals/datasets/d.txt", JSONL)
    write(project.parent / "outside.jsonl", JSONL)
    write(project / "evals/suites/taken.yaml", "keep me\n")
    code, _, err = run("new", "suite", *args)
    assert code == 2
    assert error in err
    assert sorted(p.name for p in (project / "evals/suites").iterdir()) == ["taken.yaml"]


# --- init ---------------------------------------------------------------------------------


def test_init_creates_a_project_that_validates_and_evaluates_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("init", "fresh")
    assert code == 0, err
    assert "created a promptlib project in fresh" in out
    root = tmp_path / "fresh"
    written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert written == sorted(init_files())
    assert "[tool.promptlib]" in (root / "pyproject.toml").read_text(encoding="utf-8")
    assert ".promptlib/" in (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "evals/ledger/index.jsonl merge=union" in (root / ".gitattributes").read_text(
        encoding="utf-8"
    )
    monkeypatch.chdir(root)
    code, out, _ = run("validate")
    assert code == 0, out
    code, out, err = run("eval")
    assert code == 0, err
    assert "bank.intent" in out
    assert (root / "evals/ledger/index.jsonl").is_file()


@pytest.mark.parametrize("existing", [None, "empty"])
def test_init_into_the_current_or_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["init"] if existing is None else ["init", existing]
    if existing:
        (tmp_path / existing).mkdir()
    code, _, err = run(*args)
    assert code == 0, err
    assert (tmp_path / (existing or ".") / "prompts/bank/intent.yaml").is_file()


def test_init_refuses_a_non_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "busy" / "notes.txt", "mine\n")
    write(tmp_path / "file", "x\n")
    code, _, err = run("init", "busy")
    assert code == 2
    assert "busy: the folder is not empty" in err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    code, _, err = run("init", "file")
    assert code == 2
    assert "not a folder" in err


def test_init_dataset_rows_are_copied_unchanged_from_banking77() -> None:
    upstream = (REPO / "evals/datasets/banking77/test.jsonl").read_text(encoding="utf-8")
    lines = set(upstream.splitlines())
    assert all(row in lines for row in INIT_ROWS)
    readme = init_files()["evals/datasets/example/README.md"]
    assert "not a benchmark" in readme
    assert "CC BY 4.0" in readme
    for row in INIT_ROWS:
        assert json.loads(row)["id"].removeprefix("banking77-test") in readme


def test_init_workflow_is_this_repository_s_with_promptlib_installed_from_the_index() -> None:
    ours = (REPO / ".github/workflows/prompt-check.yml").read_text(encoding="utf-8")
    theirs = init_files()[".github/workflows/prompt-check.yml"]
    assert len(ours.splitlines()) == len(theirs.splitlines())
    pairs = zip(ours.splitlines(), theirs.splitlines(), strict=True)
    differ = [(a, b) for a, b in pairs if a != b]
    assert len(differ) == 1
    assert differ[0][0].strip() == 'run: python -m pip install -e ".[html]"'
    assert differ[0][1].strip().startswith('run: python -m pip install "promptlib[html]>=')


def test_init_schemas_are_the_generated_ones() -> None:
    files = init_files()
    assert json.loads(files["schema/suite.schema.json"]) == suite_file_schema()
    assert json.loads(files["schema/prompt.schema.json"]) == json.loads(
        (REPO / "schema/prompt.schema.json").read_text(encoding="utf-8")
    )


# --- the suite-file schema ----------------------------------------------------------------


def test_schema_suite_matches_the_committed_file() -> None:
    code, out, _ = run("schema", "--suite")
    assert code == 0
    committed = (REPO / "schema" / "suite.schema.json").read_text(encoding="utf-8")
    assert json.loads(out) == json.loads(committed)
    assert committed == out  # byte for byte: regenerate with `promptlib schema --suite`
    assert json.loads(out)["title"] == "promptlib suite file"


BUNDLED_SUITES = sorted((REPO / "evals" / "suites").glob("*.y*ml"))


@pytest.mark.parametrize("path", BUNDLED_SUITES, ids=lambda p: p.name)
def test_bundled_suite_points_at_and_validates_against_the_schema(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SUITE_SCHEMA_LINE
    schema = json.loads((REPO / "schema" / "suite.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("suite", "error"),
    [
        ({"dataset": "d.jsonl", "prompts": ["a"], "metrics": ["accuracy"], "colour": 1}, "colour"),
        ({"dataset": "d.jsonl", "prompts": [], "metrics": ["accuracy"]}, "prompts"),
        ({"prompts": ["a"], "metrics": ["accuracy"]}, "dataset"),
        (
            {"dataset": "d.jsonl", "prompts": ["a"], "metrics": ["accuracy"], "limit": 0},
            "minimum of 1",
        ),
    ],
)
def test_suite_schema_refuses_what_the_loader_refuses(suite: dict[str, object], error: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=error):
        jsonschema.validate(suite, suite_file_schema())
