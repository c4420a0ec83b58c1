"""Canonical JSON and content hashes: the byte-level contract of every stored identity.

Canonical JSON here is: UTF-8, object keys sorted by code point, no insignificant
whitespace, non-ASCII characters written as themselves, no NaN or infinity, floats in
Python's shortest round-trip form (the same on every platform and Python >= 3.1).
Hashes are written with their algorithm as a prefix (``sha256:<hex>``) so the format
can change without ambiguity. Changing anything here changes every fingerprint and
ledger hash; golden tests pin it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "file_sha256", "sha256_hex", "sha256_of"]


def canonical_json(value: Any) -> str:
    """Serialise ``value`` as canonical JSON text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(data: bytes) -> str:
    """The ``sha256:``-prefixed hex digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_of(value: Any) -> str:
    """The ``sha256:``-prefixed digest of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value).encode("utf-8"))


def file_sha256(path: str | bytes | Any, chunk: int = 1 << 20) -> str:
    """The ``sha256:``-prefixed digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
