"""Paired statistics for comparing a candidate prompt with its released baseline.

Both sides are scored on the same examples, so every comparison is *paired*: it works on
the per-example differences ``d_i = candidate_i - baseline_i`` (a failure counting as 0
on its side, see ``promptlib.compare.against``). When the suite names a ``group`` column
(an intent, a source document, a paraphrase set), examples of one group are not
independent, and every test, interval and power figure works on groups instead.

**Tests** (two-sided, for "is there a change"):

* 0/1 metrics, no groups: the mid-p McNemar test on the discordant pairs (``b`` = baseline
  right and candidate wrong, ``c`` = the reverse): ``2 * (P(X < k) + P(X = k) / 2)`` for
  ``X ~ Binomial(b + c, 1/2)``, ``k = min(b, c)``. It keeps the false-positive rate at or
  below alpha on the documented nulls while recovering some of the exact test's lost power
  (Fagerland, Lydersen & Laake 2013).
* other metrics (ROUGE, or 0/1 answers averaged over repeats), no groups: the paired
  sign-flip permutation test of the mean difference; every sign vector is enumerated when
  ``2**n <= resamples``, else ``resamples`` random ones are drawn and
  ``p = (1 + #{|mean*| >= |mean|}) / (1 + resamples)``.
* with groups: the sign-flip test on group totals (a cluster permutation test), exact
  when ``2**groups <= resamples``.

**Intervals** (of the mean difference; "n/a" below ``MIN_N`` examples or groups):

* 0/1, no groups: Tango's (1998) score interval for the difference of paired proportions:
  it agrees with a score test, and it is not ``[0, 0]`` when no pair is discordant
  (with ``n`` pairs and none discordant it is ``+-z**2 / (n + z**2)``).
* other metrics, no groups: a studentized (bootstrap-t) interval; resamples whose spread
  is below a tenth of the sample's are floored there, so that sparse differences (mostly
  zeros) widen the interval instead of collapsing it. All differences equal: the interval
  is ``d +- 3 / n``, the "rule of three" bound on how often an unseen example could differ.
* with groups: the inverted cluster sign-flip test (every mean the test would not reject),
  so the interval and the test agree exactly.

An interval never excludes 0 when the comparison's own test (above, unadjusted) does not
reject at the matching level (``1 - level``): it is then extended to 0. For 0/1 metrics
this touches only tables on the boundary (20 of the 80,199 with 1 to 399 discordant pairs,
all with a mid-p value between 0.05 and 0.063); for other metrics it is the case of a
handful of changed examples, where a bootstrap cannot see the test's uncertainty.

**Verdicts**, with ``m`` comparisons in the invocation's family (the suites' primary
metrics), ``p_holm`` the Holm-adjusted p-value and ``e = min_effect``:

* ``improved`` / ``regressed``: ``p_holm < alpha``, by the sign of the difference. A
  significant change smaller than ``e`` is still reported: the test says it is real.
* ``equivalent``: the ``1 - 2 * alpha/m`` interval lies inside ``(-e, +e)`` (two one-sided
  tests at ``alpha/m`` each, Bonferroni over the family).
* ``non-inferior``: that interval's lower bound is above ``-e``, but it is not equivalent.
* ``inconclusive``: anything else. Its ``power`` (to detect a change of ``e`` at the
  family's level ``alpha/m``) and ``n_needed`` (examples, or groups, for the configured
  ``power``) say what would decide it: for 0/1 metrics from the observed discordance, for
  others from the observed standard deviation of the differences.

There is no post-hoc power rule: "no change" is only ever claimed by an interval.

Scores must be finite: a NaN or infinity is a ``ValueError`` naming the comparison, never
a verdict. Randomness comes from numpy's PCG64 seeded with
``SeedSequence([seed, sha256(key)])``, where ``key`` names the comparison, so results are
identical across runs and machines with the same numpy (streams are not promised across
numpy versions: reports record it).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

__all__ = [
    "EQUIVALENT",
    "IMPROVED",
    "INCONCLUSIVE",
    "MIN_N",
    "NON_INFERIOR",
    "REGRESSED",
    "Comparison",
    "cluster_interval",
    "cluster_sign_flip_pvalue",
    "compare_paired",
    "decide",
    "holm",
    "mcnemar_exact",
    "mcnemar_midp",
    "paired_bootstrap_ci",
    "sign_flip_pvalue",
    "studentized_interval",
    "tango_interval",
]

IMPROVED = "improved"
REGRESSED = "regressed"
EQUIVALENT = "equivalent"
NON_INFERIOR = "non-inferior"
INCONCLUSIVE = "inconclusive"

#: Below this many examples (or groups) no interval is given.
MIN_N = 10

_NORMAL = NormalDist()
# Scores and differences: lists, or numpy arrays inside this module.
Values = Sequence[float] | Any
_CHUNK = 1_000
# Resampled values held at once (chunk rows x examples): bounds the memory of a comparison
# on thousands of examples (about 12 MB) without changing the random stream.
_CELLS = 1_000_000
# Bootstrap-t: a resample's standard error is never taken below this share of the
# sample's (see the module docstring).
_SE_FLOOR = 0.1


def _rows(n: int) -> int:
    return max(1, min(_CHUNK, _CELLS // max(n, 1)))


def _rng(seed: int, key: str) -> Any:
    import numpy as np

    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, digest])))


_EXACT_LIMIT = 2_000


def _binomial_half_tail(n: int, k: int) -> tuple[float, float]:
    """``P(X <= k)`` and ``P(X = k)`` for ``X ~ Binomial(n, 1/2)``, ``k <= n / 2``."""
    if n <= _EXACT_LIMIT:
        tail = sum(math.comb(n, i) for i in range(k + 1))
        return float(tail / (1 << n)), float(math.comb(n, k) / (1 << n))
    # For large n the integers get slow: sum the same terms in floating point, from the
    # largest (i = k) down, each term from the next by the ratio i / (n - i + 1).
    log_term = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
    term = first = math.exp(log_term)
    total = 0.0
    for i in range(k, -1, -1):
        total += term
        if term < total * 1e-17:
            break
        term *= i / (n - i + 1)
    return total, first


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail, _ = _binomial_half_tail(n, min(b, c))
    return min(1.0, 2 * tail)


def mcnemar_midp(b: int, c: int) -> float:
    """Two-sided mid-p McNemar p-value: the exact one minus the probability of ``k``."""
    n = b + c
    if n == 0:
        return 1.0
    tail, point = _binomial_half_tail(n, min(b, c))
    return min(1.0, 2 * tail - point)


def _tango_statistic(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for ``delta = p(base right, cand wrong) - p(reverse)``."""
    a_ = 2 * n
    b_ = -b - c + (2 * n - b + c) * delta
    c_ = -c * delta * (1 - delta)
    root = math.sqrt(max(b_ * b_ - 4 * a_ * c_, 0.0))
    p21 = (root - b_) / (2 * a_)
    variance = n * (2 * p21 + delta * (1 - delta))
    numerator = b - c - n * delta
    if variance <= 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def tango_interval(b: int, c: int, n: int, *, level: float) -> tuple[float, float]:
    """Tango's score interval of the paired difference, candidate minus baseline.

    ``b`` pairs are right on the baseline only, ``c`` on the candidate only, of ``n``.
    """
    z = _NORMAL.inv_cdf(1 - (1 - level) / 2)
    estimate = (b - c) / n  # baseline minus candidate, Tango's orientation

    def solve(target: float, low: float, high: float) -> float:
        # The statistic decreases in delta: bisect for statistic(delta) == target.
        if _tango_statistic(b, c, n, low) <= target:
            return low
        if _tango_statistic(b, c, n, high) >= target:
            return high
        for _ in range(60):
            middle = (low + high) / 2
            if _tango_statistic(b, c, n, middle) > target:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    lower = solve(z, -1.0, estimate)
    upper = solve(-z, estimate, 1.0)
    return -upper, -lower


