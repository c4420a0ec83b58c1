"""promptlib import: promptfoo, Prompty and dotprompt sources become prompt files that render
what the source tool renders.

The expected renderings live beside the fixtures (tests/fixtures/importers/*/expected.yaml)
as literal strings worked out by hand from each tool's rules, not by running promptlib.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import promptlib
from conftest import write
from promptlib.cli import app
from promptlib.errors import ConfigError, NotFoundError
from promptlib.importers import import_files
from promptlib.importers._common import Expr, Stmt, Text, id_segment, template_source
from promptlib.importers.dotprompt import picoschema
from promptlib.library.render import Renderer

FIXTURES = Path(__file__).parent / "fixtures" / "importers"
SOURCES = {
    "promptfoo": [
        "simple.txt",
        "conditionals.njk",
        "loops.j2",
        "chat.json",
        "config/promptfooconfig.yaml",
    ],
    "prompty": [
        "simple.prompty",
        "conditionals.prompty",
        "loops.prompty",
        "roles.prompty",
        "typed.prompty",
    ],
    "dotprompt": [
        "simple.prompt",
        "conditionals.prompt",
        "loops.prompt",
        "roles.prompt",
        "typed.prompt",
    ],
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty promptlib project; the test runs from it."""
    write(tmp_path / "pyproject.toml", "[project]\nname = 'demo'\nversion = '1.0.0'\n")
    (tmp_path / "prompts").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sources(fmt: str) -> list[str]:
    return [str(FIXTURES / fmt / name) for name in SOURCES[fmt]]


