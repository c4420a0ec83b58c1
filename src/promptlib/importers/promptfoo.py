"""promptfoo prompts: prompt files and the ``prompts:`` of a ``promptfooconfig.yaml``.

What promptfoo does, and so what a converted prompt renders (promptfoo's
``src/prompts/processors`` and ``renderPrompt``):

* ``.txt``: the file is split at lines that are ``---`` alone; each part, trimmed, is one
  prompt (``name_1``, ``name_2``, ... when there are several).
* ``.j2`` and ``.njk``: the whole file, as written, is one prompt.
* ``.json``: a chat array (``[{"role": ..., "content": ...}]``); each ``content`` string is
  a template rendered on its own, so each becomes one message.
* ``promptfooconfig.yaml``: each entry of ``prompts:`` (a string template, ``file://`` path
  or glob, or a mapping with ``raw``/``id`` and ``label``) is converted as above; an
  inline string that parses as a JSON chat array is a chat prompt. The ``vars`` of
  ``tests:`` (with ``defaultTest``) that fit a prompt's inputs become its examples.

Templates are Nunjucks, rendered with autoescape off and no trim/lstrip of block lines.
The subset that converts: variables and attribute/item access, ``{% if %}``/``{% elif %}``
(and ``elseif``)/``{% else %}``, ``{% for x in xs %}`` with ``loop.*`` and ``{% else %}``,
``{% set %}``, comments, ``{% raw %}``, ``-`` whitespace control, operators and the filters
and tests whose results are the same in Jinja (``NUNJUCKS_FILTERS``, ``NUNJUCKS_TESTS``).
Everything else is reported: other tags (``include``, ``macro``, ...), other filters
(``dump``, ``load``, ``title``, ``round``, ...), function and method calls, the ``env``
global, ``x if c`` without ``else``, object literals with bare keys, ``for k, v in``.

Inputs are not declared in promptfoo: they are inferred from use (``_common.infer_inputs``).
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jinja2 import nodes

from ._common import (
    ConversionError,
    Draft,
    Expr,
    InputDraft,
    Piece,
    Stmt,
    filters_and_tests,
    infer_inputs,
    input_name_problem,
    jinja_pieces,
    normalise_newlines,
    parse_expression,
    parse_template,
    read_source,
    template_source,
)

__all__ = ["NUNJUCKS_FILTERS", "NUNJUCKS_TESTS", "SUFFIXES", "convert", "discover"]

PROMPT_SUFFIXES = (".txt", ".json", ".j2", ".njk")
CONFIG_NAMES = ("promptfooconfig.yaml", "promptfooconfig.yml")
SUFFIXES = (*PROMPT_SUFFIXES, ".yaml", ".yml")

# Filters that give the same text in Nunjucks and Jinja for strings and lists.
NUNJUCKS_FILTERS = frozenset(
    {"capitalize", "d", "default", "first", "join", "last", "length", "list", "lower",
     "reject", "rejectattr", "replace", "reverse", "safe", "select", "selectattr", "sort",
     "trim", "upper", "wordcount"}
)  # fmt: skip
NUNJUCKS_TESTS = frozenset(
    {"defined", "divisibleby", "eq", "equalto", "even", "ge", "greaterthan", "gt",
     "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "odd", "string",
     "undefined", "upper"}
)  # fmt: skip
_STATEMENTS = frozenset({"if", "elif", "elseif", "else", "endif", "for", "endfor", "set", "endset"})
_RAW = re.compile(r"{%-?\s*raw\s*[-+]?%}")


def discover(folder: Path) -> list[Path]:
    """The sources in a folder: its promptfoo configs when it has any, else prompt files."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder))
    configs = [p for p in files if p.name in CONFIG_NAMES]
    return configs or [p for p in files if p.suffix in PROMPT_SUFFIXES]


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(base).parts)


def convert(path: Path) -> list[Draft]:
    """The prompts of one promptfoo prompt file or config."""
    if path.suffix in (".yaml", ".yml"):
        return _config(path)
    if path.suffix not in PROMPT_SUFFIXES:
        raise ConversionError.one(
            f"promptfoo prompt files are {', '.join(PROMPT_SUFFIXES)} or a promptfooconfig.yaml; "
            f"{path.suffix or 'a file without a suffix'} is not converted"
        )
    return _prompt_file(path, path.stem)


