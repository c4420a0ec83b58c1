"""Content-addressed objects: immutable evidence stored beside the ledger's index.

An object is a JSON value stored as its canonical JSON (``promptlib._canonical``), gzip
compressed, at ``objects/<first 2 hex>/<other 62 hex>.json.gz`` where the hex digits are the
sha256 of the canonical JSON bytes. The name is the integrity check: reading an object
hashes what it decompressed and refuses a mismatch. References to objects are written
``sha256:<64 hex>``, like every other hash of promptlib.

Objects are never rewritten. A writer writes a temporary file in the target folder,
fsyncs it, and links it to its final name; if the name already exists the object is
already there (same name, same content) and the temporary file is removed. A process
killed at any point leaves either no file under the final name or the whole object, never
a partial one; left-over temporary files (``.tmp-*``) are ignored by readers and removed by
``verify``'s callers when they want. Two branches that add objects never conflict in a git
merge: they add different files, or the same file with the same bytes.

gzip is written with ``mtime=0`` and no file name, so the same object has the same bytes
on every machine.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from .._canonical import canonical_json
from ..errors import LedgerError

__all__ = ["MissingObjectError", "ObjectStore", "is_reference"]

_PREFIX: Final = "sha256:"
_REFERENCE = re.compile(r"^sha256:[0-9a-f]{64}$")
_SUFFIX: Final = ".json.gz"


class MissingObjectError(LedgerError):
    """A referenced object is not in the store; ``digest`` names it."""

    def __init__(self, message: str, *, digest: str) -> None:
        self.digest = digest
        super().__init__(message)


def is_reference(value: object) -> bool:
    """Whether ``value`` is written like an object reference (``sha256:`` and 64 hex)."""
    return isinstance(value, str) and _REFERENCE.match(value) is not None


def encode(value: Any) -> tuple[str, bytes]:
    """The reference and the canonical JSON bytes of ``value``."""
    data = canonical_json(value).encode("utf-8")
    return _PREFIX + hashlib.sha256(data).hexdigest(), data


class ObjectStore:
    """The objects under ``root`` (``evals/ledger/objects``); nothing happens until used."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ObjectStore({os.fspath(self.root)!r})"

    def path_of(self, reference: str) -> Path:
        if not is_reference(reference):
            raise LedgerError(f"{reference!r} is not an object reference (sha256: and 64 hex)")
        digest = reference[len(_PREFIX) :]
        return self.root / digest[:2] / (digest[2:] + _SUFFIX)

    def __contains__(self, reference: object) -> bool:
        return is_reference(reference) and self.path_of(str(reference)).is_file()

    # Writing.

    def put(self, value: Any) -> str:
        """Store ``value`` (once) and return its reference."""
        reference, data = encode(value)
        self.put_bytes(reference, data)
        return reference

    def put_bytes(self, reference: str, data: bytes) -> None:
        """Store canonical JSON ``data`` under ``reference`` (which must be its sha256)."""
        final = self.path_of(reference)
        if final.is_file():
            return
        folder = final.parent
        created = not folder.is_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if created:
                _fsync_folder(folder.parent)
            compressed = gzip.compress(data, compresslevel=6, mtime=0)
            fd, temporary = _temporary(folder)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(compressed)
                    handle.flush()
                    os.fsync(handle.fileno())
                # Written meanwhile by another process: same name, same content.
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, final)
                _fsync_folder(folder)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
        except OSError as exc:
            raise LedgerError(
                f"{final}: cannot write the ledger object: {exc.strerror or exc}; nothing was "
                "recorded under its name"
            ) from exc

    # Reading.

    def get_bytes(self, reference: str) -> bytes:
        """The canonical JSON bytes of the object, checked against its name."""
        path = self.path_of(reference)
        try:
            compressed = path.read_bytes()
        except FileNotFoundError:
            raise MissingObjectError(
                f"{path}: the ledger object {reference} is missing; fetch it (git lfs pull, "
                "dvc pull) or re-run the evaluation that made it",
                digest=reference,
            ) from None
        except OSError as exc:
            raise LedgerError(f"{path}: cannot read the ledger object: {exc.strerror}") from exc
        try:
            data = gzip.decompress(compressed)
        except (OSError, EOFError, zlib.error) as exc:
            raise LedgerError(
                f"{path}: the ledger object is not valid gzip ({exc}); delete it and re-run "
                "the evaluation that made it"
            ) from None
        actual = _PREFIX + hashlib.sha256(data).hexdigest()
        if actual != reference:
            raise LedgerError(
                f"{path}: the ledger object's content hashes to {actual}, not its name "
                f"{reference}: it was changed after it was written; delete it and re-run the "
                "evaluation that made it"
            )
        return data

    def get(self, reference: str) -> Any:
        """The object's JSON value, checked against its name."""
        data = self.get_bytes(reference)
        try:
            return json.loads(data)
        except ValueError as exc:  # pragma: no cover - its hash matched canonical JSON
            raise LedgerError(f"{self.path_of(reference)}: not JSON: {exc}") from None

    def problem(self, reference: str) -> str | None:
        """What is wrong with the object (missing, unreadable, altered), or None."""
        try:
            self.get_bytes(reference)
        except LedgerError as exc:
            return str(exc)
        return None

    def __iter__(self) -> Iterator[str]:
        """Every stored object's reference (temporary files skipped), sorted."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in sorted(folder.iterdir()):
                if path.name.endswith(_SUFFIX) and not path.name.startswith("."):
                    yield _PREFIX + folder.name + path.name[: -len(_SUFFIX)]


def _temporary(folder: Path) -> tuple[int, str]:
    """A new temporary file in ``folder`` (readers skip names starting with a dot)."""
    while True:
        name = folder / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), str(name)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def _fsync_folder(folder: Path) -> None:
    """Make a new directory entry in ``folder`` durable (POSIX; Windows has no such call)."""
    if os.name == "nt":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (network, FUSE) cannot fsync a directory.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
