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

Nothing outside the project is read (``promptlib._paths``): the project is the folder
holding the library (``prompts/``'s parent), or the library folder itself when it has
another name. A symlink anywhere under the library that resolves outside the project
(a partial linked to ``/proc/self/environ``, a folder linked to ``/tmp``), or a library
folder that is such a link, is an error located at the link, naming where it leads; its
target is never opened. Such problems are also kept on ``ScanResult.outside``, so that
``load()`` can refuse them even when it skips broken files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from jinja2 import nodes
from pydantic import BaseModel, ValidationError

from .._paths import Escape, escape, links_outside
from .._yaml import Document, KeyPath, describe_coercion, format_key, read_yaml
from ..errors import ConfigError, Problem, RenderError
from . import plugins
from ._bounds import excerpt
from .model import ExampleSpec, InputSpec, MessageSpec, ModelParams, OutputSpec, PromptFile
from .plugins import Kind
from .prompt import Prompt, check_inputs, check_value
from .render import DEFAULT_LIMITS, ParsedTemplate, Renderer, RenderLimits, TemplateProblem

__all__ = [
    "PARTIALS_DIR",
    "PROMPT_SUFFIXES",
    "ScanResult",
    "ValidationCache",
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
    """Prompts that loaded, and every problem found (``problems`` are errors).

    ``outside`` holds the problems of paths that leave the project; they are in
    ``problems`` too.
    """

    root: Path
    prompts: dict[str, Prompt] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    partials: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Path] = field(default_factory=dict)
    files: int = 0
    outside: list[Problem] = field(default_factory=list)

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


def project_of(root: Path) -> Path:
    """The project a library folder belongs to: ``prompts/``'s parent, else the folder."""
    absolute = Path(os.path.abspath(root))
    return absolute.parent if absolute.name == "prompts" else absolute


def _outside(left: Escape) -> Problem:
    return Problem(display_path(left.path), 0, "", left.reason)


def read_partials(root: Path) -> tuple[dict[str, str], list[Problem]]:
    """The partials under ``root/_partials``, by name relative to it (``tone/formal.j2``).

    A partial (or a folder of them) that is a symlink leading outside the project is not
    read: it is a problem located at the link.
    """
    partials, problems, outside = _read_partials(root)
    return partials, sorted([*problems, *outside])


def _read_partials(root: Path) -> tuple[dict[str, str], list[Problem], list[Problem]]:
    """The partials, the problems of the files, and the problems of paths leaving the project."""
    project = project_of(root)
    base = Path(os.path.abspath(root)) / PARTIALS_DIR
    partials: dict[str, str] = {}
    problems: list[Problem] = []
    outside: list[Problem] = []
    left = escape(project, base)
    if left is not None:
        return partials, problems, [_outside(left)]
    if not base.is_dir():
        return partials, problems, outside
    for folder, dirs, files in os.walk(base):
        names = sorted(d for d in dirs if not d.startswith("."))
        # os.walk does not enter symlinked folders: one that leads out is reported here.
        for name in names:
            left = escape(project, Path(folder, name))
            if left is not None:
                outside.append(_outside(left))
        dirs[:] = names
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder, name)
            left = escape(project, path)
            if left is not None:
                outside.append(_outside(left))
                continue
            try:
                partials[path.relative_to(base).as_posix()] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                problems.append(Problem(display_path(path), 0, "", f"not UTF-8 text: {exc.reason}"))
            except OSError as exc:
                problems.append(
                    Problem(display_path(path), 0, "", f"cannot read the partial: {exc.strerror}")
                )
    return partials, problems, outside


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
        # A file over the size limit is refused unread: parsing YAML costs far more memory
        # and time than the file's size.
        limit = self.renderer.limits.max_file_bytes
        try:
            with self.path.open("rb") as file:
                raw = file.read(limit + 1)
                size = os.fstat(file.fileno()).st_size
        except OSError as exc:
            self.problems.append(
                Problem(self.shown, 0, "", f"cannot read the file: {exc.strerror}")
            )
            return None
        if len(raw) > limit:
            self.problems.append(
                Problem(
                    self.shown,
                    0,
                    "",
                    f"the file is {max(size, len(raw)):,} bytes, over the limit of {limit:,} "
                    "bytes for a prompt file, so it was not parsed; move large text into "
                    "inputs or split the prompt",
                )
            )
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            self.problems.append(
                Problem(
                    self.shown, line, "", f"not UTF-8 text ({exc.reason}); save the file as UTF-8"
                )
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
        # A value the YAML layer already complained about (alias, tag, merge key) would
        # only produce a second, confusing message here.
        where = format_key(loc)
        if any(where == p.key or where.startswith(p.key + ".") for p in doc.problems if p.key):
            return
        if loc[-1:] == ("[key]",):
            # A mapping key that is not valid (an input name): shown at the key's own line.
            name = loc[:-1]
            self.error(name, msg.removeprefix("Value error, "), line=doc.key_lines.get(name))
            return
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
                f"{excerpt(value)} is not a valid id: use dotted lowercase segments like "
                "'support.refund'"
            )
        elif value is not None and kind.endswith(("_type", "literal_error", "_parsing")):
            msg = f"{msg}, got {excerpt(value)}"
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
        """The line of the file that holds line ``lineno`` of the template at ``key``."""
        return self.doc.value_line(key, lineno)

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
                for problem in exc.every:
                    self.error(key, problem.message, line=self.template_line(key, problem.lineno))
                ok = False
                continue
            parsed.append(item)
            used |= item.variables
            for kind, name in item.plugins:
                # Also the plugins of partials parsed for an earlier file.
                self.renderer.looked_up.setdefault((kind, name), plugins.state(kind, name))
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


