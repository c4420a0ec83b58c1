"""How every format writes the parts of a comparison: intervals, p-values, verdicts."""

from __future__ import annotations

import math

from ..compare.against import MetricComparison
from ..compare.stats import INCONCLUSIVE

__all__ = ["interval_text", "p_text", "verdict_text"]


def interval_text(interval: tuple[float, float]) -> str:
    low, high = interval
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return f"[{low:+.3f}, {high:+.3f}]"


def p_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value >= 0.001 else "<0.001"


def verdict_text(c: MetricComparison) -> str:
    """The verdict with what a reader needs to act on it.

    An inconclusive comparison says how much power it had and how many examples (or
    groups) would decide it, and whether the outputs did not change at all. A secondary
    metric says it is not gated.
    """
    text = c.verdict
    if c.verdict == INCONCLUSIVE:
        notes = []
        if math.isnan(c.ci[0]):
            notes.append(f"fewer than 10 {c.unit}")
        if c.n_needed is not None and c.power is not None:
            notes.append(f"power {c.power:.0%}; {c.n_needed:,} {c.unit} needed")
        if c.identical:
            notes.append(f"outputs identical on all {c.n} examples")
        if notes:
            text += f" ({'; '.join(notes)})"
    if not c.primary:
        text += " [secondary]"
    return text
