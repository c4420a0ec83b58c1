"""Error rates, power and interval coverage of `eval --against`'s comparison rule.

Every figure runs the product's own chain, `compare_paired -> holm -> decide`, on data drawn
from a stated model (or, for 0/1 metrics where it is cheap, sums exact probabilities):

1. Power: the share of invocations that call a real drop "regressed", when it is compared
   alone and in a Holm family of m = 4 and 20 (the other m - 1 comparisons have no change),
   for 0/1 and continuous metrics, with and without `group:` clustering.
2. False verdicts: "regressed" with no change (alone, in a family of 20, clustered rows
   with and without `group:`), and "equivalent" when the true change is exactly the
   margin, -min_effect (m = 1, 20, 200).
3. Interval coverage of the 95% interval at n = 30, 100 and 400, including two models
   outside the documented ones (a harsh skew and a handful of mixed changes) so that
   docs/comparing.md can say where the intervals are weak.
4. Mid-p against the exact McNemar test at the documented case (exact sums).
5. The cost of one comparison on 1,000 examples with 10,000 resamples (the default).

Run: python bench/bench_stats.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats as sps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _report import write_section  # noqa: E402

from promptlib.compare.stats import (  # noqa: E402
    EQUIVALENT,
    REGRESSED,
    compare_paired,
    decide,
    holm,
    mcnemar_exact,
    mcnemar_midp,
)

ALPHA, POWER, E = 0.05, 0.8, 0.02
RULE = {"alpha": ALPHA, "power": POWER, "min_effect": E}

Pair = tuple[list[float], list[float]]
Model = Callable[[np.random.Generator], Pair]


# -- models ----------------------------------------------------------------------------


def flips(n: int, worse: float, better: float, base: float = 0.8) -> Model:
    """0/1 scores; each example goes right -> wrong with `worse`, the reverse with `better`."""

    def draw(rng: np.random.Generator) -> Pair:
        u = rng.random(n)
        baseline = (rng.random(n) < base).astype(float)
        candidate = baseline.copy()
        w = u < worse
        b = (u >= worse) & (u < worse + better)
        baseline[w], candidate[w] = 1.0, 0.0
        baseline[b], candidate[b] = 0.0, 1.0
        return baseline.tolist(), candidate.tolist()

    return draw


def clustered_flips(groups: int, size: int, worse: float, better: float, sd: float) -> Model:
    """0/1 scores where each group's flip probabilities move together by u ~ N(0, sd)."""

    def draw(rng: np.random.Generator) -> Pair:
        limit = min(worse, better)
        shift = np.clip(rng.normal(0, sd, size=groups), -limit, limit)
        w_p = np.repeat(worse + shift, size)
        b_p = np.repeat(better - shift, size)
        n = groups * size
        u = rng.random(n)
        baseline = (rng.random(n) < 0.7).astype(float)
        candidate = baseline.copy()
        w = u < w_p
        b = (u >= w_p) & (u < w_p + b_p)
        baseline[w], candidate[w] = 1.0, 0.0
        baseline[b], candidate[b] = 0.0, 1.0
        return baseline.tolist(), candidate.tolist()

    return draw


def continuous(n: int, diff: Callable[[np.random.Generator, int], np.ndarray]) -> Model:
    def draw(rng: np.random.Generator) -> Pair:
        baseline = rng.uniform(0.2, 0.6, size=n)
        return baseline.tolist(), (baseline + diff(rng, n)).tolist()

    return draw


def clustered_continuous(groups: int, size: int, mean: float, group_sd: float) -> Model:
    def draw(rng: np.random.Generator) -> Pair:
        shifts = np.repeat(rng.normal(mean, group_sd, size=groups), size)
        baseline = rng.uniform(0.2, 0.6, size=groups * size)
        candidate = baseline + shifts + rng.normal(0, 0.08, size=groups * size)
        return baseline.tolist(), candidate.tolist()

    return draw


