"""How consistent a prompt is across repeats (``--repeats K``): pure functions.

Each function takes per-example repeat scores: ``repeats[i]`` lists example i's scores,
one per repeat, or is None when the example failed (failed examples are left out, as they
are from the means). See docs/repeats.md for how to read the numbers.

* ``pass_at_k(repeats, k)``: the chance that at least one of k repeats drawn without
  replacement from an example's n passes, averaged over examples: the unbiased estimator
  of the HumanEval paper (Chen et al., 2021), ``1 - C(n - c, k) / C(n, k)`` for c passes
  of n. With k = n it is the share of examples that passed at least once.
* ``pass_hat_k(repeats, k)``: the chance that all k drawn repeats pass, averaged:
  ``C(c, k) / C(n, k)``. With k = n it is the share of examples that passed every time.
* ``disagreement(repeats)``: the share of examples whose repeats did not all score the
  same (any metric, 0/1 or not).
* ``mean_variance(repeats)``: the mean over examples of each example's variance over its
  repeats (population variance: divided by n, as the scores object stores it).

pass@k and pass^k are defined for 0/1 scores only; ``ValueError`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Consistency",
    "consistency",
    "disagreement",
    "mean_variance",
    "pass_at_k",
    "pass_hat_k",
]

Repeats = Sequence[Sequence[float] | None]


def _scored(repeats: Repeats) -> list[Sequence[float]]:
    return [r for r in repeats if r is not None and len(r) > 0]


def _passes(scores: Sequence[float]) -> int:
    if any(s not in (0, 1) for s in scores):
        raise ValueError("pass@k and pass^k need 0/1 scores")
    return sum(1 for s in scores if s == 1)


def _check_k(scored: list[Sequence[float]], k: int) -> None:
    if k < 1:
        raise ValueError("k must be at least 1")
    short = min((len(s) for s in scored), default=k)
    if k > short:
        raise ValueError(f"k = {k} exceeds the repeats of an example ({short})")


def pass_at_k(repeats: Repeats, k: int) -> float | None:
    """The unbiased pass@k averaged over scored examples (None when none was scored)."""
    return _mean_over(repeats, k, lambda n, c: 1.0 - math.comb(n - c, k) / math.comb(n, k))


def pass_hat_k(repeats: Repeats, k: int) -> float | None:
    """pass^k averaged over scored examples (None when none was scored)."""
    return _mean_over(repeats, k, lambda n, c: math.comb(c, k) / math.comb(n, k))


def _mean_over(repeats: Repeats, k: int, estimate: Callable[[int, int], float]) -> float | None:
    """``estimate(n, c)`` (n repeats, c of them passed) averaged over scored examples."""
    scored = _scored(repeats)
    if not scored:
        return None
    _check_k(scored, k)
    total = 0.0
    for scores in scored:
        total += estimate(len(scores), _passes(scores))
    return total / len(scored)


def disagreement(repeats: Repeats) -> float | None:
    """The share of scored examples whose repeats did not all agree."""
    scored = _scored(repeats)
    if not scored:
        return None
    return sum(1 for s in scored if len(set(s)) > 1) / len(scored)


def _variance(scores: Sequence[float]) -> float:
    mean = math.fsum(scores) / len(scores)
    return math.fsum((s - mean) ** 2 for s in scores) / len(scores)


def mean_variance(repeats: Repeats) -> float | None:
    """The mean of the examples' variances over their repeats."""
    scored = _scored(repeats)
    if not scored:
        return None
    return math.fsum(_variance(s) for s in scored) / len(scored)


@dataclass(frozen=True)
class Consistency:
    """One metric's consistency over a run's repeats (``k`` is the number of repeats).

    ``pass_at_k`` and ``pass_hat_k`` are None for a metric that is not 0/1.
    """

    n: int
    k: int
    disagreement: float
    mean_variance: float
    pass_at_k: float | None
    pass_hat_k: float | None


def consistency(repeats: Repeats, k: int, *, binary: bool) -> Consistency | None:
    """Every number above for one metric, at k repeats; None when no example was scored."""
    scored = _scored(repeats)
    spread = disagreement(scored)
    variance = mean_variance(scored)
    if spread is None or variance is None:
        return None
    return Consistency(
        n=len(scored),
        k=k,
        disagreement=spread,
        mean_variance=variance,
        pass_at_k=pass_at_k(scored, k) if binary else None,
        pass_hat_k=pass_hat_k(scored, k) if binary else None,
    )
