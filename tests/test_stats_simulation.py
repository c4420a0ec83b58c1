"""The comparison rule as a whole, by simulation: false verdicts, coverage and clustering.

Each test draws data from a stated model, runs ``compare_paired -> holm -> decide`` as
``eval --against`` does, and checks a rate against its bound. Seeds are fixed, so every
run gives the same numbers; bounds allow three binomial standard errors of the simulated
rate (``_bound``), so a rule that misses its target by a visible amount fails. The
heavier versions of these simulations (more replays, the power table) are in
``bench/bench_stats.py`` and docs/benchmarks.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from scipy import stats as sps

from promptlib.compare.stats import (
    EQUIVALENT,
    IMPROVED,
    REGRESSED,
    compare_paired,
    decide,
    holm,
    mcnemar_midp,
)

ALPHA, POWER, MIN_EFFECT = 0.05, 0.8, 0.02
RULE = {"alpha": ALPHA, "power": POWER, "min_effect": MIN_EFFECT}


def _bound(rate: float, replays: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / replays)


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


def _family_verdicts(
    sides: Sequence[tuple[list[float], list[float]]],
    *,
    binary: bool,
    key: str,
    resamples: int = 1_000,
    groups: Sequence[str] | None = None,
) -> list[str]:
    """The verdicts of one invocation comparing every pair of ``sides`` together."""
    family = len(sides)
    tested = [
        compare_paired(
            baseline,
            candidate,
            binary=binary,
            resamples=max(resamples, math.ceil(2 * family / ALPHA)),
            seed=1,
            key=f"{key}/{i}",
            family=family,
            groups=groups,
            **RULE,
        )
        for i, (baseline, candidate) in enumerate(sides)
    ]
    adjusted = holm([c.p_value for c in tested])
    return [
        decide(c, p, alpha=ALPHA, min_effect=MIN_EFFECT)
        for c, p in zip(tested, adjusted, strict=True)
    ]


# -- false "regressed" under no change -------------------------------------------------------


def _exact_regression_rate(n: int, worse: float, better: float) -> float:
    """P(p_midp < alpha and b > c) for the model of ``_binary_pairs``: the discordant count
    D is Binomial(n, worse + better) and b given D is Binomial(D, worse / (worse + better))."""
    rate = 0.0
    share = worse / (worse + better)
    for d in range(n + 1):
        weight = float(sps.binom.pmf(d, n, worse + better))
        if weight < 1e-16:
            continue
        rejecting = [b for b in range(d // 2 + 1, d + 1) if mcnemar_midp(b, d - b) < ALPHA]
        rate += weight * float(sps.binom.pmf(rejecting, d, share).sum())
    return rate


@pytest.mark.parametrize("n", [10, 30, 100, 400])
@pytest.mark.parametrize("flips", [0.01, 0.05, 0.1, 0.2, 0.3])
def test_mid_p_keeps_false_regressions_below_half_alpha(n: int, flips: float) -> None:
    # Exact, no simulation: with `flips` of the answers changing each way (up to 60% of
    # them changing) the one-sided rate stays below alpha / 2. Beyond that (80% or more
    # changing) mid-p can exceed it: docs/comparing.md gives the figures.
    assert _exact_regression_rate(n, flips, flips) <= ALPHA / 2


def test_no_effect_binary_rarely_regresses() -> None:
    # n = 400, baseline accuracy 0.8; 5% of examples flip each way.
    replays, n = 1_500, 400
    rng = np.random.default_rng(2024)
    verdicts = [
        _family_verdicts([_binary_pairs(rng, n, 0.05, 0.05)], binary=True, key=f"null/{i}")[0]
        for i in range(replays)
    ]
    regressed = verdicts.count(REGRESSED) / replays
    assert regressed <= _bound(ALPHA / 2, replays)
    exact = _exact_regression_rate(n, 0.05, 0.05)
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
        (verdict,) = _family_verdicts(
            [(baseline.tolist(), candidate.tolist())], binary=False, key=f"null/{i}"
        )
        regressed += verdict == REGRESSED
        significant += verdict in (REGRESSED, IMPROVED)
    assert regressed / replays <= _bound(ALPHA / 2, replays)
    assert significant / replays <= _bound(ALPHA, replays)


def test_holm_keeps_the_family_wise_rate() -> None:
    # 20 comparisons per invocation, none with a real change: any "regressed" among them is
    # a false alarm for the whole build.
    replays, m, n = 300, 20, 400
    rng = np.random.default_rng(31)
    builds_failed = 0
    for i in range(replays):
        sides = [_binary_pairs(rng, n, 0.05, 0.05) for _ in range(m)]
        builds_failed += REGRESSED in _family_verdicts(sides, binary=True, key=f"holm/{i}")
    assert builds_failed / replays <= _bound(ALPHA / 2, replays)


def _clustered(rng: np.random.Generator, groups: int, size: int) -> tuple[list[float], ...]:
    """0/1 pairs where each group (an intent) shifts its rows together: a group's flip
    probabilities are 0.1 +- u with u ~ N(0, 0.08) clipped, mean 0 over groups."""
    shift = np.clip(rng.normal(0, 0.08, size=groups), -0.1, 0.1)
    worse = np.repeat(0.1 + shift, size)
    better = np.repeat(0.1 - shift, size)
    n = groups * size
    u = rng.random(n)
    baseline = (rng.random(n) < 0.7).astype(float)
    candidate = baseline.copy()
    to_worse = u < worse
    to_better = (u >= worse) & (u < worse + better)
    baseline[to_worse], candidate[to_worse] = 1.0, 0.0
    baseline[to_better], candidate[to_better] = 0.0, 1.0
    return baseline.tolist(), candidate.tolist()


def test_clustered_rows_need_their_groups() -> None:
    # 30 intents of 15 paraphrases. Group effects average 0, so there is no change, but
    # rows of one intent move together. With `group:` set the test flips whole groups.
    replays, groups, size = 400, 30, 15
    labels = [f"intent-{i // size}" for i in range(groups * size)]
    rng = np.random.default_rng(77)
    with_groups = without = 0
    for i in range(replays):
        pair = _clustered(rng, groups, size)
        (grouped,) = _family_verdicts([pair], binary=True, key=f"g/{i}", groups=labels)
        (plain,) = _family_verdicts([pair], binary=True, key=f"g/{i}")
        with_groups += grouped == REGRESSED
        without += plain == REGRESSED
    assert with_groups / replays <= _bound(ALPHA / 2, replays)
    # Treated as independent rows the same data says "regressed" far more often than the
    # 2.5% it promises: what the group column is for.
    assert without / replays > 3 * ALPHA / 2


# -- "equivalent" at the margin --------------------------------------------------------------


@pytest.mark.parametrize("family", [1, 20, 200])
def test_equivalent_is_rare_when_the_change_is_exactly_the_margin(family: int) -> None:
    # The true change is -min_effect: claiming equivalence is an error. n = 2000 examples,
    # 6% go right -> wrong and 4% wrong -> right. Exact, not simulated: the rate sums the
    # probability of every table (b, c) within 4 standard deviations of its mean (99.98% of
    # the mass) that compare_paired -> decide calls "equivalent". Each table is judged with
    # the family's level and with the largest p_holm a family of that size can give it
    # (m * p), the case most favourable to a false "equivalent".
    n, worse, better = 2_000, 0.06, 0.04
    rate = mass = 0.0
    for b in _within(n * worse, 4):
        for c in _within(n * better, 4):
            weight = float(sps.multinomial.pmf([b, c, n - b - c], n, [worse, better, 0.9]))
            mass += weight
            if (c - b) / n <= -MIN_EFFECT:
                continue  # the interval holds its estimate: never inside (-e, e)
            baseline = [1.0] * b + [0.0] * c + [1.0] * (n - b - c)
            candidate = [0.0] * b + [1.0] * c + [1.0] * (n - b - c)
            comparison = compare_paired(
                baseline,
                candidate,
                binary=True,
                resamples=100,
                seed=1,
                key="eq",
                family=family,
                **RULE,
            )
            p_holm = min(1.0, family * comparison.p_value)
            if decide(comparison, p_holm, alpha=ALPHA, min_effect=MIN_EFFECT) == EQUIVALENT:
                rate += weight
    assert mass > 0.999
    assert rate <= 0.05


def _within(mean: float, sds: float) -> range:
    spread = sds * math.sqrt(mean)
    return range(max(0, math.floor(mean - spread)), math.ceil(mean + spread) + 1)


@pytest.mark.parametrize("family", [1, 20])
def test_equivalent_is_rare_at_the_margin_for_continuous_scores(family: int) -> None:
    replays, n = 300, 400
    rng = np.random.default_rng(500 + family)
    equivalent = 0
    for i in range(replays):
        baseline = rng.beta(2, 3, size=n)
        candidate = baseline + rng.normal(-MIN_EFFECT, 0.1, size=n)
        c = compare_paired(
            baseline.tolist(),
            candidate.tolist(),
            binary=False,
            resamples=max(1_000, math.ceil(2 * family / ALPHA)),
            seed=1,
            key=f"eqc/{i}",
            family=family,
            **RULE,
        )
        p_holm = min(1.0, family * c.p_value)
        equivalent += decide(c, p_holm, alpha=ALPHA, min_effect=MIN_EFFECT) == EQUIVALENT
    assert equivalent / replays <= _bound(0.05, replays)


# -- interval coverage -------------------------------------------------------------------


Model = Callable[[np.random.Generator, int], tuple[list[float], list[float]]]


def _flips(worse: float, better: float) -> Model:
    return lambda rng, n: _binary_pairs(rng, n, worse, better)


def _continuous(draw: Callable[[np.random.Generator, int], np.ndarray]) -> Model:
    def model(rng: np.random.Generator, n: int) -> tuple[list[float], list[float]]:
        baseline = rng.uniform(0.2, 0.6, size=n)
        return baseline.tolist(), (baseline + draw(rng, n)).tolist()

    return model


COVERAGE: list[tuple[str, bool, Model, float, int]] = [
    # (model, 0/1, draw, true mean difference, replays)
    ("0/1, 10% flips", True, _flips(0.07, 0.03), -0.04, 1_000),
    ("0/1, rare flips", True, _flips(0.01, 0.002), -0.008, 1_000),
    ("normal", False, _continuous(lambda r, n: r.normal(-0.03, 0.1, n)), -0.03, 500),
    # Gamma(2, 0.05) has mean 0.1: differences with a long left tail and mean -0.02.
    ("skewed", False, _continuous(lambda r, n: 0.08 - r.gamma(2, 0.05, n)), -0.02, 500),
]


@pytest.mark.parametrize("n", [30, 100, 400])
@pytest.mark.parametrize(
    ("name", "binary", "model", "true", "replays"), COVERAGE, ids=[c[0] for c in COVERAGE]
)
def test_interval_coverage(
    n: int, name: str, binary: bool, model: Model, true: float, replays: int
) -> None:
    rng = np.random.default_rng(n * 7 + len(name))
    covered = 0
    for i in range(replays):
        baseline, candidate = model(rng, n)
        c = compare_paired(
            baseline, candidate, binary=binary, resamples=1_000, seed=1, key=f"{i}", **RULE
        )
        covered += c.ci_low <= true <= c.ci_high
    assert covered / replays >= 0.93
