"""Sharded evaluation: each of N processes runs a deterministic 1/N of the planned jobs into
its own *shard ledger*, and ``merge_ledgers`` joins the shard ledgers into one.

Assignment (``assign``), a pure function of the planned jobs and ``Shard(k, n,
split_above)``:

* a job of at most ``split_above`` rows goes whole to shard ``owner(key, n)``: the sha256
  of its run key, as an integer, modulo ``n`` (plus one: shards are numbered 1 to n);
* a job of more rows is split into ``n`` contiguous ranges of its rows (``ranges``), and
  shard ``k`` evaluates range ``k``. The result of a range is a *part*: a run record of
  those rows with its objects, written to the shard ledger's ``parts.jsonl``, never to its
  index (a part is not a run; nothing would reuse it as one).

A shard ledger is a ledger folder (``index.jsonl``, ``objects/``, ``outputs/``) plus
``parts.jsonl`` and ``shard.json`` (``SHARD_FILE``): the shard's ``k`` and ``n``,
``split_above``, the project's library fingerprints (prompt id -> fingerprint) and the plan
of every shard (each planned job's run key, name, rows and the shard or ranges it goes
to), with the plan's digest. Runs the shard reuses from the project's ledger are not
copied into it.

The merge (``merge_ledgers``) refuses, naming the shard ledger, a folder that is no shard
ledger, is corrupt (an index or parts line, or an object, that does not verify), belongs
to another plan or another project (a different library fingerprint set); it refuses,
naming the job, a planned job that no shard ledger (nor the target ledger) holds, and,
naming the job and the example, two shard ledgers that disagree on an example's scores.
Otherwise it joins each split job's parts in range order into one run record whose
aggregates are computed from the joined per-example scores by the runner's own function,
so a merged ledger holds the run keys, per-example scores and aggregates an unsharded run
records. Records already in the target are not appended again, and the whole merge holds
the target index's lock, so concurrent merges into one ledger serialise.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import filelock

from .._canonical import canonical_json, sha256_hex, sha256_of
from ..errors import ConfigError, LedgerError
from ..ledger import Ledger, RunRecord
from ..ledger.objects import ObjectStore, encode
from ..ledger.records import (
    ExampleIds,
    OutputsObject,
    ScoresObject,
    Timing,
)
from ._aggregate import Tally, aggregate, run_consistency

if TYPE_CHECKING:
    from ..library.collection import Library
    from .runner import Job

__all__ = [
    "DEFAULT_SPLIT_ABOVE",
    "SHARD_FILE",
    "MergeReport",
    "Shard",
    "ShardError",
    "assign",
    "library_fingerprints",
    "merge_ledgers",
    "owner",
    "ranges",
    "write_manifest",
]

#: Jobs with more rows than this are split across the shards (``--split-above N``).
DEFAULT_SPLIT_ABOVE: Final = 200

#: The file naming a folder as a shard ledger, and its format.
SHARD_FILE: Final = "shard.json"
SHARD_FORMAT: Final = "promptlib-shard/1"


class ShardError(LedgerError):
    """A shard ledger cannot be merged: missing, corrupt, foreign or disagreeing.

    ``job`` names the job concerned (``suite/prompt``) when there is one, ``shard`` the
    shard ledger folder.
    """

    def __init__(self, message: str, *, job: str | None = None, shard: str | None = None):
        super().__init__(message)
        self.job = job
        self.shard = shard


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based: ``--shard 1/4`` to ``--shard 4/4``)."""

    index: int
    count: int
    split_above: int = DEFAULT_SPLIT_ABOVE

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: K/N needs 1 <= K <= N (shards are "
                "numbered from 1)"
            )
        if self.split_above < 1:
            raise ConfigError("--split-above must be at least 1")

    @classmethod
    def parse(cls, text: str, split_above: int = DEFAULT_SPLIT_ABOVE) -> Shard:
        """``"2/4"`` -> ``Shard(2, 4)``; ``ConfigError`` for anything else."""
        head, slash, tail = text.partition("/")
        if not slash or not head.strip().isdigit() or not tail.strip().isdigit():
            raise ConfigError(f"--shard {text}: expected K/N, such as 2/4 (shard 2 of 4)")
        return cls(int(head), int(tail), split_above)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def owner(key: str, count: int) -> int:
    """The shard (1 to ``count``) that evaluates the whole job of run key ``key``."""
    digest = sha256_hex(key.encode("utf-8")).removeprefix("sha256:")
    return int(digest, 16) % count + 1


