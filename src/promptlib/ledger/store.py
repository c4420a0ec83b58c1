"""An append-only JSON Lines store of sealed records: the ledger's index.

Schema 2 keeps it at ``evals/ledger/index.jsonl`` (``promptlib.ledger.core``); schema 1 kept
every record, evidence included, in ``evals/ledger.jsonl``.

The format is a contract (see DESIGN.md, "The ledger"):

- One record per line: the canonical JSON of one object (``promptlib._canonical``),
  UTF-8, ending in ``"\\n"``. A reader tolerates a ``"\\r"`` before the newline (a
  Windows checkout); a writer never writes one.
- Every record carries an envelope: ``schema`` (the format version, an int, currently
  ``SCHEMA_VERSION``), ``kind`` (one of ``KINDS``) and ``hash``: the ``sha256:`` digest of
  the canonical JSON of the record without ``hash``. An optional ``time`` must be a string
  (ISO 8601 UTC by convention); it orders records. This module checks only the envelope;
  the fields of each kind are typed in ``promptlib.ledger.records``, which readers and
  ``verify`` use. Adding a kind is a schema change: readers of the old schema would
  report the new kind as a problem.
- The file is only ever appended to. Git merges it with ``merge=union``, so lines from two
  branches interleave in any order and the same record may appear twice. Readers are
  therefore order-independent: they drop exact duplicates (same hash), re-verify every hash
  and return records sorted by ``(time, hash)``, whatever the line order.
- A record is committed when its line, newline included, has been written and fsynced.
  A writer killed mid-write leaves a *torn* last line (no newline). Readers never accept
  it and report it as a problem; the next append (under the lock) moves its bytes aside to
  ``<file>.torn-<line>-<sha256 prefix>`` (written and fsynced first), removes them from the
  file and says so in ``AppendResult.repaired``: bytes are never deleted, because a torn
  line may also be a committed record damaged by hand (one wrong final byte). When the
  unterminated last line is a whole, valid record (only the newline is missing, typically
  after a hand edit in an editor that drops the final newline), the next append adds the
  newline instead. A writer that never saw its append return may then find its record
  committed; appending it again is harmless, because duplicates collapse by hash.
- A line with a ``schema`` newer than ``SCHEMA_VERSION`` stops the reader with a
  ``LedgerError``: an old promptlib must not guess at a newer format.

Writers serialise on an exclusive ``filelock.FileLock`` on ``<path>.lock`` and write each
record with a single ``os.write`` on a descriptor opened with ``O_APPEND``, followed by
``os.fsync``, so concurrent writers never interleave bytes and a crash loses at most the
record being written. Readers take no lock, except to re-read once when they see an
unterminated last line, which may be an append in flight rather than a torn write.

The lock file stays in place between appends (waiters must share its inode); projects
git-ignore it.

Errors are ``promptlib.errors.LedgerError``: from a ``Ledger`` they name the file and,
where there is one, the line or the record; from ``seal`` they name the key path of the
bad value. Each line a reader skips is a ``Problem`` of severity ``error``; a blank line
(skipped) and a record whose line is not in canonical form (kept: its hash still matches)
are ``warning`` problems, which do not fail ``verify``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NoReturn

import filelock

from .._canonical import canonical_json, sha256_hex, sha256_of
from ..errors import LedgerError, Problem

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "AppendResult",
    "LineStore",
    "LineView",
    "Repair",
    "Torn",
    "VerifyReport",
    "seal",
]

#: The newest format version this promptlib writes and reads. A store is opened for one
#: schema (``LineStore(path, schema=1)`` reads a schema-1 file): it writes that schema and
#: refuses lines of a newer one.
SCHEMA_VERSION: Final = 2

#: The record kinds of this schema version.
KINDS: Final = ("run", "release")

_HASH_PREFIX: Final = "sha256:"
_HASH_LENGTH: Final = len(_HASH_PREFIX) + 64
_HEX: Final = frozenset("0123456789abcdef")

# How often a waiting writer retries the lock, in seconds. filelock polls (its default is
# 50 ms); appends take milliseconds, so a short interval keeps a waiting writer from being
# starved by another that appends in a loop.
_POLL: Final = 0.01

# Bytes read per step when the writer scans the file backwards for the start of a torn line.
_CHUNK: Final = 1 << 16


# --- Values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Torn:
    """An unterminated last line: ``line`` is its 1-based number, ``size`` its byte count.

    ``complete`` says whether the bytes are a whole valid record that lacks only its
    newline; the next append then adds the newline instead of removing the line.
    """

    line: int
    size: int
    complete: bool = False

    def message(self) -> str:
        if self.complete:
            return (
                f"last line has no newline ({self.size} bytes): a complete record whose "
                "write was interrupted, or a hand edit; the next append ends it with a "
                "newline, or add the newline by hand"
            )
        return (
            f"torn last line ({self.size} bytes, no newline): an interrupted write; "
            "the next append moves it aside to a .torn file"
        )


@dataclass(frozen=True)
class Repair:
    """What an append did to an unterminated last line before writing.

    ``action`` is ``"truncated"`` (the partial line's ``size`` bytes were moved to
    ``saved`` and removed from the file) or ``"completed"`` (a whole record lacked its
    newline; one was added).
    """

    line: int
    size: int
    action: Literal["truncated", "completed"]
    saved: Path | None = field(default=None, compare=False)

    def __str__(self) -> str:
        if self.action == "completed":
            return f"line {self.line} was a complete record without a newline; added the newline"
        return (
            f"moved a torn last line (line {self.line}, {self.size} bytes, no newline) to "
            f"{self.saved}: an interrupted write leaves one (it was never committed); if "
            "it is a record damaged by hand, restore the line from git"
        )


@dataclass(frozen=True)
class AppendResult:
    """The outcome of ``Ledger.append``: the sealed records as written, in order."""

    path: Path
    records: tuple[dict[str, Any], ...]
    repaired: Repair | None = None
    created: bool = False
    others: bytes = b""

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(str(record["hash"]) for record in self.records)


@dataclass(frozen=True)
class LineView:
    """The valid records of a ledger, deduplicated and in a line-order-independent order.

    ``records`` are sorted by ``(time, hash)``; ``problems`` lists every line that was
    skipped (severity ``error``) or accepted with a remark (severity ``warning``), the torn
    last line included; ``torn`` describes that line, if any.
    """

    path: Path
    records: tuple[dict[str, Any], ...] = ()
    problems: tuple[Problem, ...] = ()
    torn: Torn | None = None

    def of_kind(self, kind: str) -> tuple[dict[str, Any], ...]:
        """The records of one kind, in the view's order."""
        _check_kind_name(kind)
        return tuple(record for record in self.records if record["kind"] == kind)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


