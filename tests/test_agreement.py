"""Agreement figures against values computed by hand on small tables (no SciPy)."""

from __future__ import annotations

import pytest

from promptlib.evals.agreement import (
    agreement,
    bootstrap_kappa,
    cohen_kappa,
    confusion,
    spearman,
)


def from_table(table: list[list[int]]) -> tuple[list[int], list[int]]:
    """Judge and human labels from ``table[human][judge]`` counts (categories 0..k-1)."""
    judge: list[int] = []
    human: list[int] = []
    for h, row in enumerate(table):
        for j, count in enumerate(row):
            judge += [j] * count
            human += [h] * count
    return judge, human


@pytest.mark.parametrize(
    ("table", "kappa"),
    [
        # p_o = 35/50 = 0.7; marginals human 25/25, judge 30/20: p_e = (750 + 500)/2500 = 0.5;
        # kappa = 0.2 / 0.5.
        ([[20, 5], [10, 15]], 0.4),
        # p_o = 22/30; human 12/12/6, judge 11/12/7: p_e = 318/900; kappa = 342/582.
        ([[10, 2, 0], [1, 8, 3], [0, 2, 4]], 342 / 582),
        # Perfect agreement.
        ([[7, 0], [0, 3]], 1.0),
        # p_o = 0; p_e = (5*5 + 5*5)/100 = 0.5: kappa = -1.
        ([[0, 5], [5, 0]], -1.0),
        # Agreement no better than chance: p_o = 0.5 = p_e.
        ([[2, 2], [2, 2]], 0.0),
    ],
)
def test_cohen_kappa_matches_hand_computed_values(table: list[list[int]], kappa: float) -> None:
    judge, human = from_table(table)
    assert cohen_kappa(judge, human) == pytest.approx(kappa)
    assert confusion(judge, human)[1] == table


def test_kappa_is_undefined_when_both_raters_use_one_category() -> None:
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa([1], [1, 0])


@pytest.mark.parametrize(
    ("judge", "human", "rho"),
    [
        # d = -1, 1, -1, 1, 0: rho = 1 - 6 * 4 / (5 * 24) = 0.8.
        ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8),
        # Ties share their mean rank: ranks 1.5, 1.5, 3, 4 against 1..4: 4.5 / sqrt(4.5 * 5).
        ([1, 1, 2, 3], [1, 2, 3, 4], 4.5 / (4.5 * 5) ** 0.5),
        ([3, 2, 1], [1, 2, 3], -1.0),
        ([1, 1, 1], [1, 2, 3], None),
    ],
)
def test_spearman_matches_hand_computed_values(
    judge: list[int], human: list[int], rho: float | None
) -> None:
    got = spearman(judge, human)
    if rho is None:
        assert got is None
    else:
        assert got == pytest.approx(rho)


def test_agreement_reports_raw_agreement_bias_and_a_seeded_interval_around_kappa() -> None:
    judge, human = from_table([[20, 5], [10, 15]])
    found = agreement(judge, human, resamples=500)
    assert found.n == 50
    assert found.raw == pytest.approx(0.7)
    assert found.kappa == pytest.approx(0.4)
    # Judge mean 20/50, human mean 25/50: the judge says 1 less often.
    assert found.bias == pytest.approx(-0.1)
    assert found.categories == [0, 1]
    assert found.kappa_low is not None
    assert found.kappa_high is not None
    assert found.kappa_low < 0.4 < found.kappa_high
    # The interval is a function of the data and the seed.
    assert bootstrap_kappa(judge, human, resamples=500) == (found.kappa_low, found.kappa_high)
    assert bootstrap_kappa(judge, human, resamples=500, seed=1) != (
        found.kappa_low,
        found.kappa_high,
    )
    with pytest.raises(ValueError, match="non-zero"):
        agreement([], [])