def _prompt_file(path: Path, name: str, label: str | None = None) -> list[Draft]:
    text = read_source(path)
    where = path.name
    if path.suffix == ".json":
        return [_chat(_json_messages(text), name, f"{where}", label)]
    if path.suffix == ".txt":
        parts = _txt_parts(text)
        if not parts:
            raise ConversionError.one("the file holds no prompt text")
        if len(parts) == 1:
            return [_text(parts[0][1], name, where, label, parts[0][0])]
        return [
            _text(part, f"{name}_{i}", where, label, first)
            for i, (first, part) in enumerate(parts, start=1)
        ]
    if not text.strip():
        raise ConversionError.one("the file holds no prompt text")
    return [_text(text, name, where, label)]


def _txt_parts(text: str) -> list[tuple[int, str]]:
    """promptfoo's split of a .txt file: at lines that are ``---``, each part trimmed."""
    parts: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 1
    for number, line in enumerate([*text.split("\n"), None], start=1):
        if line is None or line.strip() == "---":
            raw = "\n".join(buffer)
            stripped = raw.strip()
            if stripped:
                skipped = raw[: len(raw) - len(raw.lstrip())].count("\n")
                parts.append((start + skipped, stripped))
            buffer = []
            start = number + 1
        else:
            buffer.append(line)
    return parts