# -- the chain --------------------------------------------------------------------------


def family_verdicts(
    pairs: list[Pair], *, binary: bool, key: str, groups: list[str] | None, resamples: int
) -> tuple[list[str], list[int | None]]:
    m = len(pairs)
    tested = [
        compare_paired(
            b,
            c,
            binary=binary,
            resamples=max(resamples, math.ceil(2 * m / ALPHA)),
            seed=1,
            key=f"{key}/{i}",
            family=m,
            groups=groups,
            **RULE,
        )
        for i, (b, c) in enumerate(pairs)
    ]
    adjusted = holm([t.p_value for t in tested])
    verdicts = [
        decide(t, p, alpha=ALPHA, min_effect=E) for t, p in zip(tested, adjusted, strict=True)
    ]
    return verdicts, [t.n_needed for t in tested]


def power_row(
    name: str,
    effect: Model,
    null: Model,
    *,
    binary: bool,
    groups: list[str] | None,
    replays: int,
    resamples: int,
) -> list[str]:
    cells = [name]
    for m in (1, 4, 20):
        rng = np.random.default_rng(1000 + m)
        caught = 0
        needed: list[int] = []
        for r in range(replays):
            pairs = [effect(rng)] + [null(rng) for _ in range(m - 1)]
            verdicts, n_needed = family_verdicts(
                pairs, binary=binary, key=f"{name}/{m}/{r}", groups=groups, resamples=resamples
            )
            caught += verdicts[0] == REGRESSED
            if verdicts[0] != REGRESSED and n_needed[0] is not None:
                needed.append(n_needed[0])
        share = caught / replays
        median = f"{int(np.median(needed)):,}" if needed else "—"
        cells.append(f"{share:.0%} ± {1.96 * math.sqrt(share * (1 - share) / replays):.0%}")
        cells.append(median)
    return cells


# -- exact sums for 0/1 metrics ---------------------------------------------------------


