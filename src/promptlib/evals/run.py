"""``promptlib eval``: evaluate a project's prompts with its suites, and report.

This module wires the pieces together (settings, library, suites, provider, response
cache, ledger, harness) and turns job results into a report with gate outcomes. The
report renders as JSON, Markdown or JUnit XML here; the CLI draws the terminal table.

``estimate`` (``eval --dry-run``) goes through the same planning, ledger reuse and
response-cache lookups with no provider call and nothing written, and counts what the run
would do. A ``--limit`` / ``--sample`` subset (``evals.subset``) is never written to the
ledger, which holds full runs only: a release's score deltas, ``promptlib outputs`` and
later comparisons must never read a subset as the whole suite.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..ledger import AnyLedger, Ledger, open_project
from ..library.collection import Library, load
from ..library.prompt import Prompt
from ..providers import Provider, create_provider
from ..settings import FlakySettings, Settings
from .cache import CacheMode, ResponseCache
from .judges import bind_judges, bind_pairwise, calibration_warnings
from .runner import EvalOptions, Job, JobResult, plan_jobs, run_jobs
from .shards import assign, library_fingerprints, write_manifest
from .subset import Subset
from .suite import Suite, check_suites, load_suites, select_suites

__all__ = [
    "Estimate",
    "EvalReport",
    "PromptOutcome",
    "ProviderEstimate",
    "SubsetSummary",
    "estimate",
    "evaluate",
    "open_provider",
    "outcome_of",
    "select_prompts",
    "subset_summary",
]


@dataclass
class PromptOutcome:
    """One (suite, prompt) line of a report."""

    suite: str
    prompt: str
    version: str
    status: str
    results: dict[str, dict[str, float]]
    gates: dict[str, tuple[float, bool]] = field(default_factory=dict)
    errors: int = 0
    calls: int = 0
    cached: int = 0
    seconds: float = 0.0
    failure: str | None = None
    # With --repeats: the run's repeats, each metric's consistency (``MetricConsistency``
    # as plain data), the disagreement threshold that applied, whether the prompt is
    # flaky (some metric's disagreement above it) and whether that fails the gate.
    repeats: int = 1
    consistency: dict[str, dict[str, float]] = field(default_factory=dict)
    flaky_threshold: float | None = None
    flaky: bool = False
    flaky_gated: bool = False
    # A shard's part of a split job (rows [start, stop)): its results are that range's.
    part: tuple[int, int] | None = None

    @property
    def passed(self) -> bool:
        return (
            self.status != "failed"
            and all(ok for _, ok in self.gates.values())
            and not (self.flaky and self.flaky_gated)
        )

    @property
    def flaky_metrics(self) -> list[str]:
        """The metrics whose share of disagreeing examples is above the threshold."""
        if self.flaky_threshold is None:
            return []
        return [m for m, c in self.consistency.items() if c["disagreement"] > self.flaky_threshold]

    def flaky_text(self) -> str | None:
        """``flaky: exact_match disagrees on 40% of examples over 3 repeats (threshold
        10%)``, or None when the prompt is not flaky."""
        if not self.flaky or self.flaky_threshold is None:
            return None
        parts = ", ".join(
            f"{m} disagrees on {self.consistency[m]['disagreement']:.0%}"
            for m in self.flaky_metrics
        )
        return (
            f"flaky: {parts} of examples over {self.repeats} repeats "
            f"(threshold {self.flaky_threshold:.0%}"
            + ("; gated)" if self.flaky_gated else "; reported, not gated)")
        )


@dataclass(frozen=True)
class SubsetSummary:
    """How much of each suite a ``--limit`` / ``--sample`` run evaluated.

    ``suites`` maps a suite to (rows evaluated, rows it selects) over the prompts run.
    """

    subset: Subset
    suites: dict[str, tuple[int, int]]

    @property
    def kept(self) -> int:
        return sum(kept for kept, _ in self.suites.values())

    @property
    def total(self) -> int:
        return sum(total for _, total in self.suites.values())

    @property
    def partial(self) -> bool:
        """Whether rows were left out (a limit above every suite's size keeps them all)."""
        return self.kept < self.total

    def text(self) -> str:
        """``sampled 200 of 3,080 rows (seed 7)``, over every suite that ran."""
        return self.subset.describe(self.kept, self.total)


def subset_summary(jobs: Sequence[Job], subset: Subset | None) -> SubsetSummary | None:
    """What ``subset`` kept of the rows of ``jobs`` (None without a subset).

    Prompts of a suite without ``match`` share its rows; with ``match`` each prompt has
    the rows of its last id segment: each distinct row selection is counted once.
    """
    if subset is None:
        return None
    distinct: dict[tuple[str, str | None], Job] = {}
    for job in jobs:
        segment = job.prompt.id.rsplit(".", 1)[-1] if job.suite.spec.match is not None else None
        distinct.setdefault((job.suite.name, segment), job)
    suites: dict[str, tuple[int, int]] = {}
    for (name, _), job in distinct.items():
        kept, total = suites.get(name, (0, 0))
        suites[name] = (kept + len(job.rows), total + job.available)
    return SubsetSummary(subset, suites)


@dataclass
class EvalReport:
    provider: str
    outcomes: list[PromptOutcome]
    ledger: str | None = None
    repaired: list[str] = field(default_factory=list)
    subset: SubsetSummary | None = None
    # Judges without a calibration, or calibrated below min-kappa (``judges``).
    warnings: list[str] = field(default_factory=list)

    @property
    def gate_failures(self) -> list[PromptOutcome]:
        return [o for o in self.outcomes if o.status != "failed" and not o.passed]

    @property
    def provider_failures(self) -> list[PromptOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def open_provider(settings: Settings, name: str | None = None) -> Provider:
    """Create the named (or default) provider from the project's configuration."""
    providers = settings.config.get("providers", {})
    if not isinstance(providers, Mapping):
        raise ConfigError("[tool.promptlib.providers] must be a table of provider tables")
    return create_provider(name or settings.default_provider, providers, environ=os.environ)


def select_prompts(library: Library, patterns: Sequence[str]) -> list[Prompt]:
    if not patterns:
        return list(library.values())
    chosen = [
        p for p in library.values() if any(fnmatch.fnmatchcase(p.id, pat) for pat in patterns)
    ]
    if not chosen:
        raise ConfigError(
            f"no prompt matches {', '.join(patterns)}; `promptlib list` shows the ids"
        )
    return chosen


def outcome_of(result: JobResult, flaky: FlakySettings | None = None) -> PromptOutcome:
    """A job's line of a report: its means, gates and, with repeats, its consistency
    judged by ``flaky`` (the project's ``[flaky]`` settings; the suite's ``flaky:`` key
    overrides the threshold)."""
    job = result.job
    flaky = flaky or FlakySettings()
    results: dict[str, dict[str, float]] = {}
    consistency: dict[str, dict[str, float]] = {}
    repeats = 1
    if result.record is not None:
        results = {k: v.model_dump() for k, v in result.record.results.items()}
        repeats = result.record.repeats
        consistency = {
            k: v.model_dump(exclude_none=True) for k, v in (result.record.consistency or {}).items()
        }
    limit = job.suite.spec.flaky if job.suite.spec.flaky is not None else flaky.threshold
    unstable = any(c["disagreement"] > limit for c in consistency.values())
    gates = {
        metric: (threshold, results.get(metric, {}).get("mean", 0.0) >= threshold)
        for metric, threshold in job.suite.spec.gates.items()
    }
    errors = result.errors
    if result.status == "reused" and result.record is not None:
        errors = result.record.errors
    return PromptOutcome(
        suite=job.suite.name,
        prompt=job.prompt.id,
        version=str(job.prompt.version),
        status=result.status,
        results=results,
        gates=gates if result.status != "failed" else {},
        errors=errors,
        calls=result.calls,
        cached=result.cached,
        seconds=result.seconds,
        failure=result.failure,
        repeats=repeats,
        consistency=consistency,
        flaky_threshold=limit if consistency else None,
        flaky=unstable and result.status != "failed",
        flaky_gated=flaky.gate,
        part=job.part,
    )


def resolve_options(settings: Settings, options: EvalOptions | None) -> EvalOptions:
    """``options`` with the project's retry policy filled in, checked."""
    options = options or EvalOptions()
    if options.retry is None:
        options = replace(options, retry=settings.retry)
    if options.repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    return options


def choose_suites(root: Path, names: Sequence[str]) -> list[Suite]:
    """The suites called ``names`` (all when empty); at least one must exist."""
    chosen = select_suites(load_suites(root), names)
    if not chosen:
        raise ConfigError(f"{root / 'evals' / 'suites'}: no suites; add a suite YAML file there")
    return chosen


def bind_suite_judges(settings: Settings, suites: Sequence[Suite], library: Library) -> None:
    """Give every judge metric of ``suites`` its prompt from ``library`` and its provider
    (``evals.judges``); each judge provider is opened once."""
    opened: dict[str, Provider] = {}

    def opener(name: str) -> Provider:
        if name not in opened:
            opened[name] = open_provider(settings, name)
        return opened[name]

    for suite in suites:
        bind_judges(suite.metrics, library, opener, settings.default_provider, f"{suite.shown}: ")
        bind_pairwise(
            suite.pairwise, library, opener, settings.default_provider, f"{suite.shown}: "
        )


def require_runnable(suites: Sequence[Suite], prompts: Sequence[Prompt]) -> None:
    """Refuse, before any call, suites that cannot run these prompts (``check_suites``)."""
    problems = check_suites(suites, prompts)
    if problems:
        head = f"{len(problems)} problem(s) would make the evaluation fail; nothing was run"
        raise ConfigError("\n".join([head, *(f"  {p}" for p in problems)]), problems=problems)


@dataclass
class Batch:
    """What ``run_by_provider`` did: every job's result, the providers, ledger repairs.

    ``groups`` holds each provider's results (``results`` is all of them, in order).
    """

    results: list[JobResult]
    providers: list[str]
    repaired: list[str]
    ledger: str
    groups: list[tuple[str, list[JobResult]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def run_by_provider(
    settings: Settings,
    suites: Sequence[Suite],
    plan: Callable[[list[Suite], Provider], list[Job]],
    *,
    provider: str | None,
    cache_mode: CacheMode,
    options: EvalOptions,
    on_progress: Callable[[int, int], None] | None,
    ledger: AnyLedger,
    needs_evidence: Callable[[Job], bool] | None = None,
    dry_run: bool = False,
) -> Batch:
    """Group the suites by provider, plan each group's jobs with ``plan``, and run them.

    Runs already in the ledger are reused; new ones are appended as they finish, through
    one response cache; a subset run (``options.subset``) appends nothing. ``dry_run``
    plans and looks up the same way and predicts the jobs that would run (``planned``
    results), with the cache read-only and no provider call.
    """
    root = settings.require_root()
    if options.shard is not None:
        require_shard_ledger(settings, ledger, options)
    ledger.read().refuse_corrupt()  # never re-run, silently, what an unreadable line held
    if options.subset is not None and isinstance(ledger, Ledger) and ledger.record:
        ledger = replace(ledger, record=False)
    by_provider: dict[str | None, list[Suite]] = {}
    for suite in suites:
        by_provider.setdefault(provider or suite.spec.provider, []).append(suite)
    batch = Batch([], [], [], _shown(ledger.where, root))
    planned: list[tuple[Provider, list[Job]]] = []
    for name, group in by_provider.items():
        instance = open_provider(settings, name)
        planned.append((instance, plan(group, instance)))
    shard = options.shard
    if shard is not None:
        if not dry_run:
            assert isinstance(ledger, Ledger)  # require_shard_ledger
            write_manifest(
                ledger.folder,
                shard,
                [job for _, jobs in planned for job in jobs],
                library_fingerprints(load(root)),
            )
        planned = [(instance, assign(jobs, shard)) for instance, jobs in planned]
    cache_path = settings.cache_dir / "cache.sqlite" if settings.cache_dir else None
    if dry_run:
        cache_path, cache_mode = _dry_run_cache(cache_path, cache_mode)
    cache = ResponseCache(cache_path, cache_mode)
    try:
        for instance, jobs in planned:
            batch.providers.append(instance.name)
            results = run_jobs(
                jobs,
                instance,
                cache,
                options=options,
                ledger=ledger,
                root=root,
                on_progress=on_progress,
                needs_evidence=needs_evidence,
                notes=batch.repaired,
                dry_run=dry_run,
            )
            batch.results += results
            batch.groups.append((instance.name, results))
    finally:
        cache.close()
    batch.repaired += [str(repair) for repair in ledger.repaired]
    used = {id(r.job.suite): r.job.suite for r in batch.results}
    batch.warnings = calibration_warnings(ledger.read(), list(used.values()), settings.min_kappa)
    if options.subset is not None:
        batch.ledger = f"not recorded ({options.subset.option}: a subset is never recorded)"
    elif not ledger.record:
        batch.ledger = "not recorded (--no-record)"
    return batch


def require_shard_ledger(settings: Settings, ledger: AnyLedger, options: EvalOptions) -> None:
    """Refuse a sharded run that would write anywhere but a shard ledger of its own."""
    shard = options.shard
    if options.subset is not None:
        raise ConfigError(
            f"--shard {shard} takes no {options.subset.option}: a subset is never recorded, "
            "and a shard only records"
        )
    if not isinstance(ledger, Ledger) or not ledger.record:
        raise ConfigError(
            f"--shard {shard} records into a shard ledger: give it --ledger DIR (a folder of "
            "its own), without --no-record"
        )
    committed = settings.ledger_dir
    if committed is not None and ledger.folder.resolve() == committed.resolve():
        raise ConfigError(
            f"--shard {shard} never writes the project's ledger ({committed}); give it "
            "--ledger DIR, then join the shards with `promptlib ledger merge`"
        )


def _dry_run_cache(path: Path | None, mode: CacheMode) -> tuple[Path | None, CacheMode]:
    """The response cache a dry run reads: what ``mode`` reads, never written or created."""
    if mode in (CacheMode.off, CacheMode.refresh) or path is None or not path.is_file():
        # Neither mode reads, and a missing file holds nothing: every request is a call.
        return None, CacheMode.off
    return path, CacheMode.read_only


def _shown(where: str, root: Path) -> str:
    try:
        return Path(where).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return where


def evaluate(
    settings: Settings,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    cache_mode: CacheMode = CacheMode.on,
    options: EvalOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    library: Library | None = None,
    ledger: AnyLedger | None = None,
) -> EvalReport:
    """Evaluate the project's prompts (all, or those matching ``prompts``) with its suites.

    ``ledger`` is where runs are reused from and appended to (default: the project's).
    """
    batch, subset = _batch(
        settings, suites, prompts, provider, cache_mode, options, on_progress, library, ledger
    )
    return EvalReport(
        provider=", ".join(batch.providers),
        outcomes=[outcome_of(r, settings.flaky) for r in batch.results],
        ledger=batch.ledger,
        repaired=batch.repaired,
        subset=subset,
        warnings=batch.warnings,
    )


@dataclass(frozen=True)
class ProviderEstimate:
    """What a run would do with one provider.

    Of ``jobs``, ``reused`` come from the ledger and ``planned`` would be evaluated, on
    ``examples`` rows; their requests are answered by the response cache (``cached``) or
    sent to the provider (``calls``: a floor when the provider fails, see
    ``runner._Runner.predict``).
    """

    provider: str
    jobs: int
    reused: int
    planned: int
    examples: int
    cached: int
    calls: int
    # The judges of the jobs' judge metrics (``runner._Runner.predict``).
    judge_cached: int = 0
    judge_calls: int = 0


@dataclass
class Estimate:
    """What ``evaluate`` would do (``eval --dry-run``), found with no provider call.

    ``groups`` holds each provider's job results: ``reused`` (from the ledger) or
    ``planned`` (with the predicted ``calls`` and ``cached``).
    """

    groups: list[tuple[str, list[JobResult]]]
    subset: SubsetSummary | None = None
    ledger: str | None = None

    @property
    def providers(self) -> list[ProviderEstimate]:
        merged: dict[str, list[JobResult]] = {}
        for name, results in self.groups:
            merged.setdefault(name, []).extend(results)
        out = []
        for name, results in merged.items():
            planned = [r for r in results if r.status == "planned"]
            out.append(
                ProviderEstimate(
                    provider=name,
                    jobs=len(results),
                    reused=sum(1 for r in results if r.status == "reused"),
                    planned=len(planned),
                    examples=sum(len(r.job.rows) for r in planned),
                    cached=sum(r.cached for r in planned),
                    calls=sum(r.calls for r in planned),
                    judge_cached=sum(r.judge_cached for r in planned),
                    judge_calls=sum(r.judge_calls for r in planned),
                )
            )
        return out

    @property
    def calls(self) -> int:
        """Provider calls over every provider."""
        return sum(p.calls for p in self.providers)

    @property
    def judge_calls(self) -> int:
        """Judge provider calls over every job's judge metrics."""
        return sum(p.judge_calls for p in self.providers)

    @property
    def judged(self) -> bool:
        """Whether a job that would run has a judge metric."""
        return any(p.judge_calls or p.judge_cached for p in self.providers)


def estimate(
    settings: Settings,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    cache_mode: CacheMode = CacheMode.on,
    options: EvalOptions | None = None,
    library: Library | None = None,
    ledger: AnyLedger | None = None,
) -> Estimate:
    """What ``evaluate`` with the same arguments would do, with no provider call and
    nothing written: the same jobs, ledger reuse and response-cache lookups."""
    batch, subset = _batch(
        settings, suites, prompts, provider, cache_mode, options, None, library, ledger, True
    )
    return Estimate(batch.groups, subset, batch.ledger)


def _batch(
    settings: Settings,
    suites: Sequence[str],
    prompts: Sequence[str],
    provider: str | None,
    cache_mode: CacheMode,
    options: EvalOptions | None,
    on_progress: Callable[[int, int], None] | None,
    library: Library | None,
    ledger: AnyLedger | None,
    dry_run: bool = False,
) -> tuple[Batch, SubsetSummary | None]:
    """The jobs of ``evaluate``, run (or, with ``dry_run``, predicted)."""
    root = settings.require_root()
    ledger = ledger if ledger is not None else open_project(settings)
    options = resolve_options(settings, options)
    library = library if library is not None else load(root)
    chosen_suites = choose_suites(root, suites)
    bind_suite_judges(settings, chosen_suites, library)
    chosen_prompts = select_prompts(library, prompts)
    require_runnable(chosen_suites, chosen_prompts)
    repeats, subset = options.repeats, options.subset
    batch = run_by_provider(
        settings,
        chosen_suites,
        lambda group, instance: plan_jobs(group, chosen_prompts, instance, repeats, subset),
        provider=provider,
        cache_mode=cache_mode,
        options=options,
        on_progress=on_progress,
        ledger=ledger,
        dry_run=dry_run,
    )
    return batch, subset_summary([r.job for r in batch.results], subset)
