"""A run's aggregates from its per-example scores (and, with repeats, its consistency):
one function each, used by the runner when
it records a run and by the merge of shard ledgers when it joins a split run's parts, so
that both give the same means and standard errors from the same stored scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..ledger.records import JudgeUsage, MetricConsistency, MetricResult, Usage
from .consistency import consistency

__all__ = ["SCORE_DIGITS", "Tally", "aggregate", "mean_stderr", "run_consistency"]

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


def run_consistency(
    binary: Mapping[str, bool],
    per_repeat: Mapping[str, Sequence[Sequence[float] | None]],
    repeats: int,
) -> dict[str, MetricConsistency] | None:
    """Each metric's consistency over the repeats (``evals.consistency``; ``binary`` says
    which metrics are 0/1), rounded as scores are; None when no example was scored. The
    runner and the merge of shard ledgers (``evals.shards``) record it the same way."""
    out: dict[str, MetricConsistency] = {}
    for name, is_binary in binary.items():
        found = consistency(per_repeat[name], repeats, binary=is_binary)
        if found is None:
            continue
        out[name] = MetricConsistency(
            n=found.n,
            disagreement=round(found.disagreement, SCORE_DIGITS),
            mean_variance=round(found.mean_variance, SCORE_DIGITS),
            pass_at_k=None if found.pass_at_k is None else round(found.pass_at_k, SCORE_DIGITS),
            pass_hat_k=None if found.pass_hat_k is None else round(found.pass_hat_k, SCORE_DIGITS),
        )
    return out or None


@dataclass
class Tally:
    """Calls, cached answers, tokens and cost summed over a run's examples, the recorded
    run a retry completes, or a split run's parts, as records store them: the token counts
    are None unless some were reported, the cost None unless some was."""

    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_known: bool = False
    costs: list[float] = field(default_factory=list)

    def add(
        self,
        calls: int,
        cached: int,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cost: float | None,
        known: bool | None = None,
    ) -> None:
        """Add one example's or one record's counts; ``known`` (default: either token
        count is not None) says whether its token counts were reported."""
        self.calls += calls
        self.cached += cached
        if cost is not None:
            self.costs.append(cost)
        if known is None:
            known = prompt_tokens is not None or completion_tokens is not None
        self.tokens_known = self.tokens_known or known
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens if self.tokens_known else None,
            completion_tokens=self.completion_tokens if self.tokens_known else None,
            cost=round(math.fsum(self.costs), 6) if self.costs else None,
        )

    def judge_usage(self) -> JudgeUsage:
        usage = self.usage()
        return JudgeUsage(
            calls=self.calls,
            cached=self.cached,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=usage.cost,
        )
