"""Snapshots of a library: the working tree, a release recorded in the ledger, a git ref.

A *release record* (ledger kind ``release``, ``promptlib.ledger.records.ReleaseRecord``)
holds everything needed to re-evaluate a release with no git history (CI clones are often
shallow and tagless): per prompt its version, its fingerprint, which names the object
holding its behaviour (messages or template with the partials they include, inputs, model
parameters, output spec: exactly what the fingerprint hashes), and the object holding its
metadata. An unchanged prompt's behaviour is stored once across all releases.
``Snapshot.prompt()`` rebuilds a prompt from its behaviour and checks the fingerprint.

``resolve(root, ref, view)`` finds a snapshot for ``ref``: a release version (``v2.0.0`` or
``2.0.0``) from the ledger first, else any git ref (branch, tag, commit), else a
``NotFoundError`` listing the known releases.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import _git
from ..errors import ConfigError, GitError, LedgerError, LoadError, NotFoundError, VersionError
from ..ledger import LedgerView
from ..ledger.objects import encode
from ..ledger.records import PromptMetadata, ReleasedPrompt, ReleaseRecord
from ..library.collection import Library
from ..library.loader import scan
from ..library.prompt import Prompt
from ..settings import Settings
from ..versions import Bump, Version, parse_version, read_project_version
from .snapshot import PromptState, Snapshot

__all__ = [
    "BuiltRelease",
    "latest_release",
    "put_prompt",
    "release_record",
    "releases",
    "resolve",
    "resolve_against",
    "snapshot_of",
    "worktree_snapshot",
]


def _state(prompt: Prompt) -> PromptState:
    return PromptState(
        prompt.id, str(prompt.version), prompt.fingerprint, prompt.behaviour(), prompt.metadata()
    )


def worktree_snapshot(root: Path, library: Library) -> Snapshot:
    """The project's current files."""
    prompts = {pid: _state(p) for pid, p in library.items()}
    snapshot = Snapshot(
        "working tree",
        "worktree",
        read_project_version(root / "pyproject.toml"),
        prompts,
        commit=_git.commit_of(root),
    )
    snapshot._built.update(library)
    return snapshot


@dataclass(frozen=True)
class BuiltRelease:
    """A release record and the objects it references (behaviours, metadata)."""

    record: ReleaseRecord
    objects: dict[str, Any]


def release_record(
    library: Library,
    version: str,
    *,
    commit: str | None,
    previous: str | None,
    bump: Bump | None,
) -> BuiltRelease:
    """The ledger record of releasing ``library`` as ``version``, with its objects."""
    objects: dict[str, Any] = {}
    prompts: dict[str, ReleasedPrompt] = {}
    for prompt in library.values():
        behaviour, metadata = put_prompt(prompt, objects)
        prompts[prompt.id] = ReleasedPrompt(
            version=str(prompt.version), fingerprint=behaviour, metadata=metadata
        )
    record = ReleaseRecord(
        time=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        version=version,
        git_commit=commit,
        previous=previous,
        bump=str(bump) if bump is not None else None,
        prompts=prompts,
    )
    return BuiltRelease(record, objects)


def put_prompt(prompt: Prompt, objects: dict[str, Any]) -> tuple[str, str]:
    """Add ``prompt``'s behaviour and metadata objects to ``objects``; their references.

    The behaviour object's reference is the prompt's fingerprint: both are the sha256 of the
    canonical JSON of the behaviour.
    """
    behaviour = prompt.behaviour()
    reference = encode(behaviour)[0]
    if reference != prompt.fingerprint:  # pragma: no cover - the same definition
        raise LedgerError(f"{prompt.id}: its behaviour does not hash to its fingerprint")
    metadata = PromptMetadata(metadata=prompt.metadata()).model_dump(mode="json")
    metadata_reference = encode(metadata)[0]
    objects[reference] = behaviour
    objects[metadata_reference] = metadata
    return reference, metadata_reference


