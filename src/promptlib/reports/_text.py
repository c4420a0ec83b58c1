"""How every format writes the parts of a comparison: intervals, p-values, verdicts."""

from __future__ import annotations

import math

from ..compare.against import AgainstReport, MetricComparison
from ..compare.stats import INCONCLUSIVE
from ..evals.run import PromptOutcome, SubsetSummary

__all__ = [
    "consistency_text",
    "failed_gates_text",
    "gates_text",
    "interval_text",
    "p_text",
    "status_text",
    "subset_text",
    "verdict_text",
]


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
    groups) would decide it, or, when both sides answered every example identically, that
    the provider did not react (more examples would not decide anything). A secondary
    metric says it is not gated.
    """
    text = c.verdict
    if c.verdict == INCONCLUSIVE:
        notes = []
        if c.identical:
            # More rows would not help: the answers did not change at all.
            notes.append(
                f"outputs identical on all {c.n} examples: the provider did not react to "
                "this change"
            )
        else:
            if math.isnan(c.ci[0]):
                notes.append(f"fewer than 10 {c.unit}")
            if c.n_needed is not None and c.power is not None:
                notes.append(f"power {c.power:.0%}; {c.n_needed:,} {c.unit} needed")
        if notes:
            text += f" ({'; '.join(notes)})"
    if not c.primary:
        text += " [secondary]"
    return text


def gates_text(report: AgainstReport) -> str:
    """Whose suite thresholds (``gates``) an ``--against`` run checked.

    It evaluates the changed and added prompts only (unless ``--gates-all``), so a passing
    report must not read as if every prompt met its thresholds.
    """
    count = len(report.gated_prompts)
    if report.gates_all:
        return f"Thresholds (gates) checked for all {count} prompt(s) evaluated (--gates-all)."
    skipped = len(report.not_evaluated)
    text = f"Thresholds (gates) checked for the {count} changed or added prompt(s) evaluated"
    if not skipped:
        return text + "."
    return (
        f"{text}; {skipped} unchanged prompt(s) not evaluated, their thresholds not "
        "checked (`promptlib eval` checks them; --gates-all adds them here)."
    )


def subset_text(summary: SubsetSummary, *, compared: bool = False) -> str:
    """What a ``--limit`` / ``--sample`` run covered: ``Subset: sampled 200 of 3,080 rows
    (seed 7) ...``, and that it is not the full suite."""
    text = f"Subset: {summary.text()}"
    if not summary.partial:
        return text + "."
    if compared:
        return text + ", the same rows on both sides; not a comparison on the full suites."
    return text + "; not an evaluation of the full suites."


def failed_gates_text(o: PromptOutcome, digits: int = 3) -> str:
    """Why ``o`` failed its gates: each threshold missed, and a gated flaky prompt."""
    parts = [
        f"{m} {o.results[m]['mean']:.{digits}f} < {t:g}" for m, (t, ok) in o.gates.items() if not ok
    ]
    if o.flaky and o.flaky_gated:
        parts.append(o.flaky_text() or "flaky")
    return "; ".join(parts)


def status_text(o: PromptOutcome) -> str:
    """A prompt's status in one phrase: ``failed``, ``gate failed``, ``flaky`` (gated),
    ``ran, flaky`` (reported only), else ``ran`` or ``reused``."""
    if o.status == "failed":
        return "failed"
    gates_failed = not all(ok for _, ok in o.gates.values())
    if o.flaky and o.flaky_gated:
        return "gate failed, flaky" if gates_failed else "flaky"
    if gates_failed:
        return "gate failed, flaky" if o.flaky else "gate failed"
    return f"{o.status}, flaky" if o.flaky else o.status


def consistency_text(o: PromptOutcome, metric: str) -> str:
    """``pass@3 0.800, pass^3 0.400, disagree 40%, variance 0.089 (n 10)`` for one
    metric of a run with repeats (pass@k and pass^k for 0/1 metrics only)."""
    c = o.consistency[metric]
    k = o.repeats
    parts = []
    if "pass_at_k" in c:
        parts.append(f"pass@{k} {c['pass_at_k']:.3f}")
    if "pass_hat_k" in c:
        parts.append(f"pass^{k} {c['pass_hat_k']:.3f}")
    parts.append(f"disagree {c['disagreement']:.0%}")
    parts.append(f"variance {c['mean_variance']:.3f}")
    return ", ".join(parts) + f" (n {int(c['n'])})"
