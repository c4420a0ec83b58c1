"""What the format converters share: drafts, problems, Jinja emission, input inference, ids.

A converter reads one source file and returns ``Draft`` prompts, or raises
``ConversionError`` listing every problem it found (line and reason). It builds each
template as a list of pieces (``Text``, ``Expr``, ``Stmt``) whose text is already what the
source tool renders, with that tool's whitespace rules applied (Handlebars' standalone
lines, Nunjucks' and Jinja's ``-`` markers). ``template_source`` then writes the pieces as
promptlib Jinja that renders to exactly that text under promptlib's pinned options:
``trim_blocks`` and ``lstrip_blocks`` are switched off tag by tag with ``+`` where they
would remove text, and the one final newline promptlib drops is written twice.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from ..library.model import INPUT_TYPES, RESERVED_INPUT_NAMES

__all__ = [
    "MISSING",
    "ConversionError",
    "Draft",
    "Expr",
    "InputDraft",
    "Piece",
    "Stmt",
    "Text",
    "emit",
    "filters_and_tests",
    "id_segment",
    "infer_inputs",
    "input_name_problem",
    "input_type",
    "jinja_pieces",
    "model_params",
    "normalise_newlines",
    "parse_expression",
    "parse_template",
    "template_source",
    "type_of_value",
]


class _Missing:
    """The absence of a default (``None`` is a valid default)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class ConversionError(Exception):
    """A source file cannot be converted; ``problems`` holds (line, reason) pairs.

    Line 0 means the file as a whole. Reasons say what to change in the source.
    """

    def __init__(self, problems: Sequence[tuple[int, str]]) -> None:
        self.problems = tuple(sorted(set(problems)))
        super().__init__("; ".join(f"line {n}: {r}" if n else r for n, r in self.problems))

    @classmethod
    def one(cls, reason: str, line: int = 0) -> ConversionError:
        return cls([(line, reason)])


@dataclass
class InputDraft:
    """One input of a converted prompt, as it will be written."""

    type: str
    description: str = ""
    required: bool = True
    default: Any = MISSING
    enum: list[Any] | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.description:
            data["description"] = self.description
        if not self.required:
            data["required"] = False
        if self.default is not MISSING:
            data["default"] = self.default
        if self.enum is not None:
            data["enum"] = list(self.enum)
        return data


