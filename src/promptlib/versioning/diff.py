"""The semantic diff of two library snapshots and the version bump it requires.

The policy (DESIGN.md, "Semantic versioning"), applied per prompt; the package bump is the
largest prompt bump:

MAJOR
    the prompt was removed (a rename is a removal plus an addition); a required input was
    added; an input was removed; an input's type changed (except integer -> number, a
    widening); an optional input became required; an ``enum`` was added to an input or
    lost values; the output format changed; the output labels were added or removed (a
    consumer may receive a label it does not handle, or never see one it relies on); the
    output JSON Schema changed beyond annotations (``title``, ``description``,
    ``examples``, ``$comment``).
MINOR
    a new prompt; an optional input added; a required input became optional; an ``enum``
    gained values or was dropped; an input default changed; integer -> number; messages or
    template text, roles or count changed; a partial the prompt includes changed, appeared
    or disappeared; a model parameter changed; labels reordered; schema annotations
    changed; a filter or test from an installed package (a plugin) that the prompt uses
    appeared, disappeared, or changed identity (its entry point or its source): what the
    model receives may change. These change behaviour behind the same interface.
PATCH
    metadata only: description, tags, owner, input descriptions or examples changed and
    the fingerprint is the same.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..versions import Bump
from .snapshot import PromptState, Snapshot

__all__ = ["Change", "LibraryDiff", "PromptDiff", "diff_prompt", "diff_snapshots"]

_ANNOTATIONS = frozenset({"title", "description", "examples", "$comment"})


@dataclass(frozen=True)
class Change:
    """One difference and the bump it needs."""

    bump: Bump
    what: str


@dataclass
class PromptDiff:
    """How one prompt differs between two snapshots."""

    id: str
    status: str  # "added", "removed", "changed", "metadata", "unchanged"
    old: PromptState | None
    new: PromptState | None
    changes: list[Change] = field(default_factory=list)
    text_diff: str = ""

    @property
    def bump(self) -> Bump:
        return max((c.bump for c in self.changes), default=Bump.NONE)


@dataclass
class LibraryDiff:
    base: Snapshot
    head: Snapshot
    prompts: list[PromptDiff]

    @property
    def bump(self) -> Bump:
        return max((p.bump for p in self.prompts), default=Bump.NONE)

    def changed(self) -> list[PromptDiff]:
        return [p for p in self.prompts if p.status != "unchanged"]


# Keywords whose value maps *names* to subschemas: the names are data, not annotations.
_NAMED_SUBSCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


def _strip_annotations(schema: Any) -> Any:
    """``schema`` without annotation keywords, at schema positions only."""
    if isinstance(schema, list):
        return [_strip_annotations(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key in _NAMED_SUBSCHEMAS and isinstance(value, dict):
            out[key] = {name: _strip_annotations(sub) for name, sub in value.items()}
        elif key in ("enum", "const", "default", "required"):
            out[key] = value  # values, not schemas
        else:
            out[key] = _strip_annotations(value)
    return out


def _inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    changes: list[Change] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if after is None:
            changes.append(Change(Bump.MAJOR, f"input {name!r} removed"))
            continue
        if before is None:
            if after.get("required", True) and "default" not in after:
                changes.append(Change(Bump.MAJOR, f"required input {name!r} added"))
            else:
                changes.append(Change(Bump.MINOR, f"optional input {name!r} added"))
            continue
        if before["type"] != after["type"]:
            widened = (before["type"], after["type"]) == ("integer", "number")
            changes.append(
                Change(
                    Bump.MINOR if widened else Bump.MAJOR,
                    f"input {name!r} type {before['type']} -> {after['type']}",
                )
            )
        if before.get("required", True) != after.get("required", True):
            if after.get("required", True):
                changes.append(Change(Bump.MAJOR, f"input {name!r} became required"))
            else:
                changes.append(Change(Bump.MINOR, f"input {name!r} became optional"))
        old_enum, new_enum = before.get("enum"), after.get("enum")
        if old_enum != new_enum:
            if new_enum is None:
                changes.append(Change(Bump.MINOR, f"input {name!r} no longer restricted to a list"))
            elif old_enum is None:
                changes.append(Change(Bump.MAJOR, f"input {name!r} now restricted to {new_enum}"))
            else:
                lost = [v for v in old_enum if v not in new_enum]
                gained = [v for v in new_enum if v not in old_enum]
                if lost:
                    changes.append(Change(Bump.MAJOR, f"input {name!r} no longer accepts {lost}"))
                if gained:
                    changes.append(Change(Bump.MINOR, f"input {name!r} also accepts {gained}"))
        if before.get("default") != after.get("default") or ("default" in before) != (
            "default" in after
        ):
            was = repr(before["default"]) if "default" in before else "(none)"
            now = repr(after["default"]) if "default" in after else "(none)"
            changes.append(Change(Bump.MINOR, f"input {name!r} default {was} -> {now}"))
    return changes


def _output(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    changes: list[Change] = []
    if old.get("format", "text") != new.get("format", "text"):
        changes.append(
            Change(Bump.MAJOR, f"output format {old.get('format')} -> {new.get('format')}")
        )
        return changes
    old_labels, new_labels = old.get("labels") or [], new.get("labels") or []
    if old_labels != new_labels:
        added = [label for label in new_labels if label not in old_labels]
        removed = [label for label in old_labels if label not in new_labels]
        if added or removed:
            parts = []
            if added:
                parts.append(f"added {added}")
            if removed:
                parts.append(f"removed {removed}")
            changes.append(Change(Bump.MAJOR, "output labels " + ", ".join(parts)))
        else:
            changes.append(Change(Bump.MINOR, "output labels reordered"))
    old_schema, new_schema = old.get("schema"), new.get("schema")
    if old_schema != new_schema:
        if _strip_annotations(old_schema) == _strip_annotations(new_schema):
            changes.append(Change(Bump.MINOR, "output schema annotations changed"))
        else:
            changes.append(Change(Bump.MAJOR, "output schema changed"))
    return changes


def _texts(behaviour: Mapping[str, Any]) -> list[str]:
    if "messages" in behaviour:
        return [f"[{m['role']}]\n{m['content']}" for m in behaviour["messages"]]
    return [str(behaviour.get("template", ""))]


def _body(
    old: Mapping[str, Any], new: Mapping[str, Any], prompt_id: str
) -> tuple[list[Change], str]:
    changes: list[Change] = []
    old_texts, new_texts = _texts(old), _texts(new)
    text_diff = ""
    if ("messages" in old) != ("messages" in new):
        changes.append(Change(Bump.MINOR, "switched between messages and template"))
    if old_texts != new_texts:
        if "messages" in old and "messages" in new:
            if len(old_texts) != len(new_texts):
                changes.append(
                    Change(Bump.MINOR, f"messages: {len(old_texts)} -> {len(new_texts)}")
                )
            changed = [
                i for i, (a, b) in enumerate(zip(old_texts, new_texts, strict=False)) if a != b
            ]
            if changed:
                where = ", ".join(f"messages[{i}]" for i in changed[:5])
                more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
                changes.append(Change(Bump.MINOR, f"{where}{more} changed"))
        elif "messages" not in old and "messages" not in new:
            changes.append(Change(Bump.MINOR, "template changed"))
        text_diff = "".join(
            difflib.unified_diff(
                "\n\n".join(old_texts).splitlines(keepends=True),
                "\n\n".join(new_texts).splitlines(keepends=True),
                fromfile=f"{prompt_id} (base)",
                tofile=f"{prompt_id} (head)",
                n=2,
            )
        )
    old_partials, new_partials = old.get("partials", {}), new.get("partials", {})
    for name in sorted(set(old_partials) | set(new_partials)):
        if name not in new_partials:
            changes.append(Change(Bump.MINOR, f"partial {name!r} no longer included"))
        elif name not in old_partials:
            changes.append(Change(Bump.MINOR, f"partial {name!r} now included"))
        elif old_partials[name] != new_partials[name]:
            changes.append(Change(Bump.MINOR, f"partial {name!r} changed"))
    for key, kind in (("filters", "filter"), ("tests", "test")):
        changes += _plugins(kind, old.get(key, {}), new.get(key, {}))
    old_model, new_model = old.get("model", {}), new.get("model", {})
    for key in sorted(set(old_model) | set(new_model)):
        if old_model.get(key) != new_model.get(key):
            changes.append(
                Change(Bump.MINOR, f"model.{key} {old_model.get(key)!r} -> {new_model.get(key)!r}")
            )
    return changes, text_diff


def _plugins(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Plugin filters or tests used, dropped, or whose identity changed."""
    changes: list[Change] = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(Change(Bump.MINOR, f"plugin {kind} {name!r} no longer used"))
        elif name not in old:
            changes.append(Change(Bump.MINOR, f"plugin {kind} {name!r} now used"))
        elif old[name] != new[name]:
            was, now = old[name].get("entry_point"), new[name].get("entry_point")
            what = f"entry point {was} -> {now}" if was != now else "source changed"
            changes.append(
                Change(
                    Bump.MINOR,
                    f"plugin {kind} {name!r} changed ({what}): its output may differ",
                )
            )
    return changes


