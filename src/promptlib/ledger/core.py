"""A schema-2 ledger: a small typed index plus content-addressed evidence.

Layout, under the ledger folder (``evals/ledger/`` in a project)::

    index.jsonl            one sealed line per run or release (``promptlib.ledger.store``),
                           union-merged by git (.gitattributes: merge=union)
    objects/xx/yyyy.json.gz  immutable objects named by the sha256 of their canonical JSON
                           (``promptlib.ledger.objects``): per-example scores, example ids,
                           prompt behaviours and metadata: what comparisons and releases need
    outputs/xx/yyyy.json.gz  the same kind of objects holding the model's answers, apart so
                           that a team can keep them out of git (Git LFS, a DVC remote, or
                           not at all): a missing outputs object costs only the answers
    parts.jsonl            only in a shard ledger (``eval --shard K/N``): the results of
                           ranges of jobs split across shards, as sealed run records of
                           their rows, which ``promptlib ledger merge`` joins (never read as
                           runs: a part is not a run)

A record is committed when its index line is; its objects are written first, so a process
killed in between leaves at worst objects no line refers to (harmless: they are what a
re-run writes again), never a line whose objects are missing.

``Ledger.read()`` returns a ``LedgerView`` and keeps it: one read per command, and records
appended afterwards are added to it in memory. A ledger opened ``record=False`` writes
nothing (``eval --no-record``): appends only update the view. ``also_read`` lists other
ledgers whose records the view includes (a shard or scratch ledger written with
``--ledger DIR`` still reuses the project's runs and sees its releases).

Schema 1 (``evals/ledger.jsonl``) is read by ``promptlib.ledger.legacy`` and converted by
``promptlib ledger migrate``; it is never written again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LedgerError, Problem
from .objects import ObjectStore, encode
from .records import RECORD_MODELS, ReleaseRecord, RunRecord, parse_record
from .store import AppendResult, LineStore, Repair, VerifyReport
from .view import LedgerView, RunEntry

__all__ = ["INDEX", "OBJECTS", "OUTPUTS", "PARTS", "FullReport", "Ledger", "prepare_objects"]

INDEX = "index.jsonl"
OBJECTS = "objects"
OUTPUTS = "outputs"
PARTS = "parts.jsonl"


def prepare_objects(values: Sequence[Any]) -> tuple[list[str], dict[str, Any], dict[str, bytes]]:
    """References of ``values``, and the values and canonical bytes by reference."""
    references: list[str] = []
    by_reference: dict[str, Any] = {}
    data: dict[str, bytes] = {}
    for value in values:
        reference, encoded = encode(value)
        references.append(reference)
        by_reference[reference] = value
        data[reference] = encoded
    return references, by_reference, data


@dataclass(frozen=True)
class FullReport:
    """``Ledger.verify``: the index's report, plus every object problem found."""

    index: VerifyReport
    objects: int
    object_problems: tuple[Problem, ...] = ()
    unreferenced: int = 0
    outputs_absent: int = 0
    conflicts: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        errors = [p for p in self.conflicts if p.severity == "error"]
        return self.index.ok and not self.object_problems and not errors

    @property
    def problems(self) -> tuple[Problem, ...]:
        return (*self.index.problems, *self.object_problems, *self.conflicts)

    def summary(self) -> str:
        head = self.index.summary()
        tail = f"{self.objects} object{'s' if self.objects != 1 else ''} referenced"
        if self.object_problems:
            tail += f", {len(self.object_problems)} object problem(s)"
        ambiguous = sum(p.severity == "error" for p in self.conflicts)
        if ambiguous:
            tail += f", {ambiguous} version(s) released twice with different prompts"
        if self.outputs_absent:
            tail += (
                f", {self.outputs_absent} outputs object(s) not here (kept elsewhere or not "
                "kept: `promptlib outputs` cannot show those answers)"
            )
        if self.unreferenced:
            tail += f", {self.unreferenced} unreferenced (left by interrupted writes; harmless)"
        return f"{head}; {tail}"