def ranges(rows: int, count: int) -> list[tuple[int, int]]:
    """``count`` contiguous ranges [start, stop) covering ``rows`` rows, sizes differing
    by at most one (empty when ``rows < count``)."""
    return [(i * rows // count, (i + 1) * rows // count) for i in range(count)]


def _splits(job: Job, shard: Shard) -> bool:
    return len(job.rows) > shard.split_above


def assign(jobs: Sequence[Job], shard: Shard) -> list[Job]:
    """The work of ``shard`` among ``jobs``: whole jobs it owns, and its part of each
    split job (a ``Job`` with ``part`` set and only that range's rows), in plan order."""
    mine: list[Job] = []
    for job in jobs:
        if job.part is not None:
            raise ValueError("assign takes planned jobs, not parts")  # a bug
        if _splits(job, shard):
            start, stop = ranges(len(job.rows), shard.count)[shard.index - 1]
            if stop > start:
                mine.append(replace(job, rows=job.rows[start:stop], part=(start, stop)))
        elif owner(job.key, shard.count) == shard.index:
            mine.append(job)
    return mine


def _name(job: Job) -> str:
    return f"{job.suite.name}/{job.prompt.id}"


def plan_of(jobs: Sequence[Job], shard: Shard) -> list[dict[str, Any]]:
    """Every planned job as ``shard.json`` lists it: key, name, rows, and its shard (whole)
    or its ranges (split, range i going to shard i + 1)."""
    out: list[dict[str, Any]] = []
    for job in jobs:
        entry: dict[str, Any] = {"key": job.key, "job": _name(job), "rows": len(job.rows)}
        if _splits(job, shard):
            entry["parts"] = [list(r) for r in ranges(len(job.rows), shard.count)]
        else:
            entry["shard"] = owner(job.key, shard.count)
        out.append(entry)
    return out


def library_fingerprints(library: Library) -> dict[str, str]:
    """The project's prompts as a shard ledger records them: id -> fingerprint."""
    return {prompt.id: prompt.fingerprint for prompt in library.values()}


def manifest(jobs: Sequence[Job], shard: Shard, library: Mapping[str, str]) -> dict[str, Any]:
    """The content of ``shard.json`` for ``shard`` of the plan ``jobs``."""
    plan = plan_of(jobs, shard)
    return {
        "format": SHARD_FORMAT,
        "shard": shard.index,
        "shards": shard.count,
        "split_above": shard.split_above,
        "library": dict(sorted(library.items())),
        "plan": plan,
        "digest": _digest(shard.count, shard.split_above, library, plan),
    }


def _digest(count: int, split_above: int, library: Mapping[str, str], plan: Any) -> str:
    return sha256_of(
        {"shards": count, "split_above": split_above, "library": dict(library), "plan": plan}
    )


def write_manifest(
    folder: Path, shard: Shard, jobs: Sequence[Job], library: Mapping[str, str]
) -> Path:
    """Write ``folder/shard.json`` for ``shard`` of the plan ``jobs`` (atomically).

    A folder that already holds a shard ledger of the same shard and plan (a shard run
    again after it was interrupted) is kept; one of another shard or plan is refused: its
    records would be merged as this plan's.
    """
    wanted = manifest(jobs, shard, library)
    path = Path(folder) / SHARD_FILE
    if path.exists():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path}: not a readable shard file ({exc}); use an empty folder"
            ) from exc
        if not isinstance(found, dict) or (found.get("shard"), found.get("digest")) != (
            wanted["shard"],
            wanted["digest"],
        ):
            raise ConfigError(
                f"{path}: this folder holds another shard ledger (shard "
                f"{found.get('shard') if isinstance(found, dict) else '?'}/"
                f"{found.get('shards') if isinstance(found, dict) else '?'} of a different "
                f"plan); give --shard {shard} a new --ledger folder"
            )
        return path
    _atomic_write(path, (canonical_json(wanted) + "\n").encode("utf-8"))
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# --- Merging ------------------------------------------------------------------------------


