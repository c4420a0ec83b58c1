"""``promptlib eval --against REF``: the candidate library against a release, paired.

Every prompt is *added*, *removed*, *unchanged* (same fingerprint: the same runs serve
both sides, so no provider call is made when the ledger has them) or *changed*. Scores
come from the ledger when a run's key is there; otherwise they are evaluated (the baseline
from the release record's content) and appended. A changed prompt whose suite can no
longer render the baseline (its inputs changed incompatibly) is *not comparable*.

For changed prompts, every metric of every suite that scores them is compared on the
examples both sides scored, with the paired statistics of ``promptlib.stats``; the Holm
correction runs over all comparisons of the invocation. The command fails (exit 1) on a
``regressed`` verdict or a failed gate, and exits 3 when the provider failed beyond the
error budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from .cache import CacheMode
from .diff import LibraryDiff, diff_snapshots
from .evaluation import (
    EvalReport,
    PromptOutcome,
    choose_suites,
    outcome_of,
    resolve_options,
    run_by_provider,
    select_prompts,
)
from .harness import EvalOptions, Job, plan_jobs
from .library import load
from .prompt import Prompt
from .providers import Provider
from .release import resolve_against
from .releases import Snapshot, worktree_snapshot
from .settings import Settings
from .stats import REGRESSED, compare_paired, holm, verdict
from .suite import Suite

__all__ = ["AgainstReport", "MetricComparison", "compare_against"]


@dataclass
class MetricComparison:
    """One metric of one changed prompt in one suite, with its verdict."""

    suite: str
    prompt: str
    metric: str
    n: int
    baseline: float
    candidate: float
    diff: float
    ci: tuple[float, float]
    p_value: float
    p_adjusted: float
    test: str
    mde: float
    verdict: str


@dataclass
class AgainstReport:
    """The result of ``eval --against``."""

    ref: str
    base_label: str
    provider: str
    diff: LibraryDiff
    statuses: dict[str, str]
    comparisons: list[MetricComparison]
    candidate: EvalReport
    not_comparable: dict[str, str] = field(default_factory=dict)
    alpha: float = 0.05
    min_effect: float = 0.02

    @property
    def regressions(self) -> list[MetricComparison]:
        return [c for c in self.comparisons if c.verdict == REGRESSED]

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.candidate.gate_failures)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for status in self.statuses.values():
            out[status] = out.get(status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "against": self.ref,
            "base": self.base_label,
            "provider": self.provider,
            "passed": not self.failed and not self.candidate.provider_failures,
            "rule": {"alpha": self.alpha, "min_effect": self.min_effect, "correction": "holm"},
            "prompts": self.statuses,
            "not_comparable": self.not_comparable,
            "comparisons": [
                {
                    "suite": c.suite,
                    "prompt": c.prompt,
                    "metric": c.metric,
                    "n": c.n,
                    "baseline": c.baseline,
                    "candidate": c.candidate,
                    "diff": c.diff,
                    "ci95": list(c.ci),
                    "p": c.p_value,
                    "p_holm": c.p_adjusted,
                    "test": c.test,
                    "mde": None if math.isinf(c.mde) else c.mde,
                    "verdict": c.verdict,
                }
                for c in self.comparisons
            ],
            "gate_failures": [
                {
                    "suite": o.suite,
                    "prompt": o.prompt,
                    "gates": {k: v[0] for k, v in o.gates.items() if not v[1]},
                }
                for o in self.candidate.gate_failures
            ],
        }

    def to_markdown(self) -> str:
        counts = self.counts()
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        icon = "❌" if self.failed else "✅"
        lines = [
            f"### {icon} promptlib eval --against {self.ref}",
            "",
            f"Baseline: {self.base_label}. Provider: `{self.provider}`. Prompts: {summary}.",
            "",
        ]
        if self.comparisons:
            lines += [
                "| prompt | suite | metric | n | baseline | candidate | Δ | 95% CI | p (Holm) "
                "| verdict |",
                "|---|---|---|---:|---:|---:|---:|---|---:|---|",
            ]
            for c in self.comparisons:
                mark = {"improved": "🟢", "regressed": "🔴"}.get(c.verdict, "⚪")
                lines.append(
                    f"| `{c.prompt}` | {c.suite} | {c.metric} | {c.n} | {c.baseline:.3f} | "
                    f"{c.candidate:.3f} | {c.diff:+.3f} | [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}] | "
                    f"{_p(c.p_adjusted)} | {mark} {c.verdict} |"
                )
            lines.append("")
        elif self.not_comparable:
            lines += ["No changed prompt could be compared.", ""]
        else:
            lines += ["No prompt changed behaviour.", ""]
        for prompt_id, reason in sorted(self.not_comparable.items()):
            lines.append(f"- `{prompt_id}`: not comparable ({reason})")
        for prompt_id, status in sorted(self.statuses.items()):
            if status in ("added", "removed"):
                lines.append(f"- `{prompt_id}`: {status}")
        for o in self.candidate.gate_failures:
            failed = ", ".join(
                f"{m} {o.results[m]['mean']:.3f} < {t:g}"
                for m, (t, ok) in o.gates.items()
                if not ok
            )
            lines.append(f"- ❌ gate failed: `{o.prompt}` ({o.suite}): {failed}")
        lines += [
            "",
            f"<sub>Paired comparison on shared examples: exact McNemar (0/1 metrics) or sign-flip "
            f"permutation test, percentile bootstrap CI, Holm correction over "
            f"{len(self.comparisons)} comparison(s), alpha {self.alpha:g}, minimum effect "
            f"{self.min_effect:g}.</sub>",
        ]
        return "\n".join(lines) + "\n"

    def to_junit(self) -> str:
        cases = []
        failures = 0
        for c in self.comparisons:
            body = ""
            if c.verdict == REGRESSED:
                failures += 1
                text = (
                    f"{c.metric} {c.baseline:.4f} -> {c.candidate:.4f} ({c.diff:+.4f}), "
                    f"p_holm={c.p_adjusted:.3g}"
                )
                body = f"<failure message={quoteattr(text)}/>"
            name = quoteattr(f"{c.suite}/{c.prompt}/{c.metric}")
            cases.append(f'  <testcase classname="promptlib.against" name={name}>{body}</testcase>')
        for o in self.candidate.gate_failures:
            failures += 1
            name = quoteattr(f"{o.suite}/{o.prompt}/gates")
            cases.append(
                f'  <testcase classname="promptlib.gates" name={name}>'
                '<failure message="gate failed"/></testcase>'
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name="promptlib eval --against {self.ref}" tests="{len(cases)}" '
            f'failures="{failures}">\n' + "\n".join(cases) + "\n</testsuite>\n"
        )


def _p(value: float) -> str:
    return f"{value:.3g}" if value >= 0.001 else "<0.001"


def _comparable(suite: Suite, prompt: Prompt) -> str | None:
    """Why ``suite`` cannot render ``prompt`` (its required inputs are not all mapped)."""
    mapped = set(suite.spec.inputs)
    missing = [n for n, spec in prompt.inputs.items() if spec.required and n not in mapped]
    if missing:
        return f"suite {suite.name} maps no value to required input(s) {', '.join(missing)}"
    return None


def compare_against(
    settings: Settings,
    ref: str | None,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    cache_mode: CacheMode = CacheMode.on,
    options: EvalOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> AgainstReport:
    """Evaluate the working tree against ``ref`` (default: the latest release)."""
    root = settings.require_root()
    options = resolve_options(settings, options)
    base: Snapshot = resolve_against(settings, ref)
    library = load(root)
    head = worktree_snapshot(root, library)
    diff = diff_snapshots(base, head)
    statuses = {
        p.id: {"metadata": "unchanged", "unchanged": "unchanged"}.get(p.status, p.status)
        for p in diff.prompts
    }
    chosen_suites = choose_suites(root, suites)
    candidates = select_prompts(library, prompts)
    wanted = {p.id for p in candidates}
    changed_ids = [pid for pid, status in statuses.items() if status == "changed" and pid in wanted]
    not_comparable: dict[str, str] = {}
    baseline_jobs: set[int] = set()

    def plan(group: list[Suite], instance: Provider) -> list[Job]:
        baseline_prompts = []
        for pid in changed_ids:
            old = base.prompt(pid)
            reasons = [r for s in group if s.selects(pid) and (r := _comparable(s, old))]
            if reasons:
                not_comparable[pid] = reasons[0]
            else:
                baseline_prompts.append(old)
        baseline = plan_jobs(group, baseline_prompts, instance, options.repeats)
        baseline_jobs.update(id(job) for job in baseline)
        return plan_jobs(group, candidates, instance, options.repeats) + baseline

    batch = run_by_provider(
        settings,
        chosen_suites,
        plan,
        provider=provider,
        cache_mode=cache_mode,
        options=options,
        on_progress=on_progress,
    )
    candidate_results = [r for r in batch.results if id(r.job) not in baseline_jobs]
    baseline_results = [r for r in batch.results if id(r.job) in baseline_jobs]
    compare = settings.compare
    baseline_by = {(r.job.suite.name, r.job.prompt.id): r for r in baseline_results}
    pending = []
    for result in candidate_results:
        pid = result.job.prompt.id
        if pid not in changed_ids:
            continue
        base_result = baseline_by.get((result.job.suite.name, pid))
        if base_result is None or base_result.record is None or result.record is None:
            continue
        for metric in result.job.suite.metrics:
            old_scores: Mapping[str, float] = base_result.record["scores"].get(metric.name, {})
            new_scores: Mapping[str, float] = result.record["scores"].get(metric.name, {})
            shared = sorted(set(old_scores) & set(new_scores))
            pending.append((result.job.suite.name, pid, metric, shared, old_scores, new_scores))
    # A permutation p-value is at least 1 / (R + 1); with m comparisons Holm multiplies the
    # smallest by m, so R must grow with m for a real regression to stay detectable.
    resamples = max(compare.resamples, math.ceil(2 * len(pending) / compare.alpha))
    raw = []
    for suite_name, pid, metric, shared, old_scores, new_scores in pending:
        stats = compare_paired(
            [old_scores[i] for i in shared],
            [new_scores[i] for i in shared],
            binary=metric.binary,
            resamples=resamples,
            seed=compare.seed,
            key=f"{suite_name}/{pid}/{metric.name}",
            alpha=compare.alpha,
            power=compare.power,
            min_effect=compare.min_effect,
        )
        raw.append((suite_name, pid, metric.name, stats))
    adjusted = holm([s.p_value for *_, s in raw])
    comparisons = [
        MetricComparison(
            suite=suite,
            prompt=pid,
            metric=metric,
            n=s.n,
            baseline=s.baseline_mean,
            candidate=s.candidate_mean,
            diff=s.mean_diff,
            ci=(s.ci_low, s.ci_high),
            p_value=s.p_value,
            p_adjusted=p_adj,
            test=s.test,
            mde=s.mde,
            verdict=verdict(
                s.mean_diff, p_adj, s.mde, alpha=compare.alpha, min_effect=compare.min_effect
            ),
        )
        for (suite, pid, metric, s), p_adj in zip(raw, adjusted, strict=True)
    ]
    outcomes: list[PromptOutcome] = [outcome_of(r) for r in candidate_results]
    candidate_report = EvalReport(
        provider=", ".join(batch.providers),
        outcomes=outcomes,
        ledger=batch.ledger,
        repaired=batch.repaired,
    )
    for pid in not_comparable:
        statuses[pid] = "not comparable"
    return AgainstReport(
        ref=ref or f"v{base.version}",
        base_label=base.label,
        provider=candidate_report.provider,
        diff=diff,
        statuses={pid: s for pid, s in statuses.items() if pid in wanted or s == "removed"},
        comparisons=comparisons,
        candidate=candidate_report,
        not_comparable=not_comparable,
        alpha=compare.alpha,
        min_effect=compare.min_effect,
    )