def expected(fmt: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load((FIXTURES / fmt / "expected.yaml").read_text())
    return cases


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# -- rendering equals the source tool's -------------------------------------------------

CASES = [
    pytest.param(fmt, i, id=f"{fmt}-{case['prompt']}-{i}")
    for fmt in SOURCES
    for i, case in enumerate(expected(fmt))
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, promptlib.Library]:
    """Each format's fixtures imported once (through the CLI) into a project of their own."""
    libraries = {}
    for fmt in SOURCES:
        root = tmp_path_factory.mktemp(fmt)
        write(root / "pyproject.toml", "[project]\nname = 'demo'\nversion = '1.0.0'\n")
        into = root / "prompts" / "imported"
        code, out, err = run("import", fmt, *sources(fmt), "--into", str(into))
        assert code == 0, out + err
        libraries[fmt] = promptlib.load(root)
    return libraries


@pytest.mark.parametrize(("fmt", "index"), CASES)
def test_converted_prompt_renders_what_the_source_tool_renders(
    imported: dict[str, promptlib.Library], fmt: str, index: int
) -> None:
    case = expected(fmt)[index]
    messages = imported[fmt][case["prompt"]].render(**case["inputs"])
    assert [m.to_dict() for m in messages] == case["messages"]


@pytest.mark.parametrize("fmt", list(SOURCES))
def test_every_fixture_prompt_has_an_expected_rendering(
    imported: dict[str, promptlib.Library], fmt: str
) -> None:
    assert sorted(imported[fmt]) == sorted({c["prompt"] for c in expected(fmt)})


# -- the command: report, exit code, files ---------------------------------------------


@pytest.mark.parametrize("fmt", list(SOURCES))
def test_import_reports_each_prompt_and_the_files_validate(project: Path, fmt: str) -> None:
    code, out, err = run("import", fmt, *sources(fmt))
    assert code == 0, out + err
    lines = [line for line in out.splitlines() if line.startswith("converted")]
    assert len(lines) == len({c["prompt"] for c in expected(fmt)})
    assert "converted  " in out
    assert "-> prompts/imported/" in out
    assert "0 failed" in err
    assert "written under prompts/imported" in err
    code, out, err = run("validate")
    assert code == 0, out + err
    assert ", 0 errors," in out + err


def test_written_file_names_its_source_and_notes(project: Path) -> None:
    code, out, _err = run("import", "prompty", str(FIXTURES / "prompty" / "roles.prompty"))
    assert code == 0
    assert "note: model.parameters.logit_bias: promptlib prompts have no such" in out
    text = (project / "prompts" / "imported" / "roles.yaml").read_text()
    assert text.startswith("# Imported by `promptlib import prompty` from roles.prompty.\n")
    assert "#   - model.parameters.logit_bias:" in text
    prompt = promptlib.load(project)["imported.roles"]
    assert prompt.model.temperature == 0
    assert prompt.model.stop == ["\n"]
    assert set(prompt.tags) >= {"imported", "prompty"}


def test_typed_inputs_come_from_the_source_declarations(project: Path) -> None:
    files = [*sources("dotprompt"), *sources("prompty")[4:]]
    assert run("import", "dotprompt", *files[:-1])[0] == 0
    assert run("import", "prompty", files[-1], "--into", "prompts/trips")[0] == 0
    library = promptlib.load(project)

    def spec(prompt_id: str, name: str) -> tuple[str, bool, Any]:
        item = library[prompt_id].inputs[name]
        return item.type, item.required, item.default

    assert spec("imported.loops", "items") == ("array", True, None)
    assert spec("imported.loops", "tags") == ("array", False, None)
    assert spec("imported.typed", "priority") == ("integer", True, None)
    assert library["imported.typed"].inputs["channel"].enum == ["email", "chat"]
    assert spec("imported.conditionals", "formal") == ("boolean", False, None)
    assert spec("imported.conditionals", "title") == ("string", False, "Dr.")
    assert library["imported.simple"].inputs["name"].description == "the user's first name"
    assert spec("trips.typed", "days") == ("number", False, 3)
    assert spec("trips.typed", "budget") == ("object", True, None)
    assert spec("trips.typed", "pets") == ("boolean", False, False)
    roles = library["imported.roles"]
    assert roles.output.format == "json"
    assert roles.output.json_schema == {
        "type": "object",
        "properties": {
            "translation": {"type": "string"},
            "confidence": {"type": ["number", "null"], "description": "between 0 and 1"},
        },
        "required": ["translation"],
        "additionalProperties": False,
    }
    assert library["imported.conditionals"].model.max_tokens == 256


def test_promptfoo_inputs_are_inferred_and_tests_become_examples(project: Path) -> None:
    assert run("import", "promptfoo", *sources("promptfoo"))[0] == 0
    library = promptlib.load(project)
    loops = library["imported.loops"].inputs
    assert (loops["labels"].type, loops["labels"].required) == ("array", True)
    assert (loops["examples"].type, loops["examples"].required) == ("array", False)
    chat = library["imported.chat"].inputs
    assert (chat["language"].type, chat["language"].required) == ("string", False)
    assert [e.inputs for e in library["imported.triage_2"].examples] == [
        {"message": "My card was charged twice"}
    ]


# -- failures: reported, exit 1, nothing written ------------------------------------------

FAILURES = [
    (
        "promptfoo",
        "failing/unsupported.njk",
        [
            "line 1: filter 'title' is not converted",
            "line 2: {% include %} is not converted",
        ],
    ),
    ("promptfoo", "failing/not_chat.json", ["a JSON prompt must be a chat array"]),
    (
        "promptfoo",
        "failing/malformed/promptfooconfig.yaml",
        ["line 4: malformed YAML: expected ',' or ']'"],
    ),
    (
        "prompty",
        "failing/history.prompty",
        ["line 13: role line '{{item.role}}:' is produced by the template"],
    ),
    ("prompty", "failing/mustache.prompty", ["template format 'mustache' is not converted"]),
    (
        "prompty",
        "failing/malformed.prompty",
        ["line 5: malformed front matter: expected ',' or ']'"],
    ),
    ("prompty", "failing/include.prompty", ["line 8: {% include %} is not converted"]),
    ("dotprompt", "failing/partial.prompt", ["line 4: partial {{> header}} is not converted"]),
    (
        "dotprompt",
        "failing/helpers.prompt",
        [
            "line 4: {{uppercase name}}: helper 'uppercase' is not converted",
            "line 5: {{#with}} is not converted",
            "line 6: {{media url=photo}}: {{media}} (image and file parts) is not converted",
            "line 7: {{json data}}: {{json}} is not converted",
        ],
    ),
    ("dotprompt", "failing/malformed.prompt", ["line 4: malformed front matter"]),
]


@pytest.mark.parametrize(
    ("fmt", "name", "reasons"), FAILURES, ids=[f"{f}-{n}" for f, n, _r in FAILURES]
)
def test_a_file_that_cannot_be_converted_is_reported_and_nothing_is_written(
    project: Path, fmt: str, name: str, reasons: list[str]
) -> None:
    code, out, err = run("import", fmt, *sources(fmt), str(FIXTURES / fmt / name))
    assert code == 1
    failed = out[out.index("failed     ") :]
    assert failed.splitlines()[0].endswith(name)
    for reason in reasons:
        assert f"    {reason}" in failed
    assert "1 failed; nothing was written" in err
    assert "Traceback" not in out + err
    assert files_under(project / "prompts") == []


def test_an_existing_prompt_is_kept_unless_force(project: Path) -> None:
    source = str(FIXTURES / "dotprompt" / "simple.prompt")
    target = write(project / "prompts" / "imported" / "simple.yaml", "# mine\n")
    code, out, err = run("import", "dotprompt", source)
    assert code == 1
    assert "prompts/imported/simple.yaml exists: pass --force to overwrite it" in out
    assert "nothing was written" in err
    assert target.read_text() == "# mine\n"
    code, out, err = run("import", "dotprompt", source, "--force")
    assert code == 0, out + err
    assert promptlib.load(project)["imported.simple"].render_text(name="Al") == (
        "Hello, Al! How can I help you today?"
    )


def test_two_sources_with_one_id_fail_both_and_write_nothing(project: Path, tmp_path: Path) -> None:
    other = write(tmp_path / "elsewhere" / "Simple.prompt", "Hi {{name}}\n")
    code, out, _err = run("import", "dotprompt", *sources("dotprompt")[:1], str(other))
    assert code == 1
    assert "its prompt 'imported.simple' is also made from" in out
    assert files_under(project / "prompts") == []


def test_folders_give_ids_from_their_layout(project: Path, tmp_path: Path) -> None:
    write(tmp_path / "src" / "Support Desk" / "reply-v2.prompt", "Hi {{name}}\n")
    write(tmp_path / "src" / "_partials" / "skipped.prompt", "{{> x}}\n")
    code, out, err = run("import", "dotprompt", str(tmp_path / "src"), "--into", "prompts/team")
    assert code == 0, out + err
    assert "(team.support_desk.reply_v2)" in out
    assert files_under(project / "prompts") == ["team/support_desk/reply_v2.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dotprompt", "missing.prompt"], "missing.prompt: no such file or folder"),
        (["dotprompt", "{simple}", "--into", "elsewhere"], "not inside a prompts/ folder"),
        (["dotprompt", "{simple}", "--into", "prompts/Bad-Area"], "cannot be part of a prompt id"),
        (["mustache", "{simple}"], "'mustache' is not one of"),
    ],
)
def test_usage_errors_exit_2(project: Path, args: list[str], message: str) -> None:
    args = [a.replace("{simple}", str(FIXTURES / "dotprompt" / "simple.prompt")) for a in args]
    code, out, err = run("import", *args)
    assert code == 2
    assert message in out + err
    assert files_under(project / "prompts") == []