@dataclass
class _ShardLedger:
    folder: Path
    manifest: dict[str, Any]
    ledger: Ledger
    runs: dict[str, RunRecord]  # the latest run of each key in its index
    parts: dict[str, RunRecord]  # the latest part of each key
    # The objects of those runs and parts, verified: scores and example ids, and outputs.
    objects: dict[str, Any] = field(default_factory=dict)
    # The same objects as stored (JSON data), which a copied run's objects are.
    raw: dict[str, Any] = field(default_factory=dict)

    def load(self, record: RunRecord) -> None:
        """Read (and check against their names) the objects ``record`` references.

        An outputs object that is absent is allowed (kept elsewhere); the merged run then
        keeps no answers for it.
        """
        store = self.ledger.objects
        self.raw[record.scores] = store.get(record.scores)
        scores = ScoresObject.model_validate(self.raw[record.scores])
        self.objects[record.scores] = scores
        if scores.examples not in self.objects:
            self.raw[scores.examples] = store.get(scores.examples)
            self.objects[scores.examples] = ExampleIds.model_validate(self.raw[scores.examples])
        ids = self.objects[scores.examples].ids
        for name, values in scores.scores.items():
            if len(values) != len(ids):
                raise LedgerError(f"its scores of {name} are not one per example")
        if len(ids) != record.examples:
            raise LedgerError(f"{len(ids)} example ids for {record.examples} examples")
        if record.outputs is not None and record.outputs in self.ledger.outputs:
            outputs = self.ledger.outputs.get(record.outputs)
            # Its hash matched its name; its shape is checked here, not every answer's type.
            if (
                not isinstance(outputs, dict)
                or outputs.get("format") != "promptlib-outputs/1"
                or outputs.get("examples") != scores.examples
                or not isinstance(outputs.get("outputs"), list)
                or len(outputs["outputs"]) != len(ids)
                or not isinstance(outputs.get("usage", []), list | None)
                or len(outputs.get("usage") or ids) != len(ids)
            ):
                raise LedgerError(f"its outputs object {record.outputs} is not one per example")
            self.raw[record.outputs] = outputs

    @property
    def index(self) -> int:
        return int(self.manifest["shard"])

    @property
    def label(self) -> str:
        return f"shard {self.manifest['shard']}/{self.manifest['shards']} ({self.folder})"


@dataclass
class MergeReport:
    """What ``merge_ledgers`` did.

    ``appended`` lists the run keys appended to the target, ``present`` those it already
    held (reused by the shards, or merged before), ``joined`` the split jobs whose parts
    were joined.
    """

    into: str
    shards: int
    appended: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


