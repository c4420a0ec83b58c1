"""Snapshots of a library: the working tree, a release recorded in the ledger, a git ref.

A *release record* (ledger kind ``release``) holds everything needed to re-evaluate a
release with no git history (CI clones are often shallow and tagless)::

    {"kind": "release", "version": "2.0.0", "time": "...",
     "git_commit": "..." | null,      # the commit the release was computed from (HEAD then)
     "previous": "1.0.0" | null, "bump": "major",
     "partials": {"support_voice.j2": "..."},          # each partial's source, once
     "prompts": [{"id": ..., "version": ..., "fingerprint": ...,
                  "behaviour": {... "partials": ["support_voice.j2", ...] ...},
                  "metadata": {"description": ..., "tags": ..., ...}}, ...]}

Partials are stored once per release and referenced by name from each prompt's behaviour;
``Snapshot.prompt()`` puts them back and checks that the rebuilt prompt has the recorded
fingerprint.

``resolve(root, ref)`` finds a snapshot for ``ref``: a release version (``v2.0.0`` or
``2.0.0``) from the ledger first, else any git ref (branch, tag, commit), else a
``NotFoundError`` listing the known releases.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import _git
from ..errors import ConfigError, GitError, LedgerError, LoadError, NotFoundError, VersionError
from ..ledger import Ledger
from ..ledger.records import check_body
from ..library.collection import Library
from ..library.loader import scan
from ..library.prompt import Prompt
from ..settings import Settings
from ..versions import Bump, Version, parse_version, read_project_version
from .snapshot import PromptState, Snapshot

__all__ = [
    "latest_release",
    "release_record",
    "releases",
    "resolve",
    "resolve_against",
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


def release_record(
    library: Library,
    version: str,
    *,
    commit: str | None,
    previous: str | None,
    bump: Bump | None,
) -> dict[str, Any]:
    """The ledger record of releasing ``library`` as ``version``."""
    partials: dict[str, str] = {}
    prompts = []
    for prompt in library.values():
        behaviour = prompt.behaviour()
        partials.update(behaviour["partials"])
        behaviour["partials"] = sorted(behaviour["partials"])
        prompts.append(
            {
                "id": prompt.id,
                "version": str(prompt.version),
                "fingerprint": prompt.fingerprint,
                "behaviour": behaviour,
                "metadata": prompt.metadata(),
            }
        )
    return {
        "kind": "release",
        "version": version,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": commit,
        "previous": previous,
        "bump": str(bump) if bump is not None else None,
        "partials": dict(sorted(partials.items())),
        "prompts": prompts,
    }


def _snapshot_of_record(record: Mapping[str, Any]) -> Snapshot:
    partials = record.get("partials", {})
    prompts: dict[str, PromptState] = {}
    for item in record.get("prompts", []):
        behaviour = dict(item["behaviour"])
        names = behaviour.get("partials", [])
        behaviour["partials"] = {name: partials[name] for name in names}
        prompts[item["id"]] = PromptState(
            item["id"], item["version"], item["fingerprint"], behaviour, item.get("metadata", {})
        )
    version = str(record["version"])
    return Snapshot(
        f"v{version} (ledger release record)",
        "release",
        version,
        prompts,
        commit=record.get("git_commit"),
        record=record,
    )


def releases(ledger: Ledger) -> list[Mapping[str, Any]]:
    """The release records, oldest version first (one per version: the latest record)."""
    by_version: dict[Version, Mapping[str, Any]] = {}
    for record in ledger.read().of_kind("release"):
        check_body(record, str(ledger.path))
        try:
            by_version[parse_version(str(record["version"]))] = record
        except VersionError as exc:
            raise LedgerError(
                f"{ledger.path}: release record {str(record['hash'])[:19]}...: {exc}"
            ) from None
    return [by_version[v] for v in sorted(by_version)]


def latest_release(ledger: Ledger) -> Snapshot | None:
    """The highest released version, or None before the first release."""
    records = releases(ledger)
    return _snapshot_of_record(records[-1]) if records else None


def _git_snapshot(root: Path, ref: str, commit: str) -> Snapshot:
    raw = _git.git_bytes(root, "archive", "--format=tar", commit, "--", "prompts", "pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="promptlib-ref-") as folder:
        target = Path(folder)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            archive.extractall(target, filter="data")
        result = scan(target / "prompts")
        if result.problems:
            raise LoadError(result.problems)
        version = read_project_version(target / "pyproject.toml")
        prompts = {pid: _state(p) for pid, p in result.prompts.items()}
    return Snapshot(f"{ref} (git {commit[:12]})", "git", version, prompts, commit=commit)


def resolve(root: Path, ref: str, ledger: Ledger) -> Snapshot:
    """The snapshot ``ref`` names: a ledger release first, then a git ref."""
    records = releases(ledger)
    try:
        wanted = parse_version(ref)
    except ValueError:
        wanted = None
    if wanted is not None:
        for record in records:
            if parse_version(str(record["version"])) == wanted:
                return _snapshot_of_record(record)
    try:
        commit = _git.commit_of(root, ref)
    except GitError:
        commit = None
    if commit is not None:
        return _git_snapshot(root, ref, commit)
    known = [str(r["version"]) for r in records]
    listed = ", ".join(f"v{v}" for v in known) if known else "none yet"
    raise NotFoundError(
        f"unknown release or git ref {ref!r}; releases in the ledger: {listed}",
        known=known,
    )


def resolve_against(settings: Settings, ref: str | None) -> Snapshot:
    """The snapshot to compare with: ``ref``, else (or for ``latest``) the latest release."""
    root = settings.require_root()
    assert settings.ledger_path is not None
    ledger = Ledger(settings.ledger_path)
    if ref is not None and ref != "latest":
        return resolve(root, ref, ledger)
    latest = latest_release(ledger)
    if latest is None:
        raise ConfigError(
            "no release in the ledger yet; run `promptlib release` first or name a git ref"
        )
    return latest
