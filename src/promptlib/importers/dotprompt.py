"""Google dotprompt files (``.prompt``): YAML front matter, Picoschema inputs, Handlebars.

What dotprompt does (``google/dotprompt`` js/src: ``parse.ts``, ``dotprompt.ts``,
``helpers.ts``, ``picoschema.ts``), and so what a converted prompt renders:

* Front matter between ``---`` lines (blank and ``#`` lines may come first); the template
  is the rest, trimmed. A file without front matter is all template, untrimmed.
* Handlebars renders it with ``noEscape`` (no HTML escaping) and ``knownHelpersOnly``.
  Block tags, ``{{else}}``, comments and partials alone on a line remove that line
  (Handlebars' "standalone" rule); ``~`` removes the whitespace beside a tag. The same
  rules are applied here (a port of Handlebars' ``WhitespaceControl``), and the text
  that results is written as Jinja that renders to it.
* ``{{role "system"}}`` splits the output into messages; text before the first role is a
  user message; a part that is only whitespace makes no message (a role right after
  another one replaces it); every other part is kept exactly, newlines included.

Converted: ``{{x}}``, ``{{a.b}}``, ``{{{x}}}``; ``{{#if x}}``, ``{{else if y}}``,
``{{else}}``, ``{{#unless x}}``, ``{{#ifEquals a b}}``/``{{#unlessEquals a b}}``;
``{{#each xs}}`` (with ``{{else}}``) and inside it ``{{this}}``, ``{{this.f}}``,
``{{f}}``, ``{{../x}}``, ``{{@index}}``, ``{{@first}}``, ``{{@last}}``, ``{{@root.x}}``;
comments; ``{{role "..."}}`` (system, user, model -> assistant) at the top level.
Picoschema (``name: type, description``, ``name?:``, ``(array)``, ``(object)``,
``(enum)``) or JSON Schema under ``input.schema`` -> typed inputs; ``input.default`` ->
defaults; ``output.format``/``output.schema`` -> ``output``; ``config`` (temperature,
maxOutputTokens, topP, stopSequences) -> ``model``.

Not converted (reported): partials ``{{> name}}``, ``{{media}}``, ``{{history}}``,
``{{section}}``, ``{{json}}`` (its JSON differs from Jinja's ``tojson``), any other
helper, ``{{#with}}``, subexpressions, block parameters, ``@key``, raw blocks, roles
inside blocks, ``tool`` roles, ``any``-typed inputs, named schemas. Not carried over
(noted): ``model``, ``tools``, other ``config`` keys, role metadata.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._common import (
    MISSING,
    ConversionError,
    Draft,
    Expr,
    InputDraft,
    Piece,
    Stmt,
    Text,
    discover_files,
    infer_inputs,
    input_name_problem,
    model_params,
    parse_template,
    read_source,
    template_source,
    type_of_value,
)

__all__ = ["SUFFIXES", "convert", "discover", "picoschema"]

SUFFIXES = (".prompt",)

# parse.ts FRONTMATTER_AND_BODY_REGEX (JavaScript's `$` without the m flag is Python's \Z).
_FRONT_MATTER = re.compile(
    r"(?:(?:#[^\n]*|[ \t]*)\n)*---\s*(?:\r\n|\r|\n)([\s\S]*?)(?:\r\n|\r|\n)"
    r"---\s*(?:\r\n|\r|\n)([\s\S]*)\Z"
)
_ROLES = {"system": "system", "user": "user", "model": "assistant", "assistant": "assistant"}
_CONFIG = {"maxOutputTokens": "max_tokens", "topP": "top_p", "stopSequences": "stop",
           "temperature": "temperature"}  # fmt: skip
_DICT_ATTRS = frozenset(dir(dict))


def discover(folder: Path) -> list[Path]:
    """Every ``.prompt`` file under ``folder``; partials (``_name.prompt``) are skipped."""
    return discover_files(folder, "*.prompt")


def convert(path: Path) -> list[Draft]:
    """The prompt of one ``.prompt`` file."""
    source = read_source(path)
    match = _FRONT_MATTER.match(source)
    metadata: dict[str, Any] = {}
    if match is None:
        template, first_line = source, 1
    else:
        metadata = _front_matter(match.group(1), source[: match.start(1)].count("\n") + 1)
        body = match.group(2)
        stripped = body.lstrip()
        template = stripped.rstrip()
        first_line = source[: match.start(2)].count("\n") + 1
        first_line += body[: len(body) - len(stripped)].count("\n")
    notes: list[str] = []
    problems: list[tuple[int, str]] = []
    declared, extra = _inputs(metadata.get("input"), problems, notes)
    defaults = _defaults(metadata.get("input"))
    for name, value in defaults.items():
        if name in declared:
            declared[name].required, declared[name].default = False, value
    parser = _Parser(template, first_line, problems)
    program = parser.parse()
    _Whitespace().program(program)
    mentioned = {
        word
        for token in parser.tokens
        if token.kind != "content"
        for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", token.text)
    }
    converter = _Converter(declared, mentioned, problems, notes)
    messages = converter.messages(program)
    if problems:
        raise ConversionError(problems)
    if not messages:
        raise ConversionError.one("the template has no text")
    trees = [parse_template(content) for _role, content in messages]
    inferred = infer_inputs(trees, skip=[*declared, *converter.loop_names])
    for name in inferred:
        reason = input_name_problem(name)
        if reason:
            problems.append((0, reason))
    if problems:
        raise ConversionError(problems)
    if inferred and (declared or extra):
        notes.append(
            "inputs " + ", ".join(sorted(inferred)) + ": used by the template but not in the "
            "input schema; their types were inferred from how they are used"
        )
    for name, value in defaults.items():
        if name in inferred:
            inferred[name].required, inferred[name].default = False, value
        elif name not in declared:
            notes.append(f"input.default.{name}: no input of that name is used; left out")
    inputs = {**declared, **inferred}
    draft = Draft(
        name=path.stem,
        description=_description(metadata, path),
        inputs=inputs,
        tags=["imported", "dotprompt"],
        notes=notes,
    )
    if len(messages) == 1 and messages[0][0] == "user":
        draft.template = messages[0][1]
    else:
        draft.messages = messages
    _settings(metadata, draft)
    return [draft]


def _front_matter(source: str, line: int) -> dict[str, Any]:
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        where = line + mark.line if mark is not None else line
        raise ConversionError.one(
            f"malformed front matter: {reason} (dotprompt would render the whole file, "
            "front matter included, as the template)",
            where,
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConversionError.one("malformed front matter: it must be a mapping of settings", line)
    return data


# -- Handlebars: the syntax tree -------------------------------------------------------

_Strip = tuple[bool, bool]  # (~ after the opening braces, ~ before the closing ones)


@dataclass
class _Content:
    original: str
    value: str
    line: int
    left_stripped: bool = False
    right_stripped: bool = False


@dataclass
class _Mustache:
    path: str | None  # None when the first element is a literal
    params: list[str]
    has_hash: bool
    strip: _Strip
    line: int
    raw: str


@dataclass
class _Standalone:
    """A comment or partial: removed with its line when it stands alone on it."""

    strip: _Strip
    line: int
    partial: str | None = None


@dataclass
class _Program:
    body: list[Any] = field(default_factory=list)
    chained: bool = False


@dataclass
class _Block:
    helper: str
    params: list[str]
    unsupported: str | None
    program: _Program
    inverse: _Program | None
    open_strip: _Strip
    inverse_strip: _Strip | None
    close_strip: _Strip
    line: int
    inverted: bool = False


@dataclass
class _Token:
    kind: str  # content, mustache, open, inverse, chain, close, comment, partial, raw
    text: str  # the tag's inside (or the content)
    strip: _Strip
    line: int
    original: str = ""


_TAG = re.compile(r"\{\{(~?)")


def _tokens(source: str, first_line: int, problems: list[tuple[int, str]]) -> list[_Token]:
    """Handlebars' lexer, for the tags a prompt uses; escaped ``\\{{`` kept as text."""
    tokens: list[_Token] = []
    pos = 0
    line = first_line
    emu = False  # after \{{ the text up to the next {{ is content (Handlebars' "emu" state)

    def content(text: str) -> None:
        nonlocal line
        if text:
            tokens.append(_Token("content", text, (False, False), line, text))
        line += text.count("\n")

    while pos < len(source):
        if emu:
            ends = [m.start() for m in re.finditer(r"\\\\\{\{|\\\{\{|\{\{", source[pos + 2 :])]
            end = pos + 2 + ends[0] if ends else len(source)
            content(source[pos:end])
            pos, emu = end, False
            continue
        start = source.find("{{", pos)
        if start < 0:
            content(source[pos:])
            break
        text = source[pos:start]
        if text.endswith("\\\\"):
            content(text[:-1])
        elif text.endswith("\\"):
            content(text[:-1])
            pos, emu = start, True
            continue
        else:
            content(text)
        if source.startswith("{{{{", start):
            problems.append((line, "raw blocks {{{{...}}}} are not converted"))
            end = source.find("}}}}", start)
            end = len(source) if end < 0 else end + 4
            line += source[start:end].count("\n")
            pos = end
            continue
        left = source.startswith("{{~", start)
        inner_start = start + 2 + left
        if source.startswith("!--", inner_start):
            match = re.compile(r"[\s\S]*?--(~?)\}\}").match(source, inner_start + 3)
            kind = "comment"
        elif source.startswith("!", inner_start):
            match = re.compile(r"[\s\S]*?(~?)\}\}").match(source, inner_start + 1)
            kind = "comment"
        elif source.startswith("{", inner_start):
            match = re.compile(r"([\s\S]*?)\}(~?)\}\}").match(source, inner_start + 1)
            kind = "triple"
        else:
            match = re.compile(r"((?:\"[^\"]*\"|'[^']*'|[^}\"'])*?)(~?)\}\}").match(
                source, inner_start
            )
            kind = "tag"
        if match is None:
            problems.append((line, "a {{ tag is not closed"))
            break
        end = match.end()
        raw = source[start:end]
        right = match.group(match.lastindex or 1) == "~" if kind != "tag" else match.group(2) == "~"
        strip = (left, right)
        if kind == "comment":
            tokens.append(_Token("comment", raw, strip, line))
        elif kind == "triple":
            tokens.append(_Token("mustache", match.group(1).strip(), strip, line, raw))
        else:
            tokens.append(_classify(match.group(1).strip(), strip, line, raw))
        line += raw.count("\n")
        pos = end
    return tokens