def _load_shard(folder: Path) -> _ShardLedger:
    """Read and verify a shard ledger: its ``shard.json``, every index and parts line,
    and every object its runs and parts reference (each read, checked against its name
    and parsed once, then kept for the merge)."""
    path = folder / SHARD_FILE
    label = str(folder)
    if not folder.is_dir():
        raise ShardError(f"{label}: no such shard ledger folder", shard=label)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(
            f"{label}: not a shard ledger (no {SHARD_FILE}; `promptlib eval --shard K/N "
            "--ledger DIR` writes one)",
            shard=label,
        ) from None
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: corrupt shard file: {exc}", shard=label) from exc
    problem = _manifest_problem(data)
    if problem is not None:
        raise ShardError(f"{path}: corrupt shard file: {problem}", shard=label)
    ledger = Ledger(folder)
    errors: list[str] = []
    runs: dict[str, RunRecord] = {}
    parts: dict[str, RunRecord] = {}
    try:
        view = ledger.read()
        errors += [str(p) for p in view.problems if p.severity == "error"]
        found, part_problems = ledger.read_parts()
        errors += [str(p) for p in part_problems if p.severity == "error"]
        if not errors:
            runs = view.latest_runs()
            for part in sorted(found, key=lambda p: (p.time, p.hash or "")):
                parts[part.key] = part  # the latest part of a key wins, as runs do
    except LedgerError as exc:
        errors.append(str(exc))
    shard = _ShardLedger(folder, data, ledger, runs, parts)
    for record in (*runs.values(), *parts.values()):
        try:
            shard.load(record)
        except LedgerError as exc:
            errors.append(f"run {record.key[:19]}... ({record.suite}/{record.prompt.id}): {exc}")
    if errors:
        shown = "\n  ".join(errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ShardError(
            f"{label}: corrupt shard ledger, not merged:\n  {shown}{more}\nRun its shard "
            "again into a new folder.",
            shard=label,
        )
    return shard


def _manifest_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != SHARD_FORMAT:
        return f"format {data.get('format')!r}, expected {SHARD_FORMAT!r}"
    for name in ("shard", "shards", "split_above"):
        if not isinstance(data.get(name), int) or isinstance(data.get(name), bool):
            return f"{name} is not an integer"
    if not 1 <= data["shard"] <= data["shards"]:
        return f"shard {data['shard']} of {data['shards']}"
    if not isinstance(data.get("library"), dict) or not isinstance(data.get("plan"), list):
        return "no library or plan"
    for entry in data["plan"]:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and isinstance(entry.get("job"), str)
            and isinstance(entry.get("rows"), int)
            and (isinstance(entry.get("shard"), int) or isinstance(entry.get("parts"), list))
        ):
            return f"a plan entry is malformed: {str(entry)[:80]}"
    digest = _digest(data["shards"], data["split_above"], data["library"], data["plan"])
    if data.get("digest") != digest:
        return "its plan does not match its digest (edited by hand?)"
    return None


@dataclass
class _Claim:
    """What one shard ledger says about some examples of a job: scores by example id."""

    source: str
    ids: tuple[str, ...]
    scores: Mapping[str, Sequence[float | None]]
    errors: Mapping[str, str]


def _claim(shard: _ShardLedger, record: RunRecord) -> _Claim:
    scores: ScoresObject = shard.objects[record.scores]
    ids = tuple(shard.objects[scores.examples].ids)
    errors = {ids[int(i)]: message for i, message in scores.errors.items()}
    return _Claim(shard.label, ids, scores.scores, errors)


def _disagreement(claims: Sequence[_Claim], job: str) -> None:
    """Raise ``ShardError`` when two claims differ on an example they both hold."""
    counted: dict[str, int] = {}
    for claim in claims:
        for example in claim.ids:
            counted[example] = counted.get(example, 0) + 1
    shared = {example for example, times in counted.items() if times > 1}
    if not shared:
        return  # the parts of a split job: no example is held twice
    seen: dict[str, tuple[str, Any]] = {}
    for claim in claims:
        for index, example in enumerate(claim.ids):
            if example not in shared:
                continue
            failed = claim.errors.get(example)
            value: Any = (
                ("failed",)
                if failed is not None
                else tuple(sorted((m, v[index]) for m, v in claim.scores.items()))
            )
            earlier = seen.get(example)
            if earlier is None:
                seen[example] = (claim.source, value)
            elif earlier[1] != value:
                raise ShardError(
                    f"{job}: example {example}: {earlier[0]} and {claim.source} disagree "
                    f"({_shown(earlier[1])} vs {_shown(value)}); not merged: re-run one of "
                    "them (a provider that does not answer the same way twice?)",
                    job=job,
                )


