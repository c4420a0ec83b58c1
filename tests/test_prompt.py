"""Prompts: input validation, rendering, and the fingerprint contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write
from promptlib.errors import InputError, RenderError
from promptlib.library.loader import scan
from promptlib.library.prompt import Message, Prompt

GOLDEN = Path(__file__).parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def golden() -> dict[str, Prompt]:
    result = scan(GOLDEN / "prompts")
    assert not result.problems
    return result.prompts


# -- golden fingerprints and renders: never edit expected.json for a released format -----


@pytest.mark.parametrize("prompt_id", sorted(EXPECTED))
def test_golden_fingerprint(golden: dict[str, Prompt], prompt_id: str) -> None:
    assert golden[prompt_id].fingerprint == EXPECTED[prompt_id]["fingerprint"]


@pytest.mark.parametrize("prompt_id", sorted(EXPECTED))
def test_golden_render_pins_whitespace_rules(golden: dict[str, Prompt], prompt_id: str) -> None:
    prompt = golden[prompt_id]
    rendered = [m.to_dict() for m in prompt.render(**prompt.examples[0].inputs)]
    assert rendered == EXPECTED[prompt_id]["rendered"]


def test_fingerprint_is_stable_across_processes_and_hash_seeds() -> None:
    code = (
        "from pathlib import Path; from promptlib.library.loader import scan; "
        f"r = scan(Path({str(GOLDEN / 'prompts')!r})); "
        "print({k: p.fingerprint for k, p in sorted(r.prompts.items())})"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(out.stdout)
    assert len(outputs) == 1
    assert outputs.pop().strip() == str({k: v["fingerprint"] for k, v in sorted(EXPECTED.items())})


# -- what the fingerprint covers ----------------------------------------------------------

BASE = """\
id: lib.p
version: 1.0.0
description: A prompt.
tags: [a]
owner: team-a
inputs:
  message: {type: string, description: The message.}
  tone: {type: string, required: false, default: warm, enum: [warm, formal]}
messages:
  - role: system
    content: "{% include 'voice.j2' %}Tone {{ tone }}."
  - role: user
    content: "{{ message }}"
model: {temperature: 0.2}
output: {format: label, labels: [a, b]}
examples:
  - inputs: {message: hi}
"""

CHANGES = [
    # (name, old text, new text, fingerprint changes?)
    ("description", "description: A prompt.", "description: Another prompt.", False),
    ("tags", "tags: [a]", "tags: [a, b]", False),
    ("owner", "owner: team-a", "owner: team-b", False),
    ("input description", "description: The message.", "description: What they wrote.", False),
    ("examples", "inputs: {message: hi}", "inputs: {message: hello}", False),
    ("version", "version: 1.0.0", "version: 1.0.1", False),
    ("yaml formatting", "model: {temperature: 0.2}", "model:\n  temperature: 0.20", False),
    (
        "explicit required: true",
        "message: {type: string,",
        "message: {type: string, required: true,",
        False,
    ),
    ("message text", 'content: "{{ message }}"', 'content: "Customer: {{ message }}"', True),
    ("role", "- role: system", "- role: assistant", True),
    (
        "input type",
        "tone: {type: string, required: false, default: warm, enum: [warm, formal]}",
        "tone: {type: string, required: false, default: warm}",
        True,
    ),
    ("default", "default: warm", "default: formal", True),
    ("required", "message: {type: string,", "message: {type: string, required: false,", True),
    ("model parameter", "temperature: 0.2", "temperature: 0.3", True),
    ("labels", "labels: [a, b]", "labels: [a, b, c]", True),
    ("label order", "labels: [a, b]", "labels: [b, a]", True),
]


def _fingerprint(root: Path, text: str, partial: str = "Be kind. ") -> str:
    write(root / "_partials" / "voice.j2", partial)
    write(root / "lib" / "p.yaml", text)
    result = scan(root)
    assert not result.problems, result.problems
    return result.prompts["lib.p"].fingerprint


@pytest.mark.parametrize(("name", "old", "new", "changes"), CHANGES, ids=[c[0] for c in CHANGES])
def test_fingerprint_covers_behaviour_not_metadata(
    tmp_path: Path, name: str, old: str, new: str, changes: bool
) -> None:
    assert old in BASE
    before = _fingerprint(tmp_path / "a", BASE)
    after = _fingerprint(tmp_path / "b", BASE.replace(old, new))
    assert (before != after) is changes


def test_fingerprint_covers_partials(tmp_path: Path) -> None:
    assert _fingerprint(tmp_path / "a", BASE) != _fingerprint(
        tmp_path / "b", BASE, partial="Be brief. "
    )


def test_fingerprint_ignores_partials_the_prompt_does_not_use(tmp_path: Path) -> None:
    before = _fingerprint(tmp_path, BASE)
    write(tmp_path / "_partials" / "unused.j2", "Something else.")
    assert scan(tmp_path).prompts["lib.p"].fingerprint == before


# -- input validation ---------------------------------------------------------------------

TYPED = """\
id: lib.typed
version: 1.0.0
description: Typed inputs.
inputs:
  text: {type: string}
  count: {type: integer, required: false, default: 1}
  ratio: {type: number, required: false, default: 0.5}
  flag: {type: boolean, required: false, default: false}
  items: {type: array, required: false, default: []}
  meta: {type: object, required: false, default: {}}
  mode: {type: string, required: false, default: a, enum: [a, b]}
