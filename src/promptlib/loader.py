"""Reading a prompt library from disk, reporting every problem in one pass.

A library is a folder (``prompts/``) of YAML files, one prompt per file, whose path gives
the prompt id (``support/refund.yaml`` -> ``support.refund``), plus shared Jinja snippets
under ``_partials/``. Other folders whose name starts with ``_`` or ``.`` are skipped.

``scan()`` never raises for bad content: it returns the prompts that loaded and a located
``Problem`` for everything wrong (errors) or suspicious (warnings), across all files.
Checks, in order, per file: UTF-8; YAML (duplicate keys, YAML 1.1 coercions, aliases);
the file schema (unknown keys, types, semver); the id against the path; each template
(syntax, includes, sandbox limits); variables used but not declared (errors) and declared
but unused (warnings); the output JSON Schema; and every example, which must pass input
validation and render.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import nodes
from pydantic import BaseModel, ValidationError

from ._yaml import Document, KeyPath, describe_coercion, format_key, read_yaml
from .errors import Problem, RenderError
from .model import ExampleSpec, InputSpec, MessageSpec, ModelParams, OutputSpec, PromptFile
from .prompt import Prompt, check_inputs, check_value
from .render import ParsedTemplate, Renderer, TemplateProblem

__all__ = [
    "PARTIALS_DIR",
    "PROMPT_SUFFIXES",
    "ScanResult",
    "display_path",
    "find_prompt_files",
    "id_for_path",
    "library_root_of",
    "read_partials",
    "scan",
    "scan_paths",
]

PROMPT_SUFFIXES = (".yaml", ".yml")
PARTIALS_DIR = "_partials"

_SEGMENT = "[a-z][a-z0-9_]*"
_SEGMENT_RE = re.compile(_SEGMENT)


@dataclass
class ScanResult:
    """Prompts that loaded, and every problem found (``problems`` are errors)."""

    root: Path
    prompts: dict[str, Prompt] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    partials: dict[str, str] = field(default_factory=dict)
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it is below it, else as is."""
    cwd = Path.cwd()
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def find_prompt_files(root: Path) -> list[Path]:
    """Every prompt file under ``root``, sorted, skipping ``_*`` and ``.*`` folders."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        found.extend(Path(folder, f) for f in sorted(files) if f.endswith(PROMPT_SUFFIXES))
    return found


def read_partials(root: Path) -> tuple[dict[str, str], list[Problem]]:
    """The partials under ``root/_partials``, by name relative to it (``tone/formal.j2``)."""
    base = root / PARTIALS_DIR
    partials: dict[str, str] = {}
    problems: list[Problem] = []
    if not base.is_dir():
        return partials, problems
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder, name)
            try:
                partials[path.relative_to(base).as_posix()] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                problems.append(Problem(display_path(path), 0, "", f"not UTF-8 text: {exc.reason}"))
    return partials, problems


def id_for_path(root: Path, path: Path) -> str | None:
    """The prompt id that ``path`` must hold, or None if the path cannot be an id."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if all(_SEGMENT_RE.fullmatch(part) for part in parts):
        return ".".join(parts)
    return None


# Keys each part of the file format accepts, for "unknown key" messages.
_ALLOWED: dict[str, type[BaseModel]] = {
    "": PromptFile,
    "inputs.*": InputSpec,
    "messages.*": MessageSpec,
    "model": ModelParams,
    "output": OutputSpec,
    "examples.*": ExampleSpec,
}


def _allowed_keys(loc: KeyPath) -> list[str]:

    pattern = ".".join(
        "*" if isinstance(p, int) or (i == 1 and loc[0] == "inputs") else str(p)
        for i, p in enumerate(loc)
    )
    target = _ALLOWED.get(pattern)
    if target is None:
        return []
    cls = target
    return sorted(f.alias or name for name, f in cls.model_fields.items())