def _metadata(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes.append(Change(Bump.PATCH, f"{key} changed"))
    return changes


def diff_prompt(prompt_id: str, old: PromptState | None, new: PromptState | None) -> PromptDiff:
    """Classify how one prompt changed (see the module docstring)."""
    if old is None and new is None:
        raise ValueError("nothing to compare")
    if old is None:
        return PromptDiff(prompt_id, "added", None, new, [Change(Bump.MINOR, "new prompt")])
    if new is None:
        return PromptDiff(prompt_id, "removed", old, None, [Change(Bump.MAJOR, "prompt removed")])
    if old.fingerprint == new.fingerprint:
        changes = _metadata(old.metadata, new.metadata)
        return PromptDiff(prompt_id, "metadata" if changes else "unchanged", old, new, changes)
    changes = _inputs(old.behaviour.get("inputs", {}), new.behaviour.get("inputs", {}))
    changes += _output(old.behaviour.get("output", {}), new.behaviour.get("output", {}))
    body, text_diff = _body(old.behaviour, new.behaviour, prompt_id)
    changes += body
    if not changes:
        # The fingerprint covers something no rule above names (e.g. a new format field).
        changes.append(Change(Bump.MINOR, "behaviour changed"))
    return PromptDiff(prompt_id, "changed", old, new, changes, text_diff)


def diff_snapshots(base: Snapshot, head: Snapshot) -> LibraryDiff:
    """Every prompt of both snapshots, classified, sorted by id."""
    ids = sorted(set(base.prompts) | set(head.prompts))
    return LibraryDiff(
        base, head, [diff_prompt(pid, base.prompts.get(pid), head.prompts.get(pid)) for pid in ids]
    )