def _classify(inner: str, strip: _Strip, line: int, raw: str) -> _Token:
    if inner.startswith("#>") or inner.startswith("#*") or inner.startswith("*"):
        return _Token("unsupported", inner, strip, line, raw)
    if inner.startswith("#"):
        return _Token("open", inner[1:].strip(), strip, line, raw)
    if inner.startswith("/"):
        return _Token("close", inner[1:].strip(), strip, line, raw)
    if inner.startswith(">"):
        return _Token("partial", inner[1:].strip(), strip, line, raw)
    if inner == "^" or inner == "else":
        return _Token("inverse", "", strip, line, raw)
    if inner.startswith("^"):
        return _Token("open_inverse", inner[1:].strip(), strip, line, raw)
    if re.match(r"else\s", inner):
        return _Token("chain", inner[4:].strip(), strip, line, raw)
    if inner.startswith("&"):
        inner = inner[1:].strip()
    return _Token("mustache", inner, strip, line, raw)


_PARAM = re.compile(
    r"\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\(|\)|\|[^|]*\||as\b|[^\s()=]+=|[^\s()]+)"
)


def _words(text: str) -> list[str]:
    return [m.group(1) for m in _PARAM.finditer(text) if m.group(1).strip()]


class _Parser:
    """Handlebars' grammar for programs, blocks and ``else`` chains (``prepareBlock``)."""

    def __init__(self, source: str, first_line: int, problems: list[tuple[int, str]]) -> None:
        self.tokens = _tokens(source, first_line, problems)
        self.pos = 0
        self.problems = problems

    def parse(self) -> _Program:
        program = self.program()
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self.problems.append(
                (token.line, f"{token.original} has no open block to close or continue")
            )
            self.pos += 1
            program.body.extend(self.program().body)
        return program

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def program(self) -> _Program:
        body: list[Any] = []
        while (token := self.peek()) is not None:
            if token.kind in ("inverse", "chain", "close"):
                break
            self.pos += 1
            if token.kind == "content":
                body.append(_Content(token.text, token.text, token.line))
            elif token.kind == "comment":
                body.append(_Standalone(token.strip, token.line))
            elif token.kind == "partial":
                body.append(_Standalone(token.strip, token.line, partial=token.original))
            elif token.kind in ("open", "open_inverse"):
                body.append(self.block(token))
            elif token.kind == "unsupported":
                self.problems.append(
                    (token.line, f"{token.original} (decorators, partial blocks) is not converted")
                )
            else:
                words = _words(token.text)
                path = words[0] if words and _is_path(words[0]) else None
                params = words[1:]
                body.append(
                    _Mustache(
                        path,
                        params,
                        any(w.endswith("=") for w in params),
                        token.strip,
                        token.line,
                        token.original,
                    )
                )
        return _Program(body)

    def block(self, open_token: _Token) -> _Block:
        words = _words(open_token.text)
        helper = words[0] if words else ""
        program = self.program()
        inverse_part = self.inverse_chain()
        close = self.peek()
        if close is None or close.kind != "close":
            self.problems.append(
                (open_token.line, f"{open_token.original} is never closed with {{{{/{helper}}}}}")
            )
            close_strip: _Strip = (False, False)
        else:
            self.pos += 1
            close_strip = close.strip
            if close.text != helper:
                self.problems.append(
                    (close.line, f"{close.original} closes {{{{#{helper}}}}}: the names differ")
                )
        block = self.prepare(open_token, helper, words[1:], program, inverse_part, close_strip)
        block.inverted = open_token.kind == "open_inverse"
        return block

    def inverse_chain(self) -> tuple[_Strip, _Program, bool] | None:
        token = self.peek()
        if token is None:
            return None
        if token.kind == "inverse":
            self.pos += 1
            return token.strip, self.program(), False
        if token.kind == "chain":
            self.pos += 1
            words = _words(token.text)
            program = self.program()
            rest = self.inverse_chain()
            inner = self.prepare(
                token,
                words[0] if words else "",
                words[1:],
                program,
                rest,
                rest[0] if rest else (False, False),
            )
            return token.strip, _Program([inner], chained=True), True
        return None

    def prepare(
        self,
        open_token: _Token,
        helper: str,
        params: list[str],
        program: _Program,
        inverse_part: tuple[_Strip, _Program, bool] | None,
        close_strip: _Strip,
    ) -> _Block:
        inverse = inverse_strip = None
        if inverse_part is not None:
            inverse_strip, inverse, chain = inverse_part
            if chain:
                inverse.body[0].close_strip = close_strip
        unsupported = None
        if any(w in ("(", ")", "as") or w.startswith("|") or w.endswith("=") for w in params):
            unsupported = "subexpressions, hash arguments and block parameters"
        return _Block(
            helper=helper,
            params=params,
            unsupported=unsupported,
            program=program,
            inverse=inverse,
            open_strip=open_token.strip,
            inverse_strip=inverse_strip,
            close_strip=close_strip,
            line=open_token.line,
        )


