"""The semantic diff policy of ``promptlib.versioning.diff``: one case per rule of its docstring.

Each case is a pair of prompt files built from a base document by a few edits, written to
two temporary libraries (with their ``_partials/``) and loaded with ``promptlib.library.loader.scan``.
The expected column lists every change, in order, as (bump, text): the diff must find what
the rule names and nothing else. Every case also runs with the base side read back from a
release record in a ledger, as ``promptlib check`` sees it in a tagless CI clone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import write
from promptlib.ledger import Ledger
from promptlib.library.collection import Library
from promptlib.library.loader import scan
from promptlib.reports import to_json
from promptlib.reports.json import prompt_diff_json as to_json_of
from promptlib.versioning.diff import diff_prompt, diff_snapshots
from promptlib.versioning.history import latest_release, release_record
from promptlib.versioning.snapshot import PromptState, Snapshot
from promptlib.versions import Bump

MAJOR, MINOR, PATCH, NONE = Bump.MAJOR, Bump.MINOR, Bump.PATCH, Bump.NONE

CHAT: dict[str, Any] = {
    "id": "demo.p",
    "version": "1.0.0",
    "description": "Classifies a support message.",
    "tags": ["support"],
    "owner": "team-a",
    "inputs": {
        "text": {"type": "string", "description": "The message."},
        "count": {"type": "integer", "required": False, "default": 3},
        "tone": {
            "type": "string",
            "required": False,
            "default": "formal",
            "enum": ["formal", "casual"],
        },
        "style": {"type": "string", "required": False},
    },
    "messages": [
        {"role": "system", "content": "Classify the message. {% include 'voice.j2' %}"},
        {
            "role": "user",
            "content": "{{ text }} ({{ count }}, {{ tone }}, {{ style | default('any') }})",
        },
    ],
    "model": {"temperature": 0},
    "output": {"format": "label", "labels": ["billing", "refund", "other"]},
}

JSON_SCHEMA: dict[str, Any] = {
    "title": "Answer",
    "type": "object",
    "properties": {
        "answer": {"type": "string", "description": "The reply."},
        "confidence": {"type": "number"},
    },
    "required": ["answer"],
}

JSON = {
    **copy.deepcopy(CHAT),
    "output": {"format": "json", "schema": JSON_SCHEMA},
}

TEMPLATE = {
    key: value for key, value in copy.deepcopy(CHAT).items() if key not in ("messages", "inputs")
} | {
    "inputs": {"text": {"type": "string"}},
    "template": "Summarize in one line: {{ text }}",
    "output": {"format": "text"},
}

BASES = {"chat": CHAT, "json": JSON, "template": TEMPLATE}
PARTIALS = {"voice.j2": "Be brief and polite.", "rules.j2": "Answer with one label."}

Edit = Callable[[dict[str, Any]], None]


def put(path: str, value: Any) -> Edit:
    """Set ``value`` at a dotted key path (creating mappings on the way)."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def drop(path: str) -> Edit:
    """Delete the key at a dotted key path."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]

    return edit


def append(path: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path.split("."):
            node = node[key]
        node.append(value)

    return edit


USER_WITHOUT_STYLE = "{{ text }} ({{ count }}, {{ tone }})"

# (case, base, edits to the old side, edits to the new side, new partials, bump, changes)
Case = tuple[
    str, str, list[Edit], list[Edit], Mapping[str, str] | None, Bump, list[tuple[Bump, str]]
]
CASES: list[Case] = [
    ("unchanged", "chat", [], [], None, NONE, []),
    (
        "an unincluded partial changed",
        "chat",
        [],
        [],
        {**PARTIALS, "rules.j2": "Something else."},
        NONE,
        [],
    ),
    # MAJOR
    (
        "required input added",
        "chat",
        [],
        [put("inputs.lang", {"type": "string"})],
        None,
        MAJOR,
        [(MAJOR, "required input 'lang' added")],
    ),
    (
        "input removed",
        "chat",
        [],
        [drop("inputs.style"), put("messages.1.content", USER_WITHOUT_STYLE)],
        None,
        MAJOR,
        [(MAJOR, "input 'style' removed"), (MINOR, "messages[1] changed")],
    ),
    (
        "type changed",
        "chat",
        [],
        [put("inputs.style.type", "integer")],
        None,
        MAJOR,
        [(MAJOR, "input 'style' type string -> integer")],
    ),
    (
        "type narrowed number -> integer",
        "chat",
        [put("inputs.style.type", "number")],
        [put("inputs.style.type", "integer")],
        None,
        MAJOR,
        [(MAJOR, "input 'style' type number -> integer")],
    ),
    (
        "optional -> required",
        "chat",
        [],
        [put("inputs.style.required", True)],
        None,
        MAJOR,
        [(MAJOR, "input 'style' became required")],
    ),
    (
        "enum added",
        "chat",
        [],
        [put("inputs.style.enum", ["short", "long"])],
        None,
        MAJOR,
        [(MAJOR, "input 'style' now restricted to ['short', 'long']")],
    ),
    (
        "enum lost values",
        "chat",
        [],
        [put("inputs.tone.enum", ["formal"])],
        None,
        MAJOR,
        [(MAJOR, "input 'tone' no longer accepts ['casual']")],
    ),
    (
        "enum lost and gained values",
        "chat",
        [],
        [put("inputs.tone.enum", ["formal", "neutral"])],
        None,
        MAJOR,
        [
            (MAJOR, "input 'tone' no longer accepts ['casual']"),
            (MINOR, "input 'tone' also accepts ['neutral']"),
        ],
    ),
    (
        "output format changed",
        "chat",
        [],
        [put("output", {"format": "text"})],
        None,
        MAJOR,
        [(MAJOR, "output format label -> text")],
    ),
    (
        "labels added",
        "chat",
        [],
        [append("output.labels", "shipping")],
        None,
        MAJOR,
        [(MAJOR, "output labels added ['shipping']")],
    ),
    (
        "labels removed",
        "chat",
        [],
        [put("output.labels", ["billing", "refund"])],
        None,
        MAJOR,
        [(MAJOR, "output labels removed ['other']")],
    ),
    (
        "label renamed",
        "chat",
        [],
        [put("output.labels", ["billing", "refunds", "other"])],
        None,
        MAJOR,
        [(MAJOR, "output labels added ['refunds'], removed ['refund']")],
    ),
    (
        "schema changed",
        "json",
        [],
        [put("output.schema.properties.confidence.type", "integer")],
        None,
        MAJOR,
        [(MAJOR, "output schema changed")],
    ),
    (
        "schema required list changed",
        "json",
        [],
        [put("output.schema.required", ["answer", "confidence"])],
        None,
        MAJOR,
        [(MAJOR, "output schema changed")],
    ),
    # MINOR
    (
        "optional input added",
        "chat",
        [],
        [put("inputs.lang", {"type": "string", "required": False})],
        None,
        MINOR,
        [(MINOR, "optional input 'lang' added")],
    ),
    (
        "optional input with a default added",
        "chat",
        [],
        [put("inputs.lang", {"type": "string", "required": False, "default": "en"})],
        None,
        MINOR,
        [(MINOR, "optional input 'lang' added")],
    ),
    (
        "integer -> number widened",
        "chat",
        [put("inputs.style.type", "integer")],
        [put("inputs.style.type", "number")],
        None,
        MINOR,
        [(MINOR, "input 'style' type integer -> number")],
    ),
    (
        "required -> optional",
        "chat",
        [],
        [put("inputs.text.required", False)],
        None,
        MINOR,
        [(MINOR, "input 'text' became optional")],
    ),
    (
        "enum gained values",
        "chat",
        [],
        [put("inputs.tone.enum", ["formal", "casual", "neutral"])],
        None,
        MINOR,
        [(MINOR, "input 'tone' also accepts ['neutral']")],
    ),
    (
        "enum dropped",
        "chat",
        [],
        [drop("inputs.tone.enum")],
        None,
        MINOR,
        [(MINOR, "input 'tone' no longer restricted to a list")],
    ),
    (
        "default changed",
        "chat",
        [],
        [put("inputs.count.default", 5)],
        None,
        MINOR,
        [(MINOR, "input 'count' default 3 -> 5")],
    ),
    (
        "default added",
        "chat",
        [],
        [put("inputs.style.default", "short")],
        None,
        MINOR,
        [(MINOR, "input 'style' default (none) -> 'short'")],
    ),
    (
        "labels reordered",
        "chat",
        [],
        [put("output.labels", ["other", "billing", "refund"])],
        None,
        MINOR,
        [(MINOR, "output labels reordered")],
    ),
    (
        "schema annotations only",
        "json",
        [],
        [
            put("output.schema.title", "Reply"),
            put("output.schema.properties.answer.description", "What to say."),
            put("output.schema.$comment", "v2"),
            put("output.schema.properties.confidence.examples", [0.5]),
        ],
        None,
        MINOR,
        [(MINOR, "output schema annotations changed")],
    ),
    (
        "message text",
        "chat",
        [],
        [put("messages.0.content", "Classify the request. {% include 'voice.j2' %}")],
        None,
        MINOR,
        [(MINOR, "messages[0] changed")],
    ),
    (
        "role",
        "chat",
        [],
        [put("messages.0.role", "user")],
        None,
        MINOR,
        [(MINOR, "messages[0] changed")],
    ),
    (
        "message count",
        "chat",
        [],
        [append("messages", {"role": "user", "content": "Answer with one label."})],
        None,
        MINOR,
        [(MINOR, "messages: 2 -> 3")],
    ),
    (
        "template text",
        "template",
        [],
        [put("template", "Summarize in one sentence: {{ text }}")],
        None,
        MINOR,
        [(MINOR, "template changed")],
    ),
    (
        "messages -> template",
        "template",
        [drop("template"), put("messages", [{"role": "user", "content": "{{ text }}"}])],
        [],
        None,
        MINOR,
        [(MINOR, "switched between messages and template")],
    ),
    (
        "partial content changed",
        "chat",
        [],
        [],
        {**PARTIALS, "voice.j2": "Be brief, polite and exact."},
        MINOR,
        [(MINOR, "partial 'voice.j2' changed")],
    ),
    (
        "partial added",
        "chat",
        [],
        [
            put(
                "messages.0.content",
                "Classify the message. {% include 'voice.j2' %} {% include 'rules.j2' %}",
            )
        ],
        None,
        MINOR,
        [(MINOR, "messages[0] changed"), (MINOR, "partial 'rules.j2' now included")],
    ),
    (
        "partial removed",
        "chat",
        [],
        [put("messages.0.content", "Classify the message.")],
        None,
        MINOR,
        [(MINOR, "messages[0] changed"), (MINOR, "partial 'voice.j2' no longer included")],
    ),
    (
        "model parameter changed",
        "chat",
        [],
        [put("model.temperature", 0.5)],
        None,
        MINOR,
        [(MINOR, "model.temperature 0.0 -> 0.5")],
    ),
    (
        "model parameter added",
        "chat",
        [],
        [put("model.max_tokens", 64)],
        None,
        MINOR,
        [(MINOR, "model.max_tokens None -> 64")],
    ),
    # PATCH: metadata only, the fingerprint is the same.
    (
        "description",
        "chat",
        [],
        [put("description", "Classifies one support message.")],
        None,
        PATCH,
        [(PATCH, "description changed")],
    ),
    (
        "tags",
        "chat",
        [],
        [put("tags", ["support", "triage"])],
        None,
        PATCH,
        [(PATCH, "tags changed")],
    ),
    ("owner", "chat", [], [put("owner", "team-b")], None, PATCH, [(PATCH, "owner changed")]),
    (
        "input description",
        "chat",
        [],
        [put("inputs.text.description", "The customer's message.")],
        None,
        PATCH,
        [(PATCH, "inputs changed")],
    ),
    (
        "examples",
        "chat",
        [],
        [put("examples", [{"inputs": {"text": "Where is my refund?"}}])],
        None,
        PATCH,
        [(PATCH, "examples changed")],
    ),
    (
        "all metadata at once",
        "chat",
        [],
        [put("description", "Other."), put("owner", None), put("tags", [])],
        None,
        PATCH,
        [(PATCH, "description changed"), (PATCH, "owner changed"), (PATCH, "tags changed")],
    ),
    # Combinations inside one prompt: the largest bump wins, every change is listed.
    (
        "breaking and behavioural",
        "chat",
        [],
        [
            put("inputs.lang", {"type": "string"}),
            put("messages.0.content", "Sort the message. {% include 'voice.j2' %}"),
            put("model.temperature", 1.0),
        ],
        None,
        MAJOR,
        [
            (MAJOR, "required input 'lang' added"),
            (MINOR, "messages[0] changed"),
            (MINOR, "model.temperature 0.0 -> 1.0"),
        ],
    ),
    (
        "behavioural and metadata",
        "chat",
        [],
        [put("description", "Other."), put("model.temperature", 1.0)],
        None,
        MINOR,
        # A metadata edit riding on a behaviour change needs no line of its own.
        [(MINOR, "model.temperature 0.0 -> 1.0")],
    ),
]


def document(base: str, edits: list[Edit]) -> dict[str, Any]:
    doc = copy.deepcopy(BASES[base])
    for edit in edits:
        edit(doc)
    return doc


def library(folder: Path, docs: list[dict[str, Any]], partials: Mapping[str, str]) -> Library:
    """Write ``docs`` as prompt files of a library in ``folder`` and load it."""
    root = folder / "prompts"
    for name, text in partials.items():
        write(root / "_partials" / name, text)
    for doc in docs:
        write(root / Path(*doc["id"].split(".")).with_suffix(".yaml"), yaml.safe_dump(doc))
    result = scan(root)
    assert not result.problems, result.problems
    return Library(result.prompts, root=root, partials=result.partials)


def state(lib: Library, prompt_id: str) -> PromptState:
    p = lib[prompt_id]
    return PromptState(p.id, str(p.version), p.fingerprint, p.behaviour(), p.metadata())


def snapshot(lib: Library, label: str, version: str | None = None) -> Snapshot:
    states = {pid: state(lib, pid) for pid in lib}
    return Snapshot(label, "worktree", version, states)


def via_release_record(lib: Library, tmp_path: Path) -> Snapshot:
    """``lib`` as recorded in a ledger release record and read back."""
    built = release_record(lib, "1.0.0", commit=None, previous=None, bump=None)
    Ledger(tmp_path / "ledger").append(built.record, built.objects)
    # Read back from disk: the behaviours come from the objects written there.
    snap = latest_release(Ledger(tmp_path / "ledger").read())
    assert snap is not None
    return snap


@pytest.mark.parametrize("through_ledger", [False, True], ids=["files", "release-record"])
@pytest.mark.parametrize(
    ("case", "base", "old_edits", "new_edits", "new_partials", "bump", "changes"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_policy(
    tmp_path: Path,
    case: str,
    base: str,
    old_edits: list[Edit],
    new_edits: list[Edit],
    new_partials: Mapping[str, str] | None,
    bump: Bump,
    changes: list[tuple[Bump, str]],
    through_ledger: bool,
) -> None:
    old_lib = library(tmp_path / "old", [document(base, old_edits)], PARTIALS)
    new_lib = library(tmp_path / "new", [document(base, new_edits)], new_partials or PARTIALS)
    if through_ledger:
        released = via_release_record(old_lib, tmp_path)
        old = released.prompts["demo.p"]
        assert released.prompt("demo.p").fingerprint == old.fingerprint  # rebuilds exactly
    else:
        old = state(old_lib, "demo.p")
    result = diff_prompt("demo.p", old, state(new_lib, "demo.p"))
    assert [(c.bump, c.what) for c in result.changes] == changes
    assert result.bump is bump
    expected_status = {NONE: "unchanged", PATCH: "metadata"}.get(bump, "changed")
    assert result.status == expected_status
    # Behaviour changes and only they change the fingerprint (metadata is not in it).
    assert (old.fingerprint != result.new.fingerprint) == (bump > PATCH)  # type: ignore[union-attr]
    if bump >= MINOR:
        assert to_json_of(result)["text_diff"] == result.text_diff


def test_added_and_removed_prompts(tmp_path: Path) -> None:
    lib = library(tmp_path, [document("chat", [])], PARTIALS)
    added = diff_prompt("demo.p", None, state(lib, "demo.p"))
    assert (added.status, added.bump, [c.what for c in added.changes]) == (
        "added",
        MINOR,
        ["new prompt"],
    )
    removed = diff_prompt("demo.p", state(lib, "demo.p"), None)
    assert (removed.status, removed.bump, [c.what for c in removed.changes]) == (
        "removed",
        MAJOR,
        ["prompt removed"],
    )
    with pytest.raises(ValueError, match="nothing to compare"):
        diff_prompt("demo.p", None, None)


def test_a_message_text_change_carries_a_unified_diff(tmp_path: Path) -> None:
    old = library(tmp_path / "a", [document("chat", [])], PARTIALS)
    new = library(
        tmp_path / "b",
        [
            document(
                "chat", [put("messages.0.content", "Sort the message. {% include 'voice.j2' %}")]
            )
        ],
        PARTIALS,
    )
    result = diff_prompt("demo.p", state(old, "demo.p"), state(new, "demo.p"))
    assert result.text_diff.startswith("--- demo.p (base)\n+++ demo.p (head)\n")
    assert "-Classify the message." in result.text_diff
    assert "+Sort the message." in result.text_diff


def prompt_doc(prompt_id: str, *edits: Edit) -> dict[str, Any]:
    return document("chat", [put("id", prompt_id), *edits])


TEXT = put("messages.0.content", "Sort the message. {% include 'voice.j2' %}")
BREAK = put("inputs.lang", {"type": "string"})
META = put("description", "Other words.")

# (case, edits per prompt id (None: the prompt is absent on that side), package bump)
LIBRARY_CASES: list[tuple[str, dict[str, tuple[list[Edit] | None, list[Edit] | None]], Bump]] = [
    ("nothing changed", {"a.x": ([], []), "a.y": ([], [])}, NONE),
    ("one metadata edit", {"a.x": ([], [META]), "a.y": ([], [])}, PATCH),
    ("patch and minor -> minor", {"a.x": ([], [META]), "a.y": ([], [TEXT])}, MINOR),
    ("minor and major -> major", {"a.x": ([], [BREAK]), "a.y": ([], [TEXT])}, MAJOR),
    ("patch and major -> major", {"a.x": ([], [META]), "a.y": ([], [BREAK])}, MAJOR),
    ("a new prompt -> minor", {"a.x": ([], []), "a.z": (None, [])}, MINOR),
    ("a removed prompt -> major", {"a.x": ([], [TEXT]), "a.z": ([], None)}, MAJOR),
    ("a rename is a removal and an addition", {"a.x": ([], None), "a.y": (None, [])}, MAJOR),
]


@pytest.mark.parametrize(
    ("case", "prompts", "bump"), LIBRARY_CASES, ids=[c[0] for c in LIBRARY_CASES]
)
def test_package_bump_is_the_largest_prompt_bump(
    tmp_path: Path,
    case: str,
    prompts: dict[str, tuple[list[Edit] | None, list[Edit] | None]],
    bump: Bump,
) -> None:
    old_docs = [prompt_doc(pid, *old) for pid, (old, _) in prompts.items() if old is not None]
    new_docs = [prompt_doc(pid, *new) for pid, (_, new) in prompts.items() if new is not None]
    base = snapshot(library(tmp_path / "old", old_docs, PARTIALS), "base", "1.0.0")
    head = snapshot(library(tmp_path / "new", new_docs, PARTIALS), "head", "1.0.0")
    result = diff_snapshots(base, head)
    assert result.bump is bump
    assert [p.id for p in result.prompts] == sorted(prompts)  # every prompt, sorted by id
    assert result.bump == max((p.bump for p in result.prompts), default=NONE)
    data = to_json(result)
    assert data["bump"] == str(bump)
    assert data["unchanged"] == sum(1 for p in result.prompts if p.status == "unchanged")
    assert [p["id"] for p in data["prompts"]] == [p.id for p in result.changed()]
    for item in data["prompts"]:
        old, new = prompts[item["id"]]
        assert item["old_version"] == (None if old is None else "1.0.0")
        assert item["new_version"] == (None if new is None else "1.0.0")


# A JSON Schema property may itself be called "title", "description" or "examples"; those
# names under "properties" are data fields, not annotations.
FIELD_NAMED_LIKE_AN_ANNOTATION = [
    (
        "a property called 'description' changed type",
        {"properties": {"description": {"type": "string"}}, "required": ["description"]},
        {"properties": {"description": {"type": "integer"}}, "required": ["description"]},
    ),
    (
        "a property called 'title' removed",
        {"properties": {"title": {"type": "string"}, "body": {"type": "string"}}},
        {"properties": {"body": {"type": "string"}}},
    ),
]


@pytest.mark.parametrize(
    ("case", "old_schema", "new_schema"),
    FIELD_NAMED_LIKE_AN_ANNOTATION,
    ids=[c[0] for c in FIELD_NAMED_LIKE_AN_ANNOTATION],
)
def test_schema_properties_named_like_annotations_are_not_annotations(
    tmp_path: Path, case: str, old_schema: dict[str, Any], new_schema: dict[str, Any]
) -> None:
    old = library(tmp_path / "a", [document("json", [put("output.schema", old_schema)])], PARTIALS)
    new = library(tmp_path / "b", [document("json", [put("output.schema", new_schema)])], PARTIALS)
    result = diff_prompt("demo.p", state(old, "demo.p"), state(new, "demo.p"))
    assert [(c.bump, c.what) for c in result.changes] == [(MAJOR, "output schema changed")]
