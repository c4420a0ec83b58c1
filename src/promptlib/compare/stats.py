"""Paired statistics for comparing a candidate prompt with its released baseline.

Both sides are scored on the same examples, so every comparison is *paired*: it works on
the per-example differences ``d_i = candidate_i - baseline_i`` over the examples both
sides scored.

* **Interval**: a percentile paired bootstrap of the mean difference (resample the
  examples with replacement, ``resamples`` times), 95% by default.
* **Test**: for 0/1 metrics (accuracy, exact match, ...), the exact McNemar test, i.e.
  the two-sided binomial test of the discordant pairs (``b`` = base right and candidate
  wrong, ``c`` = the reverse) against p = 1/2. For other metrics (ROUGE), a paired
  sign-flip permutation test of the mean difference (``resamples`` random sign vectors;
  p = (1 + #{|mean*| >= |mean|}) / (1 + resamples)).
* **Multiple comparisons**: Holm's step-down correction across every comparison of one
  invocation (all changed prompts x metrics).
* **Verdict**: with ``p_adj`` the Holm-adjusted p-value, ``improved`` / ``regressed`` when
  ``p_adj < alpha`` (by the sign of the mean difference); otherwise ``no significant
  change`` when the comparison had the power to see the minimum effect, else
  ``inconclusive`` (too few shared examples, or too noisy). Power is judged by the
  minimum detectable effect ``(z(1 - alpha/2) + z(power)) * s / sqrt(n)`` (at most
  ``min_effect``), where ``s`` is the standard deviation of the differences. For 0/1
  metrics ``s`` is never taken below ``sqrt(e * (1 - e))`` for ``e = min_effect``: an
  effect of size ``e`` on a 0/1 metric needs at least that much spread, so a handful of
  identical answers cannot pass for evidence of no change (with the defaults, "no
  significant change" then needs at least 385 shared examples). For continuous metrics
  the observed ``s`` is used, with at least ``MIN_CONTINUOUS_N`` (30) shared examples.
  A significant change smaller than ``min_effect`` is still ``improved``/``regressed``:
  the test says it is real; ``min_effect`` only decides what a non-significant result
  is worth.

0/1 metrics averaged over ``--repeats`` give fractional per-example scores; those are
compared with the sign-flip test, like continuous metrics, but the metric's kind (not the
values) decides the variance floor of the minimum detectable effect, so identical answers
repeated twice are not evidence of no change. Scores must be finite: a NaN or infinity is
a ``ValueError`` naming the comparison, never a verdict.

Randomness comes from numpy's PCG64 seeded with ``SeedSequence([seed, sha256(key)])``,
where ``key`` names the comparison, so results are identical across runs and machines.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

__all__ = [
    "Comparison",
    "compare_paired",
    "holm",
    "mcnemar_exact",
    "minimum_detectable_effect",
    "paired_bootstrap_ci",
    "sign_flip_pvalue",
    "verdict",
]

IMPROVED = "improved"
REGRESSED = "regressed"
NO_CHANGE = "no significant change"
INCONCLUSIVE = "inconclusive"
_CHUNK = 1_000
# Resampled values held at once (chunk rows x examples): bounds the memory of a comparison
# on thousands of examples (about 12 MB) without changing the random stream.
_CELLS = 1_000_000


def _rows(n: int) -> int:
    return max(1, min(_CHUNK, _CELLS // max(n, 1)))


def _rng(seed: int, key: str) -> Any:
    import numpy as np

    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, digest])))


_EXACT_LIMIT = 2_000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    if n <= _EXACT_LIMIT:
        # P(X <= k) for X ~ Binomial(n, 1/2), summed exactly with integers.
        tail = sum(math.comb(n, i) for i in range(k + 1))
        return min(1.0, float(2 * tail / (1 << n)))
    # For large n the integers get slow: sum the same terms in floating point, from the
    # largest (i = k) down, each term from the next by the ratio i / (n - i + 1).
    log_term = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
    term = math.exp(log_term)
    total = 0.0
    for i in range(k, -1, -1):
        total += term
        if term < total * 1e-17:
            break
        term *= i / (n - i + 1)
    return min(1.0, 2 * total)


def paired_bootstrap_ci(
    diffs: Sequence[float], *, resamples: int, seed: int, key: str, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs``."""
    import numpy as np

    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n == 0:
        return (math.nan, math.nan)
    rng = _rng(seed, "bootstrap:" + key)
    means = np.empty(resamples, dtype=np.float64)
    rows = _rows(n)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        picks = rng.integers(0, n, size=(stop - start, n), dtype=np.int32)
        means[start:stop] = d[picks].mean(axis=1)
    tail = (1 - level) / 2
    bounds = np.quantile(means, [tail, 1 - tail])
    return float(bounds[0]), float(bounds[1])