def _is_path(word: str) -> bool:
    return not (word[0] in "\"'(" or re.fullmatch(r"-?\d+(\.\d+)?|true|false|null|undefined", word))


# -- Handlebars: whitespace control (a port of handlebars/compiler/whitespace-control.js) --


@dataclass
class _StripInfo:
    open: bool = False
    close: bool = False
    open_standalone: bool = False
    close_standalone: bool = False
    inline_standalone: bool = False


class _Whitespace:
    def __init__(self) -> None:
        self.root_seen = False

    def program(self, program: _Program | None) -> None:
        if program is None:
            return
        is_root = not self.root_seen
        self.root_seen = True
        body = program.body
        for i, current in enumerate(body):
            strip = self.accept(current)
            if strip is None:
                continue
            prev_ws = _prev_whitespace(body, i, is_root)
            next_ws = _next_whitespace(body, i, is_root)
            open_standalone = strip.open_standalone and prev_ws
            close_standalone = strip.close_standalone and next_ws
            inline_standalone = strip.inline_standalone and prev_ws and next_ws
            if strip.close:
                _omit_right(body, i, True)
            if strip.open:
                _omit_left(body, i, True)
            if inline_standalone:
                _omit_right(body, i)
                _omit_left(body, i)
            if open_standalone:
                _omit_right((current.program or current.inverse).body)
                _omit_left(body, i)
            if close_standalone:
                _omit_right(body, i)
                _omit_left((current.inverse or current.program).body)

    def accept(self, node: Any) -> _StripInfo | None:
        if isinstance(node, _Mustache):
            return _StripInfo(open=node.strip[0], close=node.strip[1])
        if isinstance(node, _Standalone):
            return _StripInfo(open=node.strip[0], close=node.strip[1], inline_standalone=True)
        if isinstance(node, _Block):
            return self.block(node)
        return None

    def block(self, block: _Block) -> _StripInfo:
        self.program(block.program)
        self.program(block.inverse)
        program = block.program
        inverse = block.inverse
        first_inverse = last_inverse = inverse
        if inverse is not None and inverse.chained:
            first_inverse = inverse.body[0].program
            while last_inverse is not None and last_inverse.chained:
                last_inverse = last_inverse.body[-1].program
        strip = _StripInfo(
            open=block.open_strip[0],
            close=block.close_strip[1],
            open_standalone=_next_whitespace(program.body),
            close_standalone=_prev_whitespace((first_inverse or program).body),
        )
        if block.open_strip[1]:
            _omit_right(program.body, None, True)
        if inverse is not None and first_inverse is not None and last_inverse is not None:
            inverse_strip = block.inverse_strip or (False, False)
            if inverse_strip[0]:
                _omit_left(program.body, None, True)
            if inverse_strip[1]:
                _omit_right(first_inverse.body, None, True)
            if block.close_strip[0]:
                _omit_left(last_inverse.body, None, True)
            if _prev_whitespace(program.body) and _next_whitespace(first_inverse.body):
                _omit_left(program.body)
                _omit_right(first_inverse.body)
        elif block.close_strip[0]:
            _omit_left(program.body, None, True)
        return strip


