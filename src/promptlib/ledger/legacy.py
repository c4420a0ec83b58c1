"""Schema 1 (``evals/ledger.jsonl``, promptlib 1.0 to 2.1), read as schema-2 records.

A schema-1 file held everything in its lines: a run's per-example scores keyed by example
id, a release's full prompt content with its partials once per release. ``read_v1``
converts each record into the schema-2 record it would be (``RunRecord``,
``ReleaseRecord``) and keeps the objects those reference in memory, so every reader works
on a schema-1 ledger unchanged, read-only. ``promptlib ledger migrate`` writes the same
records and objects into a schema-2 ledger.

What a conversion cannot know is marked rather than invented: a converted run keeps its
schema-1 key (``promptlib.evals`` re-derives the schema-2 key when it can), its metrics'
algorithm ids read ``<kind> (schema 1)``, it has no outputs (schema 1 kept none), and each
record's ``hash`` is the hash of the schema-1 line it came from (``migrated_from`` too).
A release whose recorded content does not rebuild its fingerprint is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import LedgerError, Problem
from .objects import encode
from .records import (
    ExampleIds,
    PromptMetadata,
    ReleaseRecord,
    RunRecord,
    ScoresObject,
    check_body,
)
from .store import LineStore
from .view import LedgerView, MemoryObjects

__all__ = ["BINARY_KINDS", "Converted", "convert_release", "convert_run", "read_v1"]

#: The schema-1 metric kinds that score 0 or 1.
BINARY_KINDS = frozenset(
    {"exact_match", "accuracy", "contains", "regex", "json_valid", "json_schema"}
)

# Order of a run's example ids: given the record, a list (dataset row order) or None.
Order = Callable[[Mapping[str, Any]], Sequence[str] | None]


class Converted:
    """Records converted from schema 1 and the objects they reference."""

    def __init__(self) -> None:
        self.runs: list[RunRecord] = []
        self.releases: list[ReleaseRecord] = []
        self.objects: dict[str, Any] = {}
        self.problems: list[Problem] = []

    def put(self, value: Any) -> str:
        reference, _ = encode(value)
        self.objects[reference] = value
        return reference


def _metric_identities(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    config = record.get("metrics", {}).get("config", [])
    for entry in config if isinstance(config, list) else []:
        kind = str(entry.get("kind", ""))
        options = entry.get("options") or {}
        binary = kind in BINARY_KINDS or bool(options.get("binary", False))
        out[str(entry.get("name") or kind)] = {
            "kind": kind,
            "algorithm": f"{kind} (schema 1)",
            "binary": binary,
        }
    for name in record["results"]:
        out.setdefault(name, {"kind": name, "algorithm": f"{name} (schema 1)", "binary": False})
    return out


def convert_run(
    record: Mapping[str, Any],
    into: Converted,
    *,
    key: str | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    order: Sequence[str] | None = None,
) -> RunRecord:
    """The schema-2 run of a schema-1 run record; its objects go ``into``.

    ``key`` and ``metrics`` replace the schema-1 key and metric identities when the caller
    could derive the schema-2 ones; ``order`` gives the example ids in row order.
    """
    scores: Mapping[str, Mapping[str, float]] = record["scores"]
    errors: Mapping[str, str] = record["errors"]["examples"]
    known = {i for by_id in scores.values() for i in by_id} | set(errors)
    ids = [i for i in order if i in known] if order is not None else []
    if set(ids) != known:
        ids = sorted(known)
    examples = into.put(ExampleIds(ids=ids).model_dump(mode="json"))
    position = {example: index for index, example in enumerate(ids)}
    scores_object = ScoresObject(
        examples=examples,
        scores={name: [by_id.get(i) for i in ids] for name, by_id in scores.items()},
        errors={str(position[i]): message for i, message in errors.items()},
        variance={name: [by_id.get(i) for i in ids] for name, by_id in record["variance"].items()}
        if "variance" in record
        else None,
    )
    scores_reference = into.put(scores_object.model_dump(mode="json", exclude_none=True))
    implementation = dict(record.get("metrics", {}).get("implementation", {}))
    package = record.get("package", {})
    provider = record["provider"]
    usage = record.get("usage") or {}
    timing = record.get("timing") or {}
    data = {
        "schema": 2,
        "kind": "run",
        "hash": record["hash"],
        "time": record["time"],
        "key": key or record["key"],
        "suite": record["suite"],
        "prompt": record["prompt"],
        "dataset": {k: record["dataset"][k] for k in ("path", "sha256", "rows")},
        "provider": {
            "name": provider["name"],
            "type": provider.get("type", provider["name"]),
            "model": provider.get("model"),
            "fingerprint": provider["fingerprint"],
        },
        "params": provider.get("params", {}),
        "metrics": dict(metrics) if metrics is not None else _metric_identities(record),
        "repeats": record.get("repeats", 1),
        "examples": record.get("examples", len(ids)),
        "results": record["results"],
        "errors": record["errors"]["count"],
        "timing": {
            "seconds": float(timing.get("seconds", 0.0)),
            "calls": int(timing.get("calls", 0)),
            "cached": int(timing.get("cached", 0)),
        },
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "cost": usage.get("cost"),
        },
        "provenance": {
            "promptlib": str(package.get("version", implementation.pop("promptlib", "unknown"))),
            "git_commit": package.get("git_commit"),
            "dirty": package.get("dirty"),
            "dependencies": {k: str(v) for k, v in implementation.items() if k != "promptlib"},
        },
        "scores": scores_reference,
        "outputs": None,
        "migrated_from": record["hash"],
    }
    run = RunRecord.model_validate(data)
    into.runs.append(run)
    return run


def convert_release(record: Mapping[str, Any], into: Converted) -> ReleaseRecord:
    """The schema-2 release of a schema-1 release record; behaviours and metadata ``into``.

    Each prompt's behaviour becomes the object named by its fingerprint: the recorded
    content, with the release's partials put back, must hash to the recorded fingerprint.
    """
    partials: Mapping[str, str] = record.get("partials", {})
    prompts: dict[str, dict[str, str]] = {}
    for item in record["prompts"]:
        behaviour = dict(item["behaviour"])
        try:
            behaviour["partials"] = {name: partials[name] for name in behaviour.get("partials", [])}
        except KeyError as exc:
            raise LedgerError(
                f"release {record['version']}: prompt {item['id']} includes the partial {exc} "
                "that the record does not hold"
            ) from None
        reference = into.put(behaviour)
        if reference != item["fingerprint"]:
            raise LedgerError(
                f"release {record['version']}: prompt {item['id']}'s recorded content hashes to "
                f"{reference}, not its fingerprint {item['fingerprint']}: the record was written "
                "by an incompatible promptlib"
            )
        metadata = into.put(PromptMetadata(metadata=item.get("metadata", {})).model_dump())
        prompts[item["id"]] = {
            "version": item["version"],
            "fingerprint": item["fingerprint"],
            "metadata": metadata,
        }
    release = ReleaseRecord.model_validate(
        {
            "schema": 2,
            "kind": "release",
            "hash": record["hash"],
            "time": record.get("time", ""),
            "version": str(record["version"]),
            "git_commit": record.get("git_commit"),
            "previous": record.get("previous"),
            "bump": record.get("bump"),
            "prompts": prompts,
            "migrated_from": record["hash"],
        }
    )
    into.releases.append(release)
    return release


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The schema-1 records of ``path`` (envelopes and bodies checked)."""
    records, problems, _ = _read(path)
    return records, problems