class _Lazy(Mapping[str, Any]):
    """A mapping loaded from a ledger object on first use (most are never needed)."""

    def __init__(self, load: Callable[[], Mapping[str, Any]]) -> None:
        self._load = load
        self._value: Mapping[str, Any] | None = None

    def _get(self) -> Mapping[str, Any]:
        if self._value is None:
            self._value = self._load()
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def snapshot_of(release: ReleaseRecord, view: LedgerView) -> Snapshot:
    """The snapshot of a release record; behaviours load from the ledger when needed."""

    def behaviour(fingerprint: str) -> Callable[[], Mapping[str, Any]]:
        return lambda: dict(view.object(fingerprint))

    def metadata(reference: str) -> Callable[[], Mapping[str, Any]]:
        return lambda: dict(PromptMetadata.model_validate(view.object(reference)).metadata)

    prompts = {
        pid: PromptState(
            pid,
            item.version,
            item.fingerprint,
            _Lazy(behaviour(item.fingerprint)),
            _Lazy(metadata(item.metadata)),
        )
        for pid, item in release.prompts.items()
    }
    return Snapshot(
        f"v{release.version} (ledger release record)",
        "release",
        release.version,
        prompts,
        commit=release.git_commit,
    )


def releases(view: LedgerView) -> list[ReleaseRecord]:
    """The release records, oldest version first (one per version: the latest record)."""
    by_version: dict[Version, ReleaseRecord] = {}
    for record in view.releases:
        try:
            by_version[parse_version(record.version)] = record
        except VersionError as exc:
            raise LedgerError(
                f"{view.source}: release record {str(record.hash)[:19]}...: {exc}"
            ) from None
    return [by_version[v] for v in sorted(by_version)]


def _refuse_ambiguous(view: LedgerView, record: ReleaseRecord) -> None:
    """``LedgerError`` when two records released ``record``'s version with different
    prompts (two branches that both released it, merged): which one is meant is unknown."""
    wanted = parse_version(record.version)
    for version, records in view.release_conflicts().items():
        if parse_version(version) != wanted:
            continue
        listed = "\n  ".join(
            f"{r.hash[:19] if r.hash else '?'}... recorded {r.time}, git commit "
            f"{r.git_commit or 'unknown'}, {len(r.prompts)} prompts"
            for r in records
        )
        raise LedgerError(
            f"{view.source}: release {record.version} is ambiguous: {len(records)} records "
            f"released it with different prompts (two branches both released it?):\n  "
            f"{listed}\nKeep the one that was published: delete the other's line from the "
            "index and release its changes again as the next version."
        )


def latest_release(view: LedgerView) -> Snapshot | None:
    """The highest released version, or None before the first release."""
    records = releases(view)
    if not records:
        return None
    _refuse_ambiguous(view, records[-1])
    return snapshot_of(records[-1], view)


def _git_snapshot(root: Path, ref: str, commit: str) -> Snapshot:
    raw = _git.git_bytes(root, "archive", "--format=tar", commit, "--", "prompts", "pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="promptlib-ref-") as folder:
        target = Path(folder)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            try:
                archive.extractall(target, filter="data")
            except tarfile.FilterError as exc:
                raise ConfigError(
                    f"{ref}: {exc.tarinfo.name} is a link leading outside the project; "
                    "promptlib reads no file outside the project"
                ) from None
        result = scan(target / "prompts")
        if result.problems:
            raise LoadError(result.problems)
        version = read_project_version(target / "pyproject.toml")
        prompts = {pid: _state(p) for pid, p in result.prompts.items()}
    return Snapshot(f"{ref} (git {commit[:12]})", "git", version, prompts, commit=commit)


def resolve(root: Path, ref: str, view: LedgerView) -> Snapshot:
    """The snapshot ``ref`` names: a ledger release first, then a git ref."""
    records = releases(view)
    try:
        wanted = parse_version(ref)
    except VersionError:
        wanted = None
    if wanted is not None:
        for record in records:
            if parse_version(record.version) == wanted:
                _refuse_ambiguous(view, record)
                return snapshot_of(record, view)
    try:
        commit = _git.commit_of(root, ref)
    except GitError:
        commit = None
    if commit is not None:
        return _git_snapshot(root, ref, commit)
    known = [r.version for r in records]
    listed = ", ".join(f"v{v}" for v in known) if known else "none yet"
    raise NotFoundError(
        f"unknown release or git ref {ref!r}; releases in the ledger: {listed}",
        known=known,
    )


def resolve_against(settings: Settings, ref: str | None, view: LedgerView) -> Snapshot:
    """The snapshot to compare with: ``ref``, else (or for ``latest``) the latest release."""
    root = settings.require_root()
    if ref is not None and ref != "latest":
        return resolve(root, ref, view)
    latest = latest_release(view)
    if latest is None:
        raise ConfigError(
            "no release in the ledger yet; run `promptlib release` first or name a git ref"
        )
    return latest