def _prev_whitespace(body: list[Any], i: int | None = None, is_root: bool = False) -> bool:
    if i is None:
        i = len(body)
    prev = body[i - 1] if i - 1 >= 0 else None
    sibling = body[i - 2] if i - 2 >= 0 else None
    if prev is None:
        return is_root
    if isinstance(prev, _Content):
        pattern = r"\r?\n\s*?\Z" if (sibling is not None or not is_root) else r"(\A|\r?\n)\s*?\Z"
        return re.search(pattern, prev.original) is not None
    return False


def _next_whitespace(body: list[Any], i: int | None = None, is_root: bool = False) -> bool:
    if i is None:
        i = -1
    nxt = body[i + 1] if i + 1 < len(body) else None
    sibling = body[i + 2] if i + 2 < len(body) else None
    if nxt is None:
        return is_root
    if isinstance(nxt, _Content):
        pattern = r"\A\s*?\r?\n" if (sibling is not None or not is_root) else r"\A\s*?(\r?\n|\Z)"
        return re.search(pattern, nxt.original) is not None
    return False


def _omit_right(body: list[Any], i: int | None = None, multiple: bool = False) -> None:
    index = 0 if i is None else i + 1
    current = body[index] if index < len(body) else None
    if not isinstance(current, _Content) or (not multiple and current.right_stripped):
        return
    original = current.value
    current.value = re.sub(r"\A\s+" if multiple else r"\A[ \t]*\r?\n?", "", current.value, count=1)
    current.right_stripped = current.value != original


