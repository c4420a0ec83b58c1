"""``promptlib eval --against REF``: the candidate library against a release, paired.

Every prompt is *added*, *removed*, *unchanged* (same fingerprint) or *changed*. Only
changed prompts (both sides) and added ones (the candidate, so that their suite thresholds
are checked: nothing else would check them in a pull request) are evaluated. An unchanged
prompt has nothing to compare and is not evaluated at all, so its thresholds are
``promptlib eval``'s job (``gates_all`` evaluates and gates every selected prompt, as
``eval`` does). Scores come from the ledger when a run's key is there; otherwise they are
evaluated (the baseline from the release record's content) and appended. A changed prompt
whose suite can no longer render the baseline (its inputs changed incompatibly) is *not
comparable*. ``estimate_against`` (``--dry-run``) plans the same jobs and counts the calls
they would make, with no provider call.

For changed prompts, every metric of every suite that scores them is compared on every
example both sides attempted, with the paired statistics of ``promptlib.compare.stats``.
An example that failed on one side only (a provider error, a render error, an example
skipped past the error budget) counts as a score of 0 for that side: intention to treat,
so that a candidate cannot look better by failing on the hard examples. Each comparison
reports ``n`` (examples compared), ``n_shared`` (scored by both sides) and the failures of
each side. The Holm correction runs over all comparisons of the invocation.

Nothing is dropped silently. A changed prompt whose baseline or candidate job failed
beyond the error budget is reported as *not compared* with the reason, and the result is a
provider failure (exit 3), never a pass. Otherwise the command fails (exit 1) on a
``regressed`` verdict or a failed gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import LedgerError
from ..evals.cache import CacheMode
from ..evals.evidence import examples_of
from ..evals.metrics import Metric
from ..evals.run import (
    Batch,
    Estimate,
    EvalReport,
    PromptOutcome,
    SubsetSummary,
    bind_suite_judges,
    choose_suites,
    outcome_of,
    require_runnable,
    resolve_options,
    run_by_provider,
    select_prompts,
    subset_summary,
)
from ..evals.runner import EvalOptions, Job, JobResult, plan_jobs
from ..evals.subset import Subset
from ..evals.suite import Suite
from ..ledger import AnyLedger, RunScores, open_project
from ..library.collection import Library, load
from ..library.prompt import Prompt
from ..providers import Provider
from ..settings import CompareSettings, Settings
from ..versioning.diff import LibraryDiff, diff_snapshots
from ..versioning.history import resolve_against, worktree_snapshot
from ..versioning.snapshot import Snapshot
from .flips import Flips, flipped
from .pairwise import PairwiseResult, Side, judge_pairs, side_answers
from .stats import INCONCLUSIVE, REGRESSED, compare_paired, decide, holm

__all__ = [
    "AgainstEstimate",
    "AgainstReport",
    "MetricComparison",
    "compare_against",
    "estimate_against",
    "paired_scores",
    "record_against",
]

CHANGED = "changed"
# The statuses whose candidate is evaluated (without ``gates_all``).
EVALUATED = (CHANGED, "added")
NOT_COMPARABLE = "not comparable"
NOT_COMPARED = "not compared"


@dataclass
class MetricComparison:
    """One metric of one changed prompt in one suite, with its verdict.

    ``n`` examples were compared: those both sides attempted. ``n_shared`` of them were
    scored by both; ``failed_baseline`` and ``failed_candidate`` failed on that side and
    count as 0 there. ``primary`` comparisons (each suite's gated metric) form the Holm
    family and gate the command; the others are reported with their unadjusted p-value
    (``p_adjusted`` is None) and never fail it. ``ci`` is the 95% interval (NaN below 10
    examples or groups), ``tost`` the interval equivalence and non-inferiority are read
    from. ``power`` and ``n_needed`` (in ``unit``: examples or groups) say what it would
    take to see a change of ``min_effect``.
    """

    suite: str
    prompt: str
    metric: str
    n: int
    baseline: float
    candidate: float
    diff: float
    ci: tuple[float, float]
    p_value: float
    p_adjusted: float | None
    test: str
    verdict: str
    n_shared: int = 0
    failed_baseline: int = 0
    failed_candidate: int = 0
    primary: bool = True
    interval: str = ""
    tost: tuple[float, float] = (math.nan, math.nan)
    power: float | None = None
    n_needed: int | None = None
    unit: str = "examples"
    groups: int | None = None
    identical: bool | None = None
    baseline_run: str | None = None
    candidate_run: str | None = None

    @property
    def decided(self) -> bool:
        """Whether the comparison says something: a change, equivalence or non-inferiority."""
        return self.verdict != INCONCLUSIVE


@dataclass
class AgainstReport:
    """The result of ``eval --against``.

    ``statuses`` maps every prompt to added, removed, unchanged, changed, not comparable or
    not compared; ``not_compared`` says why for the last kind (a failed job);
    ``baseline_failures`` are the baseline jobs that failed beyond the error budget.
    ``candidate`` holds the prompts evaluated: the changed and added ones, or every
    selected prompt with ``gates_all``; ``not_evaluated`` lists the unchanged prompts left
    out (their thresholds were not checked). ``subset`` says how many rows a ``--limit``
    or ``--sample`` run compared.
    """

    ref: str
    base_label: str
    provider: str
    diff: LibraryDiff
    statuses: dict[str, str]
    comparisons: list[MetricComparison]
    candidate: EvalReport
    not_comparable: dict[str, str] = field(default_factory=dict)
    not_compared: dict[str, str] = field(default_factory=dict)
    baseline_failures: list[PromptOutcome] = field(default_factory=list)
    alpha: float = 0.05
    min_effect: float = 0.02
    mode: str = "lenient"
    pairs: list[_Pair] = field(default_factory=list, repr=False)
    gates_all: bool = False
    not_evaluated: list[str] = field(default_factory=list)
    subset: SubsetSummary | None = None
    # The suites' judge_pairwise entries on the compared pairs (``compare.pairwise``).
    pairwise: list[PairwiseResult] = field(default_factory=list)

    @property
    def gated_prompts(self) -> list[str]:
        """The prompts whose suite thresholds were checked: those evaluated."""
        return sorted({o.prompt for o in self.candidate.outcomes})

    @property
    def family(self) -> int:
        """The number of comparisons the Holm correction ran over (primary metrics)."""
        return sum(1 for c in self.comparisons if c.primary)

    @property
    def regressions(self) -> list[MetricComparison]:
        """Gated comparisons that regressed significantly."""
        return [c for c in self.comparisons if c.primary and c.verdict == REGRESSED]

    @property
    def undecided(self) -> list[MetricComparison]:
        """Gated comparisons that fail strict mode: neither better nor shown non-inferior."""
        if self.mode != "strict":
            return []
        return [c for c in self.comparisons if c.primary and c.verdict == INCONCLUSIVE]

    @property
    def provider_failures(self) -> list[PromptOutcome]:
        """Every job, candidate or baseline, that failed beyond its error budget."""
        return [*self.candidate.provider_failures, *self.baseline_failures]

    @property
    def failed(self) -> bool:
        """A gate failed: a regression, an undecided comparison in strict mode, or a
        failed threshold."""
        return bool(self.regressions or self.undecided or self.candidate.gate_failures)

    @property
    def passed(self) -> bool:
        return not self.failed and not self.provider_failures

    def flips(self, comparison: MetricComparison, *, limit: int | None = None) -> Flips | None:
        """The examples ``comparison`` moved (``promptlib.compare.flips``), read from the
        runs it compared; None when either run is not at hand (a failed job)."""
        pair = next(
            (
                p
                for p in self.pairs
                if p.suite.name == comparison.suite and p.prompt == comparison.prompt
            ),
            None,
        )
        if pair is None:
            return None
        sides = []
        for side in (pair.baseline, pair.candidate):
            if side.view is None or side.record is None:
                return None
            sides.append(examples_of(side.view, side.record, {pair.suite.name: pair.suite}))
        metric = next(m for m in pair.suite.metrics if m.name == comparison.metric)
        return flipped(sides[0], sides[1], metric.name, binary=metric.binary, limit=limit)

    @property
    def changed_count(self) -> int:
        """Prompts whose behaviour changed (compared or not)."""
        kinds = (CHANGED, NOT_COMPARABLE, NOT_COMPARED)
        return sum(1 for status in self.statuses.values() if status in kinds)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for status in self.statuses.values():
            out[status] = out.get(status, 0) + 1
        return out


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
    ledger: AnyLedger | None = None,
    gates_all: bool = False,
    pairwise: bool = True,
) -> AgainstReport:
    """Evaluate the working tree against ``ref`` (default: the latest release).

    ``ledger`` is where releases and runs are read from and new runs appended to
    (default: the project's ledger). Only changed and added prompts are evaluated, unless
    ``gates_all`` (see the module docstring). ``pairwise`` off skips the suites'
    ``judge_pairwise`` entries (``compare.pairwise``), which call their judge: a report
    made from the ledger alone, which calls no model, turns it off.
    """
    plan, batch = _run(
        settings,
        ref,
        _Options(suites, prompts, provider, cache_mode, options, ledger, gates_all),
        on_progress=on_progress,
    )
    base, diff = plan.base, plan.diff
    candidates = [r for r in batch.results if r.job.key not in plan.baseline_keys]
    baselines = {
        (r.job.suite.name, r.job.prompt.id): r
        for r in batch.results
        if r.job.key in plan.baseline_keys
    }
    pairs, not_compared = _pair(candidates, baselines, plan.changed)
    comparisons = _compare(pairs, settings.compare)
    judged = judge_pairs(
        [
            Side(
                pair.suite,
                pair.prompt,
                {str(row["id"]): row for row in pair.candidate.job.rows},
                side_answers(pair.baseline.view, pair.baseline.record),
                side_answers(pair.candidate.view, pair.candidate.record),
            )
            for pair in pairs
            if pair.suite.pairwise and pairwise
        ],
        cache_path=settings.cache_dir / "cache.sqlite" if settings.cache_dir else None,
        cache_mode=cache_mode,
        options=resolve_options(settings, options),
        alpha=settings.compare.alpha,
    )
    candidate_report = EvalReport(
        provider=", ".join(batch.providers),
        outcomes=[outcome_of(r, settings.flaky) for r in candidates],
        ledger=batch.ledger,
        repaired=batch.repaired,
        subset=subset_summary([r.job for r in candidates], plan.subset),
        warnings=batch.warnings,
    )
    statuses = dict(plan.statuses)
    for pid in plan.not_comparable:
        statuses[pid] = NOT_COMPARABLE
    for pid in not_compared:
        statuses[pid] = NOT_COMPARED
    return AgainstReport(
        ref=ref or f"v{base.version}",
        base_label=base.label,
        provider=candidate_report.provider,
        diff=diff,
        statuses=statuses,
        comparisons=comparisons,
        candidate=candidate_report,
        not_comparable=plan.not_comparable,
        not_compared=not_compared,
        baseline_failures=[outcome_of(r) for r in baselines.values() if r.status == "failed"],
        alpha=settings.compare.alpha,
        min_effect=settings.compare.min_effect,
        mode=settings.compare.mode,
        pairs=pairs,
        gates_all=gates_all,
        not_evaluated=plan.not_evaluated,
        subset=candidate_report.subset,
        pairwise=judged,
    )


def record_against(
    settings: Settings,
    ref: str | None,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    cache_mode: CacheMode = CacheMode.on,
    options: EvalOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    ledger: AnyLedger | None = None,
    gates_all: bool = False,
) -> EvalReport:
    """Run and record the jobs of ``compare_against`` (both sides) without comparing.

    With ``options.shard`` (``eval --against REF --shard K/N``) this is the shard's share
    of both sides' jobs; the comparison is made after ``promptlib ledger merge``, by
    ``eval --against REF`` reading every run from the merged ledger, with no model call.
    The report lists every job, baseline ones included.
    """
    _, batch = _run(
        settings,
        ref,
        _Options(suites, prompts, provider, cache_mode, options, ledger, gates_all),
        on_progress=on_progress,
    )
    return EvalReport(
        provider=", ".join(batch.providers),
        outcomes=[outcome_of(r) for r in batch.results],
        ledger=batch.ledger,
        repaired=batch.repaired,
    )


@dataclass
class AgainstEstimate:
    """What ``compare_against`` would do (``eval --against REF --dry-run``).

    ``estimate`` holds every job (``reused`` from the ledger or ``planned`` with its
    predicted calls); ``baseline_keys`` tells the baseline jobs from the candidate ones.
    """

    ref: str
    base_label: str
    statuses: dict[str, str]
    estimate: Estimate
    baseline_keys: set[str]
    gates_all: bool = False
    not_evaluated: list[str] = field(default_factory=list)
    not_comparable: dict[str, str] = field(default_factory=dict)

    def side(self, result: JobResult) -> str:
        return "baseline" if result.job.key in self.baseline_keys else "candidate"


def estimate_against(
    settings: Settings,
    ref: str | None,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    cache_mode: CacheMode = CacheMode.on,
    options: EvalOptions | None = None,
    ledger: AnyLedger | None = None,
    gates_all: bool = False,
) -> AgainstEstimate:
    """What ``compare_against`` with the same arguments would do, found with no provider
    call and nothing written: the same plan, ledger reuse and response-cache lookups."""
    plan, batch = _run(
        settings,
        ref,
        _Options(suites, prompts, provider, cache_mode, options, ledger, gates_all),
        dry_run=True,
    )
    candidates = [r.job for r in batch.results if r.job.key not in plan.baseline_keys]
    statuses = dict(plan.statuses)
    for pid in plan.not_comparable:
        statuses[pid] = NOT_COMPARABLE
    return AgainstEstimate(
        ref=ref or f"v{plan.base.version}",
        base_label=plan.base.label,
        statuses=statuses,
        estimate=Estimate(batch.groups, subset_summary(candidates, plan.subset), batch.ledger),
        baseline_keys=plan.baseline_keys,
        gates_all=gates_all,
        not_evaluated=plan.not_evaluated,
        not_comparable=plan.not_comparable,
    )


@dataclass(frozen=True)
class _Options:
    """The arguments ``compare_against`` and ``estimate_against`` share."""

    suites: Sequence[str]
    prompts: Sequence[str]
    provider: str | None
    cache_mode: CacheMode
    options: EvalOptions | None
    ledger: AnyLedger | None
    gates_all: bool


def _run(
    settings: Settings,
    ref: str | None,
    given: _Options,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
) -> tuple[_Plan, Batch]:
    """Plan both sides and run (or, with ``dry_run``, predict) their jobs."""
    root = settings.require_root()
    options = resolve_options(settings, given.options)
    ledger = given.ledger if given.ledger is not None else open_project(settings)
    view = ledger.read()
    view.refuse_corrupt()
    base = resolve_against(settings, ref, view)
    library = load(root)
    diff = diff_snapshots(base, worktree_snapshot(root, library))
    suites = choose_suites(root, given.suites)
    bind_suite_judges(settings, suites, library)
    plan = _Plan.make(
        base, library, diff, suites, given.prompts, options, gates_all=given.gates_all
    )
    require_runnable(plan.suites, plan.evaluated)
    batch = run_by_provider(
        settings,
        plan.suites,
        plan.jobs_for,
        provider=given.provider,
        cache_mode=given.cache_mode,
        options=options,
        on_progress=on_progress,
        ledger=ledger,
        needs_evidence=lambda job: job.prompt.id in plan.changed,
        dry_run=dry_run,
    )
    return plan, batch


@dataclass
class _Plan:
    """Which prompts run on which side: candidates for the changed and added prompts (all
    selected ones with ``gates_all``), baselines for the changed ones."""

    base: Snapshot
    diff: LibraryDiff
    suites: list[Suite]
    evaluated: list[Prompt]
    changed: list[str]
    statuses: dict[str, str]
    repeats: int
    subset: Subset | None = None
    not_evaluated: list[str] = field(default_factory=list)
    not_comparable: dict[str, str] = field(default_factory=dict)
    baseline_keys: set[str] = field(default_factory=set)

    @classmethod
    def make(
        cls,
        base: Snapshot,
        library: Library,
        diff: LibraryDiff,
        suites: list[Suite],
        patterns: Sequence[str],
        options: EvalOptions,
        *,
        gates_all: bool = False,
    ) -> _Plan:
        candidates = select_prompts(library, patterns)
        wanted = {p.id for p in candidates}
        statuses = {
            p.id: {"metadata": "unchanged"}.get(p.status, p.status)
            for p in diff.prompts
            if p.id in wanted or p.status == "removed"
        }
        changed = [pid for pid, status in statuses.items() if status == CHANGED]
        # An unchanged prompt has no comparison: evaluating it would only check its
        # thresholds, which is `promptlib eval`'s job (or --gates-all's).
        evaluated = [p for p in candidates if gates_all or statuses.get(p.id) in EVALUATED]
        skipped = sorted(wanted - {p.id for p in evaluated})
        return cls(
            base,
            diff,
            suites,
            evaluated,
            changed,
            statuses,
            options.repeats,
            options.subset,
            not_evaluated=skipped,
        )

    def jobs_for(self, group: list[Suite], instance: Provider) -> list[Job]:
        """The candidate jobs and the baseline jobs of one provider's suites."""
        baseline_prompts = []
        for pid in self.changed:
            old = self.base.prompt(pid)
            reasons = [r for s in group if s.selects(pid) and (r := _incomparable(s, old))]
            if reasons:
                self.not_comparable[pid] = reasons[0]
            else:
                baseline_prompts.append(old)
        baseline = plan_jobs(group, baseline_prompts, instance, self.repeats, self.subset)
        self.baseline_keys.update(job.key for job in baseline)
        candidates = plan_jobs(group, self.evaluated, instance, self.repeats, self.subset)
        return candidates + baseline


def _incomparable(suite: Suite, prompt: Prompt) -> str | None:
    """Why ``suite`` cannot render ``prompt`` (its required inputs are not all mapped)."""
    mapped = set(suite.spec.inputs)
    missing = [n for n, spec in prompt.inputs.items() if spec.required and n not in mapped]
    if missing:
        return f"suite {suite.name} maps no value to required input(s) {', '.join(missing)}"
    return None


@dataclass(frozen=True)
class _Pair:
    """A candidate run and its baseline run of one (suite, prompt)."""

    suite: Suite
    prompt: str
    baseline: JobResult
    candidate: JobResult


def _pair(
    candidates: list[JobResult],
    baselines: Mapping[tuple[str, str], JobResult],
    changed: list[str],
) -> tuple[list[_Pair], dict[str, str]]:
    """The run pairs to compare, and why a changed prompt could not be compared."""
    pairs: list[_Pair] = []
    not_compared: dict[str, str] = {}
    for result in candidates:
        pid = result.job.prompt.id
        suite = result.job.suite
        if pid not in changed:
            continue
        base = baselines.get((suite.name, pid))
        if base is None:  # not comparable: its baseline was never planned
            continue
        if base.status == "failed" or base.record is None:
            not_compared.setdefault(pid, f"baseline failed in {suite.name}: {base.failure}")
            continue
        if result.status == "failed" or result.record is None:
            not_compared.setdefault(pid, f"candidate failed in {suite.name}: {result.failure}")
            continue
        pairs.append(_Pair(suite, pid, base, result))
    return pairs, not_compared


@dataclass(frozen=True)
class PairedScores:
    """One metric's scores on the examples both sides attempted, failures as 0."""

    ids: list[str]
    baseline: list[float]
    candidate: list[float]
    n_shared: int
    failed_baseline: int
    failed_candidate: int


def paired_scores(baseline: RunScores, candidate: RunScores, metric: str) -> PairedScores:
    """Pair two runs' scores on ``metric`` (see the module docstring: intention to treat)."""
    base_scores, cand_scores = baseline.of(metric), candidate.of(metric)
    base_errors, cand_errors = set(baseline.errors), set(candidate.errors)
    attempted = (set(base_scores) | base_errors) & (set(cand_scores) | cand_errors)
    ids = sorted(attempted)
    return PairedScores(
        ids=ids,
        baseline=[0.0 if i in base_errors else float(base_scores.get(i, 0.0)) for i in ids],
        candidate=[0.0 if i in cand_errors else float(cand_scores.get(i, 0.0)) for i in ids],
        n_shared=sum(1 for i in ids if i not in base_errors and i not in cand_errors),
        failed_baseline=sum(1 for i in ids if i in base_errors),
        failed_candidate=sum(1 for i in ids if i in cand_errors),
    )


def _groups(pair: _Pair, ids: list[str]) -> list[str] | None:
    """Each example's group, when the suite names a group column."""
    column = pair.suite.spec.group
    if column is None:
        return None
    rows = {str(row["id"]): row for row in pair.candidate.job.rows}
    return [str(rows[i].get(column)) if i in rows else f"(row {i})" for i in ids]


def _compare(pairs: list[_Pair], rule: CompareSettings) -> list[MetricComparison]:
    """Every metric of every pair, tested; the primary ones Holm-adjusted together."""
    pending: list[tuple[_Pair, Metric, PairedScores]] = [
        (pair, metric, paired_scores(pair.baseline.scores, pair.candidate.scores, metric.name))
        for pair in pairs
        for metric in pair.suite.metrics
    ]
    family = max(1, sum(1 for pair, metric, _ in pending if metric.name == pair.suite.primary))
    # A permutation p-value is at least 1 / (R + 1); with m comparisons Holm multiplies the
    # smallest by m, so R must grow with m for a real regression to stay detectable.
    resamples = max(rule.resamples, math.ceil(2 * family / rule.alpha))
    tested = []
    for pair, metric, scores in pending:
        primary = metric.name == pair.suite.primary
        tested.append(
            compare_paired(
                scores.baseline,
                scores.candidate,
                binary=metric.binary,
                resamples=resamples,
                seed=rule.seed,
                key=f"{pair.suite.name}/{pair.prompt}/{metric.name}",
                alpha=rule.alpha,
                power=rule.power,
                min_effect=rule.min_effect,
                family=family if primary else 1,
                groups=_groups(pair, scores.ids),
            )
        )
    primaries = [
        i for i, (pair, metric, _) in enumerate(pending) if metric.name == pair.suite.primary
    ]
    adjusted: dict[int, float] = dict(
        zip(primaries, holm([tested[i].p_value for i in primaries]), strict=True)
    )
    out = []
    for index, ((pair, metric, scores), s) in enumerate(zip(pending, tested, strict=True)):
        p_adj = adjusted.get(index)
        out.append(
            MetricComparison(
                suite=pair.suite.name,
                prompt=pair.prompt,
                metric=metric.name,
                n=s.n,
                baseline=s.baseline_mean,
                candidate=s.candidate_mean,
                diff=s.mean_diff,
                ci=(s.ci_low, s.ci_high),
                p_value=s.p_value,
                p_adjusted=p_adj,
                test=s.test,
                verdict=decide(
                    s,
                    s.p_value if p_adj is None else p_adj,
                    alpha=rule.alpha,
                    min_effect=rule.min_effect,
                ),
                n_shared=scores.n_shared,
                failed_baseline=scores.failed_baseline,
                failed_candidate=scores.failed_candidate,
                primary=p_adj is not None,
                interval=s.interval,
                tost=(s.tost_low, s.tost_high),
                power=s.power,
                n_needed=s.n_needed,
                unit=s.unit,
                groups=s.groups,
                identical=_identical(pair, scores.ids),
                baseline_run=_key(pair.baseline),
                candidate_run=_key(pair.candidate),
            )
        )
    return out


def _key(result: JobResult) -> str | None:
    return result.record.key if result.record is not None else None


def _identical(pair: _Pair, ids: list[str]) -> bool | None:
    """Whether both sides answered exactly the same on every example compared; None when
    a side kept no outputs (``--no-outputs``, a run migrated from schema 1)."""
    sides = (pair.baseline, pair.candidate)
    if any(side.view is None or side.record is None for side in sides):
        return None
    try:
        old, new = (side.view.outputs(side.record) for side in sides)  # type: ignore[union-attr,arg-type]
    except LedgerError:
        return None
    if old is None or new is None or not ids:
        return None
    before = dict(zip(old.ids, old.outputs, strict=True))
    after = dict(zip(new.ids, new.outputs, strict=True))
    return all(i in before and before.get(i) == after.get(i) for i in ids)