def test_outside_a_project_into_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = run("import", "dotprompt", str(FIXTURES / "dotprompt" / "simple.prompt"))
    assert code == 2
    assert "pass --into prompts/AREA" in err


def test_a_failed_move_takes_back_every_file_already_moved(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = write(project / "prompts" / "imported" / "simple.yaml", "# mine\n")
    real_replace = os.replace
    calls = []

    def failing_replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 4:  # after the replaced file's backup and two moves
            raise PermissionError(13, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr("promptlib.importers.os.replace", failing_replace)
    with pytest.raises(ConfigError, match="nothing was imported"):
        import_files(
            "dotprompt",
            [Path(s) for s in sources("dotprompt")],
            project / "prompts" / "imported",
            force=True,
        )
    assert files_under(project / "prompts") == ["imported/simple.yaml"]
    assert original.read_text() == "# mine\n"
    assert not list(project.glob(".promptlib-import-*"))


def test_the_api_reports_without_writing(project: Path) -> None:
    result = import_files(
        "prompty",
        [
            FIXTURES / "prompty" / "simple.prompty",
            FIXTURES / "prompty" / "failing" / "include.prompty",
        ],
        project / "prompts" / "imported",
    )
    assert not result.ok
    assert result.written == []
    assert [f.source.name for f in result.failed] == ["include.prompty"]
    assert result.files[0].prompts[0].id == "imported.simple"
    with pytest.raises(NotFoundError):
        import_files("prompty", [project / "nope"], project / "prompts")


# -- the pieces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("simple", "simple"),
        ("Support FAQ-v2", "support_faq_v2"),
        ("answerKey", "answer_key"),
        ("2024-notes", "p_2024_notes"),
        ("Café crème", "cafe_creme"),
        ("---", "prompt"),
    ],
)
def test_id_segments_follow_the_id_rules(name: str, segment: str) -> None:
    assert id_segment(name) == segment