@dataclass(frozen=True)
class VerifyReport:
    """The result of re-checking every line, for ``promptlib ledger verify``."""

    path: Path
    lines: int
    records: int
    duplicates: int
    problems: tuple[Problem, ...]
    torn: Torn | None
    kinds: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every line is a valid record (warnings aside) and nothing is torn."""
        return self.torn is None and not any(p.severity == "error" for p in self.problems)

    def summary(self) -> str:
        """One line for people, e.g. ``ledger.jsonl: ok: 12 lines, 11 records (3 release,
        8 run), 1 duplicate``."""
        kinds = ", ".join(f"{count} {kind}" for kind, count in self.kinds.items() if count)
        parts = [
            f"{self.lines} line{'s' if self.lines != 1 else ''}",
            f"{self.records} record{'s' if self.records != 1 else ''}"
            + (f" ({kinds})" if kinds else ""),
        ]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate{'s' if self.duplicates != 1 else ''}")
        errors = sum(p.severity == "error" for p in self.problems)
        warnings = len(self.problems) - errors
        if warnings:
            parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
        verdict = "ok" if self.ok else f"{errors} problem{'s' if errors != 1 else ''}"
        return f"{self.path}: {verdict}: {', '.join(parts)}"


# --- Sealing ------------------------------------------------------------------------------


def seal(record: Mapping[str, Any], schema: int = SCHEMA_VERSION) -> dict[str, Any]:
    """A copy of ``record`` with its envelope: ``schema`` and ``hash`` added.

    The copy holds plain JSON values only (tuples become lists), exactly as a reader will
    see the record. Sealing is idempotent: a ``schema`` already present must equal
    ``SCHEMA_VERSION`` and a ``hash`` already present must match the content, so a record
    edited after sealing is refused rather than silently re-sealed. Raises ``LedgerError``
    for a missing or unknown ``kind``, a non-string ``time`` and values JSON cannot hold
    (NaN, infinity, non-string keys, sets, objects).
    """
    if not isinstance(record, Mapping):
        raise LedgerError(f"a ledger record must be a mapping, not {type(record).__name__}")
    try:
        body = _plain(record, "")
    except RecursionError:
        raise LedgerError("the record is nested too deeply to store as JSON") from None
    assert isinstance(body, dict)
    claimed = body.pop("hash", None)
    if "kind" not in body:
        raise LedgerError(f"a ledger record needs a 'kind' (one of: {', '.join(KINDS)})")
    kind = body["kind"]
    if kind not in KINDS:
        raise LedgerError(f"unknown record kind {kind!r}; known kinds: {', '.join(KINDS)}")
    claimed_schema = body.setdefault("schema", schema)
    if type(claimed_schema) is not int or claimed_schema != schema:
        raise LedgerError(
            f"the record says schema {claimed_schema!r}, but this store writes schema "
            f"{schema}; remove 'schema' and let seal() set it"
        )
    if "time" in body and not isinstance(body["time"], str):
        raise LedgerError(
            f"'time' must be a string (ISO 8601, UTC), not {type(body['time']).__name__}"
        )
    digest = sha256_of(body)
    if claimed is not None and claimed != digest:
        raise LedgerError(
            f"the record's hash {claimed!r} does not match its content ({digest}): it was "
            "changed after it was sealed; remove 'hash' to seal the new content"
        )
    body["hash"] = digest
    return body


def _plain(value: Any, where: str) -> Any:
    """A copy of ``value`` built from JSON types only; names the key path of a bad value."""
    # Exact builtin types come back from json.loads, so the sealed record equals what a
    # reader sees; subclasses (enums, str subclasses) are reduced to their builtin value.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            _not_json(where, f"{value!r} has no JSON form; store null or a string instead")
        return float(value)
    if isinstance(value, Mapping):
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _not_json(where, f"key {key!r} is not a string; JSON object keys are strings")
            copy[str.__str__(key)] = _plain(item, f"{where}.{key}" if where else key)
        return copy
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
    _not_json(where, f"a {type(value).__name__} is not a JSON value")


def _not_json(where: str, message: str) -> NoReturn:
    raise LedgerError(f"cannot store the record as JSON: {where or 'record'}: {message}")


def _check_kind_name(kind: str) -> None:
    if kind not in KINDS:
        raise LedgerError(f"unknown record kind {kind!r}; known kinds: {', '.join(KINDS)}")


# --- Reading ------------------------------------------------------------------------------


class _LineError(Exception):
    """A line is not a valid record; ``key`` names the envelope field, if one is at fault."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a record with both is ambiguous.
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice in one object")
        result[key] = item
    return result


