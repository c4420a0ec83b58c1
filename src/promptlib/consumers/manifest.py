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
writes ``prompt_manifest.lock``, a JSON object (lock format 2)::

    {
      "format": 2,
      "hash": "sha256:...",                 # the seal, see below
      "library": {"name": "promptlib", "version": "2.1.0"},
      "manifest_sha256": "sha256:...",      # of the manifest file's bytes
      "prompts": {"<id>": {"fingerprint": "sha256:...", "version": "2.1.0"}, ...}
    }

The seal ``hash`` is ``sha256_of`` (canonical JSON, see ``_canonical``) of the lock without
its ``hash`` key, so that any hand edit, even a consistent one, is detected. Format 1 (no
``hash``) is still read, with every check but the seal; a format newer than
``LOCK_FORMAT`` is refused. Every key is required and no other key is allowed: a lock
that is not a JSON object of exactly this shape is a ``ConfigError`` naming the file.

``promptlib manifest check`` and ``promptlib.load(manifest=...)`` compare the installed
library with the manifest and a well-formed lock and fail closed on any drift: a pinned
prompt missing from the installed library, a version outside its range, a library version
outside the requirement; a lock that is missing, whose seal does not match its content,
made against another promptlib version, older than the manifest, missing a pinned prompt,
holding a prompt the manifest no longer pins, or whose locked version or fingerprint
differs from the installed prompt. ``verify_manifest`` also returns notes that do not fail
the check (a format 1 lock predates sealing).

The installed library is read with ``load()``, which refuses a prompt, partial or folder
that is a symlink leading outside the library's folder (``ConfigError``, naming the link):
a lock never records, and a check never compares, what such a link points at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .._canonical import sha256_hex, sha256_of
from .._yaml import read_yaml
from ..errors import ConfigError, DriftError, VersionError
from ..library.collection import Library
from ..versions import in_range, parse_requirement, requirement_allows, version_range

if TYPE_CHECKING:
    from packaging.requirements import Requirement

__all__ = [
    "LOCK_FORMAT",
    "Lock",
    "LockedPrompt",
    "Manifest",
    "ManifestCheck",
    "check_manifest",
    "installed_version",
    "lock_manifest",
    "lock_path_for",
    "pinned_library",
    "read_lock",
    "read_manifest",
    "seal_of",
    "verify_manifest",
]

# The lock format this release writes, and the newest it reads. Format 1 (promptlib 2.1.0)
# had no seal; format 2 added ``hash``.
LOCK_FORMAT = 2