class _FileCheck:
    """All checks of one prompt file; problems go to ``self.problems``/``self.warnings``."""

    def __init__(self, path: Path, root: Path, renderer: Renderer) -> None:
        self.path = path
        self.root = root
        self.renderer = renderer
        self.shown = display_path(path)
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.doc = Document()

    def error(self, key: KeyPath, message: str, line: int | None = None) -> None:
        if line is None:
            line = self.doc.line_of(key)
        self.problems.append(Problem(self.shown, line, format_key(key), message))

    def warn(self, key: KeyPath, message: str, line: int | None = None) -> None:
        if line is None:
            line = self.doc.line_of(key)
        self.warnings.append(Problem(self.shown, line, format_key(key), message, "warning"))

    def run(self) -> Prompt | None:
        try:
            text = self.path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems.append(
                Problem(self.shown, 0, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")
            )
            return None
        except OSError as exc:
            self.problems.append(
                Problem(self.shown, 0, "", f"cannot read the file: {exc.strerror}")
            )
            return None
        self.doc = doc = read_yaml(text, self.shown)
        self.problems.extend(doc.problems)
        if doc.data is None:
            return None
        if not isinstance(doc.data, dict):
            self.error((), "a prompt file is a mapping of keys (id, version, description, ...)")
            return None
        expected_id = id_for_path(self.root, self.path)
        if expected_id is None:
            self.error(
                (),
                "the file path cannot be a prompt id: every folder and file name must "
                f"match {_SEGMENT}; rename the file",
                line=1,
            )
        spec = self.validate_schema(doc.data)
        if doc.problems:
            return None
        parsed = self.check_templates(doc.data, spec)
        if spec is None:
            return None
        if expected_id is not None and spec.id != expected_id:
            self.error(
                ("id",),
                f"id {spec.id!r} does not match the file path; "
                f"it must be {expected_id!r} (or move the file)",
            )
        self.check_schema(spec)
        self.check_input_specs(spec)
        if parsed is None or self.problems:
            return None
        prompt = Prompt(spec, renderer=self.renderer, parsed=parsed, path=self.path)
        self.check_examples(prompt)
        return prompt if not self.problems else None

    def validate_schema(self, data: dict[str, Any]) -> PromptFile | None:
        try:
            return PromptFile.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                self.schema_problem(err["loc"], err["type"], err["msg"], err.get("input"))
            return None

    def schema_problem(self, loc: KeyPath, kind: str, msg: str, value: Any) -> None:
        doc = self.doc
        if kind == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(loc[:-1]))
            self.error(
                loc,
                f"unknown key {loc[-1]!r}" + (f"; allowed keys: {allowed}" if allowed else ""),
                line=doc.key_lines.get(loc),
            )
            return
        if kind == "missing":
            self.error(
                loc,
                f"missing required key {loc[-1]!r}",
                line=doc.line_of(loc[:-1]) if loc[:-1] else 1,
            )
            return
        if loc in doc.coerced and kind.endswith("_type"):
            self.error(loc, describe_coercion(doc.coerced[loc], value))
            return
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif kind == "string_pattern_mismatch" and loc == ("id",):
            msg = (
                f"{value!r} is not a valid id: use dotted lowercase segments like 'support.refund'"
            )
        elif value is not None and kind.endswith(("_type", "literal_error", "_parsing")):
            msg = f"{msg}, got {value!r}"
        if (not loc or loc == ("template",)) and "exactly one of" in msg:
            self.error(
                ("template",),
                msg,
                line=doc.key_lines.get(("template",)) or doc.key_lines.get(("messages",)) or 1,
            )
            return
        self.error(loc, msg[0].lower() + msg[1:] if msg[:2].istitle() else msg)

    def sources(self, data: dict[str, Any]) -> list[tuple[KeyPath, str]]:
        """The template texts in the raw data, even when other keys are invalid."""
        out: list[tuple[KeyPath, str]] = []
        messages = data.get("messages")
        if isinstance(messages, list):
            for i, message in enumerate(messages):
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    out.append((("messages", i, "content"), message["content"]))
        if isinstance(data.get("template"), str):
            out.append((("template",), data["template"]))
        return out

    def template_line(self, key: KeyPath, lineno: int) -> int:
        start = self.doc.line_of(key)
        if not lineno:
            return start
        return start + lineno if key in self.doc.block else start + lineno - 1

    def check_templates(
        self, data: dict[str, Any], spec: PromptFile | None
    ) -> list[ParsedTemplate] | None:
        inputs = data.get("inputs")
        declared = set(inputs) if isinstance(inputs, dict) else set()
        parsed: list[ParsedTemplate] = []
        ok = True
        used: set[str] = set()
        for key, source in self.sources(data):
            try:
                item = self.renderer.parse(source)
            except TemplateProblem as exc:
                self.error(key, exc.message, line=self.template_line(key, exc.lineno))
                ok = False
                continue
            parsed.append(item)
            used |= item.variables
            for name in sorted(item.variables - declared):
                lineno = _first_use(item.tree, name)
                self.error(
                    key,
                    f"uses variable {name!r}, which is not declared in inputs",
                    line=self.template_line(key, lineno),
                )
                ok = False
        if ok and spec is not None:
            for name in sorted(declared - used):
                self.warn(
                    ("inputs", name),
                    f"input {name!r} is declared but no template uses it",
                    line=self.doc.key_lines.get(("inputs", name)),
                )
        return parsed if ok else None

    def check_input_specs(self, spec: PromptFile) -> None:
        """Defaults and enum values must themselves be valid values of the input's type."""
        for name, item in spec.inputs.items():
            bare = item.model_copy(update={"enum": None})
            candidates: list[tuple[KeyPath, Any, Any]] = []
            if "default" in item.model_fields_set and item.default is not None:
                candidates.append((("inputs", name, "default"), item.default, item))
            for i, value in enumerate(item.enum or ()):
                candidates.append((("inputs", name, "enum", i), value, bare))
            for key, value, rule in candidates:
                if item.type == "string" and key in self.doc.coerced:
                    self.error(key, describe_coercion(self.doc.coerced[key], value))
                    continue
                problem = check_value(name, rule, value)
                if problem:
                    what = "default" if key[2] == "default" else "enum value"
                    self.error(key, problem.replace(f"input {name!r}: ", f"{what}: ", 1))

    def check_schema(self, spec: PromptFile) -> None:
        if spec.output.json_schema is None:
            return
        import jsonschema

        try:
            jsonschema.validators.validator_for(spec.output.json_schema).check_schema(
                spec.output.json_schema
            )
        except jsonschema.SchemaError as exc:
            where = ("output", "schema", *exc.path)
            self.error(where, f"not a valid JSON Schema: {exc.message}")

    def check_examples(self, prompt: Prompt) -> None:
        if not prompt.examples:
            self.warn(
                (), "no examples: add at least one input set from the prompt's dataset", line=1
            )
        for i, example in enumerate(prompt.examples):
            key: KeyPath = ("examples", i, "inputs")
            coerced = [
                (path, text)
                for path, text in self.doc.coerced.items()
                if path[:3] == key
                and len(path) == 4
                and prompt.inputs.get(str(path[3])) is not None
                and prompt.inputs[str(path[3])].type == "string"
            ]
            if coerced:
                for path, text in coerced:
                    self.error(path, describe_coercion(text, example.inputs[str(path[3])]))
                continue
            _variables, problems = check_inputs(prompt.inputs, example.inputs)
            for problem in problems:
                self.error(key, problem)
            if problems:
                continue
            try:
                prompt.render(**example.inputs)
            except RenderError as exc:
                message = str(exc).removeprefix(f"{prompt.id}: ")
                self.error(("examples", i), f"does not render: {message}")


