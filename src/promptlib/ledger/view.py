"""What a command knows of the ledger: its index read once, evidence loaded when needed.

A ``LedgerView`` holds every run and release of a ledger and a way to load the objects they
reference. Commands read the index once and pass the view down; a comparison then loads
two scores objects per changed prompt, and a report the outputs it shows. Records appended
by the command itself are added to the view with their objects in memory, so nothing is
read back.

Reading checks every line (envelope and hash) but keeps, per run, only what selecting runs
needs (key, time, prompt, suite, provider) and the line itself: a run becomes a typed
``RunRecord`` when a command asks for it, and its body is checked then (``ledger verify``
checks every body). An index of thousands of runs therefore costs a few megabytes, not a
copy of every record.

Readers are deterministic whatever the line order: a run key recorded more than once (a
``--fresh`` re-run, two branches that both evaluated it) resolves to the record with the
latest ``time``, then the greatest hash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import LedgerError, Problem
from ..versions import VersionError, parse_version
from .objects import MissingObjectError
from .records import (
    ExampleIds,
    OutputsObject,
    ReleaseRecord,
    RunRecord,
    ScoresObject,
    parse_record,
)

__all__ = ["LedgerView", "ObjectSource", "RunEntry", "RunOutputs", "RunScores"]


class ObjectSource(Protocol):
    """Where a view loads objects from: an ``ObjectStore``, or objects held in memory."""

    def get(self, reference: str) -> Any: ...


@dataclass(frozen=True)
class RunScores:
    """A run's per-example scores: ``scores[metric][i]`` for ``ids[i]``, None if it failed."""

    ids: tuple[str, ...]
    scores: Mapping[str, Sequence[float | None]]
    errors: Mapping[str, str] = field(default_factory=dict)
    variance: Mapping[str, Sequence[float | None]] | None = None
    # Each example's score per repeat (None without repeats, and in older records).
    repeats: Mapping[str, Sequence[Sequence[float] | None]] | None = None

    def of(self, metric: str) -> dict[str, float]:
        """The scores of ``metric`` by example id, failed examples left out."""
        values = self.scores.get(metric, ())
        return {i: v for i, v in zip(self.ids, values, strict=False) if v is not None}


@dataclass(frozen=True)
class RunOutputs:
    """A run's answers: ``outputs[i]`` lists ``ids[i]``'s answers, one per repeat."""

    ids: tuple[str, ...]
    outputs: Sequence[Sequence[str]]
    usage: Sequence[Sequence[int] | None] | None = None
    # Judge metrics: metric -> per example, its verdicts ({"score", "reason"}) per repeat.
    verdicts: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]] | None = None

    def of(self, example_id: str) -> Sequence[str]:
        try:
            return self.outputs[self.ids.index(example_id)]
        except ValueError:
            return ()


@dataclass
class RunEntry:
    """A run as the index holds it: what selecting runs needs, and the typed record once
    someone asked for it (``record()``)."""

    key: str
    time: str
    hash: str
    prompt_id: str
    prompt_fingerprint: str
    suite: str
    provider_fingerprint: str
    where: str
    line: bytes | None = field(default=None, repr=False)
    typed: RunRecord | None = field(default=None, repr=False)

    @classmethod
    def of(cls, record: RunRecord, where: str = "") -> RunEntry:
        return cls(
            key=record.key,
            time=record.time,
            hash=record.hash or "",
            prompt_id=record.prompt.id,
            prompt_fingerprint=record.prompt.fingerprint,
            suite=record.suite,
            provider_fingerprint=record.provider.fingerprint,
            where=where,
            typed=record,
        )

    @classmethod
    def light(
        cls, data: Mapping[str, Any], line: bytes, where: str, *, strict: bool = True
    ) -> RunEntry:
        """The entry of a run line: a few fields, checked (the rest of the body is checked
        by ``record()``). ``strict`` refuses a line without them with a ``LedgerError``."""
        missing: list[str] = []

        def text(value: Any, name: str) -> str:
            if isinstance(value, str) and value:
                return value
            missing.append(name)
            return ""

        def part(name: str, key: str) -> str:
            value = data.get(name)
            return text(value.get(key) if isinstance(value, dict) else None, f"{name}.{key}")

        entry = cls(
            key=text(data.get("key"), "key"),
            time=text(data.get("time"), "time"),
            hash=text(data.get("hash"), "hash"),
            prompt_id=part("prompt", "id"),
            prompt_fingerprint=part("prompt", "fingerprint"),
            suite=text(data.get("suite"), "suite"),
            provider_fingerprint=part("provider", "fingerprint"),
            where=where,
            line=line,
        )
        if missing and strict:
            raise LedgerError(
                f"{where}: record {entry.hash[:19]}...: malformed run record: "
                f"{', '.join(missing)} missing; restore the line from git or delete it"
            )
        return entry

    def record(self) -> RunRecord:
        """The typed record (``LedgerError`` naming it when its body is malformed)."""
        if self.typed is None:
            assert self.line is not None
            typed = parse_record(json.loads(self.line), f"{self.where}: record {self.hash[:19]}...")
            assert isinstance(typed, RunRecord)
            self.typed = typed
            self.line = None
        return self.typed

    @property
    def order(self) -> tuple[str, str]:
        return (self.time, self.hash)


