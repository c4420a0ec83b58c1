"""Prompty files (``.prompty``): YAML front matter and a Jinja body with role markers.

What Prompty does (the Python runtime, ``prompty`` 0.1: ``utils.parse``,
``Jinja2Renderer``, ``PromptyChatParser``), and so what a converted prompt renders:

* The front matter is the text between the first two ``---`` (or ``+++``); the body is
  everything after, leading whitespace removed.
* The body is rendered by Jinja with its defaults (no trim/lstrip of block lines, one
  final newline dropped), then split into lines; a line that is only a role
  (``system:``, ``user:``, ``assistant:``, any case, optionally ``# user:``) starts a
  message, and the lines before the first one are a system message. A message is its
  lines joined with ``\\n``: the blank line before the next role stays in the content.

So each part between role lines becomes one message whose Jinja is the part's text; role
lines must be plain text outside any ``{% if %}``/``{% for %}``. Front matter:
``description`` (else ``name``), ``version``, ``tags``; ``inputs`` with ``type`` (or
``kind``), ``description``, ``default``, ``required: false``, ``sample`` (or the short
form ``name: sample``) -> typed inputs (optional inputs without a default get the empty
value of their type, as Prompty renders a missing input as empty); ``sample`` -> an
example; ``model.parameters`` (or ``options``) -> ``model`` where promptlib has the
parameter, ``response_format`` -> ``output``. Variables the body uses that ``inputs``
does not declare are inferred as promptfoo's are.

Not converted (reported): Mustache templates, ``base`` inheritance, ``tools``/``function``
roles, ``![thread]``, markdown images (image parts), role lines made by the template,
``{% include %}``/``{% import %}``/``{% extends %}``. Not carried over (noted): the model
connection and API, other parameters, ``outputs``, role attributes (``user[name="x"]:``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import nodes

from ._common import (
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
    input_type,
    jinja_pieces,
    model_params,
    parse_expression,
    parse_template,
    read_source,
    template_source,
    type_of_value,
)

__all__ = ["SUFFIXES", "convert", "discover"]

SUFFIXES = (".prompty",)

# Prompty's own expressions (utils._yaml_regex, PromptyChatParser.parse).
_FRONT_MATTER = re.compile(r"^\s*(?:---|\+\+\+)(.*?)(?:---|\+\+\+)\s*(.+)$", re.S | re.M)
_ROLES = ("assistant", "function", "system", "user", "tools")
_BOUNDARY = re.compile(
    r"(?i)^\s*#?\s*("
    + "|".join(_ROLES)
    + r")(\[((\w+)*\s*=\s*\"?([^\"]*)\"?\s*(,?)\s*)+\])?\s*:\s*$"
)
_DYNAMIC_ROLE = re.compile(r"^\s*#?\s*\{\{.*\}\}\s*(\[.*\])?\s*:\s*$")
_IMAGE = re.compile(r"!\[[^\]]*\]\(")
# The line breaks str.splitlines() knows: Prompty splits the rendered text with it.
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_NOT_IMPORTED = ("include", "import", "from", "extends", "block")
_REMOVED_GLOBALS = ("lipsum", "cycler", "joiner")
_EMPTY = {"string": "", "array": [], "object": {}, "boolean": False}
_KNOWN = frozenset(
    {"name", "description", "version", "authors", "tags", "metadata", "model", "inputs",
     "outputs", "sample", "template", "tools", "base", "id"}
)  # fmt: skip


def discover(folder: Path) -> list[Path]:
    """Every ``.prompty`` file under ``folder`` (hidden and ``_`` folders skipped)."""
    return discover_files(folder, "*.prompty")


def convert(path: Path) -> list[Draft]:
    """The prompt of one ``.prompty`` file."""
    text = read_source(path, lambda raw: _LINE_BREAKS.sub("\n", raw))
    match = _FRONT_MATTER.search(text)
    if match is None:
        raise ConversionError.one(
            "no front matter: a .prompty file starts with --- and YAML settings, then --- "
            "and the prompt"
        )
    attributes = _front_matter(match.group(1), text[: match.start(1)].count("\n") + 1)
    notes: list[str] = []
    problems: list[tuple[int, str]] = []
    _check_settings(attributes, problems, notes)
    body_line = text[: match.start(2)].count("\n") + 1
    messages, trees = _messages(match.group(2), body_line, problems, notes)
    declared, example = _inputs(attributes.get("inputs"), problems, notes)
    if problems:
        raise ConversionError(problems)
    inputs = dict(declared)
    inferred = infer_inputs(trees, skip=declared)
    for name in inferred:
        reason = input_name_problem(name)
        if reason:
            problems.append((0, reason))
    if problems:
        raise ConversionError(problems)
    if inferred:
        notes.append(
            "inputs " + ", ".join(sorted(inferred)) + ": used by the template but not declared; "
            "their types were inferred from how they are used"
        )
    inputs.update(inferred)
    draft = Draft(
        name=path.stem,
        description=_description(attributes, path),
        inputs=inputs,
        messages=messages,
        tags=["imported", "prompty", *_tags(attributes)],
        notes=notes,
    )
    _version(attributes, draft)
    _model(attributes.get("model"), draft)
    _examples(attributes.get("sample"), example, draft)
    return [draft]


def _front_matter(source: str, line: int) -> dict[str, Any]:
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        where = line + mark.line if mark is not None else line
        raise ConversionError.one(f"malformed front matter: {reason}", where) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConversionError.one("malformed front matter: it must be a mapping of settings", line)
    return data


def _check_settings(
    attributes: dict[str, Any], problems: list[tuple[int, str]], notes: list[str]
) -> None:
    template = attributes.get("template")
    kind = template.get("format", template.get("type")) if isinstance(template, dict) else template
    if kind not in (None, "jinja2", "jinja"):
        problems.append((0, f"template format {kind!r} is not converted: only Jinja2 bodies are"))
    parser = template.get("parser") if isinstance(template, dict) else None
    if parser not in (None, "prompty"):
        problems.append((0, f"template parser {parser!r} is not converted"))
    if "base" in attributes:
        problems.append(
            (0, "`base` (inheriting another .prompty) is not converted: merge the files first")
        )
    if attributes.get("tools"):
        notes.append("tools: not carried over (promptlib prompts declare no tools)")
    if attributes.get("outputs"):
        notes.append("outputs: not carried over (write an output schema by hand if you need one)")
    for key in sorted(set(attributes) - _KNOWN, key=str):
        notes.append(f"{key}: not carried over")


def _messages(
    body: str, first_line: int, problems: list[tuple[int, str]], notes: list[str]
) -> tuple[list[tuple[str, str]], list[nodes.Template]]:
    # Jinja (keep_trailing_newline off) drops one final newline before Prompty splits lines.
    source = body[:-1] if body.endswith("\n") else body
    parts: list[tuple[str, int, list[str]]] = []
    role, start = "system", first_line
    lines: list[str] = []
    for offset, line in enumerate(source.split("\n")):
        number = first_line + offset
        boundary = _BOUNDARY.match(line)
        if line.strip().startswith("![thread]"):
            problems.append((number, "![thread] (a conversation thread) is not converted"))
        elif boundary:
            if lines:
                parts.append((role, start, lines))
            role, start, lines = boundary.group(1).lower(), number + 1, []
            if "[" in line:
                notes.append(
                    f"line {number}: role attributes {line.strip()!r} are not carried over"
                )
        elif _DYNAMIC_ROLE.match(line):
            problems.append(
                (
                    number,
                    f"role line {line.strip()!r} is produced by the template: promptlib "
                    "messages have fixed roles; write each message with its own role line",
                )
            )
        else:
            lines.append(line)
    if lines:
        parts.append((role, start, lines))
    messages: list[tuple[str, str]] = []
    trees: list[nodes.Template] = []
    for index, (role, start, lines) in enumerate(parts):
        last = index == len(parts) - 1
        converted = _message(role, start, "\n".join(lines), last, problems)
        if converted is not None:
            messages.append((role, converted[0]))
            trees.append(converted[1])
    if not messages and not problems:
        problems.append((first_line, "the prompt has no text"))
    return messages, trees


def _message(
    role: str, line: int, text: str, last: bool, problems: list[tuple[int, str]]
) -> tuple[str, nodes.Template] | None:
    if role in ("tools", "function"):
        problems.append(
            (
                line - 1,
                f"the {role!r} role is not converted: promptlib messages are system, user "
                "or assistant",
            )
        )
        return None
    found = len(problems)
    if _IMAGE.search(text):
        problems.append((line, "markdown images (image parts) are not converted"))
    if text.lstrip().startswith(("{%-", "{{-", "{#-")) or text.rstrip().endswith(
        ("-%}", "-}}", "-#}")
    ):
        problems.append(
            (
                line,
                "`-` whitespace control next to a role line joins it to the text: remove the `-`",
            )
        )
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        message = exc.message or ""
        if "Unexpected end of template" in message or "Encountered unknown tag 'end" in message:
            problems.append(
                (
                    line,
                    "a role line inside {% if %} or {% for %}: promptlib messages are fixed; "
                    "keep role lines outside blocks",
                )
            )
        else:
            problems.append((line + exc.lineno - 1, f"template syntax error: {message}"))
        return None
    pieces = _pieces(text, line, problems)
    if len(problems) > found:
        return None
    if last:
        # Prompty's splitlines() drops the rendered text's final newline.
        if pieces and isinstance(pieces[-1], Text) and pieces[-1].value.endswith("\n"):
            pieces[-1] = Text(pieces[-1].value[:-1])
        elif pieces and isinstance(pieces[-1], Stmt):
            pieces = [
                Stmt("set _content"),
                *pieces,
                Stmt("endset"),
                Expr("_content[:-1] if _content.endswith('\\n') else _content"),
            ]
        if all(isinstance(p, Text) and not p.value for p in pieces):
            return None  # no line left: Prompty makes no message
    source = template_source(pieces)
    if not source:
        problems.append((line, f"the {role} message is empty: remove its role line or add text"))
        return None
    return source, parse_template(source)


def _pieces(text: str, line: int, problems: list[tuple[int, str]]) -> list[Piece]:
    try:
        located = jinja_pieces(text)
    except ConversionError as exc:
        problems.extend((line + n - 1, r) for n, r in exc.problems)
        return []
    pieces: list[Piece] = []
    for number, piece in located:
        number += line - 1
        if isinstance(piece, Stmt):
            keyword = piece.source.split(None, 1)[0] if piece.source else ""
            if keyword in _NOT_IMPORTED:
                problems.append(
                    (
                        number,
                        f"{{% {keyword} %}} is not converted: paste the other template's text in",
                    )
                )
                continue
        if isinstance(piece, Expr | Stmt):
            try:
                tree = parse_expression(piece, number)
            except ConversionError as exc:
                problems.extend(exc.problems)
                continue
            for name in tree.find_all(nodes.Name) if tree is not None else ():
                if name.name in _REMOVED_GLOBALS:
                    problems.append(
                        (number, f"{name.name}() is not available in promptlib templates")
                    )
        pieces.append(piece)
    return pieces


def _inputs(
    declared: Any, problems: list[tuple[int, str]], notes: list[str]
) -> tuple[dict[str, InputDraft], dict[str, Any]]:
    """Typed inputs, and the sample values they declare."""
    if declared is None:
        return {}, {}
    if isinstance(declared, list):
        items = [(item.get("name"), item) for item in declared if isinstance(item, dict)]
        if len(items) != len(declared):
            problems.append((0, "inputs: each item of a list of inputs is a mapping with a name"))
    elif isinstance(declared, dict):
        items = list(declared.items())
    else:
        problems.append((0, "inputs: must be a mapping of input names"))
        return {}, {}
    inputs: dict[str, InputDraft] = {}
    samples: dict[str, Any] = {}
    for name, spec in items:
        if not isinstance(name, str) or input_name_problem(name):
            problems.append((0, input_name_problem(str(name)) or "inputs: an input needs a name"))
            continue
        if not isinstance(spec, dict):
            spec = {"sample": spec}  # the short form: name: sample value
        kind = input_type(spec.get("type", spec.get("kind")))
        for source in ("sample", "default"):
            if kind is None and spec.get(source) is not None:
                kind = type_of_value(spec[source])
        if kind is None:
            problems.append(
                (
                    0,
                    f"input {name!r}: type {spec.get('type', spec.get('kind'))!r} is not one of "
                    "string, integer, number, boolean, array, object",
                )
            )
            continue
        item = InputDraft(type=kind, description=str(spec.get("description") or ""))
        if "default" in spec:
            item.required, item.default = False, spec["default"]
        elif spec.get("required") is False:
            item.required = False
            if kind in _EMPTY:
                item.default = _EMPTY[kind]
                notes.append(
                    f"input {name!r}: optional with no default; it defaults to "
                    f"{_EMPTY[kind]!r}, which is how Prompty renders a missing value"
                )
        inputs[name] = item
        if "sample" in spec:
            samples[name] = spec["sample"]
    return inputs, samples


def _description(attributes: dict[str, Any], path: Path) -> str:
    for key in ("description", "name"):
        value = attributes.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return f"Imported from Prompty {path.name}."


def _tags(attributes: dict[str, Any]) -> list[str]:
    metadata = attributes.get("metadata")
    tags = attributes.get("tags", metadata.get("tags") if isinstance(metadata, dict) else None)
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _version(attributes: dict[str, Any], draft: Draft) -> None:
    value = attributes.get("version")
    if value is None:
        return
    from ..errors import VersionError
    from ..versions import parse_version

    try:
        parse_version(str(value))
    except VersionError:
        draft.notes.append(f"version {value!r}: not a semantic version; the prompt starts at 1.0.0")
        return
    draft.version = str(value)


def _model(model: Any, draft: Draft) -> None:
    if not isinstance(model, dict):
        return
    for key in sorted(set(model) - {"parameters", "options"}):
        draft.notes.append(
            f"model.{key}: not carried over (the model and its connection are a provider's "
            "settings in pyproject.toml)"
        )
    key = "parameters" if "parameters" in model else "options"
    params = model.get(key)
    if not isinstance(params, dict):
        return
    params = dict(params)
    response = params.pop("response_format", None)
    if isinstance(response, dict) and response.get("type") == "json_object":
        draft.output = {"format": "json"}
    elif isinstance(response, dict) and response.get("type") == "json_schema":
        schema = response.get("json_schema", {}).get("schema")
        draft.output = {
            "format": "json",
            **({"schema": schema} if isinstance(schema, dict) else {}),
        }
    elif response is not None:
        draft.notes.append(f"model.{key}.response_format: {response!r} is not carried over")
    draft.model, notes = model_params(params, {}, f"model.{key}")
    draft.notes.extend(notes)


def _examples(sample: Any, declared: dict[str, Any], draft: Draft) -> None:
    values = dict(declared)
    if isinstance(sample, dict):
        values.update(sample)
    elif sample is not None:
        draft.notes.append("sample: only an inline mapping of values becomes an example")
    if not values:
        return
    from ..library.model import InputSpec
    from ..library.prompt import check_inputs

    specs = {n: InputSpec.model_validate(s.to_data()) for n, s in draft.inputs.items()}
    unknown = sorted(set(values) - set(specs))
    chosen = {k: v for k, v in values.items() if k in specs}
    _variables, problems = check_inputs(specs, chosen)
    if problems:
        draft.notes.append("sample: not used as an example (" + "; ".join(problems) + ")")
        return
    if unknown:
        draft.notes.append(f"sample: values {', '.join(unknown)} match no input and were left out")
    draft.examples.append(chosen)
