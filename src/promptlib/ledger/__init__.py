"""The ledger: the project's memory of every run and release (``evals/ledger.jsonl``).

``store`` holds the file format and its reader and writer; see its docstring for the
contract. This package re-exports its public names.
"""

from __future__ import annotations

from .store import (
    KINDS,
    SCHEMA_VERSION,
    AppendResult,
    Ledger,
    LedgerView,
    Repair,
    Torn,
    VerifyReport,
    seal,
)

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "AppendResult",
    "Ledger",
    "LedgerView",
    "Repair",
    "Torn",
    "VerifyReport",
    "seal",
]