@dataclass
class Ledger:
    """The schema-2 ledger in ``folder``; nothing is read or created until a method is called."""

    folder: Path
    record: bool = True
    also_read: Sequence[Any] = ()
    lock_timeout: float = 60.0
    repaired: list[Repair] = field(default_factory=list)
    _view: LedgerView | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.index = LineStore(
            self.folder / INDEX, schema=2, lock_timeout=self.lock_timeout, chain=True
        )
        self.objects = ObjectStore(self.folder / OBJECTS)
        self.outputs = ObjectStore(self.folder / OUTPUTS)
        self.parts = LineStore(self.folder / PARTS, schema=2, lock_timeout=self.lock_timeout)

    @property
    def where(self) -> str:
        return os.fspath(self.folder)

    # Reading.

    def read(self, *, refresh: bool = False) -> LedgerView:
        """The view of this ledger (and of ``also_read``), read once and kept."""
        if self._view is None or refresh:
            self._view = self._read_own()
            for other in self.also_read:
                self._view.merge(other.read())
        return self._view

    def _read_own(self, *, strict: bool = True) -> LedgerView:
        where = str(self.index.path)

        def keep(record: dict[str, Any], line: bytes) -> RunEntry | dict[str, Any]:
            # A run keeps a few fields and its line (typed when a command asks for it); a
            # release, of which there are few, is kept whole and typed below.
            if record["kind"] == "run":
                return RunEntry.light(record, line, where, strict=strict)
            return record

        values, problems, torn = self.index.each(keep)
        runs: list[RunEntry] = []
        releases: list[ReleaseRecord] = []
        for value in values:
            if isinstance(value, RunEntry):
                runs.append(value)
                continue
            # A sealed line whose body is not a record promptlib writes was not written by
            # promptlib: refuse to go on rather than silently re-run what it held (``verify``
            # lists it instead).
            try:
                typed = parse_record(value, f"{where}: record {value['hash'][:19]}...")
            except LedgerError:
                if strict:
                    raise
                continue
            assert isinstance(typed, ReleaseRecord)
            releases.append(typed)
        return LedgerView(
            runs,
            releases,
            objects=[self.objects],
            outputs=[self.outputs],
            problems=problems,
            source=self.where,
            schema=2,
            torn=[(where, torn.line)] if torn is not None else [],
        )

    # Writing.

    def append(
        self,
        record: RunRecord | ReleaseRecord,
        objects: Mapping[str, Any] | None = None,
        *,
        once: bool = False,
    ) -> RunRecord | ReleaseRecord:
        """Write ``objects`` (reference -> value), then the record's index line.

        Returns the sealed record. With ``record=False`` nothing is written; the record is
        sealed and added to the view all the same. With ``once`` (a run), when another
        process recorded the same run key after this ledger was read, nothing is appended
        and that record is returned: concurrent evals of the same work record it once.
        """
        objects = dict(objects or {})
        _, values, data = prepare_objects(list(objects.values()))
        if set(values) != set(objects):
            raise LedgerError("an object's reference does not match its content")  # a bug
        line = record.to_json()
        if self.record:
            outputs = record.outputs if isinstance(record, RunRecord) else None
            for reference, encoded in data.items():
                store = self.outputs if reference == outputs else self.objects
                store.put_bytes(reference, encoded)
            unless = None
            if once and isinstance(record, RunRecord):
                unless = _recorded_by_others(record.key)
            result: AppendResult = self.index.append(line, unless=unless)
            if result.repaired is not None:
                self.repaired.append(result.repaired)
            sealed = result.records[0] if result.records else _latest_of(result.others, line)
        else:
            from .store import seal

            sealed = seal(line, 2)
        typed = RECORD_MODELS[sealed["kind"]].model_validate(sealed)
        assert isinstance(typed, RunRecord | ReleaseRecord)
        self.read().add(typed, objects)
        return typed

    def append_part(self, record: RunRecord, objects: Mapping[str, Any]) -> RunRecord:
        """Write ``objects``, then ``record`` (the result of a range of a split job's rows)
        to ``parts.jsonl``, not to the index: a part is joined with the other shards' parts
        by ``promptlib ledger merge``. Returns the sealed part."""
        _, values, data = prepare_objects(list(objects.values()))
        if set(values) != set(objects):
            raise LedgerError("an object's reference does not match its content")  # a bug
        for reference, encoded in data.items():
            store = self.outputs if reference == record.outputs else self.objects
            store.put_bytes(reference, encoded)
        result = self.parts.append(record.to_json())
        sealed = RunRecord.model_validate(result.records[0])
        return sealed

    def read_parts(self) -> tuple[list[RunRecord], list[Problem]]:
        """The parts in ``parts.jsonl`` (none without the file), and the lines that could
        not be read as parts."""
        where = str(self.parts.path)
        problems: list[Problem] = []
        parts: list[RunRecord] = []
        view = self.parts.read()
        problems.extend(view.problems)
        for number, value in enumerate(view, start=1):
            try:
                typed = parse_record(value, f"{where}: part {str(value.get('hash'))[:19]}...")
            except LedgerError as exc:
                problems.append(Problem(where, 0, "", str(exc)))
                continue
            if not isinstance(typed, RunRecord):
                problems.append(Problem(where, number, "", "a release record among the parts"))
                continue
            parts.append(typed)
        return parts, problems

    # Checking.

    def verify(self) -> FullReport:
        """Every index line (envelope, hash, body) and every object a record references.

        Objects are checked like ``git fsck`` does: each must exist and hash to its name.
        An outputs object that is absent is counted, not reported (a team may keep them out
        of git); one that is present must be intact. Objects that no record references are
        counted too: an interrupted write leaves them, and they are harmless.
        """
        report = self.index.verify(bodies=True)
        view = self._read_own(strict=False)
        problems: list[Problem] = []
        checked: set[str] = set()
        absent = 0

        def check(store: ObjectStore, reference: str, owner: str) -> Any:
            if reference in checked:
                return None
            checked.add(reference)
            problem = store.problem(reference)
            if problem is not None:
                problems.append(Problem(str(store.root), 0, "", f"{owner}: {problem}"))
                return None
            return store.get(reference)

        for entry in view.entries:
            try:
                run = entry.record()
            except LedgerError:
                continue  # reported by the index check above
            owner = f"run {run.key[:19]}... ({run.suite}/{run.prompt.id})"
            scores = check(self.objects, run.scores, f"{owner} scores")
            if isinstance(scores, dict) and isinstance(scores.get("examples"), str):
                check(self.objects, scores["examples"], f"{owner} example ids")
            if run.outputs is None or run.outputs in checked:
                continue
            if run.outputs not in self.outputs:
                checked.add(run.outputs)
                absent += 1
                continue
            outputs = check(self.outputs, run.outputs, f"{owner} outputs")
            if isinstance(outputs, dict) and isinstance(outputs.get("examples"), str):
                check(self.objects, outputs["examples"], f"{owner} example ids")
        for release in view.releases:
            for prompt_id, item in release.prompts.items():
                owner = f"release {release.version} {prompt_id}"
                check(self.objects, item.fingerprint, f"{owner} behaviour")
                check(self.objects, item.metadata, f"{owner} metadata")
        stored = [*self.objects, *self.outputs]
        unreferenced = sum(1 for reference in stored if reference not in checked)
        return FullReport(
            report,
            len(checked) - absent,
            tuple(problems),
            unreferenced,
            absent,
            conflicts=tuple(conflicts(view, str(self.index.path))),
        )