def _omit_left(body: list[Any], i: int | None = None, multiple: bool = False) -> bool:
    index = len(body) - 1 if i is None else i - 1
    current = body[index] if 0 <= index < len(body) else None
    if not isinstance(current, _Content) or (not multiple and current.left_stripped):
        return False
    original = current.value
    current.value = re.sub(r"\s+\Z" if multiple else r"[ \t]+\Z", "", current.value, count=1)
    current.left_stripped = current.value != original
    return current.left_stripped


# -- Handlebars -> Jinja ---------------------------------------------------------------


class _Converter:
    """Turns the whitespace-controlled tree into pieces, one list per message."""

    def __init__(
        self,
        declared: dict[str, InputDraft],
        mentioned: set[str],
        problems: list[tuple[int, str]],
        notes: list[str],
    ) -> None:
        self.declared = declared
        self.mentioned = mentioned  # every name in a tag: loop variables must not hide one
        self.problems = problems
        self.notes = notes
        self.loops: list[str] = []  # the Jinja loop variable of each enclosing {{#each}}
        self.loop_names: set[str] = set()

    def messages(self, program: _Program) -> list[tuple[str, str]]:
        parts: list[tuple[str, list[Piece]]] = [("user", [])]
        for node in program.body:
            if isinstance(node, _Mustache) and node.path == "role":
                role = self.role(node)
                if role is None:
                    continue
                if _has_text(parts[-1][1]):
                    parts.append((role, []))
                else:
                    parts[-1] = (role, [])
                continue
            parts[-1][1].extend(self.node(node))
        messages = []
        for role, pieces in parts:
            if _has_text(pieces):
                messages.append((role, template_source(pieces)))
        return messages

    def role(self, node: _Mustache) -> str | None:
        if len(node.params) < 1 or node.params[0][0] not in "\"'":
            self.problems.append((node.line, f"{node.raw}: the role must be a quoted name"))
            return None
        name = node.params[0][1:-1]
        if len(node.params) > 1:
            self.notes.append(f"line {node.line}: role metadata in {node.raw} is not carried over")
        role = _ROLES.get(name)
        if role is None:
            self.problems.append(
                (
                    node.line,
                    f"{node.raw}: role {name!r} is not converted "
                    "(promptlib roles: system, user, assistant)",
                )
            )
        return role

    def program(self, program: _Program | None) -> list[Piece]:
        pieces: list[Piece] = []
        for node in program.body if program is not None else []:
            pieces.extend(self.node(node))
        return pieces

    def node(self, node: Any) -> list[Piece]:
        if isinstance(node, _Content):
            return [Text(node.value)]
        if isinstance(node, _Standalone):
            if node.partial is not None:
                self.problems.append(
                    (node.line, f"partial {node.partial} is not converted: paste its text in")
                )
            return []
        if isinstance(node, _Mustache):
            return self.mustache(node)
        return self.block(node)

    def mustache(self, node: _Mustache) -> list[Piece]:
        if node.path is None:
            self.problems.append((node.line, f"{node.raw}: printing a literal is not converted"))
            return []
        if node.params or node.has_hash or node.path in ("history", "json", "media", "section"):
            self.problems.append((node.line, _helper_problem(node)))
            return []
        expr = self.path(node.path, node.line)
        if expr is None:
            return []
        top = self.top_level(node.path)
        if top is not None and self.optional(top):
            # Handlebars prints a missing value as nothing; promptlib refuses to print it.
            expr = f"{expr} | default('')" if expr == top else f"{expr} if {top} else ''"
        return [Expr(expr)]

    def block(self, block: _Block) -> list[Piece]:
        if block.inverted:
            self.problems.append(
                (
                    block.line,
                    f"inverted sections {{{{^{block.helper}}}}} are not converted: "
                    "use {{#unless}}",
                )
            )
            return []
        if block.unsupported:
            self.problems.append(
                (block.line, f"{{{{#{block.helper}}}}}: {block.unsupported} are not converted")
            )
            return []
        if block.helper in ("if", "unless", "ifEquals", "unlessEquals"):
            return self.conditional(block)
        if block.helper == "each":
            return self.each(block)
        self.problems.append((block.line, _block_problem(block.helper)))
        return []

    def condition(self, block: _Block) -> str | None:
        wanted = 2 if block.helper in ("ifEquals", "unlessEquals") else 1
        if len(block.params) != wanted:
            self.problems.append(
                (block.line, f"{{{{#{block.helper}}}}} takes {wanted} argument(s)")
            )
            return None
        values = [self.value(p, block.line, test=wanted == 1) for p in block.params]
        if any(v is None for v in values):
            return None
        if block.helper == "if":
            return values[0]
        if block.helper == "unless":
            return f"not ({values[0]})" if " " in str(values[0]) else f"not {values[0]}"
        operator = "==" if block.helper == "ifEquals" else "!="
        # A missing value equals nothing in Handlebars; promptlib refuses to compare it.
        sides = [
            f"({v} | default(none))" if _is_path(p) and not self.always_defined(p, str(v)) else v
            for p, v in zip(block.params, values, strict=True)
        ]
        return f"{sides[0]} {operator} {sides[1]}"

    def always_defined(self, path: str, expr: str) -> bool:
        """Whether a path is a required top-level input (or loop data): never undefined."""
        top = self.top_level(path)
        return expr.startswith("loop.") or (expr == top and not self.optional(top))

    def conditional(self, block: _Block) -> list[Piece]:
        test = self.condition(block)
        pieces: list[Piece] = [Stmt(f"if {test}"), *self.program(block.program)]
        inverse = block.inverse
        while inverse is not None and inverse.chained:
            chained = inverse.body[0]
            if chained.helper not in ("if", "unless") or chained.unsupported:
                self.problems.append(
                    (chained.line, f"{{{{else {chained.helper}}}}} is not converted")
                )
                return []
            pieces += [Stmt(f"elif {self.condition(chained)}"), *self.program(chained.program)]
            inverse = chained.inverse
        if inverse is not None:
            pieces += [Stmt("else"), *self.program(inverse)]
        return [*pieces, Stmt("endif")] if test is not None else []

    def each(self, block: _Block) -> list[Piece]:
        if len(block.params) != 1 or not _is_path(block.params[0]):
            self.problems.append((block.line, "{{#each}} takes one list"))
            return []
        iterable = self.path(block.params[0], block.line)
        if iterable is None:
            return []
        top = self.top_level(block.params[0])
        spec = self.declared.get(top) if top is not None else None
        if spec is not None and spec.type == "object":
            self.problems.append(
                (block.line, f"{{{{#each {block.params[0]}}}}}: objects (@key) are not converted")
            )
            return []
        if iterable != top or (top is not None and self.optional(top)):
            # A missing list renders no item in Handlebars; promptlib refuses to loop over it.
            iterable = f"{iterable} | default([])"
        name = self.loop_name()
        self.loops.append(name)
        body = self.program(block.program)
        self.loops.pop()
        pieces: list[Piece] = [Stmt(f"for {name} in {iterable}"), *body]
        if block.inverse is not None:
            pieces += [Stmt("else"), *self.program(block.inverse)]
        return [*pieces, Stmt("endfor")]

    def loop_name(self) -> str:
        taken = set(self.declared) | set(self.loops) | self.mentioned
        name, n = "item", 1
        while name in taken:
            n += 1
            name = f"item{n}"
        self.loop_names.add(name)
        return name

    def value(self, word: str, line: int, test: bool) -> str | None:
        if not _is_path(word):
            if word[0] in "\"'":
                return repr(word[1:-1])
            literals = {"true": "true", "false": "false", "null": "none", "undefined": "none"}
            return literals.get(word, word)
        expr = self.path(word, line)
        if expr is None:
            return None
        if test and expr != self.top_level(word) and not expr.startswith("loop."):
            # A missing field is false in Handlebars; promptlib refuses to test it.
            return f"{expr} | default(false)"
        return expr

    def top_level(self, path: str) -> str | None:
        """The top-level variable a path starts from (declared or not), or None."""
        parts = _segments(path)
        if parts is None:
            return None
        depth, names = parts
        if names and names[0] == "@root":
            names = names[1:]
        elif (names and names[0].startswith("@")) or depth < len(self.loops):
            return None
        return names[0] if names else None

    def optional(self, name: str) -> bool:
        """Whether a declared input may be left out with nothing in its place."""
        spec = self.declared.get(name)
        return spec is not None and not spec.required and spec.default is MISSING

    def path(self, path: str, line: int) -> str | None:
        parts = _segments(path)
        if parts is None:
            self.problems.append((line, f"{{{{{path}}}}}: this path form is not converted"))
            return None
        depth, names = parts
        if names and names[0].startswith("@"):
            data = names[0]
            if data == "@root":
                depth, names = len(self.loops), names[1:]
            elif (
                data in ("@index", "@first", "@last")
                and self.loops
                and len(names) == 1
                and depth == 0
            ):
                return {"@index": "loop.index0", "@first": "loop.first", "@last": "loop.last"}[data]
            else:
                self.problems.append((line, f"{{{{{path}}}}}: {data} is not converted here"))
                return None
        if depth > len(self.loops):
            self.problems.append((line, f"{{{{{path}}}}} goes above the top level"))
            return None
        base = self.loops[len(self.loops) - 1 - depth] if depth < len(self.loops) else None
        if base is None:
            if not names:
                self.problems.append(
                    (line, f"{{{{{path}}}}}: `this` at the top level is not converted")
                )
                return None
            reason = input_name_problem(names[0])
            if reason:
                self.problems.append((line, reason))
                return None
            expr, rest = names[0], names[1:]
        else:
            expr, rest = base, names
        for name in rest:
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) and name not in _DICT_ATTRS:
                expr += f".{name}"
            else:
                expr += f"[{name!r}]"
        return expr


