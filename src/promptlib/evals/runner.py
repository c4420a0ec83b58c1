"""Running evaluations: plan jobs, call the provider concurrently, score, record runs.

A *job* is one prompt evaluated by one suite. Its *run key* is ``sha256:`` over the suite
name, the prompt fingerprint, the dataset sha256, the provider fingerprint, the metric
configuration, the suite's row and input configuration and the number of repeats. A job
whose key is already in the ledger is reused (no provider call), unless ``fresh``.

Execution policy (ours, not an SDK's):

* a pool of ``concurrency`` workers shares all examples of all jobs; requests start no
  faster than the provider's ``rate_limit`` (requests per second);
* every attempt has the provider's ``timeout``; ``ProviderError``\\s marked retryable
  (408, 409, 429, 5xx, connection errors, timeouts) are retried up to ``max_attempts``
  with full-jitter exponential backoff (``base_delay * 2**n``, capped at ``max_delay``),
  waiting at least what ``Retry-After`` asked for, capped at ``max_retry_after``;
* a failed example is recorded with its reason, never a crash; a job whose failed share
  exceeds ``error_budget`` is not written to the ledger and makes the command exit 3; once
  a job is past its budget its remaining examples are skipped, and after
  ``max(20, 3 * concurrency)`` provider failures in a row (a wrong URL, a server that is
  down) every remaining example is;
* responses go through the response cache, so a re-run only makes missing calls;
* each finished job is appended to the ledger at once, so an interrupted eval keeps them.

Examples that failed are left out of the means; ``n`` counts the examples scored.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import _git
from .._canonical import sha256_of
from ..errors import ConfigError, DatasetError, ProviderError, RenderError
from ..library.prompt import Prompt
from ..providers.contract import Provider, Request, Response
from ..settings import RetryPolicy
from .cache import ResponseCache
from .dataset import Dataset
from .suite import Suite

__all__ = [
    "EvalOptions",
    "Job",
    "JobResult",
    "RetryPolicy",
    "plan_jobs",
    "run_jobs",
    "run_key",
]

SCORE_DIGITS = 6


@dataclass(frozen=True)
class EvalOptions:
    concurrency: int | None = None
    repeats: int = 1
    fresh: bool = False
    error_budget: float = 0.1
    # None: the project's [tool.promptlib.retry] policy (Settings.retry), filled in by
    # ``evaluate`` and ``compare_against``.
    retry: RetryPolicy | None = None
    seed: int | None = None


@dataclass
class Job:
    """One prompt evaluated by one suite on its rows."""

    suite: Suite
    prompt: Prompt
    dataset: Dataset
    rows: list[Mapping[str, Any]]
    key: str
    params: dict[str, Any]


@dataclass
class _Example:
    row_id: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None


@dataclass
class JobResult:
    """What happened to a job; ``record`` is the ledger run record (None if it failed)."""

    job: Job
    status: str  # "ran", "reused" or "failed"
    record: dict[str, Any] | None
    errors: int = 0
    calls: int = 0
    cached: int = 0
    seconds: float = 0.0
    failure: str | None = None


def run_key(
    suite: Suite, prompt: Prompt, dataset: Dataset, provider: Provider, repeats: int
) -> str:
    """The ledger identity of a job (see the module docstring)."""
    return sha256_of(
        {
            "suite": suite.name,
            "prompt": prompt.fingerprint,
            "dataset": dataset.sha256,
            "provider": provider.fingerprint,
            "metrics": suite.metric_config(),
            "eval": suite.eval_config(),
            "repeats": repeats,
        }
    )


def plan_jobs(
    suites: Sequence[Suite], prompts: Sequence[Prompt], provider: Provider, repeats: int = 1
) -> list[Job]:
    """A job for every (suite, prompt) pair the suite selects, in suite then prompt order."""
    jobs: list[Job] = []
    for suite in suites:
        chosen = [p for p in prompts if suite.selects(p.id)]
        if not chosen:
            continue
        dataset = suite.dataset()
        for prompt in chosen:
            rows = suite.rows_for(prompt.id, dataset)
            if not rows:
                # A run of no example would record n = 0 as if it had measured something.
                raise ConfigError(
                    f"{suite.shown or suite.name}: suite {suite.name} selects no row of "
                    f"{dataset.relative} for {prompt.id}{suite.selection_hint()}"
                )
            params = {**prompt.model.model_dump(exclude_none=True), **suite.spec.params}
            jobs.append(
                Job(
                    suite=suite,
                    prompt=prompt,
                    dataset=dataset,
                    rows=rows,
                    key=run_key(suite, prompt, dataset, provider, repeats),
                    params=params,
                )
            )
    return jobs


class _RateLimiter:
    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_start = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            if self.next_start > now:
                await asyncio.sleep(self.next_start - now)
            self.next_start = max(now, self.next_start) + self.interval


class _Runner:
    def __init__(
        self,
        jobs: list[Job],
        provider: Provider,
        cache: ResponseCache,
        options: EvalOptions,
        on_progress: Callable[[int], None],
        on_job_done: Callable[[Job, list[_Example], float], None],
    ) -> None:
        self.jobs = jobs
        self.provider = provider
        self.cache = cache
        self.options = options
        self.on_progress = on_progress
        self.on_job_done = on_job_done
        self.rng = random.Random(options.seed)
        self.limiter = _RateLimiter(provider.rate_limit)
        self.fingerprint = provider.fingerprint
        # A cache in mode "off" neither reads nor writes: skip hashing each request for it.
        self.caching = cache.mode.value != "off"
        # ``asyncio.timeout`` (Python 3.11+) bounds an attempt inside the worker's own task,
        # where ``wait_for`` runs each attempt in a new task: a few microseconds per request
        # that add up with fast providers (retrieval answers 37,000 examples in seconds).
        # Python 3.10 has only ``wait_for``.
        self.timeout_scope: Callable[[float], Any] | None = getattr(asyncio, "timeout", None)

    async def run(self) -> None:
        work: list[tuple[int, int]] = [
            (j, r) for j, job in enumerate(self.jobs) for r in range(len(job.rows))
        ]
        work.reverse()
        results: list[list[_Example | None]] = [[None] * len(job.rows) for job in self.jobs]
        remaining = [len(job.rows) for job in self.jobs]
        started = [time.monotonic()] * len(self.jobs)
        failed = [0] * len(self.jobs)
        doomed = [False] * len(self.jobs)
        budget = self.options.error_budget
        count = self.options.concurrency or self.provider.concurrency
        # Provider failures in a row, across jobs, after which the provider is taken to be
        # down (a wrong URL, a dead server): every remaining example is skipped.
        fuse = max(20, 3 * count)
        streak = 0
        for job in self.jobs:
            if not job.rows:
                self.on_job_done(job, [], 0.0)

        async def worker() -> None:
            nonlocal streak
            while work:
                j, r = work.pop()
                job = self.jobs[j]
                if doomed[j] or streak >= fuse:
                    reason = (
                        f"not run: {failed[j]} examples had already failed"
                        if doomed[j]
                        else f"not run: the provider failed {streak} times in a row"
                    )
                    outcome = _Example(str(job.rows[r]["id"]), error=reason)
                else:
                    outcome = await self.example(job, job.rows[r])
                    if outcome.error is None:
                        streak = 0
                    elif outcome.calls:
                        streak += 1
                results[j][r] = outcome
                if outcome.error is not None:
                    failed[j] += 1
                    # The job cannot stay within its error budget any more: skip the rest.
                    doomed[j] = failed[j] > budget * len(job.rows)
                remaining[j] -= 1
                self.on_progress(1)
                if remaining[j] == 0:
                    done = [e for e in results[j] if e is not None]
                    self.on_job_done(job, done, time.monotonic() - started[j])

        workers = [asyncio.create_task(worker()) for _ in range(max(1, count))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await self.provider.aclose()

    async def example(self, job: Job, row: Mapping[str, Any]) -> _Example:
        outcome = _Example(str(row["id"]))
        try:
            messages = tuple(job.prompt.render(**job.suite.inputs_for(row, job.prompt.inputs)))
        except (RenderError, DatasetError) as exc:
            outcome.error = f"render: {exc}"
            return outcome
        references = {
            m.name: job.suite.references_for(row, m.spec.reference) for m in job.suite.metrics
        }
        schema = job.prompt.output.json_schema
        for repeat in range(self.options.repeats):
            request = Request(
                messages, job.params, job.prompt.output, job.prompt.id, outcome.row_id, repeat
            )
            try:
                response = await self.respond(request, outcome)
            except ProviderError as exc:
                outcome.error = str(exc)
                return outcome
            for metric in job.suite.metrics:
                try:
                    value = metric.score(response.text, references[metric.name], row, schema)
                except Exception as exc:  # a custom metric's bug must not end the run
                    outcome.error = f"metric {metric.name}: {type(exc).__name__}: {exc}"
                    return outcome
                outcome.scores.setdefault(metric.name, []).append(value)
        return outcome

    async def respond(self, request: Request, outcome: _Example) -> Response:
        if not self.provider.cacheable:
            return await self.call(request, outcome)
        if not self.caching:
            response = await self.call(request, outcome)
        else:
            key, material = self.cache.key(request, self.fingerprint)
            cached = self.cache.get(key)
            if cached is not None:
                outcome.cached += 1
                return cached
            response = await self.call(request, outcome)
            self.cache.put(key, material, response)
        if response.usage is not None:
            outcome.prompt_tokens += response.usage.prompt_tokens
            outcome.completion_tokens += response.usage.completion_tokens
        if response.cost is not None:
            outcome.cost = (outcome.cost or 0.0) + response.cost
        return response

    async def call(self, request: Request, outcome: _Example) -> Response:
        policy = self.options.retry or RetryPolicy()
        timeout = self.provider.timeout
        for attempt in range(1, policy.max_attempts + 1):
            await self.limiter.wait()
            outcome.calls += 1
            try:
                return await self.attempt(request, timeout)
            except asyncio.TimeoutError:
                error = ProviderError(f"timed out after {timeout:g} s", retryable=True)
            except ProviderError as exc:
                error = exc
            if not error.retryable:
                raise ProviderError(f"{error} (not retried)", status=error.status)
            if attempt == policy.max_attempts:
                raise ProviderError(
                    f"{error} (gave up after {attempt} attempts)", status=error.status
                )
            await asyncio.sleep(policy.delay(attempt, error.retry_after, self.rng))
        raise AssertionError("unreachable")  # pragma: no cover

    async def attempt(self, request: Request, timeout: float) -> Response:
        """One provider call, cancelled with ``asyncio.TimeoutError`` after ``timeout``."""
        if self.timeout_scope is None:  # pragma: no cover - Python 3.10
            return await asyncio.wait_for(self.provider.complete(request), timeout)
        async with self.timeout_scope(timeout):
            return await self.provider.complete(request)


def _mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def _provenance(root: Path | None) -> dict[str, Any]:
    try:
        version = metadata.version("promptlib")
    except metadata.PackageNotFoundError:  # pragma: no cover
        version = "0+unknown"
    commit = _git.commit_of(root) if root else None
    return {
        "version": version,
        "git_commit": commit,
        "dirty": _git.is_dirty(root) if commit and root else None,
    }


def build_record(
    job: Job,
    examples: list[_Example],
    provider: Provider,
    repeats: int,
    seconds: float,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """The ledger run record of a finished job (see DESIGN.md, "run record")."""
    scores: dict[str, dict[str, float]] = {m.name: {} for m in job.suite.metrics}
    variance: dict[str, dict[str, float]] = {m.name: {} for m in job.suite.metrics}
    errors = {e.row_id: e.error for e in examples if e.error}
    for example in examples:
        if example.error:
            continue
        for name, values in example.scores.items():
            scores[name][example.row_id] = round(math.fsum(values) / len(values), SCORE_DIGITS)
            if repeats > 1:
                mean = math.fsum(values) / len(values)
                spread = math.fsum((v - mean) ** 2 for v in values) / len(values)
                variance[name][example.row_id] = round(spread, SCORE_DIGITS)
    results = {}
    for name, by_example in scores.items():
        mean, stderr = _mean_stderr(list(by_example.values()))
        results[name] = {
            "mean": round(mean, SCORE_DIGITS),
            "stderr": round(stderr, SCORE_DIGITS),
            "n": len(by_example),
        }
    implementation: dict[str, str] = {"promptlib": str(provenance.get("version"))}
    for metric in job.suite.metrics:
        implementation.update(metric.implementation())
    usage_known = any(e.prompt_tokens or e.completion_tokens for e in examples)
    costs = [e.cost for e in examples if e.cost is not None]
    record: dict[str, Any] = {
        "kind": "run",
        "key": job.key,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "suite": job.suite.name,
        "prompt": {
            "id": job.prompt.id,
            "version": str(job.prompt.version),
            "fingerprint": job.prompt.fingerprint,
        },
        "dataset": job.dataset.identity(),
        "examples": len(job.rows),
        "provider": {
            "name": provider.name,
            "type": provider.type,
            "model": provider.model,
            "params": job.params,
            "fingerprint": provider.fingerprint,
        },
        "metrics": {"config": job.suite.metric_config(), "implementation": implementation},
        "eval": job.suite.eval_config(),
        "repeats": repeats,
        "results": results,
        "scores": scores,
        "errors": {"count": len(errors), "examples": errors},
        "timing": {
            "seconds": round(seconds, 3),
            "calls": sum(e.calls for e in examples),
            "cached": sum(e.cached for e in examples),
        },
        "usage": {
            "prompt_tokens": sum(e.prompt_tokens for e in examples) if usage_known else None,
            "completion_tokens": sum(e.completion_tokens for e in examples)
            if usage_known
            else None,
            "cost": round(math.fsum(costs), 6) if costs else None,
        },
        "package": dict(provenance),
    }
    if repeats > 1:
        record["variance"] = variance
    return record


def run_jobs(
    jobs: list[Job],
    provider: Provider,
    cache: ResponseCache,
    *,
    options: EvalOptions,
    ledger_runs: Mapping[str, dict[str, Any]],
    append: Callable[[dict[str, Any]], None],
    root: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[JobResult]:
    """Evaluate ``jobs``, reusing ledger runs by key; append each new run as it finishes.

    ``on_progress(done, total)`` is called as examples finish (reused jobs count at once).
    """
    results: dict[int, JobResult] = {}
    to_run: list[Job] = []
    for job in jobs:
        existing = None if options.fresh else ledger_runs.get(job.key)
        if existing is not None:
            results[id(job)] = JobResult(job, "reused", existing)
        else:
            to_run.append(job)
    total = sum(len(job.rows) for job in jobs)
    done = sum(len(r.job.rows) for r in results.values())
    report = on_progress or (lambda _done, _total: None)
    report(done, total)
    provenance = _provenance(root)

    def progressed(count: int) -> None:
        nonlocal done
        done += count
        report(done, total)

    def finished(job: Job, examples: list[_Example], seconds: float) -> None:
        errors = sum(1 for e in examples if e.error)
        calls = sum(e.calls for e in examples)
        cached = sum(e.cached for e in examples)
        budget = options.error_budget * len(examples)
        if examples and errors > budget:
            reasons = [e.error for e in examples if e.error]
            first = next((r for r in reasons if not r.startswith("not run:")), reasons[0])
            results[id(job)] = JobResult(
                job,
                "failed",
                None,
                errors=errors,
                calls=calls,
                cached=cached,
                seconds=seconds,
                failure=f"{errors} of {len(examples)} examples failed (budget "
                f"{options.error_budget:.0%}); first: {first}",
            )
            return
        record = build_record(job, examples, provider, options.repeats, seconds, provenance)
        append(record)
        results[id(job)] = JobResult(
            job, "ran", record, errors=errors, calls=calls, cached=cached, seconds=seconds
        )

    if to_run:
        runner = _Runner(to_run, provider, cache, options, progressed, finished)
        asyncio.run(runner.run())
    return [results[id(job)] for job in jobs]
