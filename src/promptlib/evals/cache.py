"""The response cache: SQLite in WAL mode, keyed by an explicit request fingerprint.

The key is ``sha256:`` over the canonical JSON of the request's cache material: the key
format (``KEY_FORMAT``), the provider fingerprint, the rendered messages, the generation
parameters, the output spec and the repeat index (``Request.cache_material``). Answers
cached under the previous format's key are found and moved under the new one on first use.
The material itself is stored beside the response (each message once, by hash), so every
entry says exactly what it answers. No secret is part of any of it. Providers that answer
locally and deterministically (``Provider.cacheable = False``, e.g. the retrieval baseline)
bypass the cache: recomputing is cheaper than a lookup. Each response is committed as soon
as it arrives (the responses that arrive in the same turn of the event loop, in one
transaction at the end of that turn), so an interrupted eval resumes where it stopped:
re-running makes only the calls that had not completed.

Modes: ``on`` (read and write), ``off`` (neither), ``read-only`` (read, never write) and
``refresh`` (never read, write the new answers).

Trust. A cached answer is scored as if the provider had just sent it, so a row is never
taken on faith. Each row carries a ``digest`` (``row_digest``: ``sha256:`` over the row's
key, a newline and the stored canonical response text), written with it. A row whose
digest does not match, whose response is not JSON, or whose JSON is not a response
(``text`` a string, ``usage`` null or two non-negative integer token counts, ``cost`` null
or a number, ``model`` null or a string) is a *miss*: ``get`` returns None and records why
in ``warnings``, the runner asks the provider again and ``put`` replaces the row. Rows
written before the digest existed (an older cache file: the column is added when the file
is opened) have none: such a row is read once if it is a well-formed response and its
digest is filled in then, so later changes to it are caught. The digest detects damage
and edits that did not recompute it; it is not a signature (whoever can write the file can
write a matching digest), and the cache is as trusted as the project folder it lives in.

A file that is not a SQLite database, or a damaged one, is a ``ConfigError`` naming the
file and saying that deleting it is safe: it only holds cached answers, so deleting it
costs calls, never results (the runs are in the ledger).

Concurrent evals. Several processes evaluating the same work (CI shards, a developer's two
terminals) share one cache file, and each would otherwise ask the provider for every
answer the others are still waiting for. In mode ``on``, a process that misses *claims*
the key before calling (``claim``: a row of ``claims``, taken in a write transaction) and
the others wait for its answer instead of asking too. The runner looks up and claims with
``reserve``: the look-ups of one turn of the event loop are one read, and their claims are
taken in the transaction that commits the turn's answers; ``put`` stores the answer and drops
the claim, a failed call drops it (``release``) so that a waiter asks for itself. A claim
is a lease: it expires ``LEASE`` seconds after it was taken or last renewed (``renew``,
which the runner calls while it works), and a claim of a process that is gone from this
machine is taken over at once, so a crashed eval never blocks another for long.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from .._canonical import canonical_json, sha256_hex, sha256_of
from ..errors import ConfigError

if TYPE_CHECKING:
    import asyncio

    # Imported when a response is read (``get``): importing the provider contract pulls
    # in the prompt model, pydantic and Jinja, which commands that only need ``CacheMode``
    # (every ``promptlib`` invocation registers ``eval``'s options) should not pay for.
    from ..providers.contract import Request, Response

    #: A look-up waiting for the end of its turn: key, what asked for it, its future.
    _Asked = tuple[str, str | None, asyncio.Future[tuple[Response | None, bool]]]

__all__ = ["KEY_FORMAT", "LEASE", "CacheMode", "ResponseCache", "row_digest"]

#: The version of the response-cache key's format; part of every key.
KEY_FORMAT = "promptlib-cache-key/2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    material TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    digest TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    hash TEXT PRIMARY KEY,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
);
"""

#: Seconds a claim on a key lives unless its owner renews it (``ResponseCache.renew``).
LEASE = 30.0

# How many untrusted rows ``warnings`` describes one by one before it only counts them.
_SHOWN = 5


class CacheMode(str, enum.Enum):
    on = "on"
    off = "off"
    read_only = "read-only"
    refresh = "refresh"


def row_digest(key: str, response: str) -> str:
    """The digest a row stores: of its key and its stored response text.

    The key is part of it so that an answer copied under another request's key is caught
    as well as an edited one.
    """
    return sha256_hex(f"{key}\n{response}".encode())