def _read(path: Path) -> tuple[list[dict[str, Any]], list[Problem], int | None]:
    lines = LineStore(path, schema=1).read()
    records = []
    for record in lines.records:
        check_body(record, str(path))
        records.append(record)
    return records, list(lines.problems), lines.torn.line if lines.torn else None


def read_v1(path: Path, order: Order | None = None) -> LedgerView:
    """A read-only view of the schema-1 ledger at ``path`` (see the module docstring)."""
    records, problems, torn = _read(path)
    converted = Converted()
    converted.problems.extend(problems)
    for record in records:
        if record["kind"] == "run":
            convert_run(record, converted, order=order(record) if order else None)
        else:
            convert_release(record, converted)
    return LedgerView(
        converted.runs,
        converted.releases,
        objects=[MemoryObjects(converted.objects)],
        problems=converted.problems,
        source=str(path),
        schema=1,
        torn=[(str(path), torn)] if torn is not None else [],
    )


class LegacyLedger:
    """A schema-1 ledger file, read-only: records appended to it stay in memory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.record = False
        self.repaired: list[Any] = []
        self._view: LedgerView | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self, *, refresh: bool = False) -> LedgerView:
        if self._view is None or refresh:
            self._view = read_v1(self.path)
        return self._view

    def append(
        self,
        record: RunRecord | ReleaseRecord,
        objects: Mapping[str, Any] | None = None,
        *,
        once: bool = False,
    ) -> RunRecord | ReleaseRecord:
        self.read().add(record, objects)
        return record