# Pieces, and the text they stand for: the emitted Jinja must render exactly that text under
# promptlib's trim_blocks, lstrip_blocks and dropped final newline.
EMIT = [
    ([Text("a\n")], "a\n"),
    ([Stmt("if true"), Text("\nx\n"), Stmt("endif"), Text("\n")], "\nx\n\n"),
    ([Text("  "), Stmt("if true"), Text("x"), Stmt("endif")], "  x"),
    ([Text("a {{ b }} {% c %} {"), Expr("'d'")], "a {{ b }} {% c %} {d"),
    ([Stmt("for i in range(2)"), Expr("i"), Text("\n"), Stmt("endfor")], "0\n1\n"),
    ([Text("x\n    "), Stmt("if false"), Text("y"), Stmt("endif"), Text("\n\n")], "x\n    \n\n"),
]


@pytest.mark.parametrize(("pieces", "text"), EMIT)
def test_emitted_jinja_renders_the_pieces_text(pieces: list[Any], text: str) -> None:
    renderer = Renderer()
    template = renderer.compile(renderer.parse(template_source(pieces)))
    assert renderer.render(template, {}) == text


@pytest.mark.parametrize(
    ("schema", "json_schema"),
    [
        ("string, a name", {"type": "string", "description": "a name"}),
        ("any", {}),
        (
            {"a": "integer", "b?": "string"},
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": ["string", "null"]}},
                "required": ["a"],
                "additionalProperties": False,
            },
        ),
        (
            {"tags?(array, labels)": "string", "kind(enum)": ["x", "y"]},
            {
                "type": "object",
                "properties": {
                    "tags": {
                        "type": ["array", "null"],
                        "items": {"type": "string"},
                        "description": "labels",
                    },
                    "kind": {"enum": ["x", "y"]},
                },
                "required": ["kind"],
                "additionalProperties": False,
            },
        ),
        ({"type": "object", "properties": {}}, {"type": "object", "properties": {}}),
    ],
)
def test_picoschema_becomes_json_schema_as_dotprompt_does(schema: Any, json_schema: Any) -> None:
    assert picoschema(schema) == json_schema


def test_named_picoschema_types_are_refused() -> None:
    with pytest.raises(ValueError, match="named schema 'Person' is not converted"):
        picoschema({"owner": "Person"})


# Handlebars' whitespace rules, from its documentation and spec: a block tag, {{else}} or a
# comment alone on its line removes the line; `~` removes the whitespace beside a tag; other
# tags leave everything.
HANDLEBARS = [
    ("{{#if x}}\nA\n{{/if}}\nB", {"x": True}, "A\nB"),
    ("  {{#if x}}  \nA\n  {{else}}\nC\n  {{/if}}  \nB", {"x": False}, "C\nB"),
    ("A {{#if x}}\nB\n{{/if}} C", {"x": True}, "A \nB\n C"),
    ("A\n{{! note }}\nB", {}, "A\nB"),
    ("A  {{~x~}}  \n B", {"x": "-"}, "A-B"),
    ("{{#each xs}}\n- {{this}}\n{{/each}}\nend", {"xs": ["a", "b"]}, "- a\n- b\nend"),
    ("{{#if x}}a{{else if y}}b{{else}}c{{/if}}", {"y": True}, "b"),
    ("\\{{x}} {{x}}", {"x": "1"}, "{{x}} 1"),
]


@pytest.mark.parametrize(("template", "values", "text"), HANDLEBARS)
def test_handlebars_whitespace_rules_are_kept(
    tmp_path: Path, template: str, values: dict[str, Any], text: str
) -> None:
    root = tmp_path / "prompts"
    root.mkdir()
    source = write(tmp_path / "t.prompt", template)
    result = import_files("dotprompt", [source], root)
    assert result.ok, [f.problems for f in result.files]
    library = promptlib.load(root)
    assert library["t"].render_text(**values) == text


def test_run_twice_the_second_import_refuses_to_overwrite(project: Path) -> None:
    first = run("import", "promptfoo", *sources("promptfoo"))
    assert first[0] == 0
    before = {p: (project / "prompts" / p).read_text() for p in files_under(project / "prompts")}
    code, out, _err = run("import", "promptfoo", *sources("promptfoo"))
    assert code == 1
    assert out.count("exists: pass --force") == len(before)
    after = {p: (project / "prompts" / p).read_text() for p in files_under(project / "prompts")}
    assert after == before
    shutil.rmtree(project / "prompts" / "imported")
    assert run("import", "promptfoo", *sources("promptfoo"))[0] == 0
    after = {p: (project / "prompts" / p).read_text() for p in files_under(project / "prompts")}
    assert after == before  # the conversion is deterministic
