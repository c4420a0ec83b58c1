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
  merge keys, non-text mapping keys and non-standard tags;
* remember where every text value is written and in which style, so that a line inside a
  value (a template's error line) maps back to the line of the file (``value_line``).
"""

from __future__ import annotations

import bisect
import datetime
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem

__all__ = ["Document", "KeyPath", "Scalar", "format_key", "read_yaml"]

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

# Line breaks as YAML counts them, and as Jinja counts them inside a value.
_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_VALUE_BREAK = re.compile(r"\r\n|\r|\n")
# A run of characters that every scalar style writes as they are (no space, which folding
# may replace with a line break; no backslash or quote, which quoted styles escape).
_VERBATIM = re.compile(r"[^\s\\\"']+")

# The problems one file reports in detail; the rest are counted in one more problem.
MAX_PROBLEMS = 100
# A constructor instance used only for its scalar conversions (bool, int, float, ...),
# so that the values are exactly the ones yaml.safe_load would produce.
_SCALARS = yaml.constructor.SafeConstructor()


@dataclass(frozen=True)
class Scalar:
    """Where one text value is written: its style and the source range it spans.

    ``style`` is ``""`` (plain), ``"'"``, ``'"'``, ``"|"`` or ``">"``. Lines and columns
    are 0-based, as YAML marks count them; the range starts at the opening quote or block
    indicator and ends just after the value (for a block, at the start of the next line).
    """

    style: str
    start_line: int
    start_column: int
    end_line: int
    end_column: int


@dataclass
class Document:
    """The result of reading one YAML file: values, their lines, and the problems found.

    ``lines`` maps a key path to the 1-based line of its value; ``key_lines`` maps it to
    the line of the key itself. ``coerced`` maps a key path to the source text of a plain
    scalar that YAML 1.1 read as a non-string (bool, number, null or date). ``scalars``
    maps the key path of every text value to where and how it is written; ``text`` is the
    source, for ``value_line``.
    """

    data: Any = None
    lines: dict[KeyPath, int] = field(default_factory=dict)
    key_lines: dict[KeyPath, int] = field(default_factory=dict)
    coerced: dict[KeyPath, str] = field(default_factory=dict)
    scalars: dict[KeyPath, Scalar] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    text: str = ""

    def line_of(self, path: KeyPath) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def value_line(self, path: KeyPath, lineno: int) -> int:
        """The 1-based line of the file on which line ``lineno`` of the text at ``path``
        starts (lines of the value counted from 1, at ``\\n``, ``\\r\\n`` and ``\\r``).

        Exact for literal blocks (``|``), whose lines are the file's lines. In the other
        styles YAML folds line breaks into spaces and quoted text may hold ``\\n``
        escapes, so the value is matched against the source, word by word and never going
        back: the answer is the line where the first word of that value line is written
        (the same line when the break was an escape; for a line without words, where the
        line before it ends). It is never outside the value's own lines. ``lineno`` 0, or
        a path that holds no text, gives ``line_of(path)``.
        """
        scalar = self.scalars.get(path)
        if scalar is None or lineno < 1:
            return self.line_of(path)
        last = scalar.end_line
        if scalar.end_column == 0 and last > scalar.start_line:
            last -= 1  # a block ends at the start of the line after its text
        if scalar.style == "|":
            return min(scalar.start_line + lineno, last) + 1
        value = self.data
        for part in path:
            value = value[part]
        return _folded_line(value, self.text, scalar, last, lineno) + 1


def _folded_line(value: str, text: str, scalar: Scalar, last: int, lineno: int) -> int:
    """``Document.value_line`` for the styles whose value lines are not the file's lines;
    0-based, between the scalar's first and ``last`` line."""
    if scalar.style in ("|", ">"):
        first, column = scalar.start_line + 1, 0  # the text starts below the indicator
    else:
        first, column = scalar.start_line, scalar.start_column
    source_lines = _YAML_BREAK.split(text)[first : last + 1]
    if not source_lines:
        return min(first, last)
    if scalar.style not in ("|", ">"):
        source_lines[-1] = source_lines[-1][: scalar.end_column]
    # Blanked rather than cut, so that the key before the value matches no word.
    source_lines[0] = " " * column + source_lines[0][column:]
    starts: list[int] = []
    offset = 0
    for line in source_lines:
        starts.append(offset)
        offset += len(line) + 1
    source = "\n".join(source_lines)
    position = 0
    found = 0
    for line in _VALUE_BREAK.split(value)[:lineno]:
        found = -1
        for word in _VERBATIM.findall(line):
            at = source.find(word, position)
            if at < 0:
                continue  # written as an escape: try the next word
            if found < 0:
                found = at
            position = at + len(word)
    if found < 0:
        found = position
    return first + bisect.bisect_right(starts, found) - 1


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
    if len(source) > 60:  # a message quotes a bounded excerpt, never a whole value
        source = source[:57] + "..."
    quoted = source.replace('"', '\\"')
    return f'YAML 1.1 reads `{source}` as {what}; write it in quotes ("{quoted}") to keep the text'


class _Builder:
    def __init__(self, doc: Document, path: str) -> None:
        self.doc = doc
        self.path = path
        self.seen: set[int] = set()
        self.hidden = 0
        self.first_hidden = 0

    def problem(self, line: int, key: KeyPath, message: str) -> None:
        # A file with thousands of duplicate keys (or aliases, or tags) gets a bounded
        # report: the first problems, then how many more there are.
        if len(self.doc.problems) >= MAX_PROBLEMS:
            self.hidden += 1
            self.first_hidden = self.first_hidden or line
            return
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
            start, end = node.start_mark, node.end_mark
            self.doc.scalars[key] = Scalar(
                node.style or "", start.line, start.column, end.line, end.column
            )
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
    doc = Document(text=text)
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
    builder = _Builder(doc, path)
    doc.data = builder.build(node, ())
    if builder.hidden:
        doc.problems.append(
            Problem(
                path,
                builder.first_hidden,
                "",
                f"{builder.hidden:,} more problems like the ones above are not listed; "
                "fix those first",
            )
        )
    return doc