def _segments(path: str) -> tuple[int, list[str]] | None:
    """How many ``../`` a path climbs, and its names (``this`` and ``.`` dropped)."""
    if "[" in path or "(" in path:
        return None
    depth = 0
    while path.startswith("../"):
        depth, path = depth + 1, path[3:]
    names = [n for n in re.split(r"[./]", path) if n]
    if path.startswith("this") or path == ".":
        names = [n for n in names[1:] if n] if names and names[0] == "this" else names
    if any(n == ".." for n in names):
        return None
    return depth, names


def _has_text(pieces: Sequence[Piece]) -> bool:
    """Whether a message part can render to more than whitespace (dotprompt drops the rest)."""
    return any(not isinstance(p, Text) or p.value.strip() for p in pieces)


def _helper_problem(node: _Mustache) -> str:
    name = node.path
    if name == "json":
        return (
            f"{node.raw}: {{{{json}}}} is not converted (JSON.stringify's output differs "
            "from Jinja's tojson: key order, spacing, escaping)"
        )
    if name == "media":
        return f"{node.raw}: {{{{media}}}} (image and file parts) is not converted"
    if name == "history":
        return (
            f"{node.raw}: {{{{history}}}} is not converted: promptlib prompts hold no "
            "conversation history"
        )
    if name == "section":
        return f"{node.raw}: {{{{section}}}} is not converted"
    if name == "role":
        return (
            f"{node.raw} inside {{{{#if}}}} or {{{{#each}}}} is not converted: promptlib "
            "messages are fixed; keep roles at the top level"
        )
    return (
        f"{node.raw}: helper {name!r} is not converted (custom helpers have no promptlib "
        "equivalent)"
    )


