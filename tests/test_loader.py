"""Loading libraries: discovery, warnings, one-pass reporting, partial semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write
from promptlib.errors import LoadError, NotFoundError
from promptlib.library.collection import Library, load
from promptlib.library.loader import id_for_path, library_root_of, scan, scan_paths

PROMPT = """\
id: {id}
version: 1.0.0
description: A prompt.
tags: [{tags}]
inputs:
  message: {{type: string}}
messages:
  - role: user
    content: "{{{{ message }}}}"
examples:
  - inputs: {{message: hi}}
"""


def make(root: Path, prompt_id: str, tags: str = "support", suffix: str = ".yaml") -> Path:
    return write(
        root / (prompt_id.replace(".", "/") + suffix), PROMPT.format(id=prompt_id, tags=tags)
    )


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("support/refund.yaml", "support.refund"),
        ("a/b/c_1.yml", "a.b.c_1"),
        ("refund.yaml", "refund"),
        ("Support/refund.yaml", None),
        ("support/re-fund.yaml", None),
        ("support/1refund.yaml", None),
        ("support/refund.v2.yaml", None),
    ],
)
def test_id_for_path(tmp_path: Path, relative: str, expected: str | None) -> None:
    assert id_for_path(tmp_path, tmp_path / relative) == expected


def test_discovery_skips_underscore_and_dot_folders(tmp_path: Path) -> None:
    make(tmp_path, "support.refund")
    write(tmp_path / "_drafts" / "x.yaml", "not: a prompt\n")
    write(tmp_path / ".git" / "y.yaml", "not: a prompt\n")
    write(tmp_path / "README.md", "# prompts\n")
    result = scan(tmp_path)
    assert list(result.prompts) == ["support.refund"]
    assert result.files == 1
    assert result.ok


def test_every_problem_of_every_file_in_one_pass(tmp_path: Path) -> None:
    make(tmp_path, "good.one")
    write(
        tmp_path / "bad" / "a.yaml",
        "id: bad.a\nversion: 1\ndescription: x\ncolour: red\ntemplate: hi\n",
    )
    write(
        tmp_path / "bad" / "b.yaml",
        "id: bad.b\nversion: 1.0.0\ndescription: x\ntemplate: '{{ y }}'\n",
    )
    result = scan(tmp_path)
    assert list(result.prompts) == ["good.one"]
    assert [(Path(p.path).name, p.line, p.key) for p in result.problems] == [
        ("a.yaml", 2, "version"),
        ("a.yaml", 4, "colour"),
        ("b.yaml", 4, "template"),
    ]


def test_same_id_from_yaml_and_yml_is_an_error(tmp_path: Path) -> None:
    make(tmp_path, "support.refund")
    make(tmp_path, "support.refund", suffix=".yml")
    result = scan(tmp_path)
    assert [p.message for p in result.problems] == [
        "id 'support.refund' is also defined by " + str(tmp_path / "support" / "refund.yaml")
    ]


def test_warnings_for_unused_inputs_and_missing_examples(tmp_path: Path) -> None:
    write(
        tmp_path / "lib" / "p.yaml",
        "id: lib.p\nversion: 1.0.0\ndescription: x\ninputs:\n  a: {type: string}\n  b: {type: string, required: false}\ntemplate: '{{ a }}'\n",
    )
    result = scan(tmp_path)
    assert result.ok
    assert [(p.line, p.key, p.message, p.severity) for p in result.warnings] == [
        (1, "", "no examples: add at least one input set from the prompt's dataset", "warning"),
        (6, "inputs.b", "input 'b' is declared but no template uses it", "warning"),
    ]


def test_variables_used_by_partials_count_as_used(tmp_path: Path) -> None:
    write(tmp_path / "_partials" / "sig.j2", "Regards, {{ agent }}\n")
    write(
        tmp_path / "lib" / "p.yaml",
        "id: lib.p\nversion: 1.0.0\ndescription: x\ninputs:\n  agent: {type: string}\n"
        "template: |\n  Hello.\n  {% include 'sig.j2' %}\n  Bye.\nexamples:\n  - inputs: {agent: Ann}\n",
    )
    result = scan(tmp_path)
    assert result.ok
    assert not result.warnings
    prompt = result.prompts["lib.p"]
    # The include line inserts the partial exactly, its final newline included.
    assert prompt.render_text(agent="Ann") == "Hello.\nRegards, Ann\nBye."
    assert dict(prompt.partials) == {"sig.j2": "Regards, {{ agent }}\n"}


def test_partial_variables_must_be_declared_by_the_including_prompt(tmp_path: Path) -> None:
    write(tmp_path / "_partials" / "sig.j2", "Regards, {{ agent }}")
    write(
        tmp_path / "lib" / "p.yaml",
        "id: lib.p\nversion: 1.0.0\ndescription: x\ntemplate: \"{% include 'sig.j2' %}\"\n",
    )
    result = scan(tmp_path)
    assert [p.message for p in result.problems] == [
        "uses variable 'agent', which is not declared in inputs"
    ]


def test_partial_cycles_and_nested_includes(tmp_path: Path) -> None:
    write(tmp_path / "_partials" / "a.j2", "{% include 'b.j2' %}")
    write(tmp_path / "_partials" / "b.j2", "{% include 'a.j2' %}")
    write(
        tmp_path / "lib" / "p.yaml",
        "id: lib.p\nversion: 1.0.0\ndescription: x\ntemplate: \"{% include 'a.j2' %}\"\n",
    )
    result = scan(tmp_path)
    assert [p.message for p in result.problems] == [
        "in partial 'a.j2' line 1: in partial 'b.j2' line 1: partials include each other in a cycle: a.j2 -> b.j2 -> a.j2"
    ]


def test_scan_paths_groups_files_by_library_root(tmp_path: Path) -> None:
    one = make(tmp_path / "prompts", "support.refund")
    two = make(tmp_path / "prompts", "support.cancel")
    assert library_root_of(one) == (tmp_path / "prompts").resolve()
    results = scan_paths([one, two, tmp_path / "missing.yaml"])
    assert sorted(p for r in results for p in r.prompts) == ["support.cancel", "support.refund"]
    assert [p.message for r in results for p in r.problems] == ["no such file or folder"]


def test_library_is_a_read_only_mapping_filterable_by_tag(tmp_path: Path) -> None:
    make(tmp_path / "prompts", "support.refund", tags="support, money")
    make(tmp_path / "prompts", "support.cancel", tags="support")
    library = load(tmp_path)
    assert isinstance(library, Library)
    assert list(library) == ["support.cancel", "support.refund"]
    assert library.tags == ["money", "support"]
    assert list(library.filter(tag="money")) == ["support.refund"]
    assert list(library.filter(prefix="support.c")) == ["support.cancel"]
    with pytest.raises(
        NotFoundError,
        match=r"no prompt 'support.refnd' in the library; did you mean support.refund, support.cancel\?",
    ):
        library["support.refnd"]
    with pytest.raises(TypeError):
        library["x"] = library["support.refund"]  # type: ignore[index]


def test_load_raises_with_every_problem(tmp_path: Path) -> None:
    write(
        tmp_path / "lib" / "p.yaml",
        "id: lib.q\nversion: 1.0.0\ndescription: x\ntemplate: '{{ y }}'\n",
    )
    with pytest.raises(LoadError) as caught:
        load(tmp_path)
    assert len(caught.value.problems) == 2
    assert str(caught.value).startswith("2 problems in the prompt library\n")


def test_load_rejects_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file or folder"):
        load(tmp_path / "nope")


def test_validation_cache_reuses_unchanged_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptlib.library import loader

    root = tmp_path / "prompts"
    make(root, "support.refund")
    make(root, "support.cancel")
    write(
        root / "bad" / "x.yaml",
        "id: bad.x\nversion: 1.0.0\ndescription: x\ncolour: red\ntemplate: hi\n",
    )
    checked: list[str] = []
    original = loader._FileCheck.run

    def counting(self: loader._FileCheck) -> object:
        checked.append(self.path.name)
        return original(self)

    monkeypatch.setattr(loader._FileCheck, "run", counting)
    cache_file = tmp_path / "cache" / "validate.json"

    def run() -> loader.ScanResult:
        return scan(root, cache=loader.ValidationCache(cache_file))

    first = run()
    assert sorted(checked) == ["cancel.yaml", "refund.yaml", "x.yaml"]
    checked.clear()
    second = run()
    assert checked == []
    assert [str(p) for p in second.problems] == [str(p) for p in first.problems]
    assert sorted(second.ids) == sorted(first.ids) == ["support.cancel", "support.refund"]
    make(root, "support.refund", tags="money")
    run()
    assert checked == ["refund.yaml"]
    checked.clear()
    write(root / "_partials" / "new.j2", "hello")
    run()
    assert sorted(checked) == ["cancel.yaml", "refund.yaml", "x.yaml"]
    cache_file.write_text("{not json", encoding="utf-8")
    checked.clear()
    assert len(run().ids) == 2
    assert len(checked) == 3


# -- template lines map back to the lines of the file ------------------------------------

# Three template lines with the problem (<B>) in the middle: on template line 2, or 3
# where the style adds an empty line, or 1 where it folds everything into one line. Each
# style writes them in one way YAML allows (<I> is the indentation of the value's
# continuation lines); ``offset`` is how many lines below the key the problem is written.
STYLES = [
    # (name, value as written after the key, offset)
    ("plain one line", "Reply to {{ message }}. <B> Thanks.", 0),
    ("plain lines", "Reply to {{ message }}.\n\n<I><B>\n\n<I>Thanks.", 2),
    ("plain wrapped", "Reply\n<I>to {{ message }}.\n\n<I><B>\n<I>\n<I>Thanks.", 3),
    ("double-quoted escapes", '"Reply to {{ message }}.\\n<B>\\nThanks."', 0),
    ("double-quoted lines", '"Reply to {{ message }}.\n\n<I><B>\n\n<I>Thanks."', 2),
    ("double-quoted continued", '"Reply to {{ message }}.\\n\\\n<I><B>\\n\\\n<I>Thanks."', 1),
    ("double-quoted escape then fold", '"Reply to {{ message }}.\\n<B>\n<I>\\nThanks."', 0),
    ("double-quoted wrapped", '"Reply to\n<I>{{ message }}.\\n<B>\\n\n<I>Thanks."', 1),
    ("single-quoted one line", "'Reply to {{ message }}. <B> Thanks.'", 0),
    ("single-quoted lines", "'Reply to {{ message }}.\n\n<I><B>\n\n<I>Thanks.'", 2),
    ("single-quoted wrapped", "'Reply\n<I>to {{ message }}.\n\n<I><B>\n\n<I>Thanks.'", 3),
    ("literal", "|\n<I>Reply to {{ message }}.\n<I><B>\n<I>Thanks.\n", 2),
    ("literal strip", "|-\n<I>Reply to {{ message }}.\n\n<I><B>\n<I>Thanks.\n", 3),
    ("literal keep", "|+\n\n<I>Reply to {{ message }}.\n<I><B>\n<I>Thanks.\n\n", 3),
    ("literal indentation indicator", "|2\n<I>  Reply to {{ message }}.\n<I><B>\n<I>Thanks.\n", 2),
    ("folded", ">\n<I>Reply to {{ message }}.\n\n<I><B>\n\n<I>Thanks.\n", 3),
    ("folded strip", ">-\n<I>Reply to {{ message }}.\n\n<I><B>\n\n<I>Thanks.\n", 3),
    ("folded wrapped", ">\n<I>Reply\n<I>to {{ message }}.\n\n<I><B>\n\n<I>Thanks.\n", 4),
    ("folded more indented", ">\n<I>Reply to {{ message }}.\n<I>  <B>\n<I>Thanks.\n", 2),
    ("folded comment", "> # a note\n<I>Reply to {{ message }}.\n\n\n<I><B>\n<I>Thanks.\n", 4),
]
# (name, second template line, message, the token the file must show on the reported line)
BREAKAGES = [
    (
        "undeclared variable",
        "Name is {{ customer_name }}",
        "uses variable 'customer_name', which is not declared in inputs",
        "customer_name",
    ),
    (
        "unknown filter",
        "{{ message | uppr }}",
        "unknown filter 'uppr' (did you mean 'upper'?)",
        "uppr",
    ),
    (
        "syntax error",
        "{% endif %}",
        "template syntax error: Encountered unknown tag 'endif'.",
        "endif",
    ),
]
# Where the template is: the line of its key, the key path and the continuation indent.
PLACES = {
    "template": (6, "template", "  "),
    "content": (8, "messages[0].content", "      "),
}
HEAD = "id: lib.p\nversion: 1.0.0\ndescription: x\ninputs:\n  message: {type: string}\n"
LINE_ROWS = [
    (style, value, breakage, bad, message, token, place, PLACES[place][0] + offset)
    for style, value, offset in STYLES
    for breakage, bad, message, token in BREAKAGES
    for place in PLACES
]


def _prompt_with(value: str, place: str) -> str:
    _line, _key, indent = PLACES[place]
    value = value.replace("<I>", indent)
    if place == "template":
        return HEAD + f"template: {value}\n"
    return HEAD + f"messages:\n  - role: user\n    content: {value}\n"


@pytest.mark.parametrize(
    ("value", "bad", "message", "token", "place", "line"),
    [row[1:2] + row[3:] for row in LINE_ROWS],
    ids=[f"{row[0]}-{row[2]}-{row[6]}" for row in LINE_ROWS],
)
def test_template_problems_point_at_the_line_of_the_file(
    tmp_path: Path, value: str, bad: str, message: str, token: str, place: str, line: int
) -> None:
    text = _prompt_with(value.replace("<B>", bad), place)
    # The table itself: the expected line is the one that shows the offending token.
    assert token in text.splitlines()[line - 1], text
    write(tmp_path / "lib" / "p.yaml", text)
    result = scan(tmp_path)
    assert [(p.line, p.key, p.message) for p in result.problems] == [
        (line, PLACES[place][1], message)
    ]


def test_the_line_table_is_large_enough() -> None:
    assert len(LINE_ROWS) >= 35


# -- input names: the loader and the JSON Schema agree -----------------------------------

INPUT_NAMES = [
    # (name, valid, the loader's message when it is not)
    ("answerKey", True, None),
    ("_private", True, None),
    ("Ticket_2", True, None),
    ("Loop", True, None),
    (
        "a-b",
        False,
        "input name 'a-b' is not valid: use letters, digits and underscores, starting with a letter or underscore",
    ),
    (
        "2nd",
        False,
        "input name '2nd' is not valid: use letters, digits and underscores, starting with a letter or underscore",
    ),
    (
        "a b",
        False,
        "input name 'a b' is not valid: use letters, digits and underscores, starting with a letter or underscore",
    ),
    (
        "café",
        False,
        "input name 'café' is not valid: use letters, digits and underscores, starting with a letter or underscore",
    ),
    ("loop", False, "input name 'loop' is reserved by the template language; rename the input"),
    ("range", False, "input name 'range' is reserved by the template language; rename the input"),
    ("None", False, "input name 'None' is reserved by the template language; rename the input"),
    ("true", False, "input name 'true' is reserved by the template language; rename the input"),
]


@pytest.mark.parametrize(("name", "valid", "message"), INPUT_NAMES)
def test_input_names_agree_between_loader_and_schema(
    tmp_path: Path, name: str, valid: bool, message: str | None
) -> None:
    import json

    import jsonschema

    from promptlib.library.schema import prompt_file_schema

    document = {
        "id": "lib.p",
        "version": "1.0.0",
        "description": "x",
        "inputs": {"message": {"type": "string"}, name: {"type": "string"}},
        "template": "{{ message }}",
    }
    schema = prompt_file_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert validator.is_valid(document) is valid
    # JSON is YAML: the same document as a prompt file, with the name's key on line 9.
    write(tmp_path / "lib" / "p.yaml", json.dumps(document, indent=2))
    result = scan(tmp_path)
    expected = [] if valid else [(9, f"inputs.{name}", message)]
    assert [(p.line, p.key, p.message) for p in result.problems] == expected


def test_every_bad_input_name_is_reported_at_its_line(tmp_path: Path) -> None:
    write(
        tmp_path / "lib" / "p.yaml",
        "id: lib.p\nversion: 1.0.0\ndescription: x\ninputs:\n"
        "  customer-message: {type: string}\n"
        "  answerKey: {type: string}\n"
        "  9lives: {type: strin}\n"
        "  self: {type: string}\n"
        "template: '{{ answerKey }}'\n",
    )
    assert [(p.line, p.key, p.message) for p in scan(tmp_path).problems] == [
        (
            5,
            "inputs.customer-message",
            "input name 'customer-message' is not valid: use letters, digits and underscores, starting with a letter or underscore",
        ),
        (
            7,
            "inputs.9lives",
            "input name '9lives' is not valid: use letters, digits and underscores, starting with a letter or underscore",
        ),
        (
            7,
            "inputs.9lives.type",
            "input should be 'string', 'integer', 'number', 'boolean', 'array' or 'object', got 'strin'",
        ),
        (
            8,
            "inputs.self",
            "input name 'self' is reserved by the template language; rename the input",
        ),
    ]