def _first_use(tree: nodes.Template, name: str) -> int:
    for node in tree.find_all(nodes.Name):
        if node.name == name and node.ctx == "load":
            return int(node.lineno)
    return 0


def scan(root: Path, files: Sequence[Path] | None = None) -> ScanResult:
    """Load the library under ``root`` (or only ``files`` in it), collecting every problem."""
    root = root.resolve()
    result = ScanResult(root=root)
    partials, problems = read_partials(root)
    result.partials = partials
    result.problems.extend(problems)
    renderer = Renderer(partials)
    paths = find_prompt_files(root) if files is None else [Path(f).resolve() for f in files]
    result.files = len(paths)
    owners: dict[str, Path] = {}
    for path in paths:
        check = _FileCheck(path, root, renderer)
        prompt = check.run()
        result.problems.extend(check.problems)
        result.warnings.extend(check.warnings)
        if prompt is None:
            continue
        if prompt.id in owners:
            result.problems.append(
                Problem(
                    check.shown,
                    1,
                    "id",
                    f"id {prompt.id!r} is also defined by {display_path(owners[prompt.id])}",
                )
            )
            continue
        owners[prompt.id] = path
        result.prompts[prompt.id] = prompt
    result.problems.sort()
    result.warnings.sort()
    return result


def library_root_of(path: Path) -> Path:
    """The prompts folder a prompt file belongs to: its nearest ancestor named ``prompts``.

    A file outside any ``prompts`` folder is its own library root's child (its parent).
    """
    for parent in path.resolve().parents:
        if parent.name == "prompts":
            return parent
    return path.resolve().parent


def scan_paths(paths: Sequence[Path]) -> list[ScanResult]:
    """Scan folders whole and files on their own (grouped by library root), in order."""
    results: list[ScanResult] = []
    files_by_root: dict[Path, list[Path]] = {}
    for path in paths:
        if path.is_dir():
            results.append(scan(path / "prompts" if (path / "prompts").is_dir() else path))
        elif path.is_file():
            files_by_root.setdefault(library_root_of(path), []).append(path)
        else:
            missing = ScanResult(root=path)
            missing.problems.append(Problem(str(path), 0, "", "no such file or folder"))
            results.append(missing)
    for root, files in files_by_root.items():
        results.append(scan(root, files))
    return results
