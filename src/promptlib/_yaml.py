"""Strict YAML reading that keeps where every value came from.

The first stage of the two-stage parse: read leniently, keep every problem, never raise
for bad content. ``read_yaml`` composes the document with libyaml when it is available
(PyYAML's pure-Python parser otherwise), safe tags only, and builds plain Python values
itself so that it can:

* report duplicate keys (PyYAML silently keeps the last one);
* remember the line of every value and key, by key path, for later messages;
* remember which plain scalars YAML 1.1 turned into something other than text
  (``no`` -> False, ``0755`` -> 493, ``1:20`` -> 80, ``3.10`` -> 3.1), so that a string
  field that received one can say exactly what happened and how to fix it;
* refuse anchors and aliases (they can expand exponentially; use a partial to share text),
  merge keys, non-text mapping keys and non-standard tags.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem

__all__ = ["Document", "KeyPath", "format_key", "read_yaml"]

KeyPath = tuple["str | int", ...]

try:  # pragma: no cover - which branch runs depends on how PyYAML was built
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_SCALAR_TAGS = frozenset({_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP})

# A constructor instance used only for its scalar conversions (bool, int, float, ...),
# so that the values are exactly the ones yaml.safe_load would produce.
_SCALARS = yaml.constructor.SafeConstructor()


@dataclass
class Document:
    """The result of reading one YAML file: values, their lines, and the problems found.

    ``lines`` maps a key path to the 1-based line of its value; ``key_lines`` maps it to
    the line of the key itself. ``coerced`` maps a key path to the source text of a plain
    scalar that YAML 1.1 read as a non-string (bool, number, null or date). ``block`` holds
    the key paths of ``|`` and ``>`` block scalars, whose text starts on the next line.
    """

    data: Any = None
    lines: dict[KeyPath, int] = field(default_factory=dict)
    key_lines: dict[KeyPath, int] = field(default_factory=dict)
    coerced: dict[KeyPath, str] = field(default_factory=dict)
    block: set[KeyPath] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: KeyPath) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def format_key(path: KeyPath) -> str:
    """Render a key path the way users write it: ``messages[1].content``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_coercion(source: str, value: Any) -> str:
    """Explain what YAML 1.1 made of an unquoted scalar, and how to keep it as text."""
    if isinstance(value, bool):
        what = f"the boolean {str(value).lower()}"
    elif value is None:
        what = "null (no value)"
    elif isinstance(value, int):
        if source.lstrip("+-").startswith("0") and source.strip("+-0") and ":" not in source:
            what = f"the octal number {value}"
        elif ":" in source:
            what = f"the base-60 number {value}"
        else:
            what = f"the integer {value}"
    elif isinstance(value, float):
        what = f"the number {value!r}"
    elif isinstance(value, datetime.date):
        what = f"the date {value.isoformat()}"
    else:  # pragma: no cover - every implicit YAML 1.1 type is listed above
        what = f"a {type(value).__name__}"
    quoted = source.replace('"', '\\"')
    return f'YAML 1.1 reads `{source}` as {what}; write it in quotes ("{quoted}") to keep the text'


class _Builder:
    def __init__(self, doc: Document, path: str) -> None:
        self.doc = doc
        self.path = path
        self.seen: set[int] = set()

    def problem(self, line: int, key: KeyPath, message: str) -> None:
        self.doc.problems.append(Problem(self.path, line, format_key(key), message))

    def build(self, node: yaml.Node, key: KeyPath) -> Any:
        line = node.start_mark.line + 1
        self.doc.lines[key] = line
        if id(node) in self.seen:
            self.problem(
                line, key, "anchors and aliases are not supported; use a partial to share text"
            )
            if isinstance(node, yaml.ScalarNode):
                return node.value
            return [] if isinstance(node, yaml.SequenceNode) else {}
        self.seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, key, line)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                self.problem(line, key, f"unsupported YAML tag {node.tag!r}")
            return [self.build(item, (*key, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        if node.tag != _MAP:
            self.problem(line, key, f"unsupported YAML tag {node.tag!r}")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_line, key, "mapping keys must be plain text")
                continue
            if key_node.tag == _MERGE:
                self.problem(key_line, key, "merge keys (<<) are not supported; write the keys out")
                continue
            name = key_node.value
            child: KeyPath = (*key, name)
            if key_node.tag != _STR:
                value = self.convert(key_node)
                self.problem(key_line, child, describe_coercion(name, value) + " as a key")
            if name in out:
                self.problem(
                    key_line,
                    child,
                    f"duplicate key {name!r} (first defined on line {self.doc.key_lines[child]})",
                )
                continue
            self.doc.key_lines[child] = key_line
            out[name] = self.build(value_node, child)
        return out

    def scalar(self, node: yaml.ScalarNode, key: KeyPath, line: int) -> Any:
        if node.tag == _STR:
            if node.style in ("|", ">"):
                self.doc.block.add(key)
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self.problem(line, key, f"unsupported YAML tag {node.tag!r}")
            return node.value
        value = self.convert(node)
        if node.tag != _NULL or node.value:
            self.doc.coerced[key] = node.value
        return value

    def convert(self, node: yaml.ScalarNode) -> Any:
        try:
            return _SCALARS.construct_object(node)
        except (yaml.YAMLError, ValueError):  # pragma: no cover - resolver and constructor agree
            return node.value


def read_yaml(text: str, path: str, what: str = "prompt file") -> Document:
    """Read one YAML document; every problem is in ``Document.problems``, nothing raises."""
    doc = Document()
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            if "expected a single document" in str(exc):
                line = exc.problem_mark.line + 1 if exc.problem_mark else 0
                doc.problems.append(
                    Problem(
                        path,
                        line,
                        "",
                        f"a {what} holds exactly one YAML document; remove the extra '---'",
                    )
                )
                return doc
            raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        what = exc.problem or exc.context or "invalid YAML"
        doc.problems.append(Problem(path, line, "", f"invalid YAML: {what}"))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(path, 0, "", f"invalid YAML: {exc}"))
        return doc
    finally:
        loader.dispose()
    if node is None:
        doc.problems.append(Problem(path, 1, "", "the file is empty"))
        return doc
    doc.data = _Builder(doc, path).build(node, ())
    return doc
