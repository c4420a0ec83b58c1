"""JSON documents of results: plain data, stable keys, every failure present."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..compare.against import AgainstEstimate, AgainstReport
from ..evals.run import Estimate, EvalReport, PromptOutcome, SubsetSummary
from ..evals.runner import JobResult
from ..versioning.diff import LibraryDiff, PromptDiff

__all__ = [
    "against_estimate_json",
    "against_json",
    "diff_json",
    "estimate_json",
    "eval_json",
    "prompt_diff_json",
    "subset_json",
]


def _outcome(o: PromptOutcome) -> dict[str, Any]:
    out = {
        "suite": o.suite,
        "prompt": o.prompt,
        "version": o.version,
        "status": o.status,
        "metrics": o.results,
        "gates": {k: {"threshold": t, "passed": ok} for k, (t, ok) in o.gates.items()},
        "errors": o.errors,
        "calls": o.calls,
        "cached": o.cached,
        "seconds": o.seconds,
        "failure": o.failure,
        "flaky": o.flaky,
    }
    if o.consistency:
        out["repeats"] = o.repeats
        out["consistency"] = o.consistency
        out["flaky_threshold"] = o.flaky_threshold
        out["flaky_gated"] = o.flaky_gated
        out["flaky_metrics"] = o.flaky_metrics
    return out


def _gate_failure(o: PromptOutcome) -> dict[str, Any]:
    """A failed gate: the thresholds missed, and ``flaky: true`` when flakiness is gated."""
    out: dict[str, Any] = {
        "suite": o.suite,
        "prompt": o.prompt,
        "gates": {k: v[0] for k, v in o.gates.items() if not v[1]},
    }
    if o.flaky and o.flaky_gated:
        out["flaky"] = True
    return out


def _failure(o: PromptOutcome, side: str) -> dict[str, Any]:
    return {"side": side, "suite": o.suite, "prompt": o.prompt, "reason": o.failure}


def subset_json(summary: SubsetSummary | None) -> dict[str, Any] | None:
    """A ``--limit`` / ``--sample`` subset: its options, and rows kept of rows selected."""
    if summary is None:
        return None
    subset = summary.subset
    return {
        "limit": None if subset.sampled else subset.size,
        "sample": subset.size if subset.sampled else None,
        "seed": subset.seed,
        "rows": summary.kept,
        "of": summary.total,
        "partial": summary.partial,
        "suites": {name: {"rows": k, "of": t} for name, (k, t) in summary.suites.items()},
        "text": summary.text(),
    }


def eval_json(report: EvalReport) -> dict[str, Any]:
    return {
        "provider": report.provider,
        "ledger": report.ledger,
        "passed": not report.gate_failures and not report.provider_failures,
        "subset": subset_json(report.subset),
        "failures": [_failure(o, "candidate") for o in report.provider_failures],
        "results": [_outcome(o) for o in report.outcomes],
    }


def against_json(report: AgainstReport) -> dict[str, Any]:
    failing = {id(c) for c in (*report.regressions, *report.undecided)}
    return {
        "against": report.ref,
        "base": report.base_label,
        "provider": report.provider,
        "passed": report.passed,
        "rule": {
            "alpha": report.alpha,
            "min_effect": report.min_effect,
            "mode": report.mode,
            "correction": "holm",
            "family": report.family,
            "tost_level": 1 - 2 * report.alpha / max(report.family, 1),
            "failures": "an example that failed on one side counts as 0 on that side",
            "numpy": _numpy_version(),
        },
        "prompts": report.statuses,
        "evaluated": report.gated_prompts,
        "not_evaluated": report.not_evaluated,
        "gates": "all" if report.gates_all else "changed and added",
        "subset": subset_json(report.subset),
        "not_comparable": report.not_comparable,
        "not_compared": report.not_compared,
        "failures": [
            *(_failure(o, "candidate") for o in report.candidate.provider_failures),
            *(_failure(o, "baseline") for o in report.baseline_failures),
        ],
        **({"pairwise": [r.to_json() for r in report.pairwise]} if report.pairwise else {}),
        "comparisons": [
            {
                "suite": c.suite,
                "prompt": c.prompt,
                "metric": c.metric,
                "n": c.n,
                "n_shared": c.n_shared,
                "failed_baseline": c.failed_baseline,
                "failed_candidate": c.failed_candidate,
                "baseline": c.baseline,
                "candidate": c.candidate,
                "diff": c.diff,
                "primary": c.primary,
                "groups": c.groups,
                "ci95": _interval(c.ci),
                "tost": _interval(c.tost),
                "interval": c.interval,
                "p": c.p_value,
                "p_holm": c.p_adjusted,
                "test": c.test,
                "power": c.power,
                "n_needed": c.n_needed,
                "unit": c.unit,
                "outputs_identical": c.identical,
                "verdict": c.verdict,
                "fails_gate": id(c) in failing,
            }
            for c in report.comparisons
        ],
        "gate_failures": [_gate_failure(o) for o in report.candidate.gate_failures],
        "flaky": [
            {
                "suite": o.suite,
                "prompt": o.prompt,
                "metrics": o.flaky_metrics,
                "gated": o.flaky_gated,
                "text": o.flaky_text(),
            }
            for o in report.candidate.outcomes
            if o.flaky
        ],
    }


def estimate_json(
    estimate: Estimate, side: Callable[[JobResult], str] | None = None
) -> dict[str, Any]:
    """A dry run: per provider and per job, what would be reused, cached and called.

    ``side(result)`` names a job's side of a comparison (``eval --against``).
    """
    return {
        "dry_run": True,
        "ledger": estimate.ledger,
        "subset": subset_json(estimate.subset),
        "calls": estimate.calls,
        **({"judge_calls": estimate.judge_calls} if estimate.judged else {}),
        "providers": [
            {
                "provider": p.provider,
                "jobs": p.jobs,
                "reused": p.reused,
                "planned": p.planned,
                "examples": p.examples,
                "cached": p.cached,
                "calls": p.calls,
                **(
                    {"judge_cached": p.judge_cached, "judge_calls": p.judge_calls}
                    if estimate.judged
                    else {}
                ),
            }
            for p in estimate.providers
        ],
        "jobs": [
            {
                "provider": name,
                "suite": r.job.suite.name,
                "prompt": r.job.prompt.id,
                **({"side": side(r)} if side is not None else {}),
                "status": r.status,
                "examples": len(r.job.rows),
                "cached": r.cached,
                "calls": r.calls,
                **(
                    {"judge_cached": r.judge_cached, "judge_calls": r.judge_calls}
                    if r.judge_calls or r.judge_cached
                    else {}
                ),
            }
            for name, results in estimate.groups
            for r in results
        ],
    }


def against_estimate_json(plan: AgainstEstimate) -> dict[str, Any]:
    return {
        "against": plan.ref,
        "base": plan.base_label,
        "prompts": plan.statuses,
        "not_evaluated": plan.not_evaluated,
        "gates": "all" if plan.gates_all else "changed and added",
        "not_comparable": plan.not_comparable,
        **estimate_json(plan.estimate, plan.side),
    }


def _interval(interval: tuple[float, float]) -> list[float] | None:
    return None if any(math.isnan(x) for x in interval) else list(interval)


def _numpy_version() -> str | None:
    # Random streams (bootstrap, permutations) are not promised across numpy versions.
    from importlib import metadata

    try:
        return metadata.version("numpy")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return None


def prompt_diff_json(p: PromptDiff) -> dict[str, Any]:
    return {
        "id": p.id,
        "status": p.status,
        "bump": str(p.bump),
        "old_version": p.old.version if p.old else None,
        "new_version": p.new.version if p.new else None,
        "old_fingerprint": p.old.fingerprint if p.old else None,
        "new_fingerprint": p.new.fingerprint if p.new else None,
        "changes": [{"bump": str(c.bump), "what": c.what} for c in p.changes],
        "text_diff": p.text_diff,
    }


def diff_json(diff: LibraryDiff) -> dict[str, Any]:
    return {
        "base": {"label": diff.base.label, "version": diff.base.version},
        "head": {"label": diff.head.label, "version": diff.head.version},
        "bump": str(diff.bump),
        "prompts": [prompt_diff_json(p) for p in diff.changed()],
        "unchanged": sum(1 for p in diff.prompts if p.status == "unchanged"),
    }