def _block_problem(helper: str) -> str:
    if helper == "with":
        return "{{#with}} is not converted: write the full paths (a.b) instead"
    return (
        f"block helper {{{{#{helper}}}}} is not converted (custom helpers have no promptlib "
        "equivalent)"
    )


# -- front matter ----------------------------------------------------------------------


def _description(metadata: dict[str, Any], path: Path) -> str:
    value = metadata.get("description")
    if isinstance(value, str) and value.strip():
        return " ".join(value.split())
    return f"Imported from dotprompt {path.name}."


def _settings(metadata: dict[str, Any], draft: Draft) -> None:
    version = metadata.get("version")
    if version is not None:
        from ..errors import VersionError
        from ..versions import parse_version

        try:
            parse_version(str(version))
            draft.version = str(version)
        except VersionError:
            draft.notes.append(
                f"version {version!r}: not a semantic version; the prompt starts at 1.0.0"
            )
    if metadata.get("model"):
        draft.notes.append(
            f"model {metadata['model']!r}: not carried over (choose the model with a "
            "provider in pyproject.toml)"
        )
    if metadata.get("tools"):
        draft.notes.append("tools: not carried over (promptlib prompts declare no tools)")
    config = metadata.get("config")
    if isinstance(config, dict):
        draft.model, notes = model_params(config, _CONFIG, "config")
        draft.notes.extend(notes)
    output = metadata.get("output")
    if isinstance(output, dict):
        fmt = output.get("format")
        schema = output.get("schema")
        if fmt == "json" or (fmt is None and schema is not None):
            draft.output = {"format": "json"}
            if schema is not None:
                try:
                    draft.output["schema"] = picoschema(schema)
                except ValueError as exc:
                    raise ConversionError.one(f"output.schema: {exc}") from None
        elif fmt not in (None, "text"):
            draft.notes.append(
                f"output.format {fmt!r}: not carried over (promptlib outputs are text, json "
                "or label)"
            )
    for key in sorted(
        set(metadata)
        - {
            "name",
            "description",
            "version",
            "model",
            "tools",
            "config",
            "input",
            "output",
            "variant",
        },
        key=str,
    ):
        draft.notes.append(f"{key}: not carried over")


