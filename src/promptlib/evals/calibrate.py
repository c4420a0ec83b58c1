"""``promptlib judge calibrate``: how far a judge agrees with human labels, recorded.

A calibration suite evaluates a judge prompt itself (the prompt under test is the judge,
its provider is the judge provider) on rows that carry a human label. ``calibrate`` runs
the suite as ``promptlib eval`` would (its run is recorded, or reused, as any run), parses
each verdict with the verdict rules of judge metrics (``evals.judges``), and compares the
verdicts with the label column (``evals.agreement``): Cohen's kappa with a bootstrap
interval, raw agreement, Spearman's rho, the judge's bias and the confusion matrix.

The result is recorded as an ordinary run record: a copy of the suite's run with its
results extended by ``kappa``, ``kappa_low``, ``kappa_high``, ``raw_agreement``,
``spearman`` and ``bias`` (each ``mean`` is the figure; ``n`` the examples compared), under
its own key (the run's key, the label column, the scale and ``AGREEMENT_ALGORITHM``): the
same calibration is reused, not recomputed. It is recorded against the judge prompt's
fingerprint and the judge provider's fingerprint, which is how a judge metric finds it
(``judges.calibration_warnings``).

Verdicts that do not parse and examples that failed are left out of the comparison and
counted (``malformed``, ``failed``). A label must be an integer (or a boolean, or a string
of an integer); anything else is an input error naming the row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._canonical import sha256_of
from ..errors import ConfigError, DatasetError, ProviderError
from ..ledger import AnyLedger, RunRecord, open_project
from ..ledger.records import MetricIdentity, MetricResult
from ..library.collection import load
from ..settings import Settings
from .agreement import Agreement, agreement
from .cache import CacheMode
from .judges import SCALES, MalformedVerdict, parse_verdict
from .run import _batch, choose_suites
from .runner import EvalOptions, _record_time

__all__ = [
    "AGREEMENT_ALGORITHM",
    "CALIBRATION_RESULTS",
    "Calibration",
    "calibrate",
    "describe",
]

AGREEMENT_ALGORITHM = "promptlib-agreement/1"
#: The result names a calibration record adds to its run's results.
CALIBRATION_RESULTS = ("kappa", "kappa_low", "kappa_high", "raw_agreement", "spearman", "bias")


@dataclass
class Calibration:
    """A judge's agreement with human labels, and the record that keeps it."""

    suite: str
    judge: str
    judge_version: str
    provider: str
    labels: str
    scale: str
    agreement: Agreement
    malformed: int
    failed: int
    record: RunRecord
    status: str  # "recorded", "reused" or "not recorded"
    notes: list[str] = field(default_factory=list)


def _label(value: Any, row_id: str, column: str, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise DatasetError(
        f"{where}: row {row_id!r} has {column} = {value!r}; calibration labels are integers "
        "(0/1 for a binary judge, 1-5 for a 1-5 judge)"
    )


def calibration_key(run: RunRecord, labels: str, scale: str) -> str:
    return sha256_of(
        {
            "format": "promptlib-calibration/1",
            "run": run.key,
            "labels": labels,
            "scale": scale,
            "algorithm": AGREEMENT_ALGORITHM,
        }
    )


def calibrate(
    settings: Settings,
    suite: str,
    labels: str,
    *,
    scale: str = "binary",
    cache_mode: CacheMode = CacheMode.on,
    options: EvalOptions | None = None,
    ledger: AnyLedger | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    resamples: int = 2000,
) -> Calibration:
    """Calibrate the judge prompt ``suite`` evaluates against the ``labels`` column."""
    if scale not in SCALES:
        raise ConfigError(f"--scale must be binary or 1-5, not {scale!r}")
    root = settings.require_root()
    # Every label is checked before any call: a bad label must not cost a run.
    chosen = choose_suites(root, [suite])[0]
    for row in chosen.dataset():
        if chosen.keeps(row):
            row_id = str(row.get("id"))
            if labels not in row:
                raise DatasetError(
                    f"{chosen.spec.dataset}: row {row_id!r} has no label column {labels!r}"
                )
            _label(row[labels], row_id, labels, chosen.spec.dataset)
    ledger = ledger if ledger is not None else open_project(settings)
    batch, _ = _batch(
        settings, [suite], (), None, cache_mode, options, on_progress, load(root), ledger
    )
    if len(batch.results) != 1:
        raise ConfigError(
            f"suite {suite} evaluates {len(batch.results)} prompts; a calibration suite "
            "evaluates exactly one judge prompt"
        )
    result = batch.results[0]
    job = result.job
    if result.record is None or result.view is None:
        raise ProviderError(f"{suite}/{job.prompt.id}: {result.failure or 'the run failed'}")
    run = result.record
    view = result.view
    outputs = view.outputs(run)
    if outputs is None:
        raise ConfigError(
            f"the run of {suite} kept no outputs (--no-outputs): its verdicts cannot be read"
        )
    scores = view.scores(run)
    rows = {str(row["id"]): row for row in job.rows}
    judged: list[int] = []
    human: list[int] = []
    malformed = failed = 0
    for index, example_id in enumerate(outputs.ids):
        row = rows[example_id]
        if example_id in scores.errors or not outputs.outputs[index]:
            failed += 1
            continue
        try:
            verdict = parse_verdict(outputs.outputs[index][0], scale)
        except MalformedVerdict:
            malformed += 1
            continue
        judged.append(verdict.raw)
        human.append(_label(row[labels], example_id, labels, job.dataset.relative))
    if not judged:
        raise ConfigError(
            f"no verdict of {job.prompt.id} could be compared with {labels!r} "
            f"({malformed} malformed, {failed} failed)"
        )
    found = agreement(judged, human, resamples=resamples)
    key = calibration_key(run, labels, scale)
    existing = view.run(key)
    status = "reused"
    if existing is None:
        record = _calibration_record(run, key, found)
        sealed = ledger.append(record, {}, once=True)
        assert isinstance(sealed, RunRecord)
        existing = sealed
        status = "recorded" if ledger.record else "not recorded"
    return Calibration(
        suite=suite,
        judge=job.prompt.id,
        judge_version=str(job.prompt.version),
        provider=run.provider.name,
        labels=labels,
        scale=scale,
        agreement=found,
        malformed=malformed,
        failed=failed,
        record=existing,
        status=status,
        notes=list(batch.repaired),
    )


def _calibration_record(run: RunRecord, key: str, found: Agreement) -> RunRecord:
    figures = {
        "kappa": found.kappa,
        "kappa_low": found.kappa_low,
        "kappa_high": found.kappa_high,
        "raw_agreement": found.raw,
        "spearman": found.spearman,
        "bias": found.bias,
    }
    results = dict(run.results)
    metrics = dict(run.metrics)
    for name, value in figures.items():
        if value is None:
            continue
        results[name] = MetricResult(mean=round(value, 6), stderr=0.0, n=found.n)
        metrics[name] = MetricIdentity(
            kind="calibration", algorithm=AGREEMENT_ALGORITHM, binary=False
        )
    return run.model_copy(
        update={
            "key": key,
            "time": _record_time(run.time),
            "results": results,
            "metrics": metrics,
            "hash": None,
            "after": None,
        }
    )


def describe(found: Agreement) -> Mapping[str, Any]:
    """The agreement as plain data (``--format json``)."""
    return {
        "n": found.n,
        "raw_agreement": found.raw,
        "kappa": found.kappa,
        "kappa_interval": [found.kappa_low, found.kappa_high],
        "spearman": found.spearman,
        "bias": found.bias,
        "confusion": {"categories": found.categories, "counts": found.confusion},
    }