def _recorded_by_others(key: str) -> Any:
    marker = f'"key":"{key}"'.encode()

    def recorded(lines: bytes) -> bool:
        return any(marker in raw and b'"kind":"run"' in raw for raw in lines.splitlines())

    return recorded


def _latest_of(lines: bytes, line: Mapping[str, Any]) -> dict[str, Any]:
    """The last record of ``line``'s run key among ``lines`` (appended by another process)."""
    import json

    marker = f'"key":"{line["key"]}"'.encode()
    found = [raw for raw in lines.splitlines() if marker in raw and b'"kind":"run"' in raw]
    value = json.loads(found[-1])
    assert isinstance(value, dict)
    return value


def conflicts(view: LedgerView, where: str) -> list[Problem]:
    """Two releases of one version with different prompts (an error: which one is the
    release is ambiguous), and run keys with several records (a warning: readers use the
    latest, named here)."""
    out = []
    for version, records in view.release_conflicts().items():
        listed = "; ".join(
            f"{r.hash[:19] if r.hash else '?'}... recorded {r.time}, commit "
            f"{r.git_commit[:12] if r.git_commit else 'unknown'}"
            for r in records
        )
        out.append(
            Problem(
                where,
                0,
                "",
                f"version {version} was released {len(records)} times with different prompts "
                f"(two branches both released it?): {listed}; `eval --against v{version}` "
                "refuses it until one record is removed and the other version released again",
            )
        )
    for key, entries in view.key_conflicts().items():
        used = entries[-1]
        out.append(
            Problem(
                where,
                0,
                "",
                f"run {key[:19]}... ({used.suite}/{used.prompt_id}) has {len(entries)} records; "
                f"readers use the latest, {used.hash[:19]}... recorded {used.time} (a --fresh "
                "or retried run, or two branches that ran the same job)",
                "warning",
            )
        )
    return out