def sign_flip_pvalue(diffs: Sequence[float], *, resamples: int, seed: int, key: str) -> float:
    """Two-sided paired permutation (sign-flip) p-value of the mean of ``diffs``."""
    import numpy as np

    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    rng = _rng(seed, "signflip:" + key)
    extreme = 0
    # Compare with a small tolerance so that sign patterns giving the same mean as the
    # observed one (ties, common with repeated ROUGE values) count as extreme.
    tolerance = 1e-12 * max(1.0, observed)
    rows = _rows(n)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        signs = rng.integers(0, 2, size=(stop - start, n), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ d) / n
        extreme += int(np.count_nonzero(means >= observed - tolerance))
    return (1 + extreme) / (1 + resamples)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


MIN_CONTINUOUS_N = 30


def minimum_detectable_effect(
    sd: float, n: int, *, alpha: float, power: float, min_effect: float, binary: bool = True
) -> float:
    """The smallest mean difference a two-sided test at ``alpha`` detects with ``power``.

    For 0/1 metrics ``sd`` is floored at ``sqrt(min_effect * (1 - min_effect))``; for
    continuous metrics fewer than ``MIN_CONTINUOUS_N`` examples detect nothing (see the
    module docstring).
    """
    if n < 2 or (not binary and n < MIN_CONTINUOUS_N):
        return math.inf
    if binary:
        sd = max(sd, math.sqrt(min_effect * (1 - min_effect)))
    z = NormalDist().inv_cdf
    return (z(1 - alpha / 2) + z(power)) * sd / math.sqrt(n)


def verdict(
    mean_diff: float, p_adjusted: float, mde: float, *, alpha: float, min_effect: float
) -> str:
    """The verdict rule of the module docstring."""
    if p_adjusted < alpha:
        return IMPROVED if mean_diff > 0 else REGRESSED
    return NO_CHANGE if mde <= min_effect else INCONCLUSIVE


@dataclass(frozen=True)
class Comparison:
    """One metric of one prompt, candidate vs baseline, before the Holm correction."""

    n: int
    baseline_mean: float
    candidate_mean: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    mde: float
    discordant: tuple[int, int] | None = None


def compare_paired(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    binary: bool,
    resamples: int,
    seed: int,
    key: str,
    alpha: float,
    power: float,
    min_effect: float,
) -> Comparison:
    """Paired comparison of two score lists (same examples, same order)."""
    if len(baseline) != len(candidate):
        raise ValueError("paired comparison needs two lists of the same length")
    for side, values in (("baseline", baseline), ("candidate", candidate)):
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            raise ValueError(
                f"paired comparison needs finite scores; {side}[{bad}] is {values[bad]!r} "
                f"(key {key})"
            )
    n = len(baseline)
    diffs = [c - b for b, c in zip(baseline, candidate, strict=True)]
    if n == 0:
        nan = math.nan
        return Comparison(0, nan, nan, nan, nan, nan, 1.0, "none", math.inf)
    base_mean = math.fsum(baseline) / n
    cand_mean = math.fsum(candidate) / n
    mean_diff = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean_diff) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    low, high = paired_bootstrap_ci(diffs, resamples=resamples, seed=seed, key=key)
    discordant = None
    # The metric's kind decides the variance floor below; only scores that are all 0 or 1
    # (not 0/1 answers averaged over repeats) can take the exact McNemar test.
    zero_one = binary and all(v in (0.0, 1.0) for v in (*baseline, *candidate))
    if zero_one:
        b = sum(1 for x, y in zip(baseline, candidate, strict=True) if x > y)
        c = sum(1 for x, y in zip(baseline, candidate, strict=True) if y > x)
        p_value = mcnemar_exact(b, c)
        test = "exact McNemar"
        discordant = (b, c)
    else:
        p_value = sign_flip_pvalue(diffs, resamples=resamples, seed=seed, key=key)
        test = "paired sign-flip permutation"
    mde = minimum_detectable_effect(
        sd, n, alpha=alpha, power=power, min_effect=min_effect, binary=binary
    )
    return Comparison(n, base_mean, cand_mean, mean_diff, low, high, p_value, test, mde, discordant)