def _shown(value: Any) -> str:
    if value == ("failed",):
        return "failed"
    return ", ".join(f"{m} {v}" for m, v in value)


def _join(
    key: str, job: str, parts: Sequence[tuple[_ShardLedger, RunRecord]]
) -> tuple[RunRecord, dict[str, Any], dict[str, Any]]:
    """One run record from the parts of a split job, in range order, with its objects
    (``objects``, ``outputs``): what the runner would have built for the whole job."""
    first = parts[0][1]
    identity = _identity(first)
    ids: list[str] = []
    metric_names = list(first.metrics)
    scores: dict[str, list[float | None]] = {m: [] for m in metric_names}
    variance: dict[str, list[float | None]] = {m: [] for m in metric_names}
    per_repeat: dict[str, list[list[float] | None]] = {m: [] for m in metric_names}
    errors: dict[str, str] = {}
    outputs: list[list[str]] | None = []
    usage: list[list[int] | None] = []
    usage_known = False
    seconds = 0.0
    tally = Tally()
    judged: Tally | None = None  # the judges', when a part has judge metrics
    for shard, part in parts:
        if _identity(part) != identity:
            raise ShardError(
                f"{job}: the parts of run {key[:19]}... in {parts[0][0].label} and "
                f"{shard.label} differ in their identity (prompt, dataset, provider, "
                "metrics or parameters); not merged",
                job=job,
            )
        data: ScoresObject = shard.objects[part.scores]
        part_ids = shard.raw[data.examples]["ids"]
        offset = len(ids)
        ids.extend(part_ids)
        for name in metric_names:
            scores[name].extend(data.scores.get(name, [None] * len(part_ids)))
            got = data.variance.get(name) if data.variance is not None else None
            variance[name].extend(got if got is not None else [None] * len(part_ids))
            kept = data.repeats.get(name) if data.repeats is not None else None
            per_repeat[name].extend(kept if kept is not None else [None] * len(part_ids))
        for index, message in data.errors.items():
            errors[str(offset + int(index))] = message
        if outputs is not None:
            if part.outputs is None or part.outputs not in shard.raw:
                outputs = None
            else:
                kept = shard.raw[part.outputs]  # checked by ``_ShardLedger.load``
                outputs.extend(kept["outputs"])
                if kept.get("usage") is not None:
                    usage_known = True
                    usage.extend(kept["usage"])
                else:
                    usage.extend([None] * len(part_ids))
        seconds += part.timing.seconds
        used = part.usage
        tally.add(
            part.timing.calls,
            part.timing.cached,
            used.prompt_tokens,
            used.completion_tokens,
            used.cost,
        )
        if part.judge_usage is not None:
            j = part.judge_usage
            judged = judged or Tally()
            judged.add(j.calls, j.cached, j.prompt_tokens, j.completion_tokens, j.cost)
    results = {name: aggregate(scores[name]) for name in metric_names}
    examples_object = ExampleIds(ids=ids).model_dump(mode="json")
    examples_reference = encode(examples_object)[0]
    scores_object = ScoresObject(
        examples=examples_reference,
        scores=scores,
        errors=errors,
        variance=variance if first.repeats > 1 else None,
        repeats=per_repeat if first.repeats > 1 else None,
    ).model_dump(mode="json", exclude_none=True)
    scores_reference = encode(scores_object)[0]
    stored: dict[str, Any] = {
        examples_reference: examples_object,
        scores_reference: scores_object,
    }
    outputs_reference = None
    answers: dict[str, Any] = {}
    if outputs is not None:
        outputs_object = OutputsObject(
            examples=examples_reference, outputs=outputs, usage=usage if usage_known else None
        ).model_dump(mode="json", exclude_none=True)
        outputs_reference = encode(outputs_object)[0]
        answers[outputs_reference] = outputs_object
    record = first.model_copy(
        update={
            "hash": None,
            "after": None,
            "time": max(part.time for _, part in parts),
            "examples": len(ids),
            "results": results,
            "errors": len(errors),
            "timing": Timing(seconds=round(seconds, 3), calls=tally.calls, cached=tally.cached),
            "usage": tally.usage(),
            "scores": scores_reference,
            "outputs": outputs_reference,
            "consistency": (
                run_consistency(
                    {m: identity.binary for m, identity in first.metrics.items()},
                    per_repeat,
                    first.repeats,
                )
                if first.repeats > 1
                else None
            ),
            "judge_usage": judged.judge_usage() if judged is not None else None,
        }
    )
    return record, stored, answers


