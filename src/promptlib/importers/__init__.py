"""Importers: prompts written for promptfoo, Prompty and dotprompt, as promptlib prompt files.

``import_files(format, paths, into)`` converts every source file (a folder stands for the
files of that format under it), gives each prompt an id from ``into`` and the file's path
and name, and writes one prompt file per prompt. The contract:

* **All or nothing.** Every converted prompt is first written to a temporary folder beside
  the library and checked there exactly as ``promptlib validate`` checks files. If any
  file fails (it cannot be converted, its id is taken twice, its target exists and
  ``force`` is off, or the result does not validate), nothing is written at all and
  ``ImportResult.files`` says why for each failed file. Otherwise the files are moved into
  place one by one; should a move fail, the ones already moved are taken back (and any
  file ``force`` replaced is restored), so no half-import is left.
* **Rendering is kept.** A converted prompt renders, for the same inputs, the text the
  source tool renders (its whitespace rules included); what the source says that promptlib
  has no place for is listed per file as ``notes``, never dropped silently. The formats'
  modules document the exact subsets.
* **Ids** are ``into``'s path under ``prompts/`` plus the source's path under the folder it
  was found in and its name, each part made a valid id segment (``_common.id_segment``).

Usage errors (unknown format, missing path, ``into`` outside a ``prompts/`` folder) raise
``ConfigError`` or ``NotFoundError``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import yaml

from ..errors import ConfigError, NotFoundError
from ..library.model import ID_PATTERN
from ._common import ConversionError, Draft, id_segment

__all__ = ["FORMATS", "FileOutcome", "ImportResult", "ImportedPrompt", "import_files"]

FORMATS = ("promptfoo", "prompty", "dotprompt")
_SEGMENT = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class ImportedPrompt:
    """One prompt made from a source file: its id and the file it is (or would be) in."""

    id: str
    path: Path


@dataclass
class FileOutcome:
    """What became of one source file: its prompts and notes, or the problems that stop it."""

    source: Path
    prompts: list[ImportedPrompt] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ImportResult:
    """Every source file's outcome; ``written`` is empty unless every file converted."""

    format: str
    into: Path
    files: list[FileOutcome]
    written: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if not f.ok]


def _converter(name: str) -> ModuleType:
    if name not in FORMATS:
        raise ConfigError(f"unknown import format {name!r}: use one of {', '.join(FORMATS)}")
    return importlib.import_module(f".{name}", __name__)


def prompts_root_of(into: Path) -> Path:
    """The ``prompts`` folder ``into`` is in (or is), where ids are counted from."""
    absolute = Path(os.path.abspath(into))
    for folder in (absolute, *absolute.parents):
        if folder.name == "prompts":
            return folder
    raise ConfigError(
        f"--into {into}: not inside a prompts/ folder; name a folder under the project's "
        "prompts/ (for example prompts/imported), since a prompt's id is its path there"
    )