def _order(record: ReleaseRecord) -> tuple[str, str]:
    return (record.time, record.hash or "")


class MemoryObjects:
    """Objects held in memory (just written by this process, or converted from schema 1)."""

    def __init__(self, objects: Mapping[str, Any] | None = None) -> None:
        self.objects: dict[str, Any] = dict(objects or {})

    def get(self, reference: str) -> Any:
        try:
            return self.objects[reference]
        except KeyError:
            raise MissingObjectError(
                f"the ledger object {reference} is not available", digest=reference
            ) from None


def _released(release: ReleaseRecord) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((pid, item.fingerprint) for pid, item in release.prompts.items()))


class LedgerView:
    """The records of one or more ledgers, read once; objects loaded lazily and kept."""

    def __init__(
        self,
        runs: Sequence[RunRecord | RunEntry] = (),
        releases: Sequence[ReleaseRecord] = (),
        *,
        objects: Sequence[ObjectSource] = (),
        outputs: Sequence[ObjectSource] = (),
        problems: Sequence[Problem] = (),
        source: str = "",
        schema: int = 2,
        torn: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.source = source
        self.schema = schema
        self.problems: tuple[Problem, ...] = tuple(problems)
        # (file, line) of each unterminated last line: an interrupted write, not a
        # committed record, so not a reason to stop (the next append repairs it).
        self.torn: tuple[tuple[str, int], ...] = tuple(torn)
        self._memory = MemoryObjects()
        self._sources: list[ObjectSource] = [self._memory, *objects]
        self._outputs: list[ObjectSource] = [self._memory, *outputs]
        self._latest: dict[str, RunEntry] = {}
        self._entries: list[RunEntry] = []
        self._releases: list[ReleaseRecord] = []
        self._cache: dict[str, Any] = {}
        entries = [r if isinstance(r, RunEntry) else RunEntry.of(r, source) for r in runs]
        for entry in sorted(entries, key=lambda e: e.order):
            self._add_entry(entry)
        for release in sorted(releases, key=_order):
            self._releases.append(release)

    # Records.

    @property
    def runs(self) -> tuple[RunRecord, ...]:
        """Every run record, oldest first (several per key when a key was re-run)."""
        return tuple(entry.record() for entry in self._entries)

    @property
    def entries(self) -> tuple[RunEntry, ...]:
        """Every run as the index holds it, oldest first (nothing typed)."""
        return tuple(self._entries)

    @property
    def releases(self) -> tuple[ReleaseRecord, ...]:
        return tuple(self._releases)

    def __len__(self) -> int:
        return len(self._entries) + len(self._releases)

    def release_conflicts(self) -> dict[str, list[ReleaseRecord]]:
        """Versions with two release records that released different prompts (two branches
        that both released it, union-merged), each with its records, oldest first.

        Records of one version that release the same fingerprints (a release recorded
        again) are one release, not a conflict.
        """
        by_version: dict[Any, list[ReleaseRecord]] = {}
        for release in self._releases:
            try:
                version: Any = parse_version(release.version)
            except VersionError:
                version = release.version
            by_version.setdefault(version, []).append(release)
        conflicts: dict[str, list[ReleaseRecord]] = {}
        for records in by_version.values():
            contents = {_released(r) for r in records}
            if len(contents) > 1:
                conflicts[records[-1].version] = records
        return conflicts

    def key_conflicts(self) -> dict[str, list[RunEntry]]:
        """Run keys whose records hold different per-example scores, oldest first: a
        ``--fresh`` re-run of a provider that answered differently, a retried run, or two
        branches that evaluated the same job. Readers use the latest (``run``); ``ledger
        verify`` says which. Records of a key with the same scores agree: not listed."""
        by_key: dict[str, list[RunEntry]] = {}
        for entry in self._entries:
            by_key.setdefault(entry.key, []).append(entry)
        out = {}
        for key, entries in by_key.items():
            if len({e.hash for e in entries}) < 2:
                continue
            scores = set()
            for entry in entries:
                try:
                    scores.add(entry.record().scores)
                except LedgerError:
                    scores.add(entry.hash)  # unreadable: reported by verify's index check
            if len(scores) > 1:
                out[key] = sorted(entries, key=lambda e: e.order)
        return out

    def run(self, key: str) -> RunRecord | None:
        """The run of ``key`` (the latest when there are several)."""
        entry = self._latest.get(key)
        return entry.record() if entry is not None else None

    def latest_runs(self) -> dict[str, RunRecord]:
        """The run of every key (typing every one: prefer ``select`` to pick a few)."""
        return {key: entry.record() for key, entry in self._latest.items()}

    def select(self, keep: Callable[[RunEntry], bool]) -> list[RunRecord]:
        """The latest run of every key whose entry ``keep`` accepts, oldest first."""
        chosen = [entry for entry in self._latest.values() if keep(entry)]
        return [entry.record() for entry in sorted(chosen, key=lambda e: e.order)]

    def _add_entry(self, entry: RunEntry) -> None:
        self._entries.append(entry)
        current = self._latest.get(entry.key)
        if current is None or entry.order >= current.order:
            self._latest[entry.key] = entry

    def add(
        self, record: RunRecord | ReleaseRecord, objects: Mapping[str, Any] | None = None
    ) -> None:
        """Add a record this process appended, with the objects it references."""
        self._memory.objects.update(objects or {})
        if isinstance(record, RunRecord):
            self._add_entry(RunEntry.of(record, self.source))
        else:
            self._releases.append(record)
            self._releases.sort(key=_order)

    def merge(self, other: LedgerView) -> None:
        """Add every record of ``other`` (another ledger read together with this one)."""
        for entry in other._entries:
            self._add_entry(entry)
        self._entries.sort(key=lambda e: e.order)
        known = {release.hash for release in self._releases}
        self._releases += [r for r in other.releases if r.hash not in known]
        self._releases.sort(key=_order)
        self._sources.extend(other._sources)
        self._outputs.extend(other._outputs)
        self.problems = (*self.problems, *other.problems)
        self.torn = (*self.torn, *other.torn)

    @property
    def corrupt(self) -> tuple[Problem, ...]:
        """The committed lines that could not be read: every error but a torn last line."""
        return tuple(
            p for p in self.problems if p.severity == "error" and (p.path, p.line) not in self.torn
        )

    def refuse_corrupt(self) -> None:
        """Raise ``LedgerError`` naming every corrupt committed line, if there is one.

        A command that evaluates, compares or releases must not go on without a record it
        cannot read: it would silently re-run (and pay for) what the record held, or compare
        against the wrong run. ``ledger verify`` lists the same problems.
        """
        corrupt = self.corrupt
        if not corrupt:
            return
        shown = "\n  ".join(str(p) for p in corrupt[:20])
        more = f"\n  ... and {len(corrupt) - 20} more" if len(corrupt) > 20 else ""
        raise LedgerError(
            f"the ledger has {len(corrupt)} committed line(s) that cannot be read; nothing "
            f"was run, since going on would silently re-run or misread what they held:\n  "
            f"{shown}{more}\nRestore the file from git (`git checkout -- FILE`) or delete "
            "the line(s); `promptlib ledger verify` lists every problem."
        )

    # Objects.

    def object(self, reference: str, *, outputs: bool = False) -> Any:
        """The object ``reference`` names, from memory or the first store that has it.

        ``outputs`` looks in the outputs stores (the model's answers), else in the others.
        """
        if reference in self._cache:
            return self._cache[reference]
        missing: MissingObjectError | None = None
        for source in self._outputs if outputs else self._sources:
            try:
                value = source.get(reference)
            except MissingObjectError as exc:
                missing = exc  # the last source's message: the stores say where to look
                continue
            self._cache[reference] = value
            return value
        assert missing is not None
        raise missing

    def example_ids(self, reference: str) -> tuple[str, ...]:
        return tuple(ExampleIds.model_validate(self.object(reference)).ids)

    def scores(self, run: RunRecord) -> RunScores:
        """The run's per-example scores (``LedgerError`` if its object is missing or bad)."""
        data = ScoresObject.model_validate(self.object(run.scores))
        ids = self.example_ids(data.examples)
        errors = {ids[int(index)]: message for index, message in data.errors.items()}
        return RunScores(ids, data.scores, errors, data.variance, data.repeats)

    def outputs(self, run: RunRecord) -> RunOutputs | None:
        """The run's outputs, or None when it kept none (``--no-outputs``, schema 1)."""
        if run.outputs is None:
            return None
        data = OutputsObject.model_validate(self.object(run.outputs, outputs=True))
        return RunOutputs(self.example_ids(data.examples), data.outputs, data.usage, data.verdicts)

    def each_run(self) -> Iterator[RunRecord]:
        """Every run, typed one at a time (for reading all of a long index)."""
        for entry in self._entries:
            yield entry.record()