def _identity(record: RunRecord) -> Any:
    return record.model_dump(
        mode="json",
        include={"key", "suite", "prompt", "dataset", "provider", "params", "metrics", "repeats"},
    )


def _body(record: RunRecord) -> str:
    """A record's content, without what the index adds when it appends it."""
    return canonical_json(record.model_dump(mode="json", by_alias=True, exclude={"hash", "after"}))


def _copy_objects(shard: _ShardLedger, record: RunRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """The objects of a shard's run record as JSON data: (scores and example ids, outputs)."""
    scores: ScoresObject = shard.objects[record.scores]
    objects = {
        record.scores: shard.raw[record.scores],
        scores.examples: shard.raw[scores.examples],
    }
    answers: dict[str, Any] = {}
    if record.outputs is not None and record.outputs in shard.raw:
        answers[record.outputs] = shard.raw[record.outputs]
    return objects, answers


def merge_ledgers(
    shard_dirs: Sequence[str | os.PathLike[str]],
    into: str | os.PathLike[str],
    *,
    library: Mapping[str, str] | None = None,
    lock_timeout: float = 60.0,
    failed: Collection[str] = (),
) -> MergeReport:
    """Join the shard ledgers ``shard_dirs`` into the ledger folder ``into`` (see the
    module docstring); ``ShardError`` (nothing appended) when they cannot be merged.

    ``library`` (prompt id -> fingerprint, ``library_fingerprints``) is the project the
    merge is for: a shard ledger of another library is refused. Every record is checked
    before the first is appended, and the target's lock is held from reading the target
    to the last append.

    ``failed`` are run keys whose jobs the caller knows failed in their shard (a provider
    failure beyond the error budget): when no shard ledger holds their run, they are left
    out instead of refused, and the rest is merged.
    """
    if not shard_dirs:
        raise ShardError("no shard ledger to merge")
    shards: list[_ShardLedger] = []
    seen_folders: set[Path] = set()
    for given in shard_dirs:
        folder = Path(given)
        resolved = folder.resolve()
        if resolved in seen_folders:
            continue
        seen_folders.add(resolved)
        shards.append(_load_shard(folder))
    first = shards[0]
    reference = first.manifest
    for shard in shards:
        if library is not None and shard.manifest["library"] != dict(library):
            raise ShardError(
                f"{shard.label}: a shard ledger of another project or library version (its "
                "prompt fingerprints are not this project's); not merged",
                shard=str(shard.folder),
            )
        if shard.manifest["digest"] != reference["digest"]:
            what = (
                "another project or library version"
                if shard.manifest["library"] != reference["library"]
                else "another plan (other suites, prompts, provider, --split-above or N)"
            )
            raise ShardError(
                f"{shard.label}: a shard ledger of {what} than {first.label}; not merged",
                shard=str(shard.folder),
            )
    count = int(reference["shards"])
    by_index: dict[int, list[_ShardLedger]] = {}
    for shard in shards:
        by_index.setdefault(shard.index, []).append(shard)
    target = Ledger(Path(into), lock_timeout=lock_timeout)
    report = MergeReport(target.where, len(shards))
    Path(into).mkdir(parents=True, exist_ok=True)
    try:
        # The index's own lock: appends below take it again (it is re-entrant), and other
        # merges or evals appending to the target wait for this merge to finish.
        lock = target.index._lock.acquire(timeout=lock_timeout, poll_interval=0.01)
    except filelock.Timeout:
        raise LedgerError(
            f"{target.index.path}: another writer has held the lock for over "
            f"{lock_timeout:g} s; wait for it to finish and try again"
        ) from None
    with lock:
        existing = target.read(refresh=True)
        existing.refuse_corrupt()
        present = {key: _body(run) for key, run in existing.latest_runs().items()}
        plan: list[dict[str, Any]] = reference["plan"]
        _refuse_missing_shards(plan, by_index, count, shards, present)
        # Each record to append, its objects and outputs, and whether it joins parts.
        writes: list[tuple[RunRecord, dict[str, Any], dict[str, Any], bool]] = []
        for entry in plan:
            key, job = entry["key"], entry["job"]
            holders = [(s, s.runs[key]) for s in shards if key in s.runs]
            if key in failed and not holders:
                continue  # it failed in its shard: nothing of it is merged
            claims = [_claim(s, r) for s, r in holders]
            if "parts" in entry:
                pieces = _parts_of(entry, by_index, count, holders, key in present)
                claims += [_claim(s, p) for s, p in pieces]
                _disagreement(claims, job)
                covered = {s.index for s, _ in pieces}
                needed = {i for i, (a, b) in enumerate(entry["parts"], start=1) if b > a}
                if covered == needed and not holders:
                    record, objects, answers = _join(key, job, _first_of_each(entry, pieces))
                    writes.append((record, objects, answers, True))
                    continue
            else:
                _disagreement(claims, job)
                _whole_present(entry, by_index, count, holders, key in present)
            for shard, record in holders[:1]:
                objects, answers = _copy_objects(shard, record)
                writes.append((record, objects, answers, False))
            if not holders:
                report.present.append(key)
        chosen: list[RunRecord] = []
        stored: dict[str, tuple[ObjectStore, bytes]] = {}
        for record, objects, answers, joined in writes:
            clean = record.model_copy(update={"hash": None, "after": None})
            if present.get(record.key) == _body(clean):
                report.present.append(record.key)
                continue
            present[record.key] = _body(clean)
            chosen.append(clean)
            report.appended.append(record.key)
            if joined:
                report.joined.append(record.key)
            for store, values in ((target.objects, objects), (target.outputs, answers)):
                for name, value in values.items():
                    encoded_name, data = encode(value)
                    if encoded_name != name:
                        raise LedgerError(f"{name}: its content does not match its name")  # a bug
                    stored[name] = (store, data)
        _write_objects(stored)
        # Every object is committed before the first index line that refers to it.
        result = target.index.append([record.to_json() for record in chosen])
        if result.repaired is not None:
            report.repaired.append(str(result.repaired))
    return report


def _write_objects(stored: Mapping[str, tuple[ObjectStore, bytes]]) -> None:
    """Write the objects, several at a time: each write ends with an fsync, which waits
    for the disk, and the disk commits concurrent ones together."""
    if not stored:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(stored))) as pool:
        futures = [
            pool.submit(store.put_bytes, reference, data)
            for reference, (store, data) in stored.items()
        ]
        for future in futures:
            future.result()