def _enumerated_signs(k: int) -> Any:
    import numpy as np

    return np.array(list(itertools.product((-1.0, 1.0), repeat=k)), dtype=np.float64)


def _flipped(columns: Any, *, resamples: int, rng: Any) -> tuple[Any, bool]:
    """``signs @ columns`` for every sign vector when ``2**k <= resamples`` (exact: True),
    else for ``resamples`` random ones, drawn in the same chunks for every caller."""
    import numpy as np

    k = columns.shape[0]
    if k <= 20 and 2**k <= resamples:
        return _enumerated_signs(k) @ columns, True
    out = np.empty((resamples, *columns.shape[1:]), dtype=np.float64)
    rows = _rows(k)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        signs = rng.integers(0, 2, size=(stop - start, k), dtype=np.int8) * 2 - 1
        out[start:stop] = signs @ columns
    return out, False


def _tolerance(value: float) -> float:
    # Sign patterns giving the same mean as the observed one (ties, common with repeated
    # ROUGE values) count as extreme.
    return 1e-12 * max(1.0, abs(value))


def _sign_flip(values: Any, total: int, *, resamples: int, rng: Any) -> float:
    """The two-sided sign-flip p-value of ``sum(values) / total`` (exact when cheap)."""
    import numpy as np

    observed = abs(float(values.sum()))
    sums, exact = _flipped(values, resamples=resamples, rng=rng)
    extreme = int(np.count_nonzero(np.abs(sums) >= observed - _tolerance(observed)))
    if exact:
        return float(extreme / sums.shape[0])
    return (1 + extreme) / (1 + resamples)


