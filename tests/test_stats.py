"""The paired statistics of ``promptlib.compare.stats``, checked against scipy and by simulation.

Tolerances are Monte Carlo errors, stated where they are used: a bootstrap percentile
from B resamples has standard error ``sqrt(q(1-q)/B) / f(x_q)`` (``f`` the density of the
bootstrap distribution at the quantile, here close to normal), and a permutation p-value
from R random sign vectors has standard error ``sqrt(p(1-p)/R)``. Two independent
estimates differ by ``sqrt(2)`` times that; the tests allow 5 standard errors, so a
correct implementation fails about once in 1.7 million runs (and never: every seed here
is fixed), while an implementation that is off by a visible amount fails.

The simulations (false-regression rate under no effect, power for a 5-point drop) call
``compare_paired`` as ``eval --against`` does, with few bootstrap resamples: the verdict
of a 0/1 metric depends only on the exact McNemar p-value, so the interval's precision does
not matter there.
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
from scipy import stats as sps

from promptlib.compare.stats import (
    compare_paired,
    holm,
    mcnemar_exact,
    minimum_detectable_effect,
    paired_bootstrap_ci,
    sign_flip_pvalue,
    verdict,
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


# -- simulations ---------------------------------------------------------------------------


def _binary_pairs(
    rng: np.random.Generator, n: int, worse: float, better: float, base: float = 0.8
) -> tuple[list[float], list[float]]:
    """Baseline and candidate 0/1 scores: each example independently becomes discordant
    base-right/candidate-wrong with probability ``worse``, the reverse with ``better``,
    and otherwise keeps the baseline's score for both (baseline accuracy ``base``)."""
    u = rng.random(n)
    baseline = (rng.random(n) < base).astype(float)
    candidate = baseline.copy()
    to_worse = u < worse
    to_better = (u >= worse) & (u < worse + better)
    baseline[to_worse], candidate[to_worse] = 1.0, 0.0
    baseline[to_better], candidate[to_better] = 0.0, 1.0
    return baseline.tolist(), candidate.tolist()


def _verdict_of(baseline: list[float], candidate: list[float], *, binary: bool, key: str) -> str:
    c = compare_paired(baseline, candidate, binary=binary, resamples=100, seed=1, key=key, **RULE)
    (p_adjusted,) = holm([c.p_value])
    return verdict(c.mean_diff, p_adjusted, c.mde, alpha=ALPHA, min_effect=MIN_EFFECT)


def _exact_regression_rate(n: int, worse: float, better: float) -> float:
    """P(regressed) for the model of ``_binary_pairs``: the discordant count D is
    Binomial(n, worse + better) and b given D is Binomial(D, worse / (worse + better))."""
    rate = 0.0
    q = worse / (worse + better)
    for d in range(n + 1):
        weight = sps.binom.pmf(d, n, worse + better)
        if weight < 1e-16:
            continue
        rejecting = [b for b in range(d + 1) if b > d - b and mcnemar_exact(b, d - b) < ALPHA]
        rate += weight * float(sps.binom.pmf(rejecting, d, q).sum())
    return rate


def _binomial_bound(rate: float, replays: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / replays)


def test_no_effect_binary_rarely_regresses() -> None:
    # n = 400, baseline accuracy 0.8; 5% of examples flip each way, so the candidate's
    # accuracy is also 0.8 in expectation.
    replays, n = 1_500, 400
    rng = np.random.default_rng(2024)
    verdicts = [
        _verdict_of(*_binary_pairs(rng, n, 0.05, 0.05), binary=True, key=f"null/{i}")
        for i in range(replays)
    ]
    regressed = verdicts.count("regressed") / replays
    significant = (verdicts.count("regressed") + verdicts.count("improved")) / replays
    # A two-sided test at alpha puts at most alpha / 2 on the regression side.
    assert regressed <= _binomial_bound(ALPHA / 2, replays)  # 0.025 + 0.012
    assert significant <= _binomial_bound(ALPHA, replays)  # 0.05 + 0.017
    # And the simulation agrees with the exact rate of this model (exact McNemar is
    # conservative: about 0.017, not 0.025).
    exact = _exact_regression_rate(n, 0.05, 0.05)
    assert exact <= ALPHA / 2
    assert abs(regressed - exact) < 4 * math.sqrt(exact * (1 - exact) / replays)


