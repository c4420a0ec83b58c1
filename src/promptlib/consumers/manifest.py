"""Consumer manifests: pin prompts by version range, lock their fingerprints, fail closed.

A downstream project keeps ``prompt_manifest.yaml``::

    library: "promptlib>=2.1,<3"        # a PEP 440 requirement on the installed package
    prompts:
      support.classify.intent_fewshot: "^2.1"
      support.answer.cancel_order: "~2.1.0"
      banking.intent_fewshot: ">=2.0.0, <3.0.0"
      routing.scope: "2.0.0"

Version ranges use npm's semantics, as implemented by the ``semantic_version`` package
(``NpmSpec``): an exact version (``2.0.0`` or ``=2.0.0``); comparators joined by spaces or
commas (``>=2.0.0, <3.0.0``); caret ``^2.1`` (>=2.1.0, <3.0.0; for 0.x, ``^0.3`` is
>=0.3.0, <0.4.0); tilde ``~2.1.0`` (>=2.1.0, <2.2.0); ``2.1.x``; alternatives with ``||``.
Pre-releases match only a range that names a pre-release of the same major.minor.patch
(``>=2.1.0-rc.1`` matches ``2.1.0-rc.2`` but ``^2.0.0`` does not match ``2.2.0-beta``).

``promptlib manifest lock`` resolves the manifest against the installed library and
writes ``prompt_manifest.lock`` (JSON): the library version, the manifest's sha256, and each
prompt's version and fingerprint. ``promptlib manifest check`` and
``promptlib.load(manifest=...)`` compare the installed library with both and fail closed on
any drift: a missing prompt, a version outside its range, a fingerprint different from the
lock, a library version outside the requirement, a lock older than the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._canonical import sha256_hex
from .._yaml import read_yaml
from ..errors import ConfigError, DriftError, VersionError
from ..library.collection import Library
from ..versions import in_range, parse_requirement, requirement_allows, version_range

if TYPE_CHECKING:
    from packaging.requirements import Requirement

__all__ = [
    "LOCK_FORMAT",
    "Manifest",
    "check_manifest",
    "installed_version",
    "lock_manifest",
    "lock_path_for",
    "pinned_library",
    "read_manifest",
]

LOCK_FORMAT = 1


def installed_version() -> str:
    """The version of the installed promptlib package."""
    try:
        return metadata.version("promptlib")
    except metadata.PackageNotFoundError:  # pragma: no cover - uninstalled source tree
        return "0+unknown"


@dataclass(frozen=True)
class Manifest:
    path: Path
    library: str
    prompts: Mapping[str, str]
    sha256: str

    def requirement(self) -> Requirement:
        try:
            return parse_requirement(self.library)
        except VersionError as exc:
            raise ConfigError(f"{self.path}: library: {exc}") from None


def lock_path_for(manifest: Path) -> Path:
    """``prompt_manifest.yaml`` -> ``prompt_manifest.lock`` beside it."""
    return manifest.with_suffix(".lock")


def read_manifest(path: Path) -> Manifest:
    """Read and check a manifest; ``ConfigError`` with file and line for every problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the manifest: {exc.strerror}") from None
    doc = read_yaml(raw.decode("utf-8", "replace"), str(path), "manifest")
    if doc.problems:
        raise ConfigError("\n".join(str(p) for p in doc.problems))
    data = doc.data
    problems = []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a manifest is a mapping with 'library' and 'prompts'")
    unknown = sorted(set(data) - {"library", "prompts"})
    for key in unknown:
        problems.append(
            f"{path}:{doc.key_lines.get((key,), 1)}: unknown key {key!r}; allowed: library, prompts"
        )
    library = data.get("library")
    if not isinstance(library, str):
        problems.append(
            f"{path}:{doc.line_of(('library',))}: 'library' must be a requirement such as "
            '"promptlib>=2.1,<3"'
        )
    else:
        try:
            parse_requirement(library)
        except VersionError as exc:
            problems.append(f"{path}:{doc.line_of(('library',))}: library: {exc}")
    prompts = data.get("prompts")
    if not isinstance(prompts, dict) or not prompts:
        problems.append(
            f"{path}:{doc.line_of(('prompts',))}: 'prompts' must map prompt ids to version ranges"
        )
        prompts = {}
    for prompt_id, spec in prompts.items():
        line = doc.line_of(("prompts", prompt_id))
        if not isinstance(spec, str):
            hint = f' (write it in quotes: "{doc.coerced.get(("prompts", prompt_id), spec)}")'
            problems.append(f"{path}:{line}: prompts.{prompt_id}: the range must be text{hint}")
            continue
        try:
            version_range(spec)
        except ConfigError as exc:
            problems.append(f"{path}:{line}: prompts.{prompt_id}: {exc}")
    if problems:
        raise ConfigError("\n".join(problems))
    return Manifest(path, str(library), dict(prompts), sha256_hex(raw))


