"""Agreement between a judge and human labels: Cohen's kappa, Spearman, bias, confusion.

Pure Python, no SciPy: every formula is the textbook one, pinned by hand-computed tables in
``tests/test_agreement.py``.

* Cohen's kappa (unweighted): ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the share of items
  both raters put in the same category and ``p_e = sum_k p_judge(k) * p_human(k)``. When
  ``p_e`` is 1 (both raters used one and the same category) kappa is undefined: None.
* Its interval: percentile bootstrap over items (``resamples`` draws with replacement,
  seeded, so that the same data always give the same interval); draws whose kappa is
  undefined are skipped.
* Spearman's rho: Pearson's correlation of the average ranks (ties share their mean
  rank); None when either side is constant.
* Bias: mean judge score minus mean human score, on the labels' own scale (positive: the
  judge is more lenient than the humans).
* Confusion: ``counts[human][judge]`` over the sorted union of categories.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Agreement",
    "agreement",
    "bootstrap_kappa",
    "cohen_kappa",
    "confusion",
    "spearman",
]


def cohen_kappa(judge: Sequence[int], human: Sequence[int]) -> float | None:
    """Cohen's kappa of two raters over the same items (None when undefined)."""
    if len(judge) != len(human):
        raise ValueError("both raters must rate the same items")
    n = len(judge)
    if n == 0:
        return None
    observed = sum(1 for a, b in zip(judge, human, strict=True) if a == b) / n
    left, right = Counter(judge), Counter(human)
    expected = sum(left[k] * right[k] for k in left) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def bootstrap_kappa(
    judge: Sequence[int],
    human: Sequence[int],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 20_240_601,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of kappa (None when no draw defines kappa)."""
    n = len(judge)
    if n == 0:
        return None
    rng = random.Random(seed)
    values: list[float] = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        value = cohen_kappa([judge[i] for i in picks], [human[i] for i in picks])
        if value is not None:
            values.append(value)
    if not values:
        return None
    values.sort()
    tail = (1.0 - level) / 2
    low = values[max(0, math.floor(tail * len(values)))]
    high = values[min(len(values) - 1, math.ceil((1.0 - tail) * len(values)) - 1)]
    return low, high


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank
        i = j + 1
    return ranks


def spearman(judge: Sequence[float], human: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties (None when a side is constant)."""
    if len(judge) != len(human):
        raise ValueError("both raters must rate the same items")
    if len(judge) < 2:
        return None
    x, y = _ranks(judge), _ranks(human)
    mx, my = math.fsum(x) / len(x), math.fsum(y) / len(y)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def confusion(judge: Sequence[int], human: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """The categories and ``counts[human][judge]`` (rows: human, columns: judge)."""
    categories = sorted(set(judge) | set(human))
    index = {c: i for i, c in enumerate(categories)}
    counts = [[0] * len(categories) for _ in categories]
    for a, b in zip(judge, human, strict=True):
        counts[index[b]][index[a]] += 1
    return categories, counts


@dataclass(frozen=True)
class Agreement:
    """How far a judge agrees with human labels on ``n`` items."""

    n: int
    raw: float
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    spearman: float | None
    bias: float
    categories: list[int]
    confusion: list[list[int]]


def agreement(
    judge: Sequence[int], human: Sequence[int], *, resamples: int = 2000, seed: int = 20_240_601
) -> Agreement:
    """Every agreement figure of ``judge`` against ``human`` (see the module docstring)."""
    n = len(judge)
    if n == 0 or n != len(human):
        raise ValueError("agreement needs the same, non-zero number of judge and human labels")
    interval = bootstrap_kappa(judge, human, resamples=resamples, seed=seed)
    categories, counts = confusion(judge, human)
    return Agreement(
        n=n,
        raw=sum(1 for a, b in zip(judge, human, strict=True) if a == b) / n,
        kappa=cohen_kappa(judge, human),
        kappa_low=interval[0] if interval else None,
        kappa_high=interval[1] if interval else None,
        spearman=spearman(judge, human),
        bias=(math.fsum(judge) - math.fsum(human)) / n,
        categories=categories,
        confusion=counts,
    )