def test_no_effect_continuous_rarely_regresses() -> None:
    # Exchangeable pairs: both sides are the example's difficulty plus independent noise,
    # clipped to [0, 1] like a ROUGE score, so d_i is symmetric about 0.
    replays, n = 1_000, 60
    rng = np.random.default_rng(99)
    regressed = significant = 0
    for i in range(replays):
        level = rng.beta(2, 3, size=n)
        baseline = np.clip(level + rng.normal(0, 0.1, size=n), 0, 1)
        candidate = np.clip(level + rng.normal(0, 0.1, size=n), 0, 1)
        result = _verdict_of(baseline.tolist(), candidate.tolist(), binary=False, key=f"null/{i}")
        regressed += result == "regressed"
        significant += result in ("regressed", "improved")
    assert regressed / replays <= _binomial_bound(ALPHA / 2, replays)  # 0.025 + 0.015
    assert significant / replays <= _binomial_bound(ALPHA, replays)  # 0.05 + 0.021


def test_power_for_a_five_point_drop_on_400_examples() -> None:
    # Baseline accuracy 0.8, candidate 0.75: 7.5% of examples go right -> wrong and 2.5%
    # wrong -> right (10% of answers change). Exact power of this model: 0.874.
    replays, n, worse, better = 500, 400, 0.075, 0.025
    rng = np.random.default_rng(7)
    verdicts = [
        _verdict_of(*_binary_pairs(rng, n, worse, better), binary=True, key=f"drop/{i}")
        for i in range(replays)
    ]
    share = verdicts.count("regressed") / replays
    assert verdicts.count("improved") == 0
    assert share >= 0.8
    exact = _exact_regression_rate(n, worse, better)
    assert exact == pytest.approx(0.874, abs=0.001)
    assert abs(share - exact) < 4 * math.sqrt(exact * (1 - exact) / replays)


# -- the verdict rule ----------------------------------------------------------------------

INF = math.inf
VERDICTS = [
    # (mean diff, Holm-adjusted p, minimum detectable effect, verdict)
    (0.05, 0.01, 0.01, "improved"),
    (-0.05, 0.01, 0.01, "regressed"),
    (-0.05, 0.049, INF, "regressed"),  # significance does not need the power check
    (0.05, 0.05, 0.01, "no significant change"),  # p must be below alpha
    (0.001, 0.6, 0.015, "no significant change"),
    (0.0, 1.0, 0.02, "no significant change"),  # mde == min_effect is enough
    (0.0, 1.0, 0.0201, "inconclusive"),
    (-0.04, 0.2, 0.05, "inconclusive"),
    (math.nan, 1.0, INF, "inconclusive"),
]


@pytest.mark.parametrize(("diff", "p", "mde", "expected"), VERDICTS)
def test_verdict_rule(diff: float, p: float, mde: float, expected: str) -> None:
    assert verdict(diff, p, mde, alpha=ALPHA, min_effect=MIN_EFFECT) == expected


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
    # (case, baseline, candidate, verdict, test, discordant)
    ("n = 0", [], [], "inconclusive", "none", None),
    ("n = 1, same", [1.0], [1.0], "inconclusive", "exact McNemar", (0, 0)),
    ("n = 1, worse", [1.0], [0.0], "inconclusive", "exact McNemar", (1, 0)),
    ("384 identical", *_pairs(384), "inconclusive", "exact McNemar", (0, 0)),
    ("385 identical", *_pairs(385), "no significant change", "exact McNemar", (0, 0)),
    ("400, 2 each way", *_pairs(400, 2, 2), "no significant change", "exact McNemar", (2, 2)),
    ("400, 20 worse", *_pairs(400, 20, 0), "regressed", "exact McNemar", (20, 0)),
    ("400, 20 better", *_pairs(400, 0, 20), "improved", "exact McNemar", (0, 20)),
    ("30, 6 worse", *_pairs(30, 6, 0), "regressed", "exact McNemar", (6, 0)),  # p = 2/64
    ("30, 5 worse", *_pairs(30, 5, 0), "inconclusive", "exact McNemar", (5, 0)),  # p = 2/32
]