_LOCK_KEYS: Mapping[int, tuple[str, ...]] = {
    1: ("format", "library", "manifest_sha256", "prompts"),
    2: ("format", "hash", "library", "manifest_sha256", "prompts"),
}
_LIBRARY_KEYS = ("name", "version")
_ENTRY_KEYS = ("fingerprint", "version")
_RELOCK = "run `promptlib manifest lock`"
_JSON_KINDS: Mapping[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


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


def seal_of(lock: Mapping[str, Any]) -> str:
    """The seal of a lock: the sha256 of the canonical JSON of every key but ``hash``."""
    return sha256_of({key: value for key, value in lock.items() if key != "hash"})


@dataclass(frozen=True)
class LockedPrompt:
    """One prompt as the lock recorded it."""

    version: str
    fingerprint: str


@dataclass(frozen=True)
class Lock:
    """A well-formed lock file, as read by ``read_lock``.

    ``hash`` is the seal written in the file (``None`` in format 1, which had none) and
    ``content_hash`` the seal of what the file holds; ``verify()`` compares them.
    """

    path: Path
    format: int
    library_version: str
    manifest_sha256: str
    prompts: Mapping[str, LockedPrompt]
    hash: str | None
    content_hash: str

    def verify(self) -> bool:
        """Whether the lock carries a seal and the seal matches its content."""
        return self.hash is not None and self.hash == self.content_hash


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a lock with both is ambiguous.
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice in one object")
        result[key] = item
    return result


def _newer_format(path: Path, found: int) -> ConfigError:
    return ConfigError(
        f"{path}: written by a newer promptlib; upgrade promptlib to a release that reads it "
        f"(lock format {found}; promptlib {installed_version()} reads formats 1 to {LOCK_FORMAT})"
    )


def _lock_format(value: object) -> int | None:
    """The lock's format number, or ``None`` when it has no usable one."""
    if not isinstance(value, dict):
        return None
    found = value.get("format")
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        return None
    return found


def _object_problems(
    value: object, where: str, keys: tuple[str, ...], text_keys: tuple[str, ...]
) -> list[str]:
    """Problems of an object that must have exactly ``keys``; ``text_keys`` hold text.

    ``where`` is the object's key path, empty for the lock itself.
    """
    here = f"{where}: " if where else ""
    if not isinstance(value, dict):
        return [f"{here}must be an object with {', '.join(keys)}"]
    problems = [
        f"{here}unknown key {key!r}; allowed: {', '.join(keys)}"
        for key in sorted(set(value) - set(keys))
    ]
    problems += [f"{here}missing key {key!r}" for key in keys if key not in value]
    for key in text_keys:
        if key in value and not isinstance(value[key], str):
            path = f"{where}.{key}" if where else key
            problems.append(f"{path}: must be text, not {type(value[key]).__name__}")
    return problems


def _shape_problems(data: dict[str, Any], format_: int) -> list[str]:
    """Every way ``data`` differs from a lock of ``format_`` as ``lock_manifest`` writes it."""
    problems = _object_problems(data, "", _LOCK_KEYS[format_], ("hash", "manifest_sha256"))
    library = data.get("library")
    if "library" in data:
        problems += _object_problems(library, "library", _LIBRARY_KEYS, _LIBRARY_KEYS)
        name = library.get("name") if isinstance(library, dict) else None
        if isinstance(name, str) and name != "promptlib":
            problems.append(f"library.name: must be 'promptlib', not {name!r}")
    prompts = data.get("prompts")
    if "prompts" in data and not isinstance(prompts, dict):
        problems.append("prompts: must be an object mapping prompt ids to locked prompts")
    elif isinstance(prompts, dict):
        for prompt_id, entry in prompts.items():
            problems += _object_problems(entry, f"prompts.{prompt_id}", _ENTRY_KEYS, _ENTRY_KEYS)
    return problems


def read_lock(path: Path) -> Lock | None:
    """Read and check a lock file; ``None`` when there is none.

    Raises ``ConfigError`` naming the file when it cannot be read, is not a JSON object of
    the lock's shape (every problem listed), or was written in a newer format.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the lock: {exc.strerror}; make it readable or {_RELOCK}"
        ) from None
    try:
        data = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the lock is not UTF-8 text; {_RELOCK} to rewrite it") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(
            f"{path}: the lock is not valid JSON ({exc}); {_RELOCK} to rewrite it"
        ) from None
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), type(data).__name__)
        raise ConfigError(f"{path}: a lock is a JSON object, not {kind}; {_RELOCK} to rewrite it")
    format_ = _lock_format(data)
    if format_ is None:
        raise ConfigError(
            f"{path}: not a promptlib lock ('format' must be a lock format number, found "
            f"{data.get('format')!r}); {_RELOCK} to rewrite it"
        )
    if format_ > LOCK_FORMAT:
        raise _newer_format(path, format_)
    problems = _shape_problems(data, format_)
    if problems:
        raise ConfigError(
            "\n".join(
                [
                    *(f"{path}: {problem}" for problem in problems),
                    f"{path}: not a lock as promptlib writes it (format {format_}); {_RELOCK} "
                    "to rewrite it",
                ]
            )
        )
    return Lock(
        path=path,
        format=format_,
        library_version=data["library"]["version"],
        manifest_sha256=data["manifest_sha256"],
        prompts={
            prompt_id: LockedPrompt(entry["version"], entry["fingerprint"])
            for prompt_id, entry in data["prompts"].items()
        },
        hash=data.get("hash"),
        content_hash=seal_of(data),
    )


def lock_manifest(manifest_path: Path, library: Library | None = None) -> dict[str, Any]:
    """Resolve the manifest against the installed library and write the sealed lock file.

    Raises ``DriftError`` (and writes nothing) when the installed library does not satisfy
    the manifest, and ``ConfigError`` when the existing lock was written by a newer
    promptlib (rewriting it would silently downgrade it).
    """
    from ..library.collection import load

    manifest = read_manifest(manifest_path)
    path = lock_path_for(manifest_path)
    _refuse_newer_lock(path)
    library = library if library is not None else load()
    version = installed_version()
    drifts = _drift_against_installed(manifest, library, version)
    if drifts:
        raise DriftError(drifts)
    lock: dict[str, Any] = {
        "format": LOCK_FORMAT,
        "library": {"name": "promptlib", "version": version},
        "manifest_sha256": manifest.sha256,
        "prompts": {
            pid: {"version": str(library[pid].version), "fingerprint": library[pid].fingerprint}
            for pid in sorted(manifest.prompts)
        },
    }
    lock["hash"] = seal_of(lock)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)
    return lock


def _refuse_newer_lock(path: Path) -> None:
    # Only a lock that clearly names a newer format stops us: an unreadable or malformed
    # lock is exactly what re-locking is for.
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return
    found = _lock_format(existing)
    if found is not None and found > LOCK_FORMAT:
        raise _newer_format(path, found)


@dataclass(frozen=True)
class ManifestCheck:
    """The result of checking a manifest: ``drifts`` fail it, ``notes`` do not."""

    drifts: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.drifts


def _drift_against_lock(
    manifest: Manifest, lock: Lock, library: Library, version: str
) -> list[str]:
    name = lock.path.name
    drifts: list[str] = []
    if lock.hash is not None and not lock.verify():
        drifts.append(f"{name} was edited by hand (its seal does not match its content): {_RELOCK}")
    if lock.library_version != version:
        drifts.append(
            f"{name} was made against promptlib {lock.library_version} but promptlib "
            f"{version} is installed: install promptlib=={lock.library_version}, or review "
            f"the prompts of {version} and {_RELOCK}"
        )
    if lock.manifest_sha256 != manifest.sha256:
        drifts.append(
            f"{name} is older than {manifest.path.name} (the manifest changed since "
            f"it was locked): {_RELOCK}"
        )
    for prompt_id in manifest.prompts:
        entry = lock.prompts.get(prompt_id)
        if entry is None:
            drifts.append(
                f"{prompt_id}: pinned in {manifest.path.name} but not locked in {name}: {_RELOCK}"
            )
            continue
        prompt = library.get(prompt_id)
        if prompt is None:
            continue
        if entry.fingerprint != prompt.fingerprint:
            drifts.append(
                f"{prompt_id}: installed fingerprint {prompt.fingerprint[:19]}... differs from the "
                f"locked {entry.fingerprint[:19]}... (version {prompt.version}, locked "
                f"{entry.version}): the prompt changed; review it, then {_RELOCK}"
            )
        elif entry.version != str(prompt.version):
            drifts.append(
                f"{prompt_id}: installed version {prompt.version} differs from the locked "
                f"{entry.version} (same fingerprint); review the installed release, then "
                f"{_RELOCK}"
            )
    for prompt_id in sorted(set(lock.prompts) - set(manifest.prompts)):
        drifts.append(
            f"{prompt_id}: locked in {name} but not pinned in {manifest.path.name} (the lock "
            f"is stale): {_RELOCK}"
        )
    return drifts


def verify_manifest(manifest_path: Path, library: Library | None = None) -> ManifestCheck:
    """Every drift between the manifest, its lock and the installed library, and notes.

    Notes do not fail the check: today the one note is that a format 1 lock predates
    sealing. A lock that cannot be read as a lock raises ``ConfigError``.
    """
    from ..library.collection import load

    manifest = read_manifest(manifest_path)
    library = library if library is not None else load()
    version = installed_version()
    drifts = _drift_against_installed(manifest, library, version)
    lock_path = lock_path_for(manifest_path)
    lock = read_lock(lock_path)
    if lock is None:
        return ManifestCheck((*drifts, f"{lock_path.name} is missing: {_RELOCK}"))
    drifts += _drift_against_lock(manifest, lock, library, version)
    notes: tuple[str, ...] = ()
    if lock.hash is None:
        notes = (
            f"{lock_path.name} predates sealing (lock format {lock.format}, no seal against "
            "hand edits); `promptlib manifest lock` rewrites it with a seal",
        )
    return ManifestCheck(tuple(drifts), notes)


def check_manifest(manifest_path: Path, library: Library | None = None) -> list[str]:
    """Every drift between the manifest, its lock and the installed library (empty: ok)."""
    return list(verify_manifest(manifest_path, library).drifts)


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