@dataclass
class Draft:
    """A converted prompt before it gets its id and is written.

    ``name`` is the leaf of the id as the source names it (unsanitised); ``notes`` lists
    what the source says that the prompt file does not carry.
    """

    name: str
    description: str
    inputs: dict[str, InputDraft] = field(default_factory=dict)
    messages: list[tuple[str, str]] | None = None
    template: str | None = None
    version: str = "1.0.0"
    tags: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_data(self, prompt_id: str) -> dict[str, Any]:
        """The prompt file's content, keys in the order the library's files use."""
        data: dict[str, Any] = {
            "id": prompt_id,
            "version": self.version,
            "description": self.description,
        }
        if self.tags:
            data["tags"] = list(self.tags)
        if self.inputs:
            data["inputs"] = {name: spec.to_data() for name, spec in self.inputs.items()}
        if self.messages is not None:
            data["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        else:
            data["template"] = self.template
        if self.model:
            data["model"] = dict(self.model)
        if self.output:
            data["output"] = dict(self.output)
        if self.examples:
            data["examples"] = [{"inputs": dict(e)} for e in self.examples]
        return data


# -- ids -------------------------------------------------------------------------------


def id_segment(name: str) -> str:
    """``name`` as one id segment (``[a-z][a-z0-9_]*``): ``Support FAQ-v2`` -> ``support_faq_v2``.

    camelCase is split (``answerKey`` -> ``answer_key``), accents are dropped, every other
    run of characters becomes ``_``, and a segment that would not start with a letter gets
    ``p_`` in front (``2024-notes`` -> ``p_2024_notes``).
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not text:
        return "prompt"
    return text if text[0].isalpha() else f"p_{text}"


def input_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a promptlib input name, or None when it can."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return (
            f"variable {name!r} cannot be a promptlib input name (letters, digits and "
            "underscores only): rename it in the source"
        )
    if name in RESERVED_INPUT_NAMES:
        return f"variable {name!r} is a word the template language reserves: rename it"
    return None


# -- text ------------------------------------------------------------------------------


def normalise_newlines(text: str) -> str:
    """Every line break as ``\\n``: promptlib renders line breaks as ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_source(path: Path, normalise: Callable[[str], str] = normalise_newlines) -> str:
    """The text of a source file with its line breaks normalised; ``ConversionError`` when
    it cannot be read or is not UTF-8."""
    try:
        return normalise(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConversionError.one("not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise ConversionError.one(f"cannot read the file: {exc.strerror}") from None


def discover_files(folder: Path, pattern: str) -> list[Path]:
    """The files under ``folder`` matching ``pattern``, hidden and ``_`` folders and files
    skipped (partials), sorted."""
    return sorted(
        p
        for p in folder.rglob(pattern)
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    )


# -- Jinja emission --------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Literal text, exactly as the source tool outputs it."""

    value: str


@dataclass(frozen=True)
class Expr:
    """A Jinja expression whose value is printed."""

    source: str


@dataclass(frozen=True)
class Stmt:
    """A Jinja statement without its delimiters: ``if x``, ``else``, ``endfor``."""

    source: str


Piece = Text | Expr | Stmt

_SPACES = re.compile(r"\s+")


def _escape(text: str) -> str:
    """``text`` as Jinja template data: a ``{`` that could open a tag is printed instead.

    A ``{`` at the end is escaped too, since a tag always follows text.
    """
    out: list[str] = []
    for i, char in enumerate(text):
        if char == "{" and (i + 1 == len(text) or text[i + 1] in "{%#"):
            out.append("{{ '{' }}")
        else:
            out.append(char)
    return "".join(out)


def _merged(pieces: Iterable[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, Text):
            if not piece.value:
                continue
            if out and isinstance(out[-1], Text):
                out[-1] = Text(out[-1].value + piece.value)
                continue
        out.append(piece)
    return out


def emit(pieces: Iterable[Piece]) -> str:
    """Jinja source that renders ``pieces`` under ``trim_blocks`` and ``lstrip_blocks``.

    A statement that starts a line is kept alone on it (trim_blocks removes the newline
    written after it); ``{%+`` keeps the indentation before a statement and ``+%}`` the
    newline after it, where the text has them.
    """
    merged = _merged(pieces)
    out: list[str] = []
    line = ""  # what has been written since the last newline

    def add(text: str) -> None:
        nonlocal line
        out.append(text)
        cut = text.rfind("\n")
        line = text[cut + 1 :] if cut >= 0 else line + text

    for i, piece in enumerate(merged):
        following = merged[i + 1] if i + 1 < len(merged) else None
        if isinstance(piece, Text):
            add(_escape(piece.value))
        elif isinstance(piece, Expr):
            add(f"{{{{ {piece.source} }}}}")
        else:
            left = "{%+" if _SPACES.fullmatch(line) else "{%"
            starts_line = line == ""
            if isinstance(following, Text) and following.value.startswith("\n"):
                add(f"{left} {piece.source} +%}}")
            else:
                add(f"{left} {piece.source} %}}")
                if starts_line and following is not None:
                    add("\n")
    return "".join(out)


def template_source(pieces: Iterable[Piece]) -> str:
    """``emit``, plus the newline promptlib drops from the end of a message or template."""
    text = emit(pieces)
    return text + "\n" if text.endswith("\n") else text


# -- reading Jinja-like sources (Nunjucks, Prompty's Jinja) -----------------------------

# Jinja's own lexer with Jinja's defaults (no trim_blocks, no lstrip_blocks), which is how
# Nunjucks and Prompty treat whitespace: `-` markers are applied to the text around them.
_LEXER = jinja2.Environment(keep_trailing_newline=True).lexer
_CLOSING = {"variable_begin": "variable_end", "block_begin": "block_end"}


def jinja_pieces(source: str) -> list[tuple[int, Piece]]:
    """The pieces of a Jinja or Nunjucks template, each with its line; comments dropped.

    ``{% raw %}`` content becomes text. ``-`` whitespace control is already applied to the
    text, as Jinja and Nunjucks apply it.
    """
    try:
        tokens = list(_LEXER.tokeniter(source, None))
    except jinja2.TemplateSyntaxError as exc:
        raise ConversionError.one(f"template syntax error: {exc.message}", exc.lineno) from None
    pieces: list[tuple[int, Piece]] = []
    i = 0
    while i < len(tokens):
        lineno, kind, value = tokens[i]
        if kind == "data":
            pieces.append((lineno, Text(value)))
        elif kind in _CLOSING:
            inner: list[str] = []
            i += 1
            while tokens[i][1] != _CLOSING[kind]:
                inner.append(tokens[i][2])
                i += 1
            text = "".join(inner).strip()
            pieces.append((lineno, Expr(text) if kind == "variable_begin" else Stmt(text)))
        i += 1
    return pieces


_ANALYSIS = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
# How a lone statement is made a whole template, to check it on its own (with its line).
_WRAP = {
    "if": "{{% {0} %}}{{% endif %}}",
    "elif": "{{% if true %}}{{% {0} %}}{{% endif %}}",
    "for": "{{% {0} %}}{{% endfor %}}",
    "set": "{{% {0} %}}{{% endset %}}",
}


def parse_expression(piece: Expr | Stmt, line: int) -> nodes.Template | None:
    """The AST of one expression or statement (None for ``else`` and ``end...``)."""
    if isinstance(piece, Expr):
        source = f"{{{{ {piece.source} }}}}"
    else:
        keyword = piece.source.split(None, 1)[0] if piece.source else ""
        wrap = _WRAP.get(keyword)
        if wrap is None:
            return None
        source = wrap.format(piece.source)
        if keyword == "set" and "=" in piece.source:
            source = f"{{% {piece.source} %}}"
    try:
        return _ANALYSIS.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConversionError.one(f"template syntax error: {exc.message}", line) from None


def parse_template(source: str) -> nodes.Template:
    """The AST of a whole converted template (a syntax error is a converter's problem)."""
    try:
        return _ANALYSIS.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConversionError.one(f"the blocks do not nest: {exc.message}", 0) from None


def filters_and_tests(tree: nodes.Node) -> tuple[set[str], set[str]]:
    """The names of the filters and tests an AST uses."""
    filters = {n.name for n in tree.find_all(nodes.Filter)}
    tests = {n.name for n in tree.find_all(nodes.Test)}
    return filters, tests


# -- inputs ----------------------------------------------------------------------------

# Filters whose argument is a list: a variable they are applied to is an array.
_LIST_FILTERS = frozenset(
    {"join", "first", "last", "sort", "reverse", "select", "reject", "selectattr",
     "rejectattr", "map", "sum", "unique", "batch", "slice", "list", "min", "max"}
)  # fmt: skip


@dataclass
class _Use:
    iterated: bool = False
    looked_into: bool = False
    tested: bool = False
    defaulted: bool = False
    valued: bool = False


def _visit(node: nodes.Node, uses: dict[str, _Use], how: str) -> None:
    if isinstance(node, nodes.Name):
        use = uses.get(node.name)
        if use is not None and node.ctx == "load":
            setattr(use, {"test": "tested", "iter": "iterated"}.get(how, "valued"), True)
        return
    if isinstance(node, nodes.Getattr | nodes.Getitem) and isinstance(node.node, nodes.Name):
        use = uses.get(node.node.name)
        if use is not None:
            use.looked_into = True
        if isinstance(node, nodes.Getitem):
            _visit(node.arg, uses, "value")
        return
    if isinstance(node, nodes.Filter):
        if node.node is not None:
            if node.name in ("default", "d") and isinstance(node.node, nodes.Name):
                use = uses.get(node.node.name)
                if use is not None:
                    use.defaulted = True
                    if how == "iter":
                        use.iterated = True
            else:
                inner = "iter" if node.name in _LIST_FILTERS or how == "iter" else "value"
                _visit(node.node, uses, inner)
        arguments: list[nodes.Node] = [*node.args, *(k.value for k in node.kwargs)]
        for argument in arguments:
            _visit(argument, uses, "value")
        return
    if isinstance(node, nodes.Test) and node.name in ("defined", "undefined"):
        _visit(node.node, uses, "test")
        return
    if isinstance(node, nodes.Not | nodes.And | nodes.Or) and how == "test":
        for child in node.iter_child_nodes():
            _visit(child, uses, "test")
        return
    if isinstance(node, nodes.If | nodes.CondExpr):
        for name, child in node.iter_fields():
            for part in child if isinstance(child, list) else [child]:
                if isinstance(part, nodes.Node):
                    _visit(part, uses, "test" if name == "test" else "value")
        return
    if isinstance(node, nodes.For):
        _visit(node.iter, uses, "iter")
        for statement in [*node.body, *node.else_]:
            _visit(statement, uses, "value")
        if node.test is not None:
            _visit(node.test, uses, "test")
        return
    for child in node.iter_child_nodes():
        _visit(child, uses, "value")


def infer_inputs(
    trees: Sequence[nodes.Template], skip: Iterable[str] = ()
) -> dict[str, InputDraft]:
    """Inputs for the variables the templates read, typed from how they are used.

    Iterated (``for``, ``join``, ...) -> array; looked into (``x.y``) -> object; only tested
    (``if x``) -> an optional boolean; otherwise a string. A variable that is tested or
    given a ``default`` is optional (false when left out, as in the source tools).
    """
    names: set[str] = set()
    for tree in trees:
        names |= meta.find_undeclared_variables(tree)
    names -= {"range", "dict", "namespace", "loop", *skip}
    uses = {name: _Use() for name in sorted(names)}
    for tree in trees:
        _visit(tree, uses, "value")
    inputs: dict[str, InputDraft] = {}
    for name, use in uses.items():
        if use.iterated:
            kind = "array"
        elif use.looked_into:
            kind = "object"
        elif use.tested and not use.valued and not use.defaulted:
            kind = "boolean"
        else:
            kind = "string"
        inputs[name] = InputDraft(type=kind, required=not (use.tested or use.defaulted))
    return inputs


# -- model parameters ------------------------------------------------------------------

_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty",
           "frequency_penalty")  # fmt: skip


def model_params(
    values: Mapping[str, Any], names: Mapping[str, str], where: str
) -> tuple[dict[str, Any], list[str]]:
    """Generation parameters promptlib supports, and notes for the others.

    ``names`` maps the source's parameter names to promptlib's (``maxOutputTokens`` ->
    ``max_tokens``); promptlib's own names are accepted as they are.
    """
    model: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in values.items():
        target = names.get(key, key if key in _PARAMS else None)
        if target is None:
            notes.append(
                f"{where}.{key}: promptlib prompts have no such generation parameter "
                f"(they take {', '.join(_PARAMS)})"
            )
            continue
        if target == "stop" and isinstance(value, str):
            value = [value]
        model[target] = value
    return model, notes


def type_of_value(value: Any) -> str | None:
    """The promptlib input type of a sample value, or None for ``null``."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def input_type(kind: Any) -> str | None:
    """A source's type name as a promptlib input type, or None when there is none."""
    if not isinstance(kind, str):
        return None
    kind = kind.strip().lower()
    aliases = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
               "list": "array", "dict": "object"}  # fmt: skip
    kind = aliases.get(kind, kind)
    return kind if kind in INPUT_TYPES else None