template: "{{ text }} {{ count }} {{ ratio }} {{ flag }} {{ items|length }} {{ meta|length }} {{ mode }}"
examples:
  - inputs: {text: x}
"""

INPUT_CASES = [
    ({"text": "hi"}, None),
    (
        {
            "text": "hi",
            "count": 2,
            "ratio": 1,
            "flag": True,
            "items": [1],
            "meta": {"k": 1},
            "mode": "b",
        },
        None,
    ),
    ({}, ["missing required input 'text' (string)"]),
    ({"text": 5}, ["input 'text': input should be a valid string (string), got int 5"]),
    (
        {"text": "hi", "count": "2"},
        ["input 'count': input should be a valid integer (integer), got str '2'"],
    ),
    (
        {"text": "hi", "count": True},
        ["input 'count': input should be a valid integer (integer), got bool True"],
    ),
    (
        {"text": "hi", "count": 2.5},
        ["input 'count': input should be a valid integer (integer), got float 2.5"],
    ),
    (
        {"text": "hi", "ratio": "0.5"},
        ["input 'ratio': input should be a valid number (number), got str '0.5'"],
    ),
    (
        {"text": "hi", "flag": "yes"},
        ["input 'flag': input should be a valid boolean (boolean), got str 'yes'"],
    ),
    (
        {"text": "hi", "items": "a,b"},
        ["input 'items': input should be a valid list (array), got str 'a,b'"],
    ),
    (
        {"text": "hi", "meta": []},
        ["input 'meta': input should be a valid dictionary (object), got list []"],
    ),
    (
        {"text": "hi", "mode": "c"},
        ["input 'mode': 'c' is not one of the allowed values ('a', 'b')"],
    ),
    (
        {"text": "hi", "colour": "red"},
        ["unknown input 'colour' (declared inputs: count, flag, items, meta, mode, ratio, text)"],
    ),
    (
        {"count": "x", "colour": 1},
        [
            "unknown input 'colour' (declared inputs: count, flag, items, meta, mode, ratio, text)",
            "missing required input 'text' (string)",
            "input 'count': input should be a valid integer (integer), got str 'x'",
        ],
    ),
]


@pytest.fixture(scope="module")
def typed(tmp_path_factory: pytest.TempPathFactory) -> Prompt:
    root = tmp_path_factory.mktemp("typed")
    write(root / "lib" / "typed.yaml", TYPED)
    result = scan(root)
    assert not result.problems, result.problems
    return result.prompts["lib.typed"]


@pytest.mark.parametrize(("values", "problems"), INPUT_CASES)
def test_render_arguments_are_validated(
    typed: Prompt, values: dict[str, object], problems: list[str] | None
) -> None:
    if problems is None:
        assert typed.render_text(**values).startswith("hi ")
        return
    with pytest.raises(InputError) as caught:
        typed.render(**values)
    assert sorted(caught.value.problems) == sorted(problems)
    assert str(caught.value).startswith("lib.typed: ")


def test_defaults_apply(typed: Prompt) -> None:
    assert typed.render_text(text="hi") == "hi 1 0.5 False 0 0 a"


def test_template_prompt_renders_as_one_user_message(typed: Prompt) -> None:
    assert typed.render(text="x") == [Message("user", "x 1 0.5 False 0 0 a")]


def test_render_text_refuses_chat_prompts(golden: dict[str, Prompt]) -> None:
    with pytest.raises(RenderError, match="is a chat prompt"):
        golden["golden.chat"].render_text(message="hi")


def test_prompts_are_read_only(golden: dict[str, Prompt]) -> None:
    with pytest.raises(AttributeError, match="read-only"):
        golden["golden.chat"].version = "9.9.9"  # type: ignore[misc]


@pytest.mark.parametrize("prompt_id", sorted(EXPECTED))
def test_recorded_behaviour_rebuilds_the_same_prompt(
    golden: dict[str, Prompt], prompt_id: str
) -> None:
    prompt = golden[prompt_id]
    rebuilt = Prompt.from_behaviour(
        prompt.id, str(prompt.version), prompt.behaviour(), prompt.metadata()
    )
    assert rebuilt.fingerprint == prompt.fingerprint
    assert rebuilt.render(**prompt.examples[0].inputs) == prompt.render(**prompt.examples[0].inputs)


# -- an optional input without a default is undefined, never the text "None" -------------

OPTIONAL = """\
id: lib.optional
version: 1.0.0
description: Optional inputs.
inputs:
  note: {{type: string, required: false}}
  nothing: {{type: string, required: false, default: null}}