# Keys looked up by one statement (SQLite allows 32,766 parameters since 3.32, 999 before).
_READ_BATCH = 512

# How many messages ``put`` remembers the hash of (``_message_ref``).
_RECENT = 256

# How long opening the cache waits for other processes that hold its lock (seconds).
_OPEN_TIMEOUT = 10.0


def _locked(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLite's busy answer ("database is locked" / "is busy")."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class ResponseCache:
    """A response cache in one SQLite file (``.promptlib/cache.sqlite`` by default)."""

    def __init__(self, path: Path | None, mode: CacheMode = CacheMode.on) -> None:
        self.mode = mode
        self.path = path
        self.hits = 0
        self.writes = 0
        #: Rows found untrusted (digest mismatch, not JSON, not a response): each was a miss.
        self.untrusted = 0
        #: Rows written before digests existed, read once and given their digest.
        self.backfilled = 0
        # Why each untrusted key was not trusted, by key: a key looked up again (after a
        # wait for another process) is described once.
        self._problems: dict[str, str] = {}
        # This cache's identity as a claim owner, and the keys it has claimed.
        self._owner = uuid.uuid4().hex
        self._host = socket.gethostname()
        self._claims: set[str] = set()
        self._stored: set[str] = set()
        # Answers ``put`` inside an event loop, committed when the loop's turn ends.
        self._pending: dict[str, _Pending] = {}
        self._queued: set[str] = set()  # the hashes of the new messages they hold
        self._flush_loop: Any = None  # the loop in which a flush is scheduled
        self._asked: list[_Asked] = []  # look-ups (``reserve``) waiting for the turn's end
        self._recent: dict[tuple[Any, Any], tuple[str, str]] = {}  # see ``_message_ref``
        self._failure: ConfigError | None = None
        self._db: sqlite3.Connection | None = None
        self._has_digest = True
        if mode is CacheMode.off or path is None:
            self.mode = CacheMode.off
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot open the response cache: {exc}") from None
        # Processes that open a new file at once (the shards of one run on one machine)
        # race to switch it to WAL and create the table. SQLite answers some of those
        # races with "database is locked" at once, without waiting for the busy timeout
        # (to avoid a deadlock), so the set-up is tried again for as long as that timeout.
        deadline = time.monotonic() + _OPEN_TIMEOUT
        while True:
            try:
                self._db = sqlite3.connect(
                    path, isolation_level=None, check_same_thread=False, timeout=_OPEN_TIMEOUT
                )
                self._db.execute(f"PRAGMA busy_timeout={int(_OPEN_TIMEOUT * 1000)}")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                self._has_digest = self._migrate()
                return
            except sqlite3.OperationalError as exc:
                self.close()
                if not _locked(exc) or time.monotonic() > deadline:
                    raise self._error(exc, "cannot open the response cache") from None
                time.sleep(0.05)
            except sqlite3.Error as exc:
                self.close()
                raise self._error(exc, "cannot open the response cache") from None

    def _migrate(self) -> bool:
        """Add the ``digest`` column to a cache file written before it existed.

        Returns whether the table has the column: a ``read-only`` cache changes nothing,
        so an old file read that way is read as before (without digests to check).
        """
        assert self._db is not None
        if self._columns() >= {"digest"}:
            return True
        if self.mode is CacheMode.read_only:
            return False
        # Several evals may open the same old file at once: the first one to take the
        # write lock adds the column, the others then see it.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if "digest" not in self._columns():
                self._db.execute("ALTER TABLE responses ADD COLUMN digest TEXT")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return True

    def _columns(self) -> set[str]:
        assert self._db is not None
        return {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}

    def _error(self, exc: sqlite3.Error, what: str) -> ConfigError:
        """``exc`` as a ``ConfigError`` that says what to do about it.

        An ``OperationalError`` is about access (a folder in the way, no permission, a lock
        held too long); any other database error means the file itself is not a usable
        SQLite database, and deleting it is the fix.
        """
        if isinstance(exc, sqlite3.OperationalError):
            return ConfigError(f"{self.path}: {what}: {exc}")
        assert self.path is not None
        name = self.path.name
        return ConfigError(
            f"{self.path}: {what}: {exc}: the file is not a usable SQLite database. It only "
            "holds cached provider answers, so deleting it is safe: it costs those calls "
            "again, never a result (runs are kept in the ledger). Delete it (with "
            f"{name}-wal and {name}-shm beside it, if present) and run again, or run with "
            "--cache off"
        )

    @staticmethod
    def key(request: Request, provider_fingerprint: str) -> tuple[str, dict[str, Any]]:
        """The key of ``request`` and the material it hashes (``KEY_FORMAT`` included)."""
        material = {"format": KEY_FORMAT, **request.cache_material(provider_fingerprint)}
        return sha256_of(material), material

    @staticmethod
    def legacy_key(request: Request, provider_fingerprint: str) -> str:
        """The key promptlib 1.0 to 2.1 used (no format field), to find their answers."""
        return sha256_of(request.cache_material(provider_fingerprint))

    def get(self, key: str, about: str | None = None) -> Response | None:
        """The answer cached under ``key``, or None: absent, or present but not trusted.

        An untrusted row (see the module docstring) is a miss, counted in ``untrusted`` and
        described in ``warnings`` (by ``about``, what asked for it, when given); the
        caller's ``put`` of the new answer replaces it.
        """
        if self._db is None or self.mode in (CacheMode.off, CacheMode.refresh):
            return None
        queued = self._pending.get(key)
        if queued is not None:
            self.hits += 1
            return queued.response
        column = "digest" if self._has_digest else "NULL"
        try:
            row = self._db.execute(
                f"SELECT response, {column} FROM responses WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot read the response cache") from None
        if row is None:
            return None
        text, digest = row
        response = self._trusted(key, text, digest, about)
        if response is None:
            return None
        if self._unsealed(digest):
            # Written before digests existed: trusted this once, and sealed from now on.
            self._write(
                "UPDATE responses SET digest = ? WHERE key = ? AND digest IS NULL",
                (row_digest(key, text), key),
            )
            self.backfilled += 1
        self.hits += 1
        return response

    def _trusted(self, key: str, text: Any, digest: Any, about: str | None) -> Response | None:
        """The answer a row read under ``key`` holds, or None when the row is not trusted
        (recorded in ``warnings``)."""
        try:
            if not isinstance(text, str):
                raise ValueError("its response is not text")
            if digest is not None and digest != row_digest(key, text):
                raise ValueError("its response does not match its digest")
            try:
                return _response(json.loads(text))
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"its response is not a cached answer ({exc})") from None
        except ValueError as exc:
            where = f"{about} ({key[:19]}...)" if about else f"{key[:19]}..."
            self._problems[key] = f"{where}: {exc}"
            self.untrusted = len(self._problems)
            return None

    def _unsealed(self, digest: Any) -> bool:
        """Whether a trusted row without a digest is to be given one now."""
        return digest is None and self._has_digest and self.mode is not CacheMode.read_only

    @property
    def warnings(self) -> list[str]:
        """What was not trusted so far, as lines to show the user (empty when all was well)."""
        if not self._problems:
            return []
        shown = "; ".join(list(self._problems.values())[:_SHOWN])
        more = len(self._problems) - _SHOWN
        rest = f"; and {more} more" if more > 0 else ""
        fate = (
            "each was asked again and replaced"
            if self.mode is CacheMode.on
            else "each was asked again (this cache mode does not replace it)"
        )
        return [
            f"response cache {self.path}: {self.untrusted} cached answer(s) not trusted "
            f"({shown}{rest}); {fate}"
        ]

    def take_warnings(self) -> list[str]:
        """``warnings``, then forget them (each is shown once)."""
        shown = self.warnings
        self._problems.clear()
        self.untrusted = 0
        return shown

    def put(self, key: str, material: dict[str, Any], response: Response) -> None:
        """Store ``response`` under ``key`` with its digest.

        The material is stored with each message replaced by the hash of its canonical
        JSON; messages live once in their own table, since the instructions and few-shot
        turns of a prompt are the same for every row. The row, its new messages and the
        release of this cache's claim on ``key`` are one transaction: a process waiting
        for the claim to go finds the row.

        Outside an event loop the answer is committed at once. Inside one, the answers
        put during one turn of the loop are committed together, in one transaction, when
        that turn ends (``flush``; also on ``close`` and before any read of the file), so
        a commit is paid per turn rather than per answer, and an answer is never left
        uncommitted while the process waits for anything else. ``get`` sees it meanwhile.
        """
        if self._db is None or self.mode in (CacheMode.off, CacheMode.read_only):
            return
        self._raise_failure()
        refs = []
        new_messages = []
        for message in material["messages"]:
            digest, text = self._message_ref(message)
            if digest not in self._stored and digest not in self._queued:
                new_messages.append((digest, text))
                self._queued.add(digest)
            refs.append(digest)
        compact = {**material, "messages": refs}
        stored = canonical_json(response.to_dict())
        row = (key, canonical_json(compact), stored, time.time(), row_digest(key, stored))
        self._pending[key] = _Pending(row, new_messages, response)
        loop = _running_loop()
        if loop is None:
            self.flush()
        else:
            self._at_turn_end(loop)

    def _message_ref(self, message: dict[str, Any]) -> tuple[str, str]:
        """A message's hash and canonical JSON. The instructions and few-shot turns of a
        prompt come back with every row, so the last few are remembered."""
        role, content = message.get("role"), message.get("content")
        remembered = (
            (role, content)
            if len(message) == 2 and isinstance(role, str) and isinstance(content, str)
            else None
        )
        found = self._recent.get(remembered) if remembered is not None else None
        if found is not None:
            return found
        text = canonical_json(message)
        ref = sha256_hex(text.encode("utf-8")), text
        if remembered is not None:
            if len(self._recent) >= _RECENT:
                self._recent.clear()
            self._recent[remembered] = ref
        return ref

    async def reserve(self, key: str, about: str | None = None) -> tuple[Response | None, bool]:
        """Look ``key`` up and, on a miss, claim it before asking the provider.

        ``(answer, False)`` when the answer is cached; ``(None, True)`` when this cache may
        ask for it (it now holds the claim, or the mode does not share answers): ask, then
        ``put``; ``(None, False)`` when the key could not be claimed at once, because
        another process holds it or stored its answer meanwhile: ``claim`` and ``get``
        settle that (the runner's slow path).

        The same as ``get`` then ``claim``, but the look-ups of one turn of the event loop
        are answered together when that turn ends: one read of the file for all of them,
        and their claims taken in the transaction that commits the turn's answers. A claim
        is only taken while no answer is stored under its key.
        """
        if self._db is None or self.mode in (CacheMode.off, CacheMode.refresh):
            return None, True
        self._raise_failure()
        queued = self._pending.get(key)
        if queued is not None:
            self.hits += 1
            return queued.response, False
        import asyncio  # this method runs in a loop, so asyncio is imported already

        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Response | None, bool]] = loop.create_future()
        self._asked.append((key, about, future))
        self._at_turn_end(loop)
        return await future

    def _at_turn_end(self, loop: Any) -> None:
        """Make sure the current turn of ``loop`` ends with ``_turn_end``."""
        if self._flush_loop is loop:
            return
        if self._flush_loop is not None:  # scheduled in a loop that is gone
            for _key, _about, future in self._asked:
                future.cancel()
            self._asked = []
            self.flush()
        self._flush_loop = loop
        loop.call_soon(self._turn_end)

    def _turn_end(self) -> None:
        # A callback of the event loop. An error here would only be logged, so it goes to
        # the look-ups waiting for this turn, or else is kept and raised by the next write
        # or by ``close``.
        self._flush_loop = None
        asked, self._asked = self._asked, []
        try:
            answers = self._settle(asked)
        except ConfigError as exc:
            waiting = [future for _key, _about, future in asked if not future.done()]
            for future in waiting:
                future.set_exception(exc)
            if not waiting:
                self._failure = exc
            return
        for (_key, _about, future), answer in zip(asked, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    def _settle(self, asked: list[_Asked]) -> list[tuple[Response | None, bool]]:
        """Answer the look-ups ``asked`` in one turn, and commit the turn's answers."""
        answers: list[tuple[Response | None, bool]] = [(None, True)] * len(asked)
        by_key: dict[str, list[int]] = {}
        for index, (key, _about, _future) in enumerate(asked):
            queued = self._pending.get(key)
            if queued is not None:  # put in this very turn
                self.hits += 1
                answers[index] = (queued.response, False)
            else:
                by_key.setdefault(key, []).append(index)
        rows = self._read(list(by_key))
        sealed: list[tuple[str, str]] = []
        misses: list[tuple[str, Any]] = []
        for key, indexes in by_key.items():
            row = rows.get(key)
            response = None
            if row is not None:
                response = self._trusted(key, row[0], row[1], asked[indexes[0]][1])
            if response is None:
                if self.mode is CacheMode.on:
                    misses.append((key, None if row is None else row[0]))
                continue
            if row is not None and self._unsealed(row[1]):
                sealed.append((row_digest(key, row[0]), key))
            self.hits += len(indexes)
            for index in indexes:
                answers[index] = (response, False)
        claimed = self._commit(sealed, misses)
        for key, _seen in misses:
            for index in by_key[key]:
                answers[index] = (None, key in claimed)
        return answers

    def _read(self, keys: list[str]) -> dict[str, tuple[Any, Any]]:
        """The stored response text and digest of each of ``keys`` that has a row."""
        assert self._db is not None
        column = "digest" if self._has_digest else "NULL"
        found: dict[str, tuple[Any, Any]] = {}
        for start in range(0, len(keys), _READ_BATCH):
            chunk = keys[start : start + _READ_BATCH]
            # Padded to a power of two (repeating a key), so that a few statements serve
            # every batch size from SQLite's statement cache.
            size = 1 << (len(chunk) - 1).bit_length()
            chunk += chunk[-1:] * (size - len(chunk))
            marks = ",".join("?" * size)
            try:
                rows = self._db.execute(
                    f"SELECT key, response, {column} FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "cannot read the response cache") from None
            found.update((key, (text, digest)) for key, text, digest in rows)
        return found

    def flush(self) -> None:
        """Commit the answers ``put`` has queued, in one transaction."""
        self._flush_loop = None
        self._commit()

    def _commit(
        self, sealed: Sequence[tuple[str, str]] = (), claims: Sequence[tuple[str, Any]] = ()
    ) -> set[str]:
        """Commit, in one transaction, the answers ``put`` has queued (dropping their
        claims), the digests of rows trusted once (``sealed``: ``(digest, key)``), and new
        claims (``claims``: ``(key, the response text found untrusted under it or None)``),
        each taken only while no one holds it and no other answer is stored under it.
        Returns the keys claimed."""
        if self._db is None or not (self._pending or sealed or claims):
            return set()
        pending, self._pending = self._pending, {}
        queued, self._queued = self._queued, set()
        messages = [message for entry in pending.values() for message in entry.messages]
        released = [(key, self._owner) for key in pending if key in self._claims]
        claimed: set[str] = set()
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if messages:
                    db.executemany(
                        "INSERT OR IGNORE INTO messages (hash, message) VALUES (?, ?)", messages
                    )
                if pending:
                    db.executemany(
                        "INSERT OR REPLACE INTO responses "
                        "(key, material, response, created, digest) VALUES (?, ?, ?, ?, ?)",
                        [entry.row for entry in pending.values()],
                    )
                if released:
                    db.executemany("DELETE FROM claims WHERE key = ? AND owner = ?", released)
                if sealed:
                    db.executemany(
                        "UPDATE responses SET digest = ? WHERE key = ? AND digest IS NULL", sealed
                    )
                expires = time.time() + LEASE
                for key, seen in claims:
                    if db.execute(
                        "INSERT OR IGNORE INTO claims (key, owner, host, pid, expires) "
                        "SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS "
                        "(SELECT 1 FROM responses WHERE key = ? AND response IS NOT ?)",
                        (key, self._owner, self._host, os.getpid(), expires, key, seen),
                    ).rowcount:
                        claimed.add(key)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot write to the response cache") from None
        self._stored |= queued
        self._claims.difference_update(key for key, _owner in released)
        self._claims |= claimed
        self.writes += len(pending)
        self.backfilled += len(sealed)
        return claimed

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    # Claims: one process asks, the others wait for its answer (see the module docstring).

    def claim(self, key: str) -> bool:
        """Claim ``key`` before asking the provider; False while another process holds it.

        Always True when the cache cannot share answers (modes other than ``on``). An
        expired claim, or one whose process is gone from this machine, is taken over.
        """
        if self._db is None or self.mode is not CacheMode.on:
            return True
        self._raise_failure()
        now = time.time()
        row = (key, self._owner, self._host, os.getpid(), now + LEASE)
        try:
            # Fast path: nobody holds a claim on the key (the usual case), one statement.
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO claims (key, owner, host, pid, expires) "
                "VALUES (?, ?, ?, ?, ?)",
                row,
            ).rowcount
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot write to the response cache") from None
        if inserted == 1:
            self._claims.add(key)
            return True
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                held = self._db.execute(
                    "SELECT owner, host, pid, expires FROM claims WHERE key = ?", (key,)
                ).fetchone()
                live = held is not None and held[0] != self._owner and held[3] > now
                if live and _alive(held[1], held[2], self._host):
                    self._db.execute("COMMIT")
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO claims (key, owner, host, pid, expires) "
                    "VALUES (?, ?, ?, ?, ?)",
                    row,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot write to the response cache") from None
        self._claims.add(key)
        return True

    def release(self, key: str) -> None:
        """Drop this cache's claim on ``key``, if it holds one."""
        if self._db is None or key not in self._claims:
            return
        self._claims.discard(key)
        self._write("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self._owner))

    def renew(self) -> None:
        """Extend every claim this cache holds by ``LEASE`` from now."""
        if self._db is None or not self._claims:
            return
        self._write(
            "UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + LEASE, self._owner)
        )

    def _write(self, sql: str, parameters: tuple[Any, ...]) -> None:
        assert self._db is not None
        try:
            self._db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot write to the response cache") from None

    def material(self, key: str) -> dict[str, Any] | None:
        """The full request material stored for ``key`` (messages restored)."""
        if self._db is None:
            return None
        self.flush()
        row = self._db.execute("SELECT material FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        compact = _loads(row[0])
        messages = []
        for digest in compact["messages"]:
            found = self._db.execute(
                "SELECT message FROM messages WHERE hash = ?", (digest,)
            ).fetchone()
            messages.append(_loads(found[0]) if found else None)
        return {**compact, "messages": messages}

    def __len__(self) -> int:
        if self._db is None:
            return 0
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Commit what is queued, drop this cache's claims and close the file.

        ``ConfigError`` when queued answers could not be committed (now or at the end of
        a loop's turn); the file is closed all the same.
        """
        if self._db is not None:
            try:
                self.flush()
            except ConfigError as exc:
                self._failure = self._failure or exc
            if self._claims:
                # An interrupted run: let the processes waiting for these answers ask.
                # If this fails, they expire after LEASE seconds all the same.
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("DELETE FROM claims WHERE owner = ?", (self._owner,))
                self._claims.clear()
            self._db.close()
            self._db = None
        self._raise_failure()


@dataclass(frozen=True)
class _Pending:
    """An answer ``put`` queued: its ``responses`` row, its new messages, the answer."""

    row: tuple[Any, ...]
    messages: list[tuple[str, str]]
    response: Response


def _running_loop() -> Any:
    """The running event loop, or None (without importing asyncio when nothing has)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _alive(host: str, pid: int, here: str) -> bool:
    """Whether the process that took a claim may still be running.

    Only a process of this machine can be checked; another machine's claim lives until it
    expires. Windows has no harmless signal 0 (``os.kill`` would end the process).
    """
    if host != here or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by another user
    return True


def _loads(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def _response(value: Any) -> Response:
    """The ``Response`` a stored JSON value holds; ``ValueError`` saying why it is not one.

    Stricter than ``Response.from_dict``, which converts what it is given: a cached answer
    of the wrong shape must be a miss, not a number scored as text.
    """
    from ..providers.contract import Response, Usage

    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    text = value.get("text")
    if not isinstance(text, str):
        raise ValueError("'text' is not a string")
    usage = value.get("usage")
    tokens: Usage | None = None
    if usage is not None:
        if not isinstance(usage, dict):
            raise ValueError("'usage' is not an object")
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not (_count(prompt) and _count(completion)):
            raise ValueError("'usage' does not hold two token counts")
        tokens = Usage(prompt, completion)
    cost = value.get("cost")
    if cost is not None and not (_number(cost) and math.isfinite(cost) and cost >= 0):
        raise ValueError("'cost' is not a non-negative number")
    model = value.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError("'model' is not a string")
    return Response(text, tokens, cost, model)


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