def sign_flip_pvalue(diffs: Values, *, resamples: int, seed: int, key: str) -> float:
    """Two-sided paired permutation (sign-flip) p-value of the mean of ``diffs``."""
    import numpy as np

    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0 or not np.any(d):
        return 1.0
    return _sign_flip(d, d.size, resamples=resamples, rng=_rng(seed, "signflip:" + key))


def cluster_sign_flip_pvalue(
    totals: Values, examples: int, *, resamples: int, seed: int, key: str
) -> float:
    """Two-sided sign-flip p-value of a mean whose examples come in groups.

    ``totals`` are the groups' sums of differences and ``examples`` their total count;
    signs are flipped for whole groups.
    """
    import numpy as np

    t = np.asarray(totals, dtype=np.float64)
    if t.size == 0 or not np.any(t):
        return 1.0
    return _sign_flip(t, examples, resamples=resamples, rng=_rng(seed, "clusterflip:" + key))


def paired_bootstrap_ci(
    diffs: Sequence[float], *, resamples: int, seed: int, key: str, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (kept for comparison; the
    verdicts use ``studentized_interval``)."""
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


def _bootstrap_t(
    statistic: Any, levels: Sequence[float], *, resamples: int, rng: Any, size: int
) -> list[tuple[float, float]]:
    """Bootstrap-t intervals at ``levels``; ``statistic(picks)`` gives (estimates, ses) of
    resamples drawn as rows of ``picks`` (indices into ``size`` units)."""
    import numpy as np

    ts = np.empty(resamples, dtype=np.float64)
    observed, se = statistic(None)
    floor = _SE_FLOOR * se
    rows = _rows(size)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        picks = rng.integers(0, size, size=(stop - start, size), dtype=np.int32)
        estimates, ses = statistic(picks)
        ts[start:stop] = (estimates - observed) / np.maximum(ses, floor)
    out = []
    for level in levels:
        tail = (1 - level) / 2
        low_t, high_t = np.quantile(ts, [tail, 1 - tail])
        out.append((float(observed - high_t * se), float(observed - low_t * se)))
    return out


def studentized_interval(
    diffs: Values,
    *,
    levels: Sequence[float],
    resamples: int,
    seed: int,
    key: str,
) -> list[tuple[float, float]]:
    """Bootstrap-t intervals of the mean of ``diffs`` at each of ``levels``."""
    import numpy as np

    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    if se == 0.0:
        # No spread at all: the rule of three bounds how often an unseen example differs.
        return [(mean - 3 / n, mean + 3 / n) for _ in levels]

    centred = d - mean  # the spread does not depend on the shift; sums stay accurate

    def statistic(picks: Any) -> tuple[Any, Any]:
        if picks is None:
            return mean, se
        sample = centred[picks]
        shift = sample.sum(axis=1) / n
        squares = np.einsum("ij,ij->i", sample, sample)
        variance = np.maximum(squares - n * shift * shift, 0.0) / (n - 1)
        return mean + shift, np.sqrt(variance / n)

    return _bootstrap_t(
        statistic, levels, resamples=resamples, rng=_rng(seed, "bootstrap-t:" + key), size=n
    )


def cluster_interval(
    totals: Values,
    sizes: Values,
    *,
    levels: Sequence[float],
    resamples: int,
    seed: int,
    key: str,
) -> list[tuple[float, float]]:
    """Intervals of ``sum(totals) / sum(sizes)`` at each of ``levels``, by inverting the
    cluster sign-flip test.

    The interval holds every ``delta`` the test of "the mean is ``delta``" (sign flips of
    the groups' residual totals ``totals - delta * sizes``) does not reject at
    ``1 - level``. It uses the very sign vectors of ``cluster_sign_flip_pvalue`` with the
    same ``seed`` and ``key``, so it excludes 0 exactly when that test rejects. (A cluster
    bootstrap is unreliable when one group is much larger than the others, as CLINC150's
    1,000 out-of-scope rows are beside its 30-row intents.)
    """
    import numpy as np

    t = np.asarray(totals, dtype=np.float64)
    s = np.asarray(sizes, dtype=np.float64)
    total, count = float(t.sum()), float(s.sum())
    mean = total / count
    if not np.any(t - mean * s):
        # No spread at all: the rule of three bounds how often an unseen example differs.
        return [(mean - 3 / count, mean + 3 / count) for _ in levels]
    sums, exact = _flipped(
        np.column_stack([t, s]), resamples=resamples, rng=_rng(seed, "clusterflip:" + key)
    )
    flipped_totals, flipped_sizes = sums[:, 0], sums[:, 1]
    extra = 0 if exact else 1

    def p_value(delta: float) -> float:
        observed = abs(total - delta * count)
        residual = np.abs(flipped_totals - delta * flipped_sizes)
        extreme = int(np.count_nonzero(residual >= observed - _tolerance(observed)))
        return float((extra + extreme) / (extra + sums.shape[0]))

    group_means = t / s
    reach = float(group_means.max() - group_means.min()) + 1.0

    def bound(level: float, direction: float) -> float:
        inside, outside = mean, mean + direction * reach
        for _ in range(60):
            if p_value(outside) <= 1 - level:
                break
            inside, outside = outside, outside + direction * reach
        else:
            return math.copysign(math.inf, direction)
        for _ in range(60):
            middle = (inside + outside) / 2
            if p_value(middle) > 1 - level:
                inside = middle
            else:
                outside = middle
        return inside

    return [(bound(level, -1.0), bound(level, 1.0)) for level in levels]


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


@dataclass(frozen=True)
class Comparison:
    """One metric of one prompt, candidate vs baseline, before the Holm correction.

    ``ci`` is the ``1 - alpha`` interval, ``tost`` the ``1 - 2 * alpha / family`` one that
    equivalence and non-inferiority are read from (both NaN below ``MIN_N``). ``power`` and
    ``n_needed`` are about detecting a change of ``min_effect`` at the family's level, in
    ``unit`` (examples or groups); None when the data cannot tell (no spread observed).
    """

    n: int
    baseline_mean: float
    candidate_mean: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    interval: str
    tost_low: float = math.nan
    tost_high: float = math.nan
    power: float | None = None
    n_needed: int | None = None
    unit: str = "examples"
    groups: int | None = None
    family: int = 1
    discordant: tuple[int, int] | None = None


def _power(
    *,
    binary: bool,
    units: int,
    sd: float,
    discordance: float | None,
    alpha: float,
    power: float,
    min_effect: float,
) -> tuple[float | None, int | None]:
    """The power to detect ``min_effect`` with ``units`` units, and the units needed."""
    z_alpha = _NORMAL.inv_cdf(1 - alpha / 2)
    z_power = _NORMAL.inv_cdf(power)
    e = min_effect
    if discordance is not None:
        # McNemar: the discordant share is at least the effect it must carry.
        psi = max(discordance, e)
        spread = math.sqrt(max(psi - e * e, 1e-12))
        achieved = _NORMAL.cdf((e * math.sqrt(units) - z_alpha * math.sqrt(psi)) / spread)
        needed = ((z_alpha * math.sqrt(psi) + z_power * spread) / e) ** 2
        return achieved, math.ceil(needed)
    if sd <= 0:
        return None, None
    achieved = _NORMAL.cdf(e * math.sqrt(units) / sd - z_alpha)
    return achieved, math.ceil(((z_alpha + z_power) * sd / e) ** 2)


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
    family: int = 1,
    groups: Sequence[Hashable] | None = None,
) -> Comparison:
    """Paired comparison of two score lists (same examples, same order).

    ``family`` is the number of comparisons the invocation tests together (the Holm
    family); ``groups`` gives each example's group when examples are clustered.
    """
    import numpy as np

    if len(baseline) != len(candidate):
        raise ValueError("paired comparison needs two lists of the same length")
    if groups is not None and len(groups) != len(baseline):
        raise ValueError("paired comparison needs one group per example")
    for side, values in (("baseline", baseline), ("candidate", candidate)):
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            raise ValueError(
                f"paired comparison needs finite scores; {side}[{bad}] is {values[bad]!r} "
                f"(key {key})"
            )
    n = len(baseline)
    nan = math.nan
    if n == 0:
        return Comparison(0, nan, nan, nan, nan, nan, 1.0, "none", "none", family=family)
    diffs = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    base_mean = math.fsum(baseline) / n
    cand_mean = math.fsum(candidate) / n
    mean_diff = math.fsum(float(x) for x in diffs) / n
    levels = (1 - alpha, 1 - 2 * alpha / family)
    level_alpha = alpha / family
    zero_one = binary and all(v in (0.0, 1.0) for v in (*baseline, *candidate))
    discordant = None
    intervals: list[tuple[float, float]] = [(nan, nan), (nan, nan)]
    if groups is not None:
        labels: dict[Hashable, int] = {}
        index = np.array([labels.setdefault(g, len(labels)) for g in groups])
        count = len(labels)
        totals = np.bincount(index, weights=diffs, minlength=count)
        sizes = np.bincount(index, minlength=count)
        p_value = cluster_sign_flip_pvalue(totals, n, resamples=resamples, seed=seed, key=key)
        test = "cluster sign-flip permutation"
        interval = "inverted cluster sign-flip"
        if count >= MIN_N:
            intervals = cluster_interval(
                totals, sizes, levels=levels, resamples=resamples, seed=seed, key=key
            )
        group_means = totals / sizes
        sd = float(group_means.std(ddof=1)) if count > 1 else 0.0
        achieved, needed = _power(
            binary=binary,
            units=count,
            sd=sd,
            discordance=None,
            alpha=level_alpha,
            power=power,
            min_effect=min_effect,
        )
        unit, group_count = "groups", count
    else:
        if zero_one:
            b = int(np.count_nonzero(diffs < 0))
            c = int(np.count_nonzero(diffs > 0))
            discordant = (b, c)
            p_value = mcnemar_midp(b, c)
            test = "mid-p McNemar"
            interval = "Tango score interval"
            if n >= MIN_N:
                intervals = [tango_interval(b, c, n, level=level) for level in levels]
            discordance: float | None = (b + c) / n
        else:
            p_value = sign_flip_pvalue(diffs, resamples=resamples, seed=seed, key=key)
            test = "paired sign-flip permutation"
            interval = "bootstrap-t"
            if n >= MIN_N:
                intervals = studentized_interval(
                    diffs, levels=levels, resamples=resamples, seed=seed, key=key
                )
            discordance = None
        sd = float(diffs.std(ddof=1)) if n > 1 else 0.0
        if binary and discordance is None:
            # A 0/1 metric averaged over repeats: its kind, not its values, sets the floor.
            sd = max(sd, math.sqrt(min_effect * (1 - min_effect)))
        achieved, needed = _power(
            binary=binary,
            units=n,
            sd=sd,
            discordance=discordance,
            alpha=level_alpha,
            power=power,
            min_effect=min_effect,
        )
        unit, group_count = "examples", None
    # An interval never claims what its test does not: one that excludes 0 while the test
    # cannot reject at the matching level (a handful of changed examples, or a 2x2 table on
    # the boundary between mid-p and the score test) is extended to 0.
    (ci_low, ci_high), (tost_low, tost_high) = (
        _agreeing(interval_pair, p_value, level)
        for interval_pair, level in zip(intervals, levels, strict=True)
    )
    return Comparison(
        n=n,
        baseline_mean=base_mean,
        candidate_mean=cand_mean,
        mean_diff=mean_diff,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        test=test,
        interval=interval,
        tost_low=tost_low,
        tost_high=tost_high,
        power=achieved,
        n_needed=needed,
        unit=unit,
        groups=group_count,
        family=family,
        discordant=discordant,
    )


def _agreeing(interval: tuple[float, float], p_value: float, level: float) -> tuple[float, float]:
    low, high = interval
    if p_value >= 1 - level:
        return min(low, 0.0), max(high, 0.0)
    return low, high


def decide(comparison: Comparison, p_adjusted: float, *, alpha: float, min_effect: float) -> str:
    """The verdict of the module docstring."""
    if p_adjusted < alpha:
        return IMPROVED if comparison.mean_diff > 0 else REGRESSED
    low, high = comparison.tost_low, comparison.tost_high
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if -min_effect < low and high < min_effect:
        return EQUIVALENT
    if low > -min_effect:
        return NON_INFERIOR
    return INCONCLUSIVE