def exact_regression_rate(
    n: int, worse: float, better: float, test: Callable[[int, int], float]
) -> float:
    rate = 0.0
    share = worse / (worse + better)
    for d in range(n + 1):
        weight = float(sps.binom.pmf(d, n, worse + better))
        if weight < 1e-16:
            continue
        rejecting = [b for b in range(d // 2 + 1, d + 1) if test(b, d - b) < ALPHA]
        rate += weight * float(sps.binom.pmf(rejecting, d, share).sum())
    return rate


def exact_equivalent_rate(n: int, worse: float, better: float, family: int) -> float:
    rate = 0.0
    for b in _within(n * worse):
        for c in _within(n * better):
            if (c - b) / n <= -E:
                continue
            weight = float(sps.multinomial.pmf([b, c, n - b - c], n, [worse, better, 0.9]))
            base = [1.0] * b + [0.0] * c + [1.0] * (n - b - c)
            cand = [0.0] * b + [1.0] * c + [1.0] * (n - b - c)
            t = compare_paired(
                base, cand, binary=True, resamples=100, seed=1, key="eq", family=family, **RULE
            )
            if decide(t, min(1.0, family * t.p_value), alpha=ALPHA, min_effect=E) == EQUIVALENT:
                rate += weight
    return rate


def _within(mean: float) -> range:
    spread = 5 * math.sqrt(mean)
    return range(max(0, math.floor(mean - spread)), math.ceil(mean + spread) + 1)


# -- sections ---------------------------------------------------------------------------


def power_section(quick: bool) -> str:
    binary_replays, continuous_replays = (200, 100) if quick else (1_000, 500)
    labels = [f"intent-{i // 10}" for i in range(400)]
    rows = [
        power_row(
            "0/1, n = 400, 5-point drop (10% of answers change)",
            flips(400, 0.075, 0.025),
            flips(400, 0.05, 0.05),
            binary=True,
            groups=None,
            replays=binary_replays,
            resamples=1_000,
        ),
        power_row(
            "0/1, 40 groups of 10, 5-point drop, group sd 0.03, `group:` set",
            clustered_flips(40, 10, 0.075, 0.025, 0.03),
            clustered_flips(40, 10, 0.05, 0.05, 0.03),
            binary=True,
            groups=labels,
            replays=binary_replays,
            resamples=1_000,
        ),
        power_row(
            "continuous, n = 40, -0.03 (paired sd 0.1)",
            continuous(40, lambda r, n: r.normal(-0.03, 0.1, n)),
            continuous(40, lambda r, n: r.normal(0.0, 0.1, n)),
            binary=False,
            groups=None,
            replays=continuous_replays,
            resamples=2_000,
        ),
        power_row(
            "continuous, n = 400, -0.03 (paired sd 0.1)",
            continuous(400, lambda r, n: r.normal(-0.03, 0.1, n)),
            continuous(400, lambda r, n: r.normal(0.0, 0.1, n)),
            binary=False,
            groups=None,
            replays=continuous_replays,
            resamples=2_000,
        ),
        power_row(
            "continuous, 40 groups of 10, -0.03, group sd 0.05, `group:` set",
            clustered_continuous(40, 10, -0.03, 0.05),
            clustered_continuous(40, 10, 0.0, 0.05),
            binary=False,
            groups=labels,
            replays=continuous_replays,
            resamples=2_000,
        ),
    ]
    head = (
        "| drop (alone, then in a Holm family of m) | power m = 1 | n needed | power m = 4 "
        "| n needed | power m = 20 | n needed |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    body = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    return (
        "**Power**: the share of invocations in which a real drop is called `regressed`, "
        "alone and with m - 1 unchanged comparisons in the family (± is the 95% Monte Carlo "
        "margin). *n needed* is the median the report printed for the runs that missed it: "
        "examples, or groups where `group:` is set, to detect a change of min-effect (0.02) "
        "at the family's level with 80% power.\n\n" + head + "\n" + body
    )


def error_section(quick: bool) -> str:
    replays = 300 if quick else 2_000
    lines = [
        "| no change, or a change exactly at the margin | verdict | rate | bound |",
        "| --- | --- | ---: | ---: |",
    ]

    exact = exact_regression_rate(400, 0.05, 0.05, mcnemar_midp)
    lines.append(
        f"| 0/1, n = 400, 5% flip each way, alone (exact) | regressed | {exact:.2%} | 2.5% |"
    )
    rng = np.random.default_rng(2)
    fails = 0
    family_replays = replays // 4
    null = flips(400, 0.05, 0.05)
    for r in range(family_replays):
        verdicts, _ = family_verdicts(
            [null(rng) for _ in range(20)],
            binary=True,
            key=f"fw/{r}",
            groups=None,
            resamples=1_000,
        )
        fails += REGRESSED in verdicts
    lines.append(
        f"| same, family of 20 (any of the 20) | regressed | {fails / family_replays:.2%} | 2.5% |"
    )
    rng = np.random.default_rng(3)
    hits = 0
    for r in range(replays):
        level = rng.beta(2, 3, size=60)
        b = np.clip(level + rng.normal(0, 0.1, 60), 0, 1)
        c = np.clip(level + rng.normal(0, 0.1, 60), 0, 1)
        verdicts, _ = family_verdicts(
            [(b.tolist(), c.tolist())],
            binary=False,
            key=f"cn/{r}",
            groups=None,
            resamples=1_000,
        )
        hits += verdicts[0] == REGRESSED
    lines.append(
        f"| continuous, n = 60, exchangeable pairs | regressed | {hits / replays:.2%} | 2.5% |"
    )
    labels = [f"intent-{i // 15}" for i in range(450)]
    model = clustered_flips(30, 15, 0.1, 0.1, 0.08)
    for groups, name in ((labels, "`group:` set"), (None, "rows treated as independent")):
        rng = np.random.default_rng(4)
        hits = 0
        for r in range(replays):
            verdicts, _ = family_verdicts(
                [model(rng)], binary=True, key=f"cl/{r}", groups=groups, resamples=1_000
            )
            hits += verdicts[0] == REGRESSED
        lines.append(
            f"| 0/1, 30 intents of 15, group effects mean 0 (sd 0.08), {name} | regressed "
            f"| {hits / replays:.2%} | 2.5% |"
        )
    for m in (1, 20, 200):
        rate = exact_equivalent_rate(2_000, 0.06, 0.04, m)
        lines.append(
            f"| 0/1, n = 2,000, true change -0.02 (= -margin), m = {m} (exact) | equivalent "
            f"| {rate:.2%} | 5% |"
        )
    for m in (1, 20):
        rng = np.random.default_rng(5 + m)
        hits = 0
        equivalence_replays = replays // 2
        for r in range(equivalence_replays):
            base = rng.beta(2, 3, size=400)
            cand = base + rng.normal(-E, 0.1, size=400)
            t = compare_paired(
                base.tolist(),
                cand.tolist(),
                binary=False,
                resamples=max(2_000, math.ceil(2 * m / ALPHA)),
                seed=1,
                key=f"eqc/{r}",
                family=m,
                **RULE,
            )
            hits += decide(t, min(1.0, m * t.p_value), alpha=ALPHA, min_effect=E) == EQUIVALENT
        lines.append(
            f"| continuous, n = 400, true change -0.02, m = {m} | equivalent "
            f"| {hits / equivalence_replays:.2%} | 5% |"
        )
    return (
        '**False verdicts.** "Exact" rows sum the probability of every 2x2 table; the others '
        f"are simulated ({replays:,} invocations; {replays // 4:,} for the family of 20). "
        "For `equivalent` each comparison gets the largest Holm p-value its family could "
        "give it (m x p), the case most favourable to a false claim.\n\n" + "\n".join(lines)
    )


def coverage_section(quick: bool) -> str:
    binary_replays, continuous_replays = (300, 150) if quick else (2_000, 1_000)
    models: list[tuple[str, bool, Callable[[int], Model], float]] = [
        (
            "0/1, 10% of answers change (7% worse, 3% better)",
            True,
            lambda n: flips(n, 0.07, 0.03),
            -0.04,
        ),
        ("0/1, rare flips (1% worse, 0.2% better)", True, lambda n: flips(n, 0.01, 0.002), -0.008),
        (
            "continuous, normal (mean -0.03, sd 0.1)",
            False,
            lambda n: continuous(n, lambda r, k: r.normal(-0.03, 0.1, k)),
            -0.03,
        ),
        (
            "continuous, skewed (0.08 - Gamma(2, 0.05))",
            False,
            lambda n: continuous(n, lambda r, k: 0.08 - r.gamma(2, 0.05, k)),
            -0.02,
        ),
        (
            "outside the documented models: harsh skew (20% drop by Exp(0.15))",
            False,
            lambda n: continuous(
                n,
                lambda r, k: np.where(
                    r.random(k) < 0.2, -r.exponential(0.15, k), r.normal(0, 0.02, k)
                ),
            ),
            -0.03,
        ),
        (
            "outside the documented models: 5% of examples change by U(-0.6, 0.4)",
            False,
            lambda n: continuous(
                n, lambda r, k: np.where(r.random(k) < 0.05, r.uniform(-0.6, 0.4, k), 0.0)
            ),
            -0.005,
        ),
    ]
    lines = ["| model | n = 30 | n = 100 | n = 400 |", "| --- | ---: | ---: | ---: |"]
    disagree = 0
    significant = 0
    for name, binary, make, true in models:
        cells = []
        for n in (30, 100, 400):
            rng = np.random.default_rng(n)
            draw = make(n)
            replays = binary_replays if binary else continuous_replays
            covered = 0
            for r in range(replays):
                b, c = draw(rng)
                t = compare_paired(b, c, binary=binary, resamples=1_000, seed=1, key=str(r), **RULE)
                covered += t.ci_low <= true <= t.ci_high
                if t.p_value < ALPHA:
                    significant += 1
                    disagree += t.ci_low <= 0 <= t.ci_high
            cells.append(f"{covered / replays:.1%}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return (
        f"**Coverage of the 95% interval** ({binary_replays:,} draws per 0/1 cell, "
        f"{continuous_replays:,} per continuous cell; Monte Carlo margin about "
        f"±{_margin(binary_replays):.1f} and ±{_margin(continuous_replays):.1f} points). Of "
        f"the {significant:,} draws whose test rejected at 5%, "
        f"{disagree:,} had an interval that still held 0 (the other disagreement, an "
        "interval excluding 0 beside a test that does not reject, cannot happen: the "
        "interval is then extended to 0).\n\n" + "\n".join(lines)
    )


def _margin(replays: int) -> float:
    return 100 * 1.96 * math.sqrt(0.95 * 0.05 / replays)


def midp_section() -> str:
    rows = []
    for name, worse, better in (
        ("5-point drop, 10% change", 0.075, 0.025),
        ("no change, 5% flip each way", 0.05, 0.05),
    ):
        exact = exact_regression_rate(400, worse, better, mcnemar_exact)
        midp = exact_regression_rate(400, worse, better, mcnemar_midp)
        rows.append(f"| n = 400, {name} | {exact:.1%} | {midp:.1%} |")
    return (
        "**Mid-p against exact McNemar** at the documented case (exact sums, one comparison):"
        "\n\n| model | exact McNemar: regressed | mid-p: regressed |\n| --- | ---: | ---: |\n"
        + "\n".join(rows)
    )


def cost_section() -> str:
    rng = np.random.default_rng(7)
    n, resamples, repeats = 1_000, 10_000, 20
    base_binary = (rng.random(n) < 0.8).astype(float)
    flip = rng.random(n) < 0.1
    cand_binary = np.where(flip, 1.0 - base_binary, base_binary)
    base_cont = rng.random(n)
    cand_cont = np.clip(base_cont + rng.normal(0.01, 0.1, n), 0, 1)
    labels = [f"g{i % 50}" for i in range(n)]
    lines = []
    for label, base, cand, binary, groups in (
        ("0/1: mid-p McNemar + Tango interval", base_binary, cand_binary, True, None),
        ("continuous: sign-flip test + bootstrap-t interval", base_cont, cand_cont, False, None),
        (
            "continuous, 50 groups: cluster sign-flip + its inversion",
            base_cont,
            cand_cont,
            False,
            labels,
        ),
    ):
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            compare_paired(
                base.tolist(),
                cand.tolist(),
                binary=binary,
                resamples=resamples,
                seed=1,
                key=f"k{i}",
                groups=groups,
                family=20,
                **RULE,
            )
            times.append((time.perf_counter() - started) * 1000)
        lines.append(f"| {label} | {np.median(times):.1f} | {min(times):.1f} |")
    return (
        f"**Cost** of one comparison, {n:,} paired examples, {resamples:,} resamples, both "
        f"intervals (95% and the equivalence one), median of {repeats}:\n\n"
        "| comparison | median ms | best ms |\n| --- | ---: | ---: |\n" + "\n".join(lines)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replays, for a smoke run")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    args = parser.parse_args()
    started = time.perf_counter()
    parts = [
        midp_section(),
        power_section(args.quick),
        error_section(args.quick),
        coverage_section(args.quick),
        cost_section(),
    ]
    body = "\n\n".join(parts) + (
        f"\n\nAlpha 0.05, min-effect 0.02, power 0.8; {time.perf_counter() - started:.0f} s in all."
    )
    command = "python bench/bench_stats.py" + (" --quick" if args.quick else "")
    if args.no_write:
        print(body)
    else:
        write_section("stats", command, body)


if __name__ == "__main__":
    main()