def _drift_against_installed(manifest: Manifest, library: Library, version: str) -> list[str]:
    drifts: list[str] = []
    requirement = manifest.requirement()
    if not requirement_allows(requirement, version):
        drifts.append(
            f"installed promptlib {version} is outside {manifest.library!r}: install a matching "
            f"release (pip install '{manifest.library}') or change the requirement"
        )
    for prompt_id, text in manifest.prompts.items():
        prompt = library.get(prompt_id)
        if prompt is None:
            drifts.append(
                f"{prompt_id}: not in the installed library (promptlib {version}); install a "
                "release that has it or remove it from the manifest"
            )
            continue
        if not in_range(str(prompt.version), version_range(text)):
            drifts.append(
                f"{prompt_id}: installed version {prompt.version} is outside {text!r}; install a "
                "matching promptlib release or widen the range, then run `promptlib manifest lock`"
            )
    return drifts


def lock_manifest(manifest_path: Path, library: Library | None = None) -> dict[str, Any]:
    """Resolve the manifest against the installed library and write the lock file.

    Raises ``DriftError`` (and writes nothing) when the installed library does not satisfy
    the manifest.
    """
    from ..library.collection import load

    manifest = read_manifest(manifest_path)
    library = library if library is not None else load()
    version = installed_version()
    drifts = _drift_against_installed(manifest, library, version)
    if drifts:
        raise DriftError(drifts)
    lock = {
        "format": LOCK_FORMAT,
        "library": {"name": "promptlib", "version": version},
        "manifest_sha256": manifest.sha256,
        "prompts": {
            pid: {"version": str(library[pid].version), "fingerprint": library[pid].fingerprint}
            for pid in sorted(manifest.prompts)
        },
    }
    path = lock_path_for(manifest_path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)
    return lock


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the lock: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT:
        raise ConfigError(
            f"{path}: not a promptlib lock (format {LOCK_FORMAT}); run `promptlib manifest lock`"
        )
    return data


def check_manifest(manifest_path: Path, library: Library | None = None) -> list[str]:
    """Every drift between the manifest, its lock and the installed library (empty: ok)."""
    from ..library.collection import load

    manifest = read_manifest(manifest_path)
    library = library if library is not None else load()
    version = installed_version()
    drifts = _drift_against_installed(manifest, library, version)
    lock_path = lock_path_for(manifest_path)
    lock = _read_lock(lock_path)
    if lock is None:
        return [*drifts, f"{lock_path.name} is missing: run `promptlib manifest lock`"]
    if lock.get("manifest_sha256") != manifest.sha256:
        drifts.append(
            f"{lock_path.name} is older than {manifest_path.name} (the manifest changed since "
            "it was locked): run `promptlib manifest lock`"
        )
    locked = lock.get("prompts", {})
    for prompt_id in manifest.prompts:
        prompt = library.get(prompt_id)
        entry = locked.get(prompt_id)
        if prompt is None or entry is None:
            continue
        if entry.get("fingerprint") != prompt.fingerprint:
            drifts.append(
                f"{prompt_id}: installed fingerprint {prompt.fingerprint[:19]}... differs from the "
                f"locked {str(entry.get('fingerprint'))[:19]}... (version {prompt.version}, locked "
                f"{entry.get('version')}): the prompt changed; review it, then run "
                "`promptlib manifest lock`"
            )
    return drifts


def pinned_library(manifest_path: Path, library: Library | None = None) -> Library:
    """Only the manifest's prompts, after a full drift check; ``DriftError`` on any drift."""
    from ..library.collection import load

    library = library if library is not None else load()
    drifts = check_manifest(manifest_path, library)
    if drifts:
        raise DriftError(drifts)
    manifest = read_manifest(manifest_path)
    chosen = {pid: library[pid] for pid in manifest.prompts}
    return Library(chosen, root=library.root, partials=library.partials)