#: The environment variable that sets the size limit of a prompt file, in bytes.
MAX_PROMPT_BYTES = "PROMPTLIB_MAX_PROMPT_BYTES"


def configured_limits() -> RenderLimits:
    """The render limits, with the prompt-file size limit from ``PROMPTLIB_MAX_PROMPT_BYTES``
    when it is set (default 1,000,000 bytes); ``ConfigError`` for a value that is not a
    whole number of at least 1,024."""
    value = os.environ.get(MAX_PROMPT_BYTES)
    if value is None or not value.strip():
        return DEFAULT_LIMITS
    try:
        size = int(value.strip().replace("_", ""))
    except ValueError:
        size = 0
    if size < 1024:
        raise ConfigError(
            f"{MAX_PROMPT_BYTES}={excerpt(value)}: the largest prompt file to read, in bytes; "
            "give a whole number of at least 1024 (default 1000000)"
        )
    return dataclasses.replace(DEFAULT_LIMITS, max_file_bytes=size)


def scan(
    root: Path, files: Sequence[Path] | None = None, *, cache: ValidationCache | None = None
) -> ScanResult:
    """Load the library under ``root`` (or only ``files`` in it), collecting every problem.

    With a ``cache``, files whose content (and partials, and promptlib) did not change since
    a previous scan are not checked again: their problems come from the cache, and they are
    counted in ``ids`` but not loaded into ``prompts``. Only ``validate`` uses a cache.
    """
    given_root = Path(os.path.abspath(root))
    project = project_of(given_root)
    left = escape(project, given_root)
    if left is not None:
        # The library folder itself leads out: nothing under it is read.
        result = ScanResult(root=given_root, outside=[_outside(left)])
        result.problems = list(result.outside)
        return result
    root = root.resolve()
    result = ScanResult(root=root)
    partials, problems, outside = _read_partials(given_root)
    found = set(outside)
    result.partials = partials
    result.problems.extend(problems)
    renderer = Renderer(partials, limits=configured_limits())
    if files is None:
        # Every link that leads out, also where no prompt is looked for (folders the walk
        # skips or does not enter, files of other kinds): the wheel ships all of them.
        found.update(_outside(e) for e in links_outside(project, given_root))
        paths = [p for p in find_prompt_files(root) if escape(project, p) is None]
    else:
        paths = []
        for given in files:
            left = escape(project, Path(os.path.abspath(given)))
            if left is not None:
                found.add(_outside(left))
            else:
                paths.append(Path(given).resolve())
    result.outside = sorted(found)
    result.problems.extend(result.outside)
    result.files = len(paths)
    scope = cache.scope(partials) if cache is not None else ""
    for path in paths:
        shown = display_path(path)
        key = ""
        if cache is not None:
            try:
                key = cache.key(scope, path.relative_to(root).as_posix(), path.read_bytes())
            except OSError:
                key = ""
            hit = cache.get(key) if key else None
            if hit is not None:
                prompt_id, errors, warnings = hit[:3]
                if any(plugins.state(kind, name) != was for kind, name, was in hit[3]):
                    hit = None
            if hit is not None:
                result.problems.extend(Problem(shown, e[0], e[1], e[2]) for e in errors)
                result.warnings.extend(
                    Problem(shown, w[0], w[1], w[2], "warning") for w in warnings
                )
                if prompt_id is not None:
                    _claim(result, prompt_id, path, None, shown)
                continue
        check = _FileCheck(path, root, renderer)
        renderer.looked_up.clear()
        prompt = check.run()
        result.problems.extend(check.problems)
        result.warnings.extend(check.warnings)
        if key and cache is not None:
            cache.put(
                key,
                prompt.id if prompt else None,
                check.problems,
                check.warnings,
                renderer.looked_up,
            )
        if prompt is not None:
            _claim(result, prompt.id, path, prompt, shown)
    if cache is not None:
        cache.save()
    result.problems.sort()
    result.warnings.sort()
    return result


