"""A run's aggregates from its per-example scores: one function, used by the runner when
it records a run and by the merge of shard ledgers when it joins a split run's parts, so
that both give the same means and standard errors from the same stored scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..ledger.records import MetricResult

__all__ = ["SCORE_DIGITS", "aggregate", "mean_stderr"]

#: Scores, means and standard errors are stored rounded to this many decimals.
SCORE_DIGITS = 6


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the standard error of the mean (sample standard deviation / sqrt n)."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def aggregate(scores: Sequence[float | None]) -> MetricResult:
    """A metric's result over the examples that were scored (None: a failed example)."""
    present = [float(v) for v in scores if v is not None]
    mean, stderr = mean_stderr(present)
    return MetricResult(
        mean=round(mean, SCORE_DIGITS), stderr=round(stderr, SCORE_DIGITS), n=len(present)
    )