def _inputs(
    spec: Any, problems: list[tuple[int, str]], notes: list[str]
) -> tuple[dict[str, InputDraft], bool]:
    """Inputs from ``input.schema``; the flag says whether the file declares a schema."""
    if not isinstance(spec, dict) or spec.get("schema") is None:
        return {}, False
    try:
        schema = picoschema(spec["schema"])
    except ValueError as exc:
        problems.append((0, f"input.schema: {exc}"))
        return {}, True
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        problems.append((0, "input.schema: the inputs must be an object of named fields"))
        return {}, True
    if schema.get("additionalProperties") not in (None, False):
        notes.append(
            "input.schema: extra inputs (*) are not carried over: promptlib inputs are declared"
        )
    required = set(schema.get("required") or [])
    inputs: dict[str, InputDraft] = {}
    for name, prop in schema["properties"].items():
        reason = input_name_problem(name)
        if reason:
            problems.append((0, f"input.schema: {reason}"))
            continue
        kind, enum = _json_type(prop)
        if kind is None:
            problems.append(
                (
                    0,
                    f"input {name!r}: type 'any' (or a union) is not converted: promptlib inputs "
                    "have one type (string, integer, number, boolean, array, object)",
                )
            )
            continue
        inputs[name] = InputDraft(
            type=kind,
            description=str(prop.get("description") or ""),
            required=name in required,
            enum=enum,
        )
    return inputs, True


def _json_type(prop: dict[str, Any]) -> tuple[str | None, list[Any] | None]:
    if "enum" in prop:
        values = [v for v in prop["enum"] if v is not None]
        found = {type_of_value(v) for v in values}
        if found == {"integer", "number"}:
            found = {"number"}
        return (found.pop() if len(found) == 1 else None), values
    kind = prop.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if k != "null"]
        kind = named[0] if len(named) == 1 else None
    if kind in ("string", "integer", "number", "boolean", "array", "object"):
        return kind, None
    return None, None


def _defaults(spec: Any) -> dict[str, Any]:
    """``input.default``: values dotprompt uses for inputs the caller leaves out."""
    defaults = spec.get("default") if isinstance(spec, dict) else None
    return dict(defaults) if isinstance(defaults, dict) else {}


# -- Picoschema ------------------------------------------------------------------------

_SCALARS = ("any", "boolean", "integer", "null", "number", "string")


def _description_of(text: str) -> tuple[str, str | None]:
    if "," not in text:
        return text, None
    match = re.match(r"(.*?), *(.*)$", text, re.S)
    return (match.group(1), match.group(2)) if match else (text, None)


def picoschema(schema: Any) -> dict[str, Any]:
    """Picoschema (or JSON Schema) as JSON Schema, as dotprompt's ``picoschema.ts`` does.

    Named schemas cannot be resolved here: they raise ``ValueError``.
    """
    if isinstance(schema, str):
        return _scalar(schema)
    if isinstance(schema, dict) and schema.get("type") in (*_SCALARS, "object", "array"):
        return schema
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return {**schema, "type": "object"}
    return _pico(schema)


def _scalar(text: str) -> dict[str, Any]:
    kind, description = _description_of(text)
    if kind not in _SCALARS:
        raise ValueError(f"named schema {kind!r} is not converted: write its fields out")
    out: dict[str, Any] = {} if kind == "any" else {"type": kind}
    if description:
        out["description"] = description
    return out


def _pico(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return _scalar(value)
    if not isinstance(value, dict):
        raise ValueError(f"Picoschema holds objects and strings, not {value!r}")
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
    for key, item in value.items():
        if key == "(*)":
            schema["additionalProperties"] = _pico(item)
            continue
        name, _paren, type_info = str(key).partition("(")
        optional = name.endswith("?")
        name = name[:-1] if optional else name
        if not optional:
            schema["required"].append(name)
        if not type_info:
            prop = dict(_pico(item))
            if optional and isinstance(prop.get("type"), str):
                prop["type"] = [prop["type"], "null"]
        else:
            kind, description = _description_of(type_info[:-1])
            if kind == "array":
                prop = {"type": ["array", "null"] if optional else "array", "items": _pico(item)}
            elif kind == "object":
                prop = dict(_pico(item))
                if optional:
                    prop["type"] = [prop["type"], "null"]
            elif kind == "enum":
                values = list(item) if isinstance(item, list) else []
                if optional and None not in values:
                    values.append(None)
                prop = {"enum": values}
            else:
                raise ValueError(f"parenthetical types are object, array or enum, not {kind!r}")
            if description:
                prop["description"] = description
        schema["properties"][name] = prop
    if not schema["required"]:
        del schema["required"]
    return schema