@pytest.mark.parametrize(
    ("case", "baseline", "candidate", "expected", "test", "discordant"),
    COMPARISONS,
    ids=[c[0] for c in COMPARISONS],
)
def test_compare_paired_verdicts(
    case: str,
    baseline: list[float],
    candidate: list[float],
    expected: str,
    test: str,
    discordant: tuple[int, int] | None,
) -> None:
    c = compare_paired(baseline, candidate, binary=True, resamples=200, seed=1, key=case, **RULE)
    assert c.n == len(baseline)
    assert c.test == test
    assert c.discordant == discordant
    if discordant is not None:
        assert c.p_value == mcnemar_exact(*discordant)
        assert c.mean_diff == pytest.approx((discordant[1] - discordant[0]) / c.n)
        low, high = paired_bootstrap_ci(
            [y - x for x, y in zip(baseline, candidate, strict=True)],
            resamples=200,
            seed=1,
            key=case,
        )
        assert (c.ci_low, c.ci_high) == (low, high)
    assert verdict(c.mean_diff, c.p_value, c.mde, alpha=ALPHA, min_effect=MIN_EFFECT) == expected


def test_minimum_detectable_effect() -> None:
    z = 1.959963984540054 + 0.8416212335729143
    assert minimum_detectable_effect(0.3, 1, **RULE) == INF
    assert minimum_detectable_effect(0.3, 100, **RULE) == pytest.approx(z * 0.3 / 10)
    # The floor: sqrt(0.02 * 0.98) = 0.14, whatever the observed spread.
    assert minimum_detectable_effect(0.0, 100, **RULE) == pytest.approx(z * 0.14 / 10)
    assert minimum_detectable_effect(0.0, 385, **RULE) <= MIN_EFFECT
    assert minimum_detectable_effect(0.0, 384, **RULE) > MIN_EFFECT


def test_compare_paired_rejects_unpaired_lists() -> None:
    with pytest.raises(ValueError, match="same length"):
        compare_paired([1.0], [1.0, 0.0], binary=True, resamples=100, seed=1, key="k", **RULE)


def test_a_binary_verdict_agrees_with_its_test_when_scores_are_repeat_means() -> None:
    # Per-example scores of a 0/1 metric averaged over 3 repeats. 40 examples slip from 2/3
    # to 1/3 (b = 40 for McNemar) and 15 go from 0 to 1 (c = 15): McNemar says "worse,
    # p = 0.001" while the mean difference is +1.67 / 100.
    baseline = [2 / 3] * 40 + [0.0] * 15 + [1.0] * 45
    candidate = [1 / 3] * 40 + [1.0] * 15 + [1.0] * 45
    c = compare_paired(baseline, candidate, binary=True, resamples=200, seed=1, key="k", **RULE)
    result = verdict(c.mean_diff, c.p_value, c.mde, alpha=ALPHA, min_effect=MIN_EFFECT)
    assert result != "improved"


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


def test_the_variance_floor_follows_the_metric_kind_not_the_values() -> None:
    # A 0/1 metric with --repeats 2 on 30 rows: per-example scores are 0, 0.5 or 1, and the
    # candidate answers exactly like the baseline. Before, fractional values made the
    # comparison "continuous", the observed spread was 0 and the verdict "no significant
    # change" on 30 rows; the floor of a 0/1 metric applies whatever its values look like.
    baseline = [1.0] * 12 + [0.5] * 8 + [0.0] * 10
    candidate = list(baseline)
    as_binary = compare_paired(
        baseline, candidate, binary=True, resamples=200, seed=1, key="k", **RULE
    )
    assert as_binary.test == "paired sign-flip permutation"  # not all 0/1: no McNemar
    assert as_binary.mde == pytest.approx(
        (NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER))
        * math.sqrt(MIN_EFFECT * (1 - MIN_EFFECT))
        / math.sqrt(30)
    )
    assert verdict(0.0, as_binary.p_value, as_binary.mde, alpha=ALPHA, min_effect=MIN_EFFECT) == (
        "inconclusive"
    )
    # The same numbers from a continuous metric (ROUGE) may claim no change.
    as_continuous = compare_paired(
        baseline, candidate, binary=False, resamples=200, seed=1, key="k", **RULE
    )
    assert as_continuous.mde == 0.0
