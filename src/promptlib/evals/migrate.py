"""``promptlib ledger migrate``: convert a schema-1 ledger into schema 2, idempotently.

Each schema-1 record becomes the schema-2 record ``promptlib.ledger.legacy`` converts it
to, with its objects; the conversion is appended to ``evals/ledger/`` unless a record
migrated from the same schema-1 line is already there, so running it twice changes
nothing.

A run's schema-1 key held installed versions, so it cannot be reused as it is. The
migration re-derives the schema-2 key from the project as it is now: when the run's suite
exists, its dataset has the recorded sha256, its prompt is in the working tree or in a
recorded release, its provider is configured with the recorded (schema-1) fingerprint,
and those together give back the recorded schema-1 key, the run gets the schema-2 key the
same job has today, its metrics their algorithm ids, and its example ids the dataset's row
order; ``eval`` then reuses it. A run that cannot be matched (a suite since renamed, a
dataset since changed) keeps its scores as history under a key no job produces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._canonical import sha256_of
from ..errors import LedgerError, PromptlibError
from ..ledger import Ledger
from ..ledger.legacy import Converted, convert_release, convert_run, read_records
from ..ledger.records import ReleaseRecord, RunRecord
from ..library.collection import load
from ..library.prompt import Prompt
from ..providers import Provider
from ..settings import Settings
from .dataset import Dataset
from .run import open_provider
from .runner import run_key, run_key_v1
from .suite import Suite, load_suites

__all__ = ["MigrationReport", "migrate"]

GITATTRIBUTES_LINE = "evals/ledger/index.jsonl merge=union"


@dataclass
class MigrationReport:
    source: Path
    target: Path
    runs: int = 0
    releases: int = 0
    rekeyed: int = 0
    skipped: int = 0
    unmatched: list[str] = field(default_factory=list)
    gitattributes: bool = False


class _Keys:
    """Re-derives schema-2 keys for schema-1 runs from the project as it is now."""

    def __init__(
        self, settings: Settings, releases: Sequence[ReleaseRecord], objects: Mapping[str, Any]
    ) -> None:
        root = settings.require_root()
        self.settings = settings
        self.suites = {s.name: s for s in load_suites(root)}
        self.prompts: dict[str, Prompt] = {p.fingerprint: p for p in load(root).values()}
        self.recorded = {
            item.fingerprint: (pid, item)
            for release in releases
            for pid, item in release.prompts.items()
        }
        self.objects = objects
        self.providers: dict[str, Provider | None] = {}

    def prompt(self, fingerprint: str) -> Prompt | None:
        if fingerprint not in self.prompts and fingerprint in self.recorded:
            pid, item = self.recorded[fingerprint]
            metadata = self.objects[item.metadata]["metadata"]
            try:
                self.prompts[fingerprint] = Prompt.from_behaviour(
                    pid, item.version, self.objects[fingerprint], metadata
                )
            except (PromptlibError, ValueError, KeyError, TypeError):
                return None
        return self.prompts.get(fingerprint)

    def provider(self, name: str) -> Provider | None:
        if name not in self.providers:
            try:
                self.providers[name] = open_provider(self.settings, name)
            except PromptlibError:
                self.providers[name] = None
        return self.providers[name]

    def derive(
        self, record: Mapping[str, Any]
    ) -> tuple[str, dict[str, dict[str, Any]], list[str]] | None:
        """The schema-2 key, metric identities and row order of a schema-1 run, or None."""
        suite: Suite | None = self.suites.get(record["suite"])
        prompt = self.prompt(record["prompt"]["fingerprint"])
        provider = self.provider(record["provider"]["name"])
        if suite is None or prompt is None or provider is None:
            return None
        try:
            dataset: Dataset = suite.dataset()
        except PromptlibError:
            return None
        if dataset.sha256 != record["dataset"]["sha256"]:
            return None
        if provider.legacy_fingerprint != record["provider"]["fingerprint"]:
            return None
        repeats = int(record.get("repeats", 1))
        if run_key_v1(suite, prompt, dataset, provider, repeats) != record["key"]:
            return None
        metrics = {
            m.name: {"kind": m.spec.kind, "algorithm": m.algorithm, "binary": m.binary}
            for m in suite.metrics
        }
        order = [str(row["id"]) for row in suite.rows_for(prompt.id, dataset)]
        return run_key(suite, prompt, dataset, provider, repeats), metrics, order


def _objects_of(record: RunRecord | ReleaseRecord, objects: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(record, ReleaseRecord):
        wanted = [r for item in record.prompts.values() for r in (item.fingerprint, item.metadata)]
    else:
        wanted = [record.scores, objects[record.scores]["examples"]]
    return {reference: objects[reference] for reference in wanted}


def _ensure_gitattributes(root: Path) -> bool:
    """Add the union-merge line for the index to .gitattributes; True if it was added."""
    path = root / ".gitattributes"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if GITATTRIBUTES_LINE in text.splitlines():
        return False
    prefix = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + prefix + GITATTRIBUTES_LINE + "\n", encoding="utf-8")
    return True


def migrate(settings: Settings) -> MigrationReport:
    """Convert ``evals/ledger.jsonl`` into ``evals/ledger/`` (see the module docstring)."""
    root = settings.require_root()
    source, target = settings.ledger_v1_path, settings.ledger_dir
    assert source is not None
    assert target is not None
    if not source.is_file():
        raise LedgerError(f"{source}: there is no schema-1 ledger to migrate")
    records, problems = read_records(source)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        listed = "\n".join(f"  {p}" for p in errors)
        raise LedgerError(
            f"{source}: fix or delete these lines before migrating (`promptlib ledger verify` "
            f"lists them too):\n{listed}"
        )
    report = MigrationReport(source, target)
    ledger = Ledger(target)
    view = ledger.read()
    existing: list[RunRecord | ReleaseRecord] = [*view.runs, *view.releases]
    done = {r.migrated_from for r in existing if r.migrated_from}
    converted = Converted()
    for record in records:
        if record["kind"] == "release":
            convert_release(record, converted)
    keys = _Keys(settings, converted.releases, converted.objects)
    for record in records:
        if record["kind"] != "run":
            continue
        derived = keys.derive(record)
        if derived is None:
            report.unmatched.append(
                f"{record['suite']}/{record['prompt']['id']} ({record['time']})"
            )
            key = sha256_of({"format": "promptlib-migrated-run/1", "v1": record["key"]})
            convert_run(record, converted, key=key)
        else:
            key, metrics, order = derived
            report.rekeyed += 1
            convert_run(record, converted, key=key, metrics=metrics, order=order)
    pending: list[RunRecord | ReleaseRecord] = [*converted.releases, *converted.runs]
    for item in sorted(pending, key=lambda r: (r.time, r.migrated_from or "")):
        if item.migrated_from in done:
            report.skipped += 1
            continue
        ledger.append(item, _objects_of(item, converted.objects))
        if isinstance(item, RunRecord):
            report.runs += 1
        else:
            report.releases += 1
    report.gitattributes = _ensure_gitattributes(root)
    return report