def _refuse_missing_shards(
    plan: Sequence[Mapping[str, Any]],
    by_index: Mapping[int, list[_ShardLedger]],
    count: int,
    shards: Sequence[_ShardLedger],
    present: Mapping[str, str],
) -> None:
    """Raise ``ShardError`` naming every job that needs a shard ledger not given."""
    missing = sorted(set(range(1, count + 1)) - set(by_index))
    if not missing:
        return
    jobs: list[str] = []
    for entry in plan:
        key = entry["key"]
        if key in present or any(key in s.runs for s in shards):
            continue
        if "parts" in entry:
            needs = {i for i, (a, b) in enumerate(entry["parts"], start=1) if b > a}
        else:
            needs = {int(entry["shard"])}
        if needs & set(missing) and entry["job"] not in jobs:
            jobs.append(entry["job"])
    if not jobs:
        return  # every job of the missing shards is in the target already
    names = ", ".join(f"{i}/{count}" for i in missing)
    raise ShardError(
        f"shard {names} {'is' if len(missing) == 1 else 'are'} missing (no shard ledger "
        f"for {'it' if len(missing) == 1 else 'them'} was given), so these jobs cannot be "
        f"merged: {', '.join(jobs)}; run `promptlib eval --shard K/N --ledger DIR` for "
        "each missing shard and merge again",
        job=jobs[0],
    )


