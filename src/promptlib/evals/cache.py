"""The response cache: SQLite in WAL mode, keyed by an explicit request fingerprint.

The key is ``sha256:`` over the canonical JSON of the request's cache material: the key
format (``KEY_FORMAT``), the provider fingerprint, the rendered messages, the generation
parameters, the output spec and the repeat index (``Request.cache_material``). Answers
cached under the previous format's key are found and moved under the new one on first use.
The material itself is stored beside the response (each message once, by hash), so every
entry says exactly what it answers. No secret is part of any of it. Providers that answer
locally and deterministically (``Provider.cacheable = False``, e.g. the retrieval baseline)
bypass the cache: recomputing is cheaper than a lookup. Each response is committed as soon
as it arrives, so an interrupted eval resumes where it stopped: re-running makes only the
calls that had not completed.

Modes: ``on`` (read and write), ``off`` (neither), ``read-only`` (read, never write) and
``refresh`` (never read, write the new answers).
"""

from __future__ import annotations

import enum
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._canonical import canonical_json, sha256_hex, sha256_of
from ..errors import ConfigError

if TYPE_CHECKING:
    # Imported when a response is read (``get``): importing the provider contract pulls
    # in the prompt model, pydantic and Jinja, which commands that only need ``CacheMode``
    # (every ``promptlib`` invocation registers ``eval``'s options) should not pay for.
    from ..providers.contract import Request, Response

__all__ = ["KEY_FORMAT", "CacheMode", "ResponseCache"]

#: The version of the response-cache key's format; part of every key.
KEY_FORMAT = "promptlib-cache-key/2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    material TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    hash TEXT PRIMARY KEY,
    message TEXT NOT NULL
);
"""


class CacheMode(str, enum.Enum):
    on = "on"
    off = "off"
    read_only = "read-only"
    refresh = "refresh"


class ResponseCache:
    """A response cache in one SQLite file (``.promptlib/cache.sqlite`` by default)."""

    def __init__(self, path: Path | None, mode: CacheMode = CacheMode.on) -> None:
        self.mode = mode
        self.path = path
        self.hits = 0
        self.writes = 0
        self._stored: set[str] = set()
        self._db: sqlite3.Connection | None = None
        if mode is CacheMode.off or path is None:
            self.mode = CacheMode.off
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(f"{path}: cannot open the response cache: {exc}") from None

    @staticmethod
    def key(request: Request, provider_fingerprint: str) -> tuple[str, dict[str, Any]]:
        """The key of ``request`` and the material it hashes (``KEY_FORMAT`` included)."""
        material = {"format": KEY_FORMAT, **request.cache_material(provider_fingerprint)}
        return sha256_of(material), material

    @staticmethod
    def legacy_key(request: Request, provider_fingerprint: str) -> str:
        """The key promptlib 1.0 to 2.1 used (no format field), to find their answers."""
        return sha256_of(request.cache_material(provider_fingerprint))

    def get(self, key: str) -> Response | None:
        if self._db is None or self.mode in (CacheMode.off, CacheMode.refresh):
            return None
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self.hits += 1
        from ..providers.contract import Response

        return Response.from_dict(_loads(row[0]))

    def put(self, key: str, material: dict[str, Any], response: Response) -> None:
        """Store ``response`` under ``key``, committed at once.

        The material is stored with each message replaced by the hash of its canonical
        JSON; messages live once in their own table, since the instructions and few-shot
        turns of a prompt are the same for every row.
        """
        if self._db is None or self.mode in (CacheMode.off, CacheMode.read_only):
            return
        refs = []
        for message in material["messages"]:
            text = canonical_json(message)
            digest = sha256_hex(text.encode("utf-8"))
            if digest not in self._stored:
                self._db.execute(
                    "INSERT OR IGNORE INTO messages (hash, message) VALUES (?, ?)", (digest, text)
                )
                self._stored.add(digest)
            refs.append(digest)
        compact = {**material, "messages": refs}
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, material, response, created) "
            "VALUES (?, ?, ?, ?)",
            (key, canonical_json(compact), canonical_json(response.to_dict()), time.time()),
        )
        self.writes += 1

    def material(self, key: str) -> dict[str, Any] | None:
        """The full request material stored for ``key`` (messages restored)."""
        if self._db is None:
            return None
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
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _loads(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    assert isinstance(value, dict)
    return value