def import_files(
    format: str, paths: Sequence[Path], into: Path, *, force: bool = False
) -> ImportResult:
    """Convert ``paths`` from ``format`` into prompt files under ``into`` (see the module)."""
    converter = _converter(format)
    root = prompts_root_of(into)
    area = Path(os.path.abspath(into)).relative_to(root).parts
    for part in area:
        if not _SEGMENT.fullmatch(part):
            raise ConfigError(
                f"--into {into}: folder {part!r} cannot be part of a prompt id "
                "(lowercase letters, digits and _, starting with a letter)"
            )
        if part.startswith("_"):
            raise ConfigError(f"--into {into}: folders starting with _ are not read as prompts")
    sources = _sources(converter, paths)
    result = ImportResult(format=format, into=into, files=[])
    drafts: dict[str, tuple[FileOutcome, Draft]] = {}
    for source, parts in sources:
        outcome = FileOutcome(source=source)
        result.files.append(outcome)
        try:
            converted = converter.convert(source)
        except ConversionError as exc:
            outcome.problems.extend(f"line {n}: {r}" if n else r for n, r in exc.problems)
            continue
        for draft in converted:
            segments = [*area, *(id_segment(p) for p in parts), id_segment(draft.name)]
            prompt_id = ".".join(segments)
            target = root.joinpath(*segments).with_suffix(".yaml")
            outcome.notes.extend(n for n in draft.notes if n not in outcome.notes)
            if not re.fullmatch(ID_PATTERN, prompt_id):  # pragma: no cover - id_segment's job
                outcome.problems.append(f"{prompt_id!r} is not a valid prompt id")
                continue
            if prompt_id in drafts:
                other = drafts[prompt_id][0].source
                outcome.problems.append(
                    f"its prompt {prompt_id!r} is also made from {other}: rename one of the files"
                )
                continue
            if target.with_suffix(".yml").exists():
                outcome.problems.append(
                    f"{_shown(target.with_suffix('.yml'))} holds the same id: remove or rename "
                    "it, or import into another folder with --into"
                )
                continue
            if target.exists() and not force:
                outcome.problems.append(
                    f"{_shown(target)} exists: pass --force to overwrite it, or import into "
                    "another folder with --into"
                )
                continue
            drafts[prompt_id] = (outcome, draft)
            outcome.prompts.append(ImportedPrompt(prompt_id, target))
    if not result.ok or not drafts:
        return result
    staging = Path(tempfile.mkdtemp(prefix=".promptlib-import-", dir=root.parent))
    try:
        staged = _stage(staging, root, drafts, format)
        _validate(staging / "prompts", staged, drafts)
        if result.ok:
            result.written = _commit(staging, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _sources(converter: ModuleType, paths: Sequence[Path]) -> list[tuple[Path, tuple[str, ...]]]:
    """Each source file with the folders between it and the folder it was found in."""
    found: list[tuple[Path, tuple[str, ...]]] = []
    for path in paths:
        if path.is_dir():
            files = converter.discover(path)
            if not files:
                suffixes = ", ".join(converter.SUFFIXES)
                raise NotFoundError(f"{path}: no {suffixes} files in this folder")
            found.extend((f, f.relative_to(path).parent.parts) for f in files)
        elif path.is_file():
            found.append((path, ()))
        else:
            raise NotFoundError(f"{path}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for source, parts in found:
        key = source.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((source, parts))
    return unique


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # Multi-line text as a literal block, so templates read as they render (YAML falls back
    # to a quoted string where a block cannot hold the text exactly).
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    )


_Dumper.add_representer(str, _represent_text)


def dump_prompt(prompt_id: str, draft: Draft, source: str, format: str) -> str:
    """The prompt file's text: a header naming the source and its notes, then the YAML."""
    lines = [f"# Imported by `promptlib import {format}` from {source}."]
    if draft.notes:
        lines.append("# Notes from the import (what the source says that this file does not):")
        lines.extend(f"#   - {' '.join(note.split())}" for note in draft.notes)
    body = yaml.dump(
        draft.to_data(prompt_id),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=10_000,
    )
    return "\n".join(lines) + "\n" + body


def _stage(
    staging: Path, root: Path, drafts: dict[str, tuple[FileOutcome, Draft]], format: str
) -> dict[str, tuple[Path, Path]]:
    """Write every prompt under ``staging/prompts``; id -> (staged file, target)."""
    staged: dict[str, tuple[Path, Path]] = {}
    for prompt_id, (outcome, draft) in drafts.items():
        target = next(p.path for p in outcome.prompts if p.id == prompt_id)
        file = staging / "prompts" / target.relative_to(root)
        file.parent.mkdir(parents=True, exist_ok=True)
        shown = _relative_name(outcome.source, root.parent)
        file.write_text(dump_prompt(prompt_id, draft, shown, format), encoding="utf-8")
        staged[prompt_id] = (file, target)
    return staged


def _validate(
    library: Path,
    staged: dict[str, tuple[Path, Path]],
    drafts: dict[str, tuple[FileOutcome, Draft]],
) -> None:
    """Check the staged files as ``promptlib validate`` does; problems fail their source."""
    from ..library.loader import scan

    result = scan(library)
    by_file = {os.path.realpath(file): prompt_id for prompt_id, (file, _t) in staged.items()}
    for problem in [*result.problems, *result.warnings]:
        prompt_id = by_file.get(os.path.realpath(problem.path))
        if prompt_id is None:
            continue
        outcome = drafts[prompt_id][0]
        where = f"{prompt_id}" + (f" {problem.key}" if problem.key else "")
        if problem.severity == "error":
            outcome.problems.append(
                f"{where}: the converted prompt does not validate: {problem.message}"
            )
        elif "no examples" not in problem.message:
            outcome.notes.append(f"{where}: {problem.message}")


def _commit(staging: Path, staged: dict[str, tuple[Path, Path]]) -> list[Path]:
    """Move the staged files into place; on any error, undo every move made."""
    backups = staging / "replaced"
    moved: list[tuple[Path, Path, Path | None]] = []
    created: list[Path] = []
    try:
        for file, target in staged.values():
            missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            created.extend(reversed(missing))
            backup = None
            if target.exists():
                backup = backups / f"{len(moved)}.yaml"
                backup.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, backup)
            os.replace(file, target)
            moved.append((file, target, backup))
    except OSError as exc:
        for file, target, backup in reversed(moved):
            os.replace(target, file)
            if backup is not None:
                os.replace(backup, target)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise ConfigError(
            f"cannot write {exc.filename}: {exc.strerror}; nothing was imported (fix the "
            "folder's permissions and run the import again)"
        ) from exc
    return [target for _file, target, _backup in moved]


def _relative_name(path: Path, project: Path) -> str:
    """The source's path in the project, else its name: no machine's folders in the file."""
    try:
        return Path(os.path.realpath(path)).relative_to(os.path.realpath(project)).as_posix()
    except ValueError:
        return path.name


def _shown(path: Path) -> str:
    from ..library.loader import display_path

    return display_path(Path(os.path.abspath(path)))
