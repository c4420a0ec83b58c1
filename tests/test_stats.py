"""The paired statistics of ``promptlib.compare.stats``, checked against scipy and by simulation.

Tolerances are Monte Carlo errors, stated where they are used: a bootstrap percentile
from B resamples has standard error ``sqrt(q(1-q)/B) / f(x_q)`` (``f`` the density of the
bootstrap distribution at the quantile, here close to normal), and a permutation p-value
from R random sign vectors has standard error ``sqrt(p(1-p)/R)``. Two independent
estimates differ by ``sqrt(2)`` times that; the tests allow 5 standard errors, so a
correct implementation fails about once in 1.7 million runs (and never: every seed here
is fixed), while an implementation that is off by a visible amount fails.

Exact results (McNemar, mid-p, Tango's interval, enumerated sign flips, Holm) are checked
against scipy or against their definitions written out independently here; the error
rates, power and coverage of the whole rule are simulated in ``test_stats_simulation.py``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from promptlib.compare.stats import (
    EQUIVALENT,
    IMPROVED,
    INCONCLUSIVE,
    NON_INFERIOR,
    REGRESSED,
    Comparison,
    cluster_interval,
    cluster_sign_flip_pvalue,
    compare_paired,
    decide,
    holm,
    mcnemar_exact,
    mcnemar_midp,
    paired_bootstrap_ci,
    sign_flip_pvalue,
    studentized_interval,
    tango_interval,
)

ALPHA, POWER, MIN_EFFECT = 0.05, 0.8, 0.02
RULE = {"alpha": ALPHA, "power": POWER, "min_effect": MIN_EFFECT}

# -- exact McNemar -------------------------------------------------------------------------

MCNEMAR = [
    (0, 1),
    (1, 0),
    (0, 5),
    (5, 0),
    (1, 1),
    (3, 3),
    (2, 8),
    (8, 2),
    (7, 9),
    (10, 20),
    (0, 30),
    (40, 60),
    (30, 10),
    (500, 560),
    (1000, 1100),
    (1300, 1250),
    (0, 1200),  # 2 / 2**1200 is below the smallest float: both sides give 0.0
]


def test_mcnemar_of_no_discordant_pair_is_one() -> None:
    assert mcnemar_exact(0, 0) == 1.0  # scipy's binomtest refuses n = 0


@pytest.mark.parametrize(("b", "c"), MCNEMAR)
def test_mcnemar_is_the_two_sided_binomial_test(b: int, c: int) -> None:
    expected = sps.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)  # two-sided: symmetric


@pytest.mark.parametrize(("b", "c"), MCNEMAR)
def test_mid_p_mcnemar_is_the_exact_test_minus_the_observed_point(b: int, c: int) -> None:
    # Fagerland, Lydersen & Laake (2013): p_mid = 2 * (P(X < k) + P(X = k) / 2), capped at 1.
    n, k = b + c, min(b, c)
    expected = min(1.0, 2 * (sps.binom.cdf(k - 1, n, 0.5) + sps.binom.pmf(k, n, 0.5) / 2))
    assert mcnemar_midp(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_midp(b, c) == mcnemar_midp(c, b)
    assert mcnemar_midp(b, c) <= mcnemar_exact(b, c)


def test_mid_p_at_the_documented_case() -> None:
    # 30 examples, 5 go right -> wrong and none the other way: the exact test gives
    # 2/32 = 0.0625 (not significant), the mid-p test 1/32.
    assert mcnemar_exact(5, 0) == 2 / 32
    assert mcnemar_midp(5, 0) == 1 / 32
    assert mcnemar_midp(0, 0) == 1.0


# -- Tango's score interval ----------------------------------------------------------------

Z95 = NormalDist().inv_cdf(0.975)


def _tango_reference(b: int, c: int, n: int, delta: float) -> float:
    """Tango (1998), eq. 3 and 4, written from the paper for delta = (b - c) / n's parameter:
    the score statistic with the restricted maximum-likelihood estimate of p21."""
    qa = 2 * n
    qb = -b - c + (2 * n - b + c) * delta
    qc = -c * delta * (1 - delta)
    p21 = (math.sqrt(max(qb**2 - 4 * qa * qc, 0.0)) - qb) / (2 * qa)
    return (b - c - n * delta) / math.sqrt(n * (2 * p21 + delta * (1 - delta)))


TANGO = [
    (0, 0, 10),
    (0, 0, 400),
    (3, 1, 30),
    (20, 0, 400),
    (2, 2, 400),
    (40, 20, 160),
    (1, 7, 21),
    (125, 75, 2000),
    (0, 12, 12),
]


@pytest.mark.parametrize(("b", "c", "n"), TANGO)
def test_tango_interval_solves_the_score_equation(b: int, c: int, n: int) -> None:
    low, high = tango_interval(b, c, n, level=0.95)
    estimate = (c - b) / n  # candidate minus baseline
    assert low <= estimate <= high
    # Each bound is where Tango's statistic (in his orientation, baseline minus candidate)
    # reaches the normal quantile, found here by scipy's root finder on the paper's formula.
    for bound, target, bracket in (
        (high, Z95, (-1 + 1e-9, -estimate - 1e-12)),
        (low, -Z95, (-estimate + 1e-12, 1 - 1e-9)),
    ):
        if bracket[0] >= bracket[1]:  # the estimate is at the edge of [-1, 1], so is the bound
            assert bound == estimate
            continue
        f = lambda d, t=target: _tango_reference(b, c, n, d) - t  # noqa: E731
        reference = -optimize.brentq(f, *bracket, xtol=1e-13)
        assert bound == pytest.approx(reference, abs=1e-9)


def test_tango_interval_without_discordant_pairs_is_not_a_point() -> None:
    # With n pairs and none discordant the interval is +-z^2 / (n + z^2), not [0, 0].
    for n in (10, 30, 400):
        low, high = tango_interval(0, 0, n, level=0.95)
        assert high == pytest.approx(Z95**2 / (n + Z95**2), abs=1e-9)
        assert low == pytest.approx(-high, abs=1e-12)


@pytest.mark.parametrize(("b", "c", "n"), TANGO)
def test_tango_interval_excludes_zero_exactly_when_the_score_test_rejects(
    b: int, c: int, n: int
) -> None:
    # At delta = 0 Tango's statistic is McNemar's (c - b) / sqrt(b + c): the interval and
    # the asymptotic test can never disagree, unlike the percentile bootstrap.
    low, high = tango_interval(b, c, n, level=0.95)
    z = abs(c - b) / math.sqrt(b + c) if b + c else 0.0
    assert (low > 0 or high < 0) == (z > Z95)
    assert tango_interval(c, b, n, level=0.95) == pytest.approx((-high, -low), abs=1e-12)
    # A higher level gives a wider interval (the TOST one is narrower, at 1 - 2 alpha).
    narrow = tango_interval(b, c, n, level=0.90)
    assert low <= narrow[0]
    assert narrow[1] <= high


# -- percentile bootstrap ------------------------------------------------------------------

B = 20_000


def _fixed_diffs(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "continuous":
        return rng.normal(0.03, 0.2, size=150)
    # A 0/1 metric: d in {-1, 0, 1}; 12% worse, 8% better.
    return rng.choice([-1.0, 0.0, 1.0], p=[0.12, 0.80, 0.08], size=300)


def _quantile_mc_se(d: np.ndarray, resamples: int, q: float) -> float:
    """Standard error of a bootstrap q-quantile from ``resamples`` draws (normal density)."""
    se = d.std(ddof=1) / math.sqrt(d.size)
    z = NormalDist().inv_cdf(q)
    density = NormalDist().pdf(z) / se
    return math.sqrt(q * (1 - q) / resamples) / density


@pytest.mark.parametrize("kind", ["continuous", "binary"])
def test_bootstrap_interval_matches_scipy(kind: str) -> None:
    d = _fixed_diffs(kind)
    low, high = paired_bootstrap_ci(d.tolist(), resamples=B, seed=1, key="k")
    ref = sps.bootstrap(
        (d,),
        np.mean,
        n_resamples=B,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(2),
    ).confidence_interval
    tolerance = 5 * math.sqrt(2) * _quantile_mc_se(d, B, 0.025)
    assert abs(low - ref.low) < tolerance
    assert abs(high - ref.high) < tolerance
    assert low < d.mean() < high
    # The bootstrap interval of a mean is close to the normal one, mean +- 1.96 se.
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.08)


def test_bootstrap_interval_edge_cases() -> None:
    assert all(math.isnan(x) for x in paired_bootstrap_ci([], resamples=100, seed=1, key="k"))
    assert paired_bootstrap_ci([0.25], resamples=100, seed=1, key="k") == (0.25, 0.25)
    assert paired_bootstrap_ci([0.0] * 50, resamples=100, seed=1, key="k") == (0.0, 0.0)
    # Not a multiple of the internal chunk size: every resample is used.
    d = _fixed_diffs("continuous")
    low, high = paired_bootstrap_ci(d.tolist(), resamples=1_001, seed=1, key="k")
    assert low < high


# -- sign-flip permutation test ------------------------------------------------------------

R = 20_000


def _exact_sign_flip(d: Sequence[float]) -> float:
    """The exact two-sided p-value over all 2**n sign vectors (the observed one included)."""
    values = np.asarray(d, dtype=np.float64)
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=values.size)))
    means = np.abs(signs @ values) / values.size
    observed = abs(values.mean())
    return float(np.mean(means >= observed - 1e-12))


SMALL = [
    [0.30, -0.10, 0.25, 0.05, 0.40, -0.20, 0.15, 0.10, 0.35, -0.05, 0.20, 0.12],
    [0.10, -0.10, 0.10, -0.10, 0.20, 0.00, 0.10, 0.10, -0.20, 0.10, 0.30],  # ties
    [0.5, 0.4, 0.3, 0.6, 0.2, 0.7, 0.1, 0.8, 0.3, 0.4],  # all positive: p = 2/1024
]


@pytest.mark.parametrize("d", SMALL, ids=["mixed", "ties", "all-positive"])
def test_sign_flip_matches_exact_enumeration_and_scipy(d: list[float]) -> None:
    exact = _exact_sign_flip(d)
    scipy_exact = sps.permutation_test(
        (np.asarray(d),),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    ).pvalue
    assert scipy_exact == pytest.approx(exact, abs=1e-12)
    ours = sign_flip_pvalue(d, resamples=R, seed=3, key="k")
    tolerance = 5 * math.sqrt(exact * (1 - exact) / R) + 1 / R
    assert abs(ours - exact) < tolerance


def test_sign_flip_matches_scipy_by_sampling_for_larger_n() -> None:
    rng = np.random.default_rng(11)
    d = rng.normal(0.02, 0.15, size=80)
    ours = sign_flip_pvalue(d.tolist(), resamples=R, seed=3, key="k")
    ref = sps.permutation_test(
        (d,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        n_resamples=R,
        alternative="two-sided",
        rng=np.random.default_rng(4),
    ).pvalue
    assert 0.05 < ref < 0.95  # a p-value in the middle, where Monte Carlo error is largest
    assert abs(ours - ref) < 5 * math.sqrt(2 * ref * (1 - ref) / R)


def test_sign_flip_edge_cases() -> None:
    assert sign_flip_pvalue([], resamples=100, seed=1, key="k") == 1.0
    assert sign_flip_pvalue([0.0, 0.0], resamples=100, seed=1, key="k") == 1.0
    # Never 0: the observed sign vector counts (p >= 1 / (1 + R)).
    assert sign_flip_pvalue([1.0] * 40, resamples=999, seed=1, key="k") == 1 / 1000


# -- Holm ----------------------------------------------------------------------------------

# statsmodels is not installed and scipy has no Holm; these were adjusted by hand:
# sort, multiply the i-th smallest (0-based) by m - i, cap at 1, carry the running maximum.
HOLM = [
    ([], []),
    ([0.01], [0.01]),
    ([0.03, 0.01, 0.04], [0.06, 0.03, 0.06]),
    ([0.5, 0.6], [1.0, 1.0]),
    ([0.02, 0.02], [0.04, 0.04]),
    ([0.001, 0.01, 0.02, 0.04, 0.5], [0.005, 0.04, 0.06, 0.08, 0.5]),
    ([0.04, 0.001, 0.5, 0.02, 0.01], [0.08, 0.005, 0.5, 0.06, 0.04]),
    ([0.2, 0.0, 1.0], [0.4, 0.0, 1.0]),
]


@pytest.mark.parametrize(("pvalues", "expected"), HOLM)
def test_holm_table(pvalues: list[float], expected: list[float]) -> None:
    assert holm(pvalues) == pytest.approx(expected, abs=1e-15)


def _holm_reference(p: Sequence[float]) -> list[float]:
    """Holm by its definition: p_adj(i) = max over j <= rank(i) of min(1, (m - j) p_(j))."""
    m = len(p)
    ordered = sorted(p)
    out = []
    for value in p:
        rank = max(j for j, q in enumerate(ordered) if q == value)
        out.append(max(min(1.0, (m - j) * ordered[j]) for j in range(rank + 1)))
    return out


def test_holm_matches_its_definition_on_random_inputs() -> None:
    rng = np.random.default_rng(5)
    for m in range(1, 12):
        p = rng.uniform(0, 0.2, size=m).round(3).tolist()  # rounding makes ties
        assert holm(p) == pytest.approx(_holm_reference(p), abs=1e-12)


# -- determinism ---------------------------------------------------------------------------

DATA = [0.3, -0.1, 0.2, 0.0, 0.15, -0.25, 0.4, 0.05, -0.05, 0.1] * 3

SCRIPT = """
import json, sys
from promptlib.compare.stats import paired_bootstrap_ci, sign_flip_pvalue
data, key = json.loads(sys.argv[1]), sys.argv[2]
print(json.dumps([
    list(paired_bootstrap_ci(data, resamples=2000, seed=9, key=key)),
    sign_flip_pvalue(data, resamples=2000, seed=9, key=key),
]))
"""


def _both(key: str, seed: int = 9) -> list[object]:
    return [
        list(paired_bootstrap_ci(DATA, resamples=2000, seed=seed, key=key)),
        sign_flip_pvalue(DATA, resamples=2000, seed=seed, key=key),
    ]


def test_results_depend_only_on_seed_and_key() -> None:
    first = _both("suite/demo.p/rougeL")
    assert _both("suite/demo.p/rougeL") == first
    outputs = set()
    for hashseed in ("0", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(DATA), "suite/demo.p/rougeL"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hashseed},
        )
        outputs.add(result.stdout.strip())
    assert outputs == {json.dumps(first)}  # identical across processes and hash seeds
    other_key = _both("suite/demo.p/rouge1")
    other_seed = _both("suite/demo.p/rougeL", seed=10)
    for other in (other_key, other_seed):
        assert other[0] != first[0]
        assert other[1] != first[1]


def test_sign_flip_enumerates_every_sign_vector_when_that_is_cheaper() -> None:
    # 12 differences, 4,096 sign vectors <= 5,000 resamples: the p-value is exact, the
    # same for every seed, and a multiple of 1 / 4096.
    d = SMALL[0]
    exact = _exact_sign_flip(d)
    for seed in (1, 2):
        assert sign_flip_pvalue(d, resamples=5_000, seed=seed, key="k") == pytest.approx(
            exact, abs=1e-15
        )
    assert (exact * 4096) == pytest.approx(round(exact * 4096), abs=1e-9)


def test_cluster_sign_flip_flips_whole_groups() -> None:
    # Singleton groups: the cluster test is the ordinary one.
    d = SMALL[0]
    assert cluster_sign_flip_pvalue(d, len(d), resamples=5_000, seed=1, key="k") == (
        pytest.approx(_exact_sign_flip(d), abs=1e-15)
    )
    # 40 examples in 4 groups that all moved the same way: 16 sign vectors over groups,
    # two of them as extreme as the observed one, p = 2/16, however many rows each has.
    totals = [-3.0, -2.0, -4.0, -1.0]
    assert cluster_sign_flip_pvalue(totals, 40, resamples=10_000, seed=1, key="k") == 2 / 16
    # The same rows as independent examples would look decisive.
    rows = [-0.3] * 10 + [-0.2] * 10 + [-0.4] * 10 + [-0.1] * 10
    assert sign_flip_pvalue(rows, resamples=10_000, seed=1, key="k") < 0.001
    assert cluster_sign_flip_pvalue([0.0, 0.0], 10, resamples=100, seed=1, key="k") == 1.0


# -- bootstrap-t intervals -----------------------------------------------------------------


def test_studentized_interval_is_close_to_the_t_interval_for_normal_data() -> None:
    d = _fixed_diffs("continuous")
    [(low, high)] = studentized_interval(d, levels=[0.95], resamples=B, seed=1, key="k")
    se = d.std(ddof=1) / math.sqrt(d.size)
    t = sps.t.ppf(0.975, d.size - 1)
    assert low == pytest.approx(d.mean() - t * se, abs=0.15 * se)
    assert high == pytest.approx(d.mean() + t * se, abs=0.15 * se)


def test_studentized_interval_edge_cases() -> None:
    # No spread: the rule of three, d +- 3/n, never a zero-width certainty.
    assert studentized_interval(
        np.zeros(50), levels=[0.95, 0.9], resamples=100, seed=1, key="k"
    ) == [(-0.06, 0.06), (-0.06, 0.06)]
    # Mostly zeros: 3 of 40 examples 0.5 worse. The sign-flip test gives p = 2/8 (only the
    # three changed examples' signs matter); the bootstrap-t interval alone excludes 0,
    # since every resample draws from the same three values, so compare_paired extends it
    # to 0: an interval never claims what its test does not.
    sparse = np.zeros(40)
    sparse[:3] = -0.5
    [(low, high)] = studentized_interval(sparse, levels=[0.95], resamples=4_000, seed=1, key="k")
    assert low < sparse.mean() < high < 0
    c = compare_paired(
        [0.5] * 40, (0.5 + sparse).tolist(), binary=False, resamples=4_000, seed=1, key="k", **RULE
    )
    assert c.p_value == pytest.approx(0.25, abs=5 * math.sqrt(0.25 * 0.75 / 4_000))
    assert (c.ci_low, c.ci_high) == (low, 0.0)


def test_cluster_interval_of_singletons_is_close_to_the_t_interval() -> None:
    # One example per group, normal differences: inverting the sign-flip test gives about
    # the t interval.
    rng = np.random.default_rng(3)
    d = rng.normal(-0.02, 0.1, size=200)
    [(low, high)] = cluster_interval(d, np.ones(200), levels=[0.95], resamples=B, seed=1, key="k")
    se = d.std(ddof=1) / math.sqrt(d.size)
    t = sps.t.ppf(0.975, d.size - 1)
    assert low == pytest.approx(d.mean() - t * se, abs=0.1 * se)
    assert high == pytest.approx(d.mean() + t * se, abs=0.1 * se)


@pytest.mark.parametrize("seed", range(8))
def test_cluster_interval_excludes_zero_exactly_when_the_cluster_test_rejects(seed: int) -> None:
    # Uneven groups (one holds a third of the rows, as CLINC150's out-of-scope rows do),
    # effects near the edge of significance.
    rng = np.random.default_rng(seed)
    sizes = np.array([60] + [4] * 30, dtype=float)
    shift = rng.normal(0.03, 0.05, size=31)
    totals = sizes * shift + rng.normal(0, 0.3, size=31)
    p = cluster_sign_flip_pvalue(totals, int(sizes.sum()), resamples=4_000, seed=1, key="k")
    [(low, high), (low90, high90)] = cluster_interval(
        totals, sizes, levels=[0.95, 0.90], resamples=4_000, seed=1, key="k"
    )
    assert low <= totals.sum() / sizes.sum() <= high
    assert (low > 0 or high < 0) == (p <= 0.05)
    assert (low90 > 0 or high90 < 0) == (p <= 0.10)


def test_cluster_interval_widens_with_within_group_correlation() -> None:
    # 20 groups of 10 rows; each group shares one shift: 200 rows carry 20 rows' information.
    rng = np.random.default_rng(4)
    shifts = rng.normal(0, 0.2, size=20)
    rows = np.repeat(shifts, 10) + rng.normal(0, 0.01, size=200)
    totals = rows.reshape(20, 10).sum(axis=1)
    [(low, high)] = cluster_interval(
        totals, np.full(20, 10.0), levels=[0.95], resamples=4_000, seed=1, key="k"
    )
    [(r_low, r_high)] = studentized_interval(rows, levels=[0.95], resamples=4_000, seed=1, key="k")
    assert (high - low) > 2.5 * (r_high - r_low)


# -- the verdict rule ----------------------------------------------------------------------

NAN = math.nan


def _made(diff: float, tost: tuple[float, float]) -> Comparison:
    return Comparison(
        n=100,
        baseline_mean=0.5,
        candidate_mean=0.5 + diff,
        mean_diff=diff,
        ci_low=NAN,
        ci_high=NAN,
        p_value=1.0,
        test="t",
        interval="i",
        tost_low=tost[0],
        tost_high=tost[1],
    )


VERDICTS = [
    # (mean diff, Holm-adjusted p, TOST interval, verdict)
    (0.05, 0.01, (0.03, 0.07), IMPROVED),
    (-0.05, 0.01, (-0.07, -0.03), REGRESSED),
    (-0.005, 0.049, (-0.008, -0.002), REGRESSED),  # significant though small: reported
    (0.05, 0.05, (0.0, 0.1), NON_INFERIOR),  # p must be below alpha; low > -margin
    (0.001, 0.6, (-0.015, 0.018), EQUIVALENT),
    (0.0, 1.0, (-0.0199, 0.03), NON_INFERIOR),
    (0.0, 1.0, (-0.02, 0.01), INCONCLUSIVE),  # the margin itself is not above -e
    (-0.01, 0.2, (-0.05, 0.03), INCONCLUSIVE),
    (0.0, 1.0, (NAN, NAN), INCONCLUSIVE),  # fewer than 10 examples: no interval, no claim
]


@pytest.mark.parametrize(("diff", "p", "tost", "expected"), VERDICTS)
def test_verdict_rule(diff: float, p: float, tost: tuple[float, float], expected: str) -> None:
    assert decide(_made(diff, tost), p, alpha=ALPHA, min_effect=MIN_EFFECT) == expected


def _pairs(n: int, worse: int = 0, better: int = 0) -> tuple[list[float], list[float]]:
    """n examples, all right on both sides except ``worse`` and ``better`` flips."""
    baseline = [1.0] * n
    candidate = [1.0] * n
    for i in range(worse):
        candidate[i] = 0.0
    for i in range(worse, worse + better):
        baseline[i] = 0.0
    return baseline, candidate


COMPARISONS = [
    # (case, baseline, candidate, family, verdict, discordant); the Holm-adjusted p-value of
    # a family of m equal p-values is m * p.
    ("n = 0", [], [], 1, INCONCLUSIVE, None),
    ("n = 1, worse", [1.0], [0.0], 1, INCONCLUSIVE, (1, 0)),
    ("9 identical", *_pairs(9), 1, INCONCLUSIVE, (0, 0)),  # below MIN_N: no interval
    ("384 identical", *_pairs(384), 1, EQUIVALENT, (0, 0)),
    ("384 identical, m = 20", *_pairs(384), 20, INCONCLUSIVE, (0, 0)),
    ("2000 identical, m = 20", *_pairs(2000), 20, EQUIVALENT, (0, 0)),
    ("400, 2 each way", *_pairs(400, 2, 2), 1, EQUIVALENT, (2, 2)),
    ("400, 20 worse", *_pairs(400, 20, 0), 20, REGRESSED, (20, 0)),
    ("400, 20 better", *_pairs(400, 0, 20), 1, IMPROVED, (0, 20)),
    ("30, 5 worse", *_pairs(30, 5, 0), 1, REGRESSED, (5, 0)),  # mid-p 1/32; exact 2/32
    # mid-p 1/16, while Tango's interval alone would exclude 0 (z = 2.0): extended to 0
    ("30, 4 worse", *_pairs(30, 4, 0), 1, INCONCLUSIVE, (4, 0)),
    ("30, 5 worse, m = 20", *_pairs(30, 5, 0), 20, INCONCLUSIVE, (5, 0)),
    ("2000, 30 better 10 worse", *_pairs(2000, 10, 30), 1, IMPROVED, (10, 30)),
    ("1000, 5 worse, m = 20", *_pairs(1000, 5, 0), 20, EQUIVALENT, (5, 0)),
]


@pytest.mark.parametrize(
    ("case", "baseline", "candidate", "family", "expected", "discordant"),
    COMPARISONS,
    ids=[c[0] for c in COMPARISONS],
)
def test_compare_paired_verdicts(
    case: str,
    baseline: list[float],
    candidate: list[float],
    family: int,
    expected: str,
    discordant: tuple[int, int] | None,
) -> None:
    c = compare_paired(
        baseline, candidate, binary=True, resamples=200, seed=1, key=case, family=family, **RULE
    )
    assert c.n == len(baseline)
    assert c.discordant == discordant
    assert c.family == family
    if discordant is not None:
        assert c.test == "mid-p McNemar"
        assert c.p_value == mcnemar_midp(*discordant)
        assert c.mean_diff == pytest.approx((discordant[1] - discordant[0]) / c.n)
        if c.n >= 10:
            b, k = discordant
            for level, got in (
                (1 - ALPHA, (c.ci_low, c.ci_high)),
                (1 - 2 * ALPHA / family, (c.tost_low, c.tost_high)),
            ):
                low, high = tango_interval(b, k, c.n, level=level)
                if c.p_value >= 1 - level:  # the test does not reject: the interval holds 0
                    low, high = min(low, 0.0), max(high, 0.0)
                assert got == (low, high)
        else:
            assert math.isnan(c.ci_low)
            assert math.isnan(c.tost_low)
    p_holm = min(1.0, family * c.p_value)
    assert decide(c, p_holm, alpha=ALPHA, min_effect=MIN_EFFECT) == expected


# -- power and the n that would decide ---------------------------------------------------

Z_POWER = NormalDist().inv_cdf(POWER)


def _connor_n(psi: float, e: float, alpha: float) -> float:
    """Connor (1987): pairs needed for McNemar to detect a difference e with discordant
    share psi, two-sided at alpha, with the configured power."""
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return ((z * math.sqrt(psi) + Z_POWER * math.sqrt(psi - e * e)) / e) ** 2


@pytest.mark.parametrize("family", [1, 4, 20])
def test_n_needed_for_a_zero_one_metric_follows_the_observed_discordance(family: int) -> None:
    # 400 examples, 20 changed each way: 10% discordance.
    c = compare_paired(
        *_pairs(400, 20, 20), binary=True, resamples=200, seed=1, key="k", family=family, **RULE
    )
    assert c.unit == "examples"
    assert c.n_needed == math.ceil(_connor_n(0.1, MIN_EFFECT, ALPHA / family))
    assert c.power is not None
    assert c.power < POWER
    # At the n it names, the power is the configured one.
    again = compare_paired(
        *_pairs(c.n_needed, c.n_needed // 20, c.n_needed // 20),
        binary=True,
        resamples=200,
        seed=1,
        key="k",
        family=family,
        **RULE,
    )
    assert again.power == pytest.approx(POWER, abs=0.01)


def test_n_needed_for_a_continuous_metric_follows_the_observed_spread() -> None:
    rng = np.random.default_rng(8)
    d = rng.normal(0, 0.1, size=40)
    baseline = np.full(40, 0.5)
    c = compare_paired(
        baseline.tolist(),
        (baseline + d).tolist(),
        binary=False,
        resamples=500,
        seed=1,
        key="k",
        family=4,
        **RULE,
    )
    z = NormalDist().inv_cdf(1 - ALPHA / 8)
    sd = d.std(ddof=1)
    assert c.n_needed == math.ceil(((z + Z_POWER) * sd / MIN_EFFECT) ** 2)
    assert c.power == pytest.approx(NormalDist().cdf(MIN_EFFECT * math.sqrt(40) / sd - z))


def test_with_groups_power_and_n_count_groups() -> None:
    rng = np.random.default_rng(9)
    groups = [f"intent-{i // 10}" for i in range(300)]  # 30 groups of 10
    shifts = np.repeat(rng.normal(0, 0.05, size=30), 10)
    baseline = np.full(300, 0.5)
    candidate = baseline + shifts + rng.normal(0, 0.01, size=300)
    c = compare_paired(
        baseline.tolist(),
        candidate.tolist(),
        binary=False,
        resamples=2_000,
        seed=1,
        key="k",
        groups=groups,
        **RULE,
    )
    assert (c.unit, c.groups, c.n) == ("groups", 30, 300)
    assert c.test == "cluster sign-flip permutation"
    assert c.n_needed is not None
    assert c.n_needed > 30
    plain = compare_paired(
        baseline.tolist(),
        candidate.tolist(),
        binary=False,
        resamples=2_000,
        seed=1,
        key="k",
        **RULE,
    )
    assert (plain.ci_high - plain.ci_low) < (c.ci_high - c.ci_low) / 2


def test_compare_paired_rejects_unpaired_lists() -> None:
    with pytest.raises(ValueError, match="same length"):
        compare_paired([1.0], [1.0, 0.0], binary=True, resamples=100, seed=1, key="k", **RULE)
    with pytest.raises(ValueError, match="one group per example"):
        compare_paired(
            [1.0], [1.0], binary=True, resamples=100, seed=1, key="k", groups=["a", "b"], **RULE
        )


def test_a_binary_verdict_agrees_with_its_test_when_scores_are_repeat_means() -> None:
    # Per-example scores of a 0/1 metric averaged over 3 repeats. 40 examples slip from 2/3
    # to 1/3 and 15 go from 0 to 1: the mean difference is +1.67 / 100, and the sign-flip
    # test of that mean (not McNemar, which needs 0/1 values) decides.
    baseline = [2 / 3] * 40 + [0.0] * 15 + [1.0] * 45
    candidate = [1 / 3] * 40 + [1.0] * 15 + [1.0] * 45
    c = compare_paired(baseline, candidate, binary=True, resamples=2_000, seed=1, key="k", **RULE)
    assert c.test == "paired sign-flip permutation"
    assert decide(c, c.p_value, alpha=ALPHA, min_effect=MIN_EFFECT) != IMPROVED


@pytest.mark.parametrize(
    ("baseline", "candidate", "where"),
    [
        ([1.0, math.nan, 0.0], [1.0, 1.0, 0.0], "baseline[1] is nan"),
        ([1.0, 1.0], [math.inf, 0.0], "candidate[0] is inf"),
        ([0.5, 0.5], [0.5, -math.inf], "candidate[1] is -inf"),
    ],
)
def test_non_finite_scores_are_an_error_not_a_verdict(
    baseline: list[float], candidate: list[float], where: str
) -> None:
    # Before: NaN differences made the bootstrap and the test say "regressed".
    with pytest.raises(ValueError, match=f"needs finite scores; {re.escape(where)} \\(key k\\)"):
        compare_paired(baseline, candidate, binary=False, resamples=100, seed=1, key="k", **RULE)


def test_the_power_floor_follows_the_metric_kind_not_the_values() -> None:
    # A 0/1 metric with --repeats 2 on 30 rows: per-example scores are 0, 0.5 or 1, and the
    # candidate answers exactly like the baseline. Fractional values must not make the
    # comparison look like a continuous one with no spread (which would need 0 examples).
    baseline = [1.0] * 12 + [0.5] * 8 + [0.0] * 10
    as_binary = compare_paired(
        baseline, list(baseline), binary=True, resamples=200, seed=1, key="k", **RULE
    )
    assert as_binary.test == "paired sign-flip permutation"  # not all 0/1: no McNemar
    z = NormalDist().inv_cdf(1 - ALPHA / 2)
    floor = math.sqrt(MIN_EFFECT * (1 - MIN_EFFECT))
    assert as_binary.n_needed == math.ceil(((z + Z_POWER) * floor / MIN_EFFECT) ** 2)
    # The interval is the rule of three, wider than the margin at n = 30: not equivalent.
    assert (as_binary.ci_low, as_binary.ci_high) == pytest.approx((-0.1, 0.1))
    assert decide(as_binary, 1.0, alpha=ALPHA, min_effect=MIN_EFFECT) == INCONCLUSIVE
    as_continuous = compare_paired(
        baseline, list(baseline), binary=False, resamples=200, seed=1, key="k", **RULE
    )
    assert as_continuous.n_needed is None  # no spread observed: the data cannot tell