def _claim(
    result: ScanResult, prompt_id: str, path: Path, prompt: Prompt | None, shown: str
) -> None:
    owner = result.ids.get(prompt_id)
    if owner is not None:
        message = f"id {prompt_id!r} is also defined by {display_path(owner)}"
        result.problems.append(Problem(shown, 1, "id", message))
        return
    result.ids[prompt_id] = path
    if prompt is not None:
        result.prompts[prompt_id] = prompt


class ValidationCache:
    """Validation results of unchanged files, keyed by content, kept in one JSON file.

    A key covers the file's bytes and relative path, every partial, the cache format and
    the promptlib installation (its version and the size and mtime of its modules), so a
    change to any of them re-validates. An entry also keeps the plugin filters and tests
    its file named and their state (``plugins.state``); a plugin installed, removed or
    edited since re-validates the files that name it. Writes are atomic (temporary file + rename).
    """

    FORMAT = 2

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Any] = {}
        self.dirty = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == self.FORMAT:
                self.entries = dict(data.get("entries", {}))
        except (OSError, ValueError, AttributeError):
            self.entries = {}

    def scope(self, partials: Mapping[str, str]) -> str:
        digest = hashlib.sha256(f"{self.FORMAT}\0{_code_stamp()}".encode())
        for name in sorted(partials):
            digest.update(f"\0{name}\0{partials[name]}".encode())
        return digest.hexdigest()

    def key(self, scope: str, relative: str, data: bytes) -> str:
        digest = hashlib.sha256(f"{scope}\0{relative}\0".encode())
        digest.update(data)
        return digest.hexdigest()

    def get(
        self, key: str
    ) -> (
        tuple[str | None, list[list[Any]], list[list[Any]], list[tuple[Kind, str, str | None]]]
        | None
    ):
        """The prompt id, errors and warnings of an entry, and the plugins its validation
        looked up (kind, name, ``plugins.state``), which must still be the same."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        return entry[0], entry[1], entry[2], [tuple(item) for item in entry[3]]

    def put(
        self,
        key: str,
        prompt_id: str | None,
        errors: list[Problem],
        warnings: list[Problem],
        looked_up: Mapping[tuple[Kind, str], str | None],
    ) -> None:
        self.entries[key] = [
            prompt_id,
            [[p.line, p.key, p.message] for p in errors],
            [[w.line, w.key, w.message] for w in warnings],
            [[kind, name, state] for (kind, name), state in sorted(looked_up.items())],
        ]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(
                json.dumps({"format": self.FORMAT, "entries": self.entries}), encoding="utf-8"
            )
            os.replace(temporary, self.path)
        except OSError:
            return  # a cache that cannot be written only costs time
        self.dirty = False


@lru_cache(maxsize=1)
def _code_stamp() -> str:
    package = Path(__file__).resolve().parent.parent
    parts = [_version()]
    for module in sorted(package.rglob("*.py")):
        stat = module.stat()
        parts.append(f"{module.relative_to(package).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _version() -> str:
    try:
        return metadata.version("promptlib")
    except metadata.PackageNotFoundError:  # pragma: no cover - uninstalled source tree
        return "0+unknown"


def library_root_of(path: Path) -> Path:
    """The prompts folder a prompt file belongs to: its nearest ancestor named ``prompts``.

    A file outside any ``prompts`` folder is its own library root's child (its parent).
    The folder is looked for in the path as written first: a symlinked prompt file keeps the
    library it is in, where the scan can tell whether it leads out of the project.
    """
    for parent in Path(os.path.abspath(path)).parents:
        if parent.name == "prompts":
            return parent.resolve()
    for parent in path.resolve().parents:
        if parent.name == "prompts":
            return parent
    return path.resolve().parent


def scan_paths(paths: Sequence[Path], cache: ValidationCache | None = None) -> list[ScanResult]:
    """Scan folders whole and files on their own (grouped by library root), in order."""
    results: list[ScanResult] = []
    files_by_root: dict[Path, list[Path]] = {}
    for path in paths:
        if path.is_dir():
            root = path / "prompts" if (path / "prompts").is_dir() else path
            results.append(scan(root, cache=cache))
        elif path.is_file():
            files_by_root.setdefault(library_root_of(path), []).append(path)
        else:
            missing = ScanResult(root=path)
            missing.problems.append(Problem(str(path), 0, "", "no such file or folder"))
            results.append(missing)
    for root, files in files_by_root.items():
        results.append(scan(root, files, cache=cache))
    return results