def _missing_shard(index: int, count: int, job: str) -> ShardError:
    return ShardError(
        f"{job}: shard {index}/{count} is missing (no shard ledger for it was given); not "
        f"merged: run `promptlib eval --shard {index}/{count} --ledger DIR` and merge again",
        job=job,
    )


def _whole_present(
    entry: Mapping[str, Any],
    by_index: Mapping[int, list[_ShardLedger]],
    count: int,
    holders: Sequence[Any],
    in_target: bool,
) -> None:
    """Raise ``ShardError`` when a whole job's run is nowhere (not in its shard ledger,
    nor in the target, where the shard may have reused it from)."""
    if holders or in_target:
        return
    index = int(entry["shard"])
    if index not in by_index:
        raise _missing_shard(index, count, entry["job"])
    shard = by_index[index][0]
    raise ShardError(
        f"{entry['job']}: run {entry['key'][:19]}... is not in {shard.label} (the shard "
        "stopped before it, or it failed beyond the error budget); not merged: run the "
        "shard again (its response cache keeps that cheap) and merge again",
        job=entry["job"],
    )


def _parts_of(
    entry: Mapping[str, Any],
    by_index: Mapping[int, list[_ShardLedger]],
    count: int,
    holders: Sequence[Any],
    in_target: bool,
) -> list[tuple[_ShardLedger, RunRecord]]:
    """Every part of a split job held by the shard ledgers of its ranges, each checked
    against its range; ``ShardError`` for a missing one unless the whole run is there."""
    key, job = entry["key"], entry["job"]
    pieces: list[tuple[_ShardLedger, RunRecord]] = []
    for number, (start, stop) in enumerate(entry["parts"], start=1):
        if stop <= start:
            continue
        found = False
        for shard in by_index.get(number, []):
            part = shard.parts.get(key)
            if part is None:
                continue
            if part.examples != stop - start:
                raise ShardError(
                    f"{job}: the part in {shard.label} has {part.examples} rows, its range "
                    f"[{start}, {stop}) has {stop - start}; not merged",
                    job=job,
                )
            pieces.append((shard, part))
            found = True
        if found or holders or in_target:
            continue
        if number not in by_index:
            raise _missing_shard(number, count, job)
        raise ShardError(
            f"{job}: rows {start + 1}-{stop} (part {number} of {count}) are not in "
            f"{by_index[number][0].label} (the shard stopped before it, or it failed beyond "
            "the error budget); not merged: run the shard again (its response cache keeps "
            "that cheap) and merge again",
            job=job,
        )
    return pieces


def _first_of_each(
    entry: Mapping[str, Any], pieces: Sequence[tuple[_ShardLedger, RunRecord]]
) -> list[tuple[_ShardLedger, RunRecord]]:
    """One part per range, in range order (copies of a shard given twice agree: checked)."""
    chosen: dict[int, tuple[_ShardLedger, RunRecord]] = {}
    for shard, part in pieces:
        chosen.setdefault(shard.index, (shard, part))
    return [chosen[i] for i in sorted(chosen)]
