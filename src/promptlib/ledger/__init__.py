"""The ledger: the project's memory of every run and release.

Schema 2 (``evals/ledger/``): a small typed index, ``index.jsonl`` (``store``,
``records``), and content-addressed evidence (``objects``): ``objects/`` for per-example
scores and prompt behaviours, ``outputs/`` for the model's answers. ``core.Ledger``
writes it, ``view.LedgerView`` is what a command reads, once. Schema 1
(``evals/ledger.jsonl``) stays readable through ``legacy``.

``open_project`` gives a command the ledger it should use (the project's, a ``--ledger``
folder, or none with ``--no-record``); ``promptlib.ledger.open`` is the entry point for
Python users who want to read a project's results.
"""

from __future__ import annotations

from pathlib import Path

from .._paths import inside
from ..errors import ConfigError
from ..settings import Settings
from .core import INDEX, OBJECTS, OUTPUTS, FullReport, Ledger
from .legacy import LegacyLedger, read_v1
from .objects import MissingObjectError, ObjectStore
from .records import ReleaseRecord, RunRecord
from .store import KINDS, SCHEMA_VERSION, LineStore, LineView, Repair, Torn, VerifyReport, seal
from .view import LedgerView, RunOutputs, RunScores

__all__ = [
    "INDEX",
    "KINDS",
    "OBJECTS",
    "OUTPUTS",
    "SCHEMA_VERSION",
    "AnyLedger",
    "FullReport",
    "Ledger",
    "LedgerView",
    "LegacyLedger",
    "LineStore",
    "LineView",
    "MissingObjectError",
    "ObjectStore",
    "ReleaseRecord",
    "Repair",
    "RunOutputs",
    "RunRecord",
    "RunScores",
    "Torn",
    "VerifyReport",
    "open",
    "open_project",
    "read_v1",
    "seal",
]

AnyLedger = Ledger | LegacyLedger


def _committed(settings: Settings) -> AnyLedger | None:
    folder = settings.ledger_dir
    legacy = settings.ledger_v1_path
    assert folder is not None
    assert legacy is not None
    if (folder / INDEX).exists() or not legacy.exists():
        return Ledger(folder) if (folder / INDEX).exists() else None
    return LegacyLedger(legacy)


def open_project(
    settings: Settings, *, folder: Path | None = None, record: bool = True, write: bool = True
) -> AnyLedger:
    """The ledger a command uses.

    ``folder`` (``--ledger DIR``) receives the command's new records, and its view also
    holds the project's. ``record=False`` (``--no-record``) writes nothing. A project whose
    ledger is still schema 1 can be read, but a command that records must migrate it first.
    """
    root = settings.require_root()
    if write and record and settings.ledger_dir is not None and settings.ledger_dir.exists():
        # The project's ledger, if a link leading out, would be written outside the project
        # (``--ledger DIR`` names a folder on purpose, wherever it is).
        inside(root, settings.ledger_dir)
    committed = _committed(settings)
    if folder is not None:
        return Ledger(folder, record=record, also_read=[committed] if committed else [])
    if isinstance(committed, LegacyLedger):
        if write and record:
            raise ConfigError(
                f"{committed.path}: this project's ledger is schema 1; run `promptlib ledger "
                "migrate` to convert it to evals/ledger/ (read-only commands still read it, "
                "and --no-record runs without writing)"
            )
        return committed
    assert settings.ledger_dir is not None
    return (
        committed
        if committed is not None and record
        else Ledger(settings.ledger_dir, record=record)
    )


def open(project: str | Path | None = None) -> LedgerView:
    """Read a project's ledger (schema 2, or schema 1 read-only): runs, releases, evidence.

    ``project`` is the project folder (default: found from the current directory)::

        view = promptlib.ledger.open()
        run = view.latest_runs()[key]
        view.scores(run).of("accuracy"), view.outputs(run)
    """
    settings = Settings.resolve(Path(project) if project is not None else None)
    return open_project(settings, write=False).read()