template: "{template}"
"""

NOT_GIVEN = (
    "lib.optional: undefined value: optional input 'note' was not given; "
    "write {{ note | default('...') }} or {% if note %}...{% endif %}"
)

OPTIONAL_CASES = [
    # (template, rendered without note, rendered with note='hi'); None: the render fails
    ("{{ note | default('n/a') }}", "n/a", "hi"),
    ("{% if note %}[{{ note }}]{% else %}none{% endif %}", "none", "[hi]"),
    ("{% if not note %}none{% endif %}", "none", ""),
    ("{{ note is defined }}", "False", "True"),
    ("{{ note is undefined }}", "True", "False"),
    ("{{ note or 'n/a' }}", "n/a", "hi"),
    ("{{ note | default('n/a', true) }}", "n/a", "hi"),
    ("{{ note }}", None, "hi"),
    ("{{ note ~ '!' }}", None, "hi!"),
    ("{{ note | upper }}", None, "HI"),
    ("{{ note | length }}", None, "2"),
    ("{{ note.upper() }}", None, "HI"),
    ("{% for c in note %}{{ c }}{% endfor %}", None, "hi"),
    ("{{ note == 'hi' }}", None, "True"),
    # An explicit ``default: null`` is a declared default, rendered as the user wrote it.
    ("{{ nothing }}", "None", "None"),
    ("{{ nothing is none }}", "True", "True"),
]


@pytest.mark.parametrize(("template", "without", "given"), OPTIONAL_CASES)
def test_an_optional_input_without_a_default_is_undefined(
    tmp_path: Path, template: str, without: str | None, given: str
) -> None:
    write(tmp_path / "lib" / "optional.yaml", OPTIONAL.format(template=template))
    result = scan(tmp_path)
    assert not result.problems, result.problems
    prompt = result.prompts["lib.optional"]
    assert prompt.render_text(note="hi") == given
    if without is None:
        with pytest.raises(RenderError) as caught:
            prompt.render_text()
        assert str(caught.value) == NOT_GIVEN
    else:
        assert prompt.render_text() == without


def test_check_inputs_leaves_out_an_optional_input_without_a_default(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "optional.yaml", OPTIONAL.format(template="{{ note is defined }}"))
    prompt = scan(tmp_path).prompts["lib.optional"]
    assert prompt.check_inputs({}) == {"nothing": None}
    assert prompt.check_inputs({"note": "hi"}) == {"note": "hi", "nothing": None}
    # What the fingerprint covers says which of the two declares a default.
    assert prompt.behaviour()["inputs"] == {
        "note": {"type": "string", "required": False},
        "nothing": {"type": "string", "required": False, "default": None},
    }