def _json_messages(text: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversionError.one(f"not valid JSON: {exc.msg}", exc.lineno) from None
    return _messages_of(data)


def _messages_of(data: Any) -> list[tuple[str, str]]:
    if not isinstance(data, list) or not data:
        raise ConversionError.one(
            'a JSON prompt must be a chat array: [{"role": "system", "content": "..."}, ...]'
        )
    messages: list[tuple[str, str]] = []
    problems: list[tuple[int, str]] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            problems.append((0, f"message {i + 1}: only messages with a text 'content' convert"))
            continue
        role = item.get("role")
        if role not in ("system", "user", "assistant"):
            problems.append(
                (0, f"message {i + 1}: role {role!r} is not one of system, user, assistant")
            )
            continue
        extra = sorted(set(item) - {"role", "content"})
        if extra:
            problems.append((0, f"message {i + 1}: keys {', '.join(extra)} are not converted"))
            continue
        messages.append((role, normalise_newlines(item["content"])))
    if problems:
        raise ConversionError(problems)
    return messages


def _describe(where: str, label: str | None) -> str:
    return (
        f"{label} (imported from promptfoo {where})"
        if label
        else f"Imported from promptfoo {where}."
    )


def _text(source: str, name: str, where: str, label: str | None, line: int = 1) -> Draft:
    template, tree = nunjucks_to_jinja(source, line)
    draft = Draft(name=name, description=_describe(where, label), template=template)
    draft.inputs = _inputs([tree])
    draft.tags = ["imported", "promptfoo"]
    _check_content(draft)
    return draft


def _chat(messages: list[tuple[str, str]], name: str, where: str, label: str | None) -> Draft:
    converted: list[tuple[str, str]] = []
    trees: list[nodes.Template] = []
    problems: list[tuple[int, str]] = []
    for i, (role, content) in enumerate(messages, start=1):
        try:
            template, tree = nunjucks_to_jinja(content, 1)
        except ConversionError as exc:
            problems.extend((0, f"message {i}: {_located(n, r)}") for n, r in exc.problems)
            continue
        converted.append((role, template))
        trees.append(tree)
    if problems:
        raise ConversionError(problems)
    draft = Draft(name=name, description=_describe(where, label), messages=converted)
    draft.inputs = _inputs(trees)
    draft.tags = ["imported", "promptfoo"]
    _check_content(draft)
    return draft


def _located(line: int, reason: str) -> str:
    return f"line {line}: {reason}" if line else reason


def _check_content(draft: Draft) -> None:
    texts = [c for _r, c in draft.messages or []] + ([draft.template] if draft.template else [])
    if any(not text for text in texts):
        raise ConversionError.one(
            "a message or template renders to nothing: promptlib needs text in each one"
        )


def _inputs(trees: Sequence[nodes.Template]) -> dict[str, InputDraft]:
    inputs = infer_inputs(trees)
    problems = [(0, p) for p in map(input_name_problem, inputs) if p]
    if problems:
        raise ConversionError(problems)
    return inputs


def nunjucks_to_jinja(source: str, first_line: int = 1) -> tuple[str, nodes.Template]:
    """A Nunjucks template as promptlib Jinja (and its AST); every problem reported."""
    problems: list[tuple[int, str]] = []
    offset = first_line - 1
    raw = _RAW.search(source)
    if raw is not None:
        problems.append(
            (
                source[: raw.start()].count("\n") + 1 + offset,
                "{% raw %} is not converted: promptfoo renders a prompt's output a second "
                "time, so the text inside it is a template after all",
            )
        )
    try:
        located = jinja_pieces(source)
    except ConversionError as exc:
        raise ConversionError([(n + offset, r) for n, r in exc.problems]) from None
    pieces: list[Piece] = []
    for line, piece in located:
        line += offset
        if isinstance(piece, Stmt):
            keyword = piece.source.split(None, 1)[0] if piece.source else ""
            if keyword not in _STATEMENTS:
                problems.append((line, _tag_problem(keyword)))
                continue
            if keyword == "elseif":
                piece = Stmt("elif" + piece.source[len("elseif") :])
        if isinstance(piece, Expr | Stmt):
            try:
                tree = parse_expression(piece, line)
            except ConversionError as exc:
                problems.extend(exc.problems)
                continue
            if tree is not None:
                problems.extend((line, reason) for reason in _expression_problems(tree))
        pieces.append(piece)
    if problems:
        raise ConversionError(problems)
    template = template_source(pieces)
    tree = parse_template(template)
    return template, tree


def _tag_problem(keyword: str) -> str:
    if keyword in ("include", "extends", "import", "from", "block"):
        return (
            f"{{% {keyword} %}} is not converted: paste the other template's text in, "
            "or move shared text to prompts/_partials/ after importing"
        )
    return f"{{% {keyword} %}} is not converted: promptlib imports only if, for and set"


def _expression_problems(tree: nodes.Template) -> list[str]:
    problems: list[str] = []
    filters, tests = filters_and_tests(tree)
    for name in sorted(filters - NUNJUCKS_FILTERS):
        problems.append(
            f"filter {name!r} is not converted: Jinja's {name!r} differs from Nunjucks' or "
            "does not exist (convertible filters: " + ", ".join(sorted(NUNJUCKS_FILTERS)) + ")"
        )
    for name in sorted(tests - NUNJUCKS_TESTS):
        problems.append(f"test {name!r} is not converted: Jinja's differs from Nunjucks'")
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == "range"):
            problems.append(
                "function and method calls are not converted (Nunjucks calls JavaScript "
                "methods, promptlib Python ones): use a filter"
            )
    for variable in tree.find_all(nodes.Name):
        if variable.name == "env":
            problems.append(
                "promptfoo's `env` variables are not converted: pass the value as a variable"
            )
    for cond in tree.find_all(nodes.CondExpr):
        if cond.expr2 is None:
            problems.append("`a if c` without `else` is not converted: add `else ''`")
    for item in tree.find_all(nodes.Pair):
        if isinstance(item.key, nodes.Name):
            problems.append(
                "object literal keys are names in Nunjucks but variables in Jinja: quote them"
            )
    for loop in tree.find_all(nodes.For):
        if isinstance(loop.target, nodes.Tuple):
            problems.append(
                "`for a, b in x` is not converted: Nunjucks iterates an object's keys and "
                "values, Jinja a dict's keys; loop over a list instead"
            )
    for attr in tree.find_all(nodes.Getattr):
        if attr.attr == "length":
            problems.append("`.length` is JavaScript: write `| length`")
    return problems


# -- promptfooconfig.yaml ----------------------------------------------------------------


def _config(path: Path) -> list[Draft]:
    text = read_source(path)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConversionError.one(f"malformed YAML: {reason}", line) from None
    if not isinstance(config, dict) or "prompts" not in config:
        raise ConversionError.one(
            "not a promptfoo config: it has no `prompts:` (YAML prompt files are not converted)"
        )
    entries = config["prompts"]
    if isinstance(entries, str | dict) and not (isinstance(entries, dict) and _is_entry(entries)):
        entries = (
            [entries]
            if isinstance(entries, str)
            else [{"id": k, "label": v} for k, v in entries.items()]
        )
    if not isinstance(entries, list) or not entries:
        raise ConversionError.one("`prompts:` must be a list of prompts")
    drafts: list[Draft] = []
    problems: list[tuple[int, str]] = []
    for number, entry in enumerate(entries, start=1):
        where = f"prompts[{number - 1}]"
        try:
            drafts.extend(_entry(path, entry, number, len(entries)))
        except ConversionError as exc:
            problems.extend((0, f"{where}: {_located(n, r)}") for n, r in exc.problems)
    if problems:
        raise ConversionError(problems)
    notes = [
        f"{key}: not carried over (providers and evaluations are configured in "
        "pyproject.toml and evals/suites/)"
        for key in ("providers", "scenarios", "nunjucksFilters")
        if key in config
    ]
    if "tests" in config:
        notes.append("tests: their vars became examples; assertions are not carried over")
    examples = _examples(config)
    for draft in drafts:
        draft.notes.extend(notes)
        _add_examples(draft, examples)
    return drafts