def _parse_line(raw: bytes, where: str, number: int, newest: int) -> tuple[dict[str, Any], bool]:
    """The record on one line and whether the line is in canonical form.

    Raises ``_LineError`` for a line that is not a valid record, and ``LedgerError`` at
    once for a record of a newer schema.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _LineError(
            f"not UTF-8 text (byte {exc.start + 1}); restore the line from git or delete it"
        ) from None
    # The fast path, for lines in canonical form (what promptlib writes): a plain parse,
    # then one serialisation that both proves the line canonical (a line with a key given
    # twice cannot be) and gives the hashed bytes. Anything else takes the slow path, which
    # names the problem.
    canonical = False
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        canonical = isinstance(value, dict) and canonical_json(value) == text
    except (ValueError, RecursionError):
        pass
    if not canonical:
        try:
            value = json.loads(
                text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
            )
        except (ValueError, RecursionError) as exc:
            raise _LineError(
                f"not a JSON record ({exc}); restore the line from git or delete it"
            ) from None
    if not isinstance(value, dict):
        raise _LineError(
            f"not a JSON object but a {type(value).__name__}; restore the line or delete it"
        )
    missing = [name for name in ("schema", "kind", "hash") if name not in value]
    if missing:
        raise _LineError(
            f"missing envelope field{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            "records are written by promptlib, not by hand: delete the line",
            missing[0],
        )
    schema = value["schema"]
    if type(schema) is not int or schema < 1:
        raise _LineError(f"schema must be a positive integer, not {schema!r}", "schema")
    if schema > newest:
        raise LedgerError(
            f"{where}: line {number}: written by a newer promptlib (schema {schema} > "
            f"{newest}); upgrade promptlib to read this ledger"
        )
    kind = value["kind"]
    if kind not in KINDS:
        raise _LineError(
            f"unknown record kind {kind!r} for schema {schema}; known kinds: {', '.join(KINDS)}",
            "kind",
        )
    claimed = value["hash"]
    if (
        not isinstance(claimed, str)
        or not claimed.startswith(_HASH_PREFIX)
        or len(claimed) != _HASH_LENGTH
        or not _HEX.issuperset(claimed[len(_HASH_PREFIX) :])
    ):
        raise _LineError(f"hash must be 'sha256:' and 64 hex digits, not {claimed!r}", "hash")
    if canonical:
        # The canonical form without the top-level "hash" member is the canonical form of
        # the body (removing a key keeps the others sorted). The member's text cannot occur
        # earlier in the line: that would need the record to contain its own hash.
        member = f'"hash":{json.dumps(claimed)}'
        body_text = (
            text.replace("," + member, "", 1)
            if "," + member in text
            else text.replace(member + ",", "", 1)
        )
        digest = sha256_hex(body_text.encode("utf-8"))
    else:
        body = {key: item for key, item in value.items() if key != "hash"}
        try:
            digest = sha256_of(body)
        except (ValueError, RecursionError) as exc:
            raise _LineError(f"the record has no canonical form ({exc}); delete the line") from None
    if digest != claimed:
        raise _LineError(
            f"hash mismatch: the line says {claimed} but its content hashes to {digest}; "
            "the record was changed after it was written: restore it from git or delete it",
            "hash",
        )
    if "time" in value and not isinstance(value["time"], str):
        raise _LineError(f"time must be a string, not {value['time']!r}", "time")
    return value, canonical


@dataclass
class _Scan:
    lines: int = 0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    line_of: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    torn: Torn | None = None
    unreadable: set[str] = field(default_factory=set)


_HASH_IN_LINE: Final = re.compile(rb'"hash":"(sha256:[0-9a-f]{64})"')


def _scan(
    data: bytes,
    where: str,
    newest: int,
    keep: Callable[[dict[str, Any], bytes], Any] | None = None,
) -> _Scan:
    scan = _Scan()
    lines = data.split(b"\n")
    tail = lines.pop()
    scan.lines = len(lines) + (1 if tail else 0)
    for number, raw in enumerate(lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            scan.problems.append(Problem(where, number, "", "blank line; ignored", "warning"))
            continue
        try:
            record, canonical = _parse_line(raw, where, number, newest)
        except _LineError as exc:
            scan.problems.append(Problem(where, number, exc.key, str(exc)))
            # The hashes a damaged line still shows: a record appended after it is not
            # reported as following a deleted line (the damaged line is reported already).
            scan.unreadable.update(m.decode() for m in _HASH_IN_LINE.findall(raw))
            continue
        if not canonical:
            scan.problems.append(
                Problem(
                    where,
                    number,
                    "",
                    "not in canonical form (the hash still matches, so the record is "
                    "kept); it was reformatted after promptlib wrote it",
                    "warning",
                )
            )
        digest = record["hash"]
        if digest in scan.records:
            scan.duplicates += 1
        else:
            scan.records[digest] = record if keep is None else keep(record, raw)
            scan.line_of[digest] = number
    if tail:
        scan.torn = Torn(len(lines) + 1, len(tail), _is_record(tail, where, len(lines) + 1, newest))
        scan.problems.append(Problem(where, scan.torn.line, "", scan.torn.message()))
    scan.problems.sort()
    return scan


def _gaps(scan: _Scan, where: str) -> list[Problem]:
    """A record whose ``after`` names a record that is not in the file: the line before it
    was deleted (or the file was cut). Deleting the last lines, or a line together with
    every line that names it, leaves no trace: see docs/security.md."""
    problems = []
    for digest, record in scan.records.items():
        after = record.get("after")
        if isinstance(after, str) and after not in scan.records and after not in scan.unreadable:
            problems.append(
                Problem(
                    where,
                    scan.line_of[digest],
                    "after",
                    f"this record was appended after {after[:19]}..., which is not in the "
                    "file: a line was deleted; restore the file from git",
                )
            )
    return problems


def _is_record(raw: bytes, where: str, number: int, newest: int) -> bool:
    try:
        _parse_line(raw.removesuffix(b"\r"), where, number, newest)
    except _LineError:
        return False
    return True


def _order(record: Mapping[str, Any]) -> tuple[str, str]:
    return (record.get("time", ""), record["hash"])


# --- Writing ------------------------------------------------------------------------------


class LineStore:
    """The ledger file at ``path``; nothing is read or created until a method is called.

    ``lock_timeout`` is how long, in seconds, ``append`` waits for another writer.
    ``chain`` makes every appended record name the hash of the record on the line before
    it (``after``, sealed with it), so that ``verify`` can tell when a line was deleted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: int = SCHEMA_VERSION,
        lock_timeout: float = 60.0,
        chain: bool = False,
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.chain = chain
        self.lock_path = Path(f"{os.fspath(path)}.lock")
        self.lock_timeout = lock_timeout
        self._lock = filelock.FileLock(self.lock_path, timeout=lock_timeout)
        # Bytes of the file this process has read or written (whole lines only).
        self.seen = 0

    def __repr__(self) -> str:
        return f"LineStore({os.fspath(self.path)!r}, schema={self.schema})"

    @property
    def _where(self) -> str:
        return os.fspath(self.path)

    # Reading.

    def each(
        self, keep: Callable[[dict[str, Any], bytes], Any]
    ) -> tuple[list[Any], tuple[Problem, ...], Torn | None]:
        """``keep(record, line)`` of every valid record, deduplicated, in line order.

        For readers that keep less than every record's parsed form (the ledger's view keeps
        a few fields and the line itself), so that a long index is never held twice.
        """
        scan = _scan(self._snapshot(), self._where, self.schema, keep)
        return list(scan.records.values()), tuple(scan.problems), scan.torn

    def read(self) -> LineView:
        """The valid records, deduplicated and sorted; a missing file is an empty ledger."""
        scan = _scan(self._snapshot(), self._where, self.schema)
        return LineView(
            path=self.path,
            records=tuple(sorted(scan.records.values(), key=_order)),
            problems=tuple(scan.problems),
            torn=scan.torn,
        )

    def verify(self, *, bodies: bool = True) -> VerifyReport:
        """Re-check every line: envelopes, hashes, duplicates and the last line's newline,
        and (unless ``bodies`` is False) that each record's body is one readers can use."""
        from .records import body_problems

        scan = _scan(self._snapshot(), self._where, self.schema)
        for digest, record in scan.records.items() if bodies else ():
            for problem in body_problems(record):
                scan.problems.append(
                    Problem(
                        self._where,
                        scan.line_of[digest],
                        "",
                        f"malformed {record['kind']} record: {problem}; restore the line "
                        "from git or delete it",
                    )
                )
        if self.chain:
            scan.problems += _gaps(scan, self._where)
        scan.problems.sort()
        kinds = Counter(record["kind"] for record in scan.records.values())
        return VerifyReport(
            path=self.path,
            lines=scan.lines,
            records=len(scan.records),
            duplicates=scan.duplicates,
            problems=tuple(scan.problems),
            torn=scan.torn,
            kinds={kind: kinds[kind] for kind in KINDS},
        )

    def _snapshot(self) -> bytes:
        data = self._snapshot_bytes()
        # Where this process's view ends: ``append(unless=...)`` looks at what others
        # appended after it.
        self.seen = len(data) - (len(data) - data.rfind(b"\n") - 1 if data else 0)
        return data

    def _snapshot_bytes(self) -> bytes:
        data = self._read_bytes()
        if data and not data.endswith(b"\n"):
            # An unterminated last line is either torn or an append in flight; a writer
            # holds the lock for the whole append, so a read under the lock tells them apart.
            # Without write access to the folder there is no lock to take: report as seen.
            try:
                with self._lock.acquire(timeout=self.lock_timeout, poll_interval=_POLL):
                    data = self._read_bytes()
            except (OSError, filelock.Timeout):
                pass
        return data

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise LedgerError(f"{self._where}: cannot read the ledger: {exc.strerror}") from exc

    # Writing.

    def append(
        self,
        records: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        *,
        unless: Callable[[bytes], bool] | None = None,
    ) -> AppendResult:
        """Seal ``records`` (one mapping or several) and append them, each one committed
        (written and fsynced) before the next; returns them as written.

        Every record is sealed before anything is written, so an invalid record appends
        nothing. An unterminated last line left by an earlier, interrupted writer is
        repaired first and reported in ``AppendResult.repaired``. ``append([])`` writes
        nothing but still repairs.

        ``unless(lines)`` is called under the lock with the lines other writers appended
        since this store last read or wrote the file; when it is true nothing is appended
        (``AppendResult.records`` is empty and ``others`` holds those lines): concurrent
        processes doing the same work record it once.
        """
        batch = [records] if isinstance(records, Mapping) else list(records)
        sealed: list[dict[str, Any]] = []
        for index, record in enumerate(batch, start=1):
            try:
                sealed.append(seal(record, self.schema))
            except LedgerError as exc:
                raise LedgerError(
                    f"{self._where}: nothing appended: record {index} of {len(batch)}: {exc}"
                ) from exc
        if not sealed and not self.path.exists():
            return AppendResult(self.path, ())
        lines = [(canonical_json(record) + "\n").encode("utf-8") for record in sealed]
        committed = 0
        try:
            _make_folders(self.path.parent)
            with self._lock.acquire(timeout=self.lock_timeout, poll_interval=_POLL):
                fd, created = _open_for_append(self.path)
                try:
                    if created:
                        _fsync_folder(self.path.parent)
                    repaired = self._repair(fd)
                    if unless is not None:
                        size = os.fstat(fd).st_size
                        others = _read_at(fd, size - min(self.seen, size), min(self.seen, size))
                        if others and unless(others):
                            self.seen = size
                            return AppendResult(self.path, (), repaired, created, others)
                    if self.chain:
                        sealed, lines = self._chained(fd, batch)
                    for line in lines:
                        _commit(fd, line)
                        committed += 1
                    self.seen = os.fstat(fd).st_size
                finally:
                    os.close(fd)
        except filelock.Timeout:
            raise LedgerError(
                f"{self._where}: another writer has held the lock {self.lock_path} for over "
                f"{self.lock_timeout:g} s; wait for it to finish and try again"
            ) from None
        except OSError as exc:
            raise LedgerError(
                f"{self._where}: cannot append to the ledger: {exc.strerror or exc}; "
                f"{committed} of {len(lines)} records were committed before the error, and "
                "the next append removes any partial last line"
            ) from exc
        return AppendResult(self.path, tuple(sealed), repaired, created)

    def _chained(
        self, fd: int, batch: list[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[bytes]]:
        """``batch`` sealed again, each record naming the one before it (the caller holds
        the lock and has repaired the last line)."""
        size = os.fstat(fd).st_size
        previous: str | None = None
        if size:
            last = _read_at(fd, size - _line_start(fd, size - 1), _line_start(fd, size - 1))
            try:
                value = json.loads(last)
                previous = value.get("hash") if isinstance(value, dict) else None
            except ValueError:
                previous = None  # a damaged last line: verify reports it
        sealed: list[dict[str, Any]] = []
        for record in batch:
            body = {key: item for key, item in record.items() if key not in ("hash", "after")}
            if previous is not None:
                body["after"] = previous
            sealed.append(seal(body, self.schema))
            previous = sealed[-1]["hash"]
        return sealed, [(canonical_json(r) + "\n").encode("utf-8") for r in sealed]

    def _repair(self, fd: int) -> Repair | None:
        """Deal with an unterminated last line; the caller holds the lock."""
        size = os.fstat(fd).st_size
        if size == 0 or _read_at(fd, 1, size - 1) == b"\n":
            return None
        start = _line_start(fd, size)
        tail = _read_at(fd, size - start, start)
        number = _count_newlines(fd, start) + 1
        if _is_record(tail, self._where, number, self.schema):
            _commit(fd, b"\n")
            return Repair(number, len(tail), "completed")
        saved = self._save_aside(tail, number)
        os.ftruncate(fd, start)
        os.fsync(fd)
        return Repair(number, len(tail), "truncated", saved)

    def _save_aside(self, data: bytes, number: int) -> Path:
        """Keep the bytes of a torn line in a file of their own, durably, before they are
        cut from the ledger; its name says the line and the bytes' digest."""
        target = self.path.with_name(f"{self.path.name}.torn-{number}-{sha256_hex(data)[:12]}")
        if target.exists() and target.read_bytes() == data:
            return target
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _commit(fd, data)
        finally:
            os.close(fd)
        os.replace(partial, target)
        _fsync_folder(target.parent)
        return target


def _open_for_append(path: Path) -> tuple[int, bool]:
    """A descriptor for appending, and whether this call created the file."""
    # Descriptors from os.open are not inherited by child processes (PEP 446).
    flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_BINARY", 0)
    while True:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            pass
        try:
            return os.open(path, flags), False
        except FileNotFoundError:
            # Deleted between the two calls; try to create it again.
            continue


def _commit(fd: int, data: bytes) -> None:
    """Write ``data`` at the end of the file in one ``os.write`` and fsync it.

    A regular file takes the whole buffer in one call; the loop only makes a short write
    (a signal, a size limit) correct. If writing fails part-way, the partial line is cut
    off again, so that a failed append leaves the file as it was when it can.
    """
    before = os.fstat(fd).st_size
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(f"os.write wrote {written} of {len(view)} bytes")
            view = view[written:]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, before)
        raise
    os.fsync(fd)


def _line_start(fd: int, size: int) -> int:
    """The offset just after the last newline before ``size`` (0 when there is none)."""
    end = size
    while end > 0:
        begin = max(0, end - _CHUNK)
        found = _read_at(fd, end - begin, begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        end = begin
    return 0


def _count_newlines(fd: int, end: int) -> int:
    count = 0
    offset = 0
    while offset < end:
        block = _read_at(fd, min(1 << 20, end - offset), offset)
        if not block:
            break
        count += block.count(b"\n")
        offset += len(block)
    return count


def _read_at(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset`` (seek and read: os.pread is POSIX-only).

    Moving the offset is harmless: with O_APPEND every write goes to the end anyway.
    """
    os.lseek(fd, offset, os.SEEK_SET)
    parts: list[bytes] = []
    while length > 0:
        block = os.read(fd, length)
        if not block:
            break
        parts.append(block)
        length -= len(block)
    return b"".join(parts)


def _make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, making each new entry durable."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    if not missing:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        _fsync_folder(created.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a new directory entry in ``folder`` durable (POSIX; Windows has no such call)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (network, FUSE) cannot fsync a directory; the file's own
        # fsync is then all the durability there is.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
