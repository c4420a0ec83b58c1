"""``promptlib eval``: evaluate a project's prompts with its suites, and report.

This module wires the pieces together (settings, library, suites, provider, response
cache, ledger, harness) and turns job results into a report with gate outcomes. The
report renders as JSON, Markdown or JUnit XML here; the CLI draws the terminal table.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..ledger import AnyLedger, open_project
from ..library.collection import Library, load
from ..library.prompt import Prompt
from ..providers import Provider, create_provider
from ..settings import Settings
from .cache import CacheMode, ResponseCache
from .runner import EvalOptions, Job, JobResult, plan_jobs, run_jobs
from .suite import Suite, check_suites, load_suites, select_suites

__all__ = [
    "EvalReport",
    "PromptOutcome",
    "evaluate",
    "open_provider",
    "outcome_of",
    "select_prompts",
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

    @property
    def passed(self) -> bool:
        return self.status != "failed" and all(ok for _, ok in self.gates.values())


@dataclass
class EvalReport:
    provider: str
    outcomes: list[PromptOutcome]
    ledger: str | None = None
    repaired: list[str] = field(default_factory=list)

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


def outcome_of(result: JobResult) -> PromptOutcome:
    job = result.job
    results: dict[str, dict[str, float]] = {}
    if result.record is not None:
        results = {k: v.model_dump() for k, v in result.record.results.items()}
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


def require_runnable(suites: Sequence[Suite], prompts: Sequence[Prompt]) -> None:
    """Refuse, before any call, suites that cannot run these prompts (``check_suites``)."""
    problems = check_suites(suites, prompts)
    if problems:
        head = f"{len(problems)} problem(s) would make the evaluation fail; nothing was run"
        raise ConfigError("\n".join([head, *(f"  {p}" for p in problems)]), problems=problems)


@dataclass
class Batch:
    """What ``run_by_provider`` did: every job's result, the providers, ledger repairs."""

    results: list[JobResult]
    providers: list[str]
    repaired: list[str]
    ledger: str


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
) -> Batch:
    """Group the suites by provider, plan each group's jobs with ``plan``, and run them.

    Runs already in the ledger are reused; new ones are appended as they finish, through
    one response cache.
    """
    root = settings.require_root()
    by_provider: dict[str | None, list[Suite]] = {}
    for suite in suites:
        by_provider.setdefault(provider or suite.spec.provider, []).append(suite)
    batch = Batch([], [], [], _shown(ledger.where, root))
    cache_path = settings.cache_dir / "cache.sqlite" if settings.cache_dir else None
    cache = ResponseCache(cache_path, cache_mode)
    try:
        for name, group in by_provider.items():
            instance = open_provider(settings, name)
            batch.providers.append(instance.name)
            batch.results += run_jobs(
                plan(group, instance),
                instance,
                cache,
                options=options,
                ledger=ledger,
                root=root,
                on_progress=on_progress,
                needs_evidence=needs_evidence,
                notes=batch.repaired,
            )
    finally:
        cache.close()
    batch.repaired += [str(repair) for repair in ledger.repaired]
    if not ledger.record:
        batch.ledger = "not recorded (--no-record)"
    return batch


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
    root = settings.require_root()
    ledger = ledger if ledger is not None else open_project(settings)
    options = resolve_options(settings, options)
    library = library if library is not None else load(root)
    chosen_suites = choose_suites(root, suites)
    chosen_prompts = select_prompts(library, prompts)
    require_runnable(chosen_suites, chosen_prompts)
    batch = run_by_provider(
        settings,
        chosen_suites,
        lambda group, instance: plan_jobs(group, chosen_prompts, instance, options.repeats),
        provider=provider,
        cache_mode=cache_mode,
        options=options,
        on_progress=on_progress,
        ledger=ledger,
    )
    return EvalReport(
        provider=", ".join(batch.providers),
        outcomes=[outcome_of(r) for r in batch.results],
        ledger=batch.ledger,
        repaired=batch.repaired,
    )