def _is_entry(entry: dict[str, Any]) -> bool:
    return "raw" in entry or "id" in entry


def _entry(config: Path, entry: Any, number: int, count: int) -> list[Draft]:
    label: str | None = None
    if isinstance(entry, dict):
        label = entry.get("label") if isinstance(entry.get("label"), str) else None
        raw = entry.get("raw", entry.get("id"))
        extra = sorted(set(entry) - {"raw", "id", "label"})
        if not isinstance(raw, str):
            raise ConversionError.one("a prompt entry needs `raw` or `id` text")
    elif isinstance(entry, str):
        raw = entry
        extra = []
    else:
        raise ConversionError.one("a prompt entry is a string or a mapping with `raw` or `id`")
    if raw.startswith("file://"):
        drafts = _file_entry(config, raw[len("file://") :], label)
    else:
        name = label or (config.stem if count == 1 else f"{config.stem}_{number}")
        text = normalise_newlines(raw)
        drafts = [_inline(text, name, f"{config.name} prompt {number}", label)]
    for draft in drafts:
        draft.notes.extend(f"{key}: not carried over" for key in extra)
    return drafts


def _inline(text: str, name: str, where: str, label: str | None) -> Draft:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list):
        return _chat(_messages_of(data), name, where, label)
    if not text.strip():
        raise ConversionError.one("the prompt is empty")
    return _text(text, name, where, label)


def _file_entry(config: Path, reference: str, label: str | None) -> list[Draft]:
    reference, _sep, function = reference.partition(":")
    if function:
        raise ConversionError.one(
            f"file://{reference}:{function}: prompt functions are not converted"
        )
    pattern = config.parent / reference
    matches = (
        sorted(Path(p) for p in glob.glob(str(pattern), recursive=True))
        if glob.has_magic(reference)
        else [pattern]
    )
    drafts: list[Draft] = []
    for match in matches:
        if match.suffix not in PROMPT_SUFFIXES:
            raise ConversionError.one(
                f"file://{reference}: {match.suffix or 'this'} prompt files are not converted "
                f"(only {', '.join(PROMPT_SUFFIXES)})"
            )
        if not match.is_file():
            raise ConversionError.one(f"file://{reference}: no such file next to {config.name}")
        drafts.extend(
            _prompt_file(match, label if len(matches) == 1 and label else match.stem, label)
        )
    if not drafts:
        raise ConversionError.one(f"file://{reference}: no file matches")
    return drafts


def _examples(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Variable sets of the config's tests (``defaultTest`` vars under each), in order."""
    default = config.get("defaultTest")
    base = default.get("vars") if isinstance(default, dict) else None
    base = base if isinstance(base, dict) else {}
    tests = config.get("tests")
    found: list[dict[str, Any]] = []
    for test in tests if isinstance(tests, list) else []:
        values = test.get("vars") if isinstance(test, dict) else None
        if isinstance(values, dict):
            found.append({**base, **values})
    return found


def _add_examples(draft: Draft, candidates: list[dict[str, Any]]) -> None:
    """Up to three test variable sets that are plain values and fit the inputs."""
    from ..library.model import InputSpec
    from ..library.prompt import check_inputs

    specs = {n: InputSpec.model_validate(s.to_data()) for n, s in draft.inputs.items()}
    for values in candidates:
        chosen = {k: v for k, v in values.items() if k in specs}
        # promptfoo reads `file://` values from files and makes one test per item of a
        # list value: neither is the value the template sees.
        if any(
            isinstance(v, list) or (isinstance(v, str) and v.startswith("file://"))
            for v in chosen.values()
        ):
            continue
        _variables, problems = check_inputs(specs, chosen)
        if not problems and chosen and chosen not in draft.examples:
            draft.examples.append(chosen)
        if len(draft.examples) == 3:
            return
