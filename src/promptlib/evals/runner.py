"""Running evaluations: plan jobs, call the provider concurrently, score, record runs.

A *job* is one prompt evaluated by one suite. Its *run key* is ``sha256:`` over the key
format (``RUN_KEY_FORMAT``), the suite name, the prompt fingerprint, the dataset sha256,
the provider fingerprint, each metric's configuration and algorithm id, the suite's row and
input configuration (with the ``--limit`` / ``--sample`` subset when it drops rows) and
the number of repeats: promptlib's identities, never an installed package's version. A job
whose key is already in the ledger is reused (no provider call), unless ``fresh``. A dry
run (``run_jobs(dry_run=True)``) makes the same decisions and predicts the calls instead.

Execution policy (ours, not an SDK's):

* a pool of ``concurrency`` workers shares all examples of all jobs; requests start no
  faster than the provider's ``rate_limit`` (requests per second);
* every attempt has the provider's ``timeout``; ``ProviderError``\\s marked retryable
  (408, 409, 429, 5xx, connection errors, timeouts) are retried up to ``max_attempts``
  with full-jitter exponential backoff (``base_delay * 2**n``, capped at ``max_delay``),
  waiting at least what ``Retry-After`` asked for, capped at ``max_retry_after``;
* a failed example is recorded with its reason, never a crash; a job whose failed share
  exceeds ``error_budget``, or in which every example failed (nothing was measured, even
  with a budget of 1), is not written to the ledger and makes the command exit 3; once
  a job is past its budget its remaining examples are skipped, and after
  ``max(20, 3 * concurrency)`` provider failures in a row (a wrong URL, a server that is
  down) every remaining example is;
* responses go through the response cache, so a re-run only makes missing calls; cached
  answers the cache does not trust (``evals.cache``) are asked again, and ``notes`` says so;
  a request another process is already asking for (a claim in the cache) is waited for,
  not asked again;
* a reused run that recorded failed examples is completed (``retry_errors``, on by
  default): only those examples are evaluated again, and when at least one now succeeds a
  complete record of the same key is appended, which readers take over the first (the
  latest record of a key wins; its time is kept after the first's). The examples that had
  succeeded keep their recorded scores, answers and usage: they are not asked again.
  Its ``timing`` and ``usage.cost`` add the retry's to the recorded run's (a retried
  example's answers that had arrived before it failed, with ``--repeats``, are then
  counted twice in the cost; so are its tokens when the recorded run kept no outputs);
* each finished job is appended to the ledger at once, so an interrupted eval keeps them:
  its index line, a scores object (per-example scores and errors, in row order), an
  outputs object (the model's answers; unless ``keep_outputs`` is off) and the example-id
  object both point at.

Examples that failed are left out of the means; ``n`` counts the examples scored. Usage
and cost sum what the provider reported for every answer the run used, cached or not.
"""

from __future__ import annotations

import asyncio
import math
import platform
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _git
from .._canonical import sha256_of
from ..errors import ConfigError, DatasetError, LedgerError, ProviderError, RenderError
from ..ledger import Ledger, LedgerView, LegacyLedger, RunScores
from ..ledger.objects import encode
from ..ledger.records import (
    DatasetRef,
    ExampleIds,
    JudgeUsage,
    MetricIdentity,
    OutputsObject,
    PromptRef,
    Provenance,
    ProviderRef,
    RunRecord,
    ScoresObject,
    Timing,
)
from ..library.prompt import Prompt
from ..providers.contract import Provider, Request, Response
from ..settings import RetryPolicy
from ._aggregate import SCORE_DIGITS, Tally, aggregate, run_consistency
from .cache import LEASE, ResponseCache
from .dataset import Dataset
from .judges import JudgeMetric, MalformedVerdict, Verdict, judge_metrics, parse_verdict
from .subset import Subset
from .suite import Suite

if TYPE_CHECKING:
    from .shards import Shard

__all__ = [
    "EvalOptions",
    "Job",
    "JobResult",
    "RetryPolicy",
    "plan_jobs",
    "run_jobs",
    "run_key",
]


# Seconds between looks at the cache while another process asks for an answer (jittered).
_CLAIM_POLL = 0.05


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
    # Keep the model's answers in the ledger (an outputs object per run); --no-outputs.
    keep_outputs: bool = True
    # Evaluate a deterministic subset of each job's rows (--limit, --sample); part of the
    # run key when it drops rows.
    subset: Subset | None = None
    # Evaluate again the failed examples of a reused run and record the completed run;
    # --no-retry-errors keeps the recorded run as it is.
    retry_errors: bool = True
    # Evaluate only this shard's share of the planned jobs, into a shard ledger
    # (``evals.shards``; --shard K/N).
    shard: Shard | None = None


@dataclass
class Job:
    """One prompt evaluated by one suite on its rows."""

    suite: Suite
    prompt: Prompt
    dataset: Dataset
    rows: list[Mapping[str, Any]]
    key: str
    params: dict[str, Any]
    # The rows the suite selects for the prompt before a subset (``EvalOptions.subset``)
    # kept ``rows`` of them; equal to ``len(rows)`` for a full run.
    available: int = 0
    # A part of a job split across shards (``evals.shards``): the range [start, stop) of
    # the planned job's rows that ``rows`` holds. Its result is written as a part, which
    # ``promptlib ledger merge`` joins with the other parts into the job's run record.
    part: tuple[int, int] | None = None


@dataclass
class _Example:
    row_id: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_known: bool = False
    cost: float | None = None
    # An example kept from a recorded run (a retry completes the run): its recorded score
    # and variance per metric, used as they are instead of ``scores``.
    recorded: dict[str, tuple[float | None, float | None]] | None = None
    # Its recorded score per repeat and metric, when the recorded run kept them.
    recorded_repeats: dict[str, list[float]] | None = None
    # Judge metrics: each verdict (score and reason) per repeat, and the judges' calls and
    # usage, counted apart from the model under test's.
    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    judge: _Example | None = None


@dataclass(frozen=True)
class _Carried:
    """What the record of a retried run keeps from the recorded run it completes.

    ``prompt_tokens`` and ``completion_tokens`` are the recorded totals when its examples'
    own token counts are not known (it kept no outputs), else None. ``after`` is the
    recorded run's time: the new record's time is later, so readers take it.
    """

    calls: int
    cached: int
    seconds: float
    cost: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    after: str
    judge: JudgeUsage | None = None


@dataclass
class _Retry:
    """A reused run with failed examples, being completed.

    ``job`` holds only the failed rows (it is what runs); ``full`` is the planned job.
    ``kept`` are the examples that had succeeded, as recorded.
    """

    job: Job
    full: Job
    record: RunRecord
    kept: list[_Example]
    keep_outputs: bool
    carried: _Carried


@dataclass
class JobResult:
    """What happened to a job.

    ``record`` is its run record (None if the job failed) and ``scores`` its per-example
    scores: in memory for a job that ran, loaded from the ledger on first use for one
    that was reused.
    """

    job: Job
    status: str  # "ran", "reused", "failed", or "planned" (a dry run's prediction)
    record: RunRecord | None
    errors: int = 0
    calls: int = 0
    cached: int = 0
    seconds: float = 0.0
    failure: str | None = None
    view: LedgerView | None = None
    # A dry run's prediction for the job's judge metrics (``_Runner.predict``).
    judge_calls: int = 0
    judge_cached: int = 0

    @property
    def scores(self) -> RunScores:
        assert self.record is not None
        assert self.view is not None
        return self.view.scores(self.record)


#: The version of the run key's format; part of every key.
RUN_KEY_FORMAT = "promptlib-run-key/2"


def run_key(
    suite: Suite,
    prompt: Prompt,
    dataset: Dataset,
    provider: Provider,
    repeats: int,
    subset: Subset | None = None,
) -> str:
    """The ledger identity of a job (see the module docstring).

    It names promptlib's own algorithms (metric ``algorithm`` ids, the provider's
    fingerprint, which names its algorithm or model) and a key format version, never an
    installed package's version: an upgrade of a dependency keeps every recorded run.
    ``subset`` is given only when it dropped rows: it joins the suite's row configuration,
    so a subset run and a full run never share a key, and a full run's key is unchanged.
    """
    config = suite.eval_config()
    if subset is not None:
        config = {**config, "subset": subset.identity()}
    return sha256_of(
        {
            "format": RUN_KEY_FORMAT,
            "suite": suite.name,
            "prompt": prompt.fingerprint,
            "dataset": dataset.sha256,
            "provider": provider.fingerprint,
            "metrics": suite.metric_identity(),
            "eval": config,
            "repeats": repeats,
        }
    )


def run_key_v1(
    suite: Suite, prompt: Prompt, dataset: Dataset, provider: Provider, repeats: int
) -> str:
    """The run key schema-1 ledgers recorded (promptlib 1.0 to 2.1), for migration.

    It held installed versions (rouge-score, jsonschema, bm25s through the retrieval
    provider's fingerprint), which is why it was replaced.
    """
    return sha256_of(
        {
            "suite": suite.name,
            "prompt": prompt.fingerprint,
            "dataset": dataset.sha256,
            "provider": provider.legacy_fingerprint,
            "metrics": suite.legacy_metric_config(),
            "eval": suite.eval_config(),
            "repeats": repeats,
        }
    )


def plan_jobs(
    suites: Sequence[Suite],
    prompts: Sequence[Prompt],
    provider: Provider,
    repeats: int = 1,
    subset: Subset | None = None,
) -> list[Job]:
    """A job for every (suite, prompt) pair the suite selects, in suite then prompt order.

    With ``subset``, each job keeps only the subset of its rows (``Subset.apply``).
    """
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
            kept = subset.apply(rows) if subset is not None else rows
            dropped = subset if len(kept) < len(rows) else None
            jobs.append(
                Job(
                    suite=suite,
                    prompt=prompt,
                    dataset=dataset,
                    rows=kept,
                    key=run_key(suite, prompt, dataset, provider, repeats, dropped),
                    params=params,
                    available=len(rows),
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
        *,
        retrying: frozenset[int] = frozenset(),
    ) -> None:
        self.jobs = jobs
        # The ids of jobs that retry the failed examples of a recorded run: each of them
        # is tried once (the error budget was spent on them already), so none is skipped
        # for the budget; the failures-in-a-row fuse still stops a dead provider.
        self.retrying = retrying
        self.provider = provider
        self.cache = cache
        self.options = options
        self.on_progress = on_progress
        self.on_job_done = on_job_done
        self.rng = random.Random(options.seed)
        self.limiter = _RateLimiter(provider.rate_limit)
        self.fingerprint = provider.fingerprint
        self.legacy_fingerprint = provider.legacy_fingerprint
        # A cache in mode "off" neither reads nor writes: skip hashing each request for it.
        self.caching = cache.mode.value != "off"
        # ``asyncio.timeout`` (Python 3.11+) bounds an attempt inside the worker's own task,
        # where ``wait_for`` runs each attempt in a new task: a few microseconds per request
        # that add up with fast providers (retrieval answers 37,000 examples in seconds).
        # Python 3.10 has only ``wait_for``.
        self.timeout_scope: Callable[[float], Any] | None = getattr(asyncio, "timeout", None)
        # The runners of judge providers, by fingerprint (``judge_runner``).
        self.judges: dict[str, _Runner] = {}

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
                    doomed[j] = id(job) not in self.retrying and failed[j] > budget * len(job.rows)
                remaining[j] -= 1
                self.on_progress(1)
                if remaining[j] == 0:
                    done = [e for e in results[j] if e is not None]
                    self.on_job_done(job, done, time.monotonic() - started[j])

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(LEASE / 3)
                self.cache.renew()

        workers = [asyncio.create_task(worker()) for _ in range(max(1, count))]
        beating = asyncio.create_task(heartbeat())
        try:
            await asyncio.gather(*workers)
        finally:
            beating.cancel()
            for task in workers:
                task.cancel()
            await self.provider.aclose()
            for judge in self.judges.values():
                await judge.provider.aclose()
            self.cache.flush()  # the answers of the loop's last turn

    def requests(self, job: Job, row: Mapping[str, Any]) -> list[Request]:
        """The requests one example sends, one per repeat.

        ``RenderError`` or ``DatasetError`` when the row does not render.
        """
        messages = tuple(job.prompt.render(**job.suite.inputs_for(row, job.prompt.inputs)))
        row_id = str(row["id"])
        return [
            Request(messages, job.params, job.prompt.output, job.prompt.id, row_id, repeat)
            for repeat in range(self.options.repeats)
        ]

    async def example(self, job: Job, row: Mapping[str, Any]) -> _Example:
        outcome = _Example(str(row["id"]))
        try:
            requests = self.requests(job, row)
        except (RenderError, DatasetError) as exc:
            outcome.error = f"render: {exc}"
            return outcome
        references = {
            m.name: job.suite.references_for(row, m.spec.reference) for m in job.suite.metrics
        }
        schema = job.prompt.output.json_schema
        for request in requests:
            try:
                response = await self.respond(request, outcome)
            except ProviderError as exc:
                outcome.error = str(exc)
                return outcome
            for metric in job.suite.metrics:
                if isinstance(metric, JudgeMetric):
                    try:
                        verdict = await self.judge(
                            metric, job, row, response.text, references[metric.name], outcome
                        )
                    except (ProviderError, MalformedVerdict, RenderError, DatasetError) as exc:
                        outcome.error = f"judge {metric.name}: {exc}"
                        return outcome
                    outcome.verdicts.setdefault(metric.name, []).append(verdict.to_json())
                    outcome.scores.setdefault(metric.name, []).append(verdict.score)
                    continue
                try:
                    value = metric.score(response.text, references[metric.name], row, schema)
                except Exception as exc:  # a custom metric's bug must not end the run
                    outcome.error = f"metric {metric.name}: {type(exc).__name__}: {exc}"
                    return outcome
                outcome.scores.setdefault(metric.name, []).append(value)
        return outcome

    def judge_runner(self, provider: Provider) -> _Runner:
        """The runner that asks ``provider`` for verdicts: same cache and retry policy,
        its own rate limit; one per judge provider."""
        runner = self.judges.get(provider.fingerprint)
        if runner is None:
            runner = _Runner(
                [], provider, self.cache, self.options, self.on_progress, self.on_job_done
            )
            self.judges[provider.fingerprint] = runner
        return runner

    def judge_request(
        self,
        metric: JudgeMetric,
        job: Job,
        row: Mapping[str, Any],
        output: str,
        references: Sequence[str],
        attempt: int,
    ) -> Request:
        """The judge's request for one answer; ``attempt`` 1 asks again after a malformed
        verdict (its own cache key)."""
        prompt = metric.judge_prompt
        messages = tuple(metric.render(output, references, row, job.suite.spec.inputs))
        params = prompt.model.model_dump(exclude_none=True)
        return Request(messages, params, prompt.output, prompt.id, str(row["id"]), attempt)

    async def judge(
        self,
        metric: JudgeMetric,
        job: Job,
        row: Mapping[str, Any],
        output: str,
        references: Sequence[str],
        outcome: _Example,
    ) -> Verdict:
        """The judge's verdict on ``output``: asked once more when malformed, then
        ``MalformedVerdict``."""
        runner = self.judge_runner(metric.judge_provider)
        if outcome.judge is None:
            outcome.judge = _Example(outcome.row_id)
        problem: MalformedVerdict | None = None
        for attempt in range(2):
            request = self.judge_request(metric, job, row, output, references, attempt)
            response = await runner.respond(request, outcome.judge)
            try:
                return parse_verdict(response.text, metric.scale)
            except MalformedVerdict as exc:
                problem = exc
        assert problem is not None
        raise MalformedVerdict(f"malformed verdict twice ({problem})")

    async def respond(self, request: Request, outcome: _Example) -> Response:
        """The answer to ``request``, from the cache or the provider; kept in ``outcome``."""
        response = await self._answer(request, outcome)
        outcome.outputs.append(response.text)
        if response.usage is not None:
            outcome.usage_known = True
            outcome.prompt_tokens += response.usage.prompt_tokens
            outcome.completion_tokens += response.usage.completion_tokens
        if response.cost is not None:
            outcome.cost = (outcome.cost or 0.0) + response.cost
        return response

    def lookup(self, request: Request) -> tuple[str, dict[str, Any], Response | None] | None:
        """The request's cache key, its material and the cached answer (None if absent).

        None when the cache is bypassed: a provider that answers locally
        (``cacheable = False``) or ``--cache off``.
        """
        if not self.provider.cacheable or not self.caching:
            return None
        key, material = self.cache.key(request, self.fingerprint)
        about = self._about(request)
        cached = self.cache.get(key, about)
        if cached is None:
            cached = self._legacy(request, key, material, about)
        return key, material, cached

    def _legacy(
        self, request: Request, key: str, material: dict[str, Any], about: str
    ) -> Response | None:
        """The answer cached under the request's schema-1 key (a fingerprint that held
        installed versions), moved under ``key``: it is the same answer."""
        if self.legacy_fingerprint == self.fingerprint:
            return None
        legacy = self.cache.legacy_key(request, self.legacy_fingerprint)
        cached = self.cache.get(legacy, about)
        if cached is not None:
            self.cache.put(key, material, cached)  # which drops a claim on ``key``
        return cached

    async def _answer(self, request: Request, outcome: _Example) -> Response:
        if not self.provider.cacheable or not self.caching:
            return await self.call(request, outcome)
        # ``lookup`` then ``_claim``, with the look-ups of one turn of the loop batched.
        key, material = self.cache.key(request, self.fingerprint)
        about = self._about(request)
        cached, claimed = await self.cache.reserve(key, about)
        if cached is None:
            cached = self._legacy(request, key, material, about)
        if cached is None and not claimed:
            cached = await self._claim(key, request)
        if cached is not None:
            outcome.cached += 1
            return cached
        try:
            response = await self.call(request, outcome)
        except BaseException:
            # Another process waiting for this answer asks for itself now.
            self.cache.release(key)
            raise
        self.cache.put(key, material, response)  # which drops the claim
        return response

    async def _claim(self, key: str, request: Request) -> Response | None:
        """Claim ``key`` in the cache, waiting while another process asks for it.

        Returns the answer when it arrived meanwhile (the other process stored it), else
        None once the key is claimed: the caller asks the provider, then ``put``s.
        """
        about = self._about(request)
        while True:
            if self.cache.claim(key):
                # Stored between the lookup and the claim: the claim was just dropped.
                cached = self.cache.get(key, about)
                if cached is not None:
                    self.cache.release(key)
                return cached
            await asyncio.sleep(_CLAIM_POLL * (0.5 + self.rng.random()))
            cached = self.cache.get(key, about)
            if cached is not None:
                return cached

    def _about(self, request: Request) -> str:
        """The request as a cache warning names it: prompt, example (and repeat)."""
        about = f"{request.prompt_id} {request.example_id}"
        return f"{about} repeat {request.repeat + 1}" if self.options.repeats > 1 else about

    def predict(self, job: Job) -> JobResult:
        """What running ``job`` would take, with no provider call: a ``planned`` result.

        Each example's requests are built by ``requests`` and looked up by ``lookup``, as
        the run does; ``cached`` counts those the response cache answers and ``calls`` the
        others. Judge metrics are predicted the same way (``judge_cached``, ``judge_calls``)
        when the model's answer is cached; a verdict on an answer not known yet counts as a
        judge call. ``calls`` is a floor when the provider fails (retries add calls; a job past
        its error budget skips its remaining examples), and a ceiling when two examples
        send the very same request (the later one may find the earlier answer cached).
        """
        calls = cached = judge_calls = judge_cached = 0
        judges = judge_metrics(job.suite.metrics)
        for row in job.rows:
            try:
                requests = self.requests(job, row)
            except (RenderError, DatasetError):
                continue  # the run records the render error and calls nothing for the row
            for request in requests:
                found = self.lookup(request)
                answer = found[2] if found is not None else None
                if answer is not None:
                    cached += 1
                else:
                    calls += 1
                for metric in judges:
                    if self.judge_cached(metric, job, row, answer):
                        judge_cached += 1
                    else:
                        judge_calls += 1
        return JobResult(
            job,
            "planned",
            None,
            calls=calls,
            cached=cached,
            judge_calls=judge_calls,
            judge_cached=judge_cached,
        )

    def judge_cached(
        self, metric: JudgeMetric, job: Job, row: Mapping[str, Any], answer: Response | None
    ) -> bool:
        """Whether the judge's verdict on ``answer`` is in the response cache (False when
        the answer itself is not known before the run)."""
        if answer is None:
            return False
        runner = self.judge_runner(metric.judge_provider)
        references = job.suite.references_for(row, metric.spec.reference)
        try:
            request = self.judge_request(metric, job, row, answer.text, references, 0)
        except (RenderError, DatasetError):
            return False
        found = runner.lookup(request)
        return found is not None and found[2] is not None

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
        """One provider call, cancelled with ``asyncio.TimeoutError`` after ``timeout``
        (by the provider itself when it ``bounds_its_time``)."""
        if self.provider.bounds_its_time:
            return await self.provider.complete(request)
        if self.timeout_scope is None:  # pragma: no cover - Python 3.10
            return await asyncio.wait_for(self.provider.complete(request), timeout)
        async with self.timeout_scope(timeout):
            return await self.provider.complete(request)


# Installed packages whose versions are recorded with each run: what could explain a
# difference between two runs of the same key, never part of the key itself.
_DEPENDENCIES = ("bm25s", "jinja2", "jsonschema", "numpy", "pydantic", "pyyaml")


def provenance(root: Path | None) -> Provenance:
    """Where the results of this process come from: promptlib, git, Python, dependencies."""
    try:
        version = metadata.version("promptlib")
    except metadata.PackageNotFoundError:  # pragma: no cover
        version = "0+unknown"
    commit = _git.commit_of(root) if root else None
    dependencies = {"python": platform.python_version()}
    for name in _DEPENDENCIES:
        try:
            dependencies[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return Provenance(
        promptlib=version,
        git_commit=commit,
        dirty=_git.is_dirty(root) if commit and root else None,
        dependencies=dependencies,
    )


def _number(value: float) -> float | int:
    """A score as stored: rounded to ``SCORE_DIGITS``; 0 and 1 written as integers."""
    rounded = round(value, SCORE_DIGITS)
    return int(rounded) if rounded in (0.0, 1.0) else rounded


@dataclass(frozen=True)
class BuiltRun:
    """A finished job as the ledger stores it: the record and the objects it references."""

    record: RunRecord
    objects: dict[str, Any]


def build_run(
    job: Job,
    examples: list[_Example],
    provider: Provider,
    repeats: int,
    seconds: float,
    origin: Provenance,
    *,
    keep_outputs: bool = True,
    carried: _Carried | None = None,
    supersedes: str | None = None,
) -> BuiltRun:
    """The run record of a finished job and its scores, outputs and example-id objects.

    Examples are in the job's row order; a failed example scores None and its reason is
    kept in the scores object's ``errors``. Means, standard errors and ``n`` cover the
    examples that were scored. ``carried`` completes a recorded run (``_Retry``): its
    totals are added, and the record's time is after the recorded run's; so it is after
    ``supersedes``, the time of the record a run evaluated again replaces.
    """
    by_id = {e.row_id: e for e in examples}
    ordered = [by_id[str(row["id"])] for row in job.rows if str(row["id"]) in by_id]
    ids = [e.row_id for e in ordered]
    names = [m.name for m in job.suite.metrics]
    scores: dict[str, list[float | None]] = {name: [] for name in names}
    variance: dict[str, list[float | None]] = {name: [] for name in names}
    per_repeat: dict[str, list[list[float] | None]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for index, example in enumerate(ordered):
        if example.error:
            errors[str(index)] = example.error
        for name in names:
            if example.recorded is not None and not example.error:
                score, spread = example.recorded.get(name, (None, None))
                scores[name].append(None if score is None else _number(score))
                variance[name].append(None if spread is None else _number(spread))
                kept = (example.recorded_repeats or {}).get(name)
                per_repeat[name].append([_number(v) for v in kept] if kept else None)
                continue
            values = example.scores.get(name)
            if example.error or not values:
                scores[name].append(None)
                variance[name].append(None)
                per_repeat[name].append(None)
                continue
            per_repeat[name].append([_number(v) for v in values])
            mean = math.fsum(values) / len(values)
            scores[name].append(_number(mean))
            spread = math.fsum((v - mean) ** 2 for v in values) / len(values)
            variance[name].append(_number(spread))
    results = {name: aggregate(scores[name]) for name in names}
    examples_object = ExampleIds(ids=ids).model_dump(mode="json")
    examples_reference = encode(examples_object)[0]
    scores_object = ScoresObject(
        examples=examples_reference,
        scores=scores,
        errors=errors,
        variance=variance if repeats > 1 else None,
        repeats=per_repeat if repeats > 1 else None,
    ).model_dump(mode="json", exclude_none=True)
    objects: dict[str, Any] = {
        examples_reference: examples_object,
        encode(scores_object)[0]: scores_object,
    }
    outputs_reference = None
    usage_known = any(e.usage_known for e in ordered)
    judges = judge_metrics(job.suite.metrics)
    if keep_outputs:
        outputs_object = OutputsObject(
            examples=examples_reference,
            outputs=[list(e.outputs) for e in ordered],
            usage=[
                [e.prompt_tokens, e.completion_tokens] if e.usage_known else None for e in ordered
            ]
            if usage_known
            else None,
            verdicts={m.name: [list(e.verdicts.get(m.name, [])) for e in ordered] for m in judges}
            if judges
            else None,
        ).model_dump(mode="json", exclude_none=True)
        outputs_reference = encode(outputs_object)[0]
        objects[outputs_reference] = outputs_object
    tally = Tally()
    for e in ordered:
        tally.add(e.calls, e.cached, e.prompt_tokens, e.completion_tokens, e.cost, e.usage_known)
    if carried is not None:
        seconds += carried.seconds
        tally.add(
            carried.calls,
            carried.cached,
            carried.prompt_tokens,
            carried.completion_tokens,
            carried.cost,
        )
    record = RunRecord(
        time=_record_time(
            max(
                (t for t in (carried.after if carried else None, supersedes) if t is not None),
                default=None,
            )
        ),
        key=job.key,
        suite=job.suite.name,
        prompt=PromptRef(
            id=job.prompt.id, version=str(job.prompt.version), fingerprint=job.prompt.fingerprint
        ),
        dataset=DatasetRef(
            path=job.dataset.relative, sha256=job.dataset.sha256, rows=len(job.dataset)
        ),
        provider=ProviderRef(
            name=provider.name,
            type=provider.type,
            model=provider.model,
            fingerprint=provider.fingerprint,
        ),
        params=job.params,
        metrics={
            m.name: MetricIdentity(kind=m.spec.kind, algorithm=m.algorithm, binary=m.binary)
            for m in job.suite.metrics
        },
        repeats=repeats,
        examples=len(job.rows),
        results=results,
        errors=len(errors),
        timing=Timing(seconds=round(seconds, 3), calls=tally.calls, cached=tally.cached),
        usage=tally.usage(),
        judge_usage=_judge_usage(ordered, carried) if judges else None,
        provenance=origin,
        scores=encode(scores_object)[0],
        outputs=outputs_reference,
        consistency=(
            run_consistency({m.name: m.binary for m in job.suite.metrics}, per_repeat, repeats)
            if repeats > 1
            else None
        ),
    )
    return BuiltRun(record, objects)


def _judge_usage(examples: Sequence[_Example], carried: _Carried | None) -> JudgeUsage:
    """The judges' calls and usage over ``examples`` (and the recorded run a retry
    completes)."""
    tally = Tally()
    for j in (e.judge for e in examples if e.judge is not None):
        tally.add(j.calls, j.cached, j.prompt_tokens, j.completion_tokens, j.cost, j.usage_known)
    before = carried.judge if carried is not None else None
    if before is not None:
        tally.add(
            before.calls,
            before.cached,
            before.prompt_tokens,
            before.completion_tokens,
            before.cost,
        )
    return tally.judge_usage()


def _record_time(after: str | None) -> str:
    """Now, as records write it (to the second, UTC); with ``after``, at least a second
    later than that time, so that the record sorts after the one it completes."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    if after is not None:
        try:
            earlier = datetime.fromisoformat(after.replace("Z", "+00:00"))
        except ValueError:
            earlier = None
        if earlier is not None and earlier.tzinfo is not None and now <= earlier:
            now = earlier.astimezone(timezone.utc) + timedelta(seconds=1)
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")


def _evidence_problem(view: LedgerView, run: RunRecord) -> str | None:
    """Why the run's per-example scores cannot be read, or None."""
    try:
        view.scores(run)
    except LedgerError as exc:
        return str(exc)
    return None


def _plan_retry(view: LedgerView, job: Job, record: RunRecord, keep_outputs: bool) -> _Retry | None:
    """How to complete ``record``, the reused run of ``job``: its failed rows to run again.

    None when every failure is a render error: the run key fixes the prompt and the
    dataset, so the row would fail the same way again. ``LedgerError`` when the run's
    evidence cannot be read or does not match the job's rows (the job is then evaluated
    again in full).
    """
    scores = view.scores(record)
    failed = {i for i, error in scores.errors.items() if not error.startswith("render: ")}
    if not failed:
        return None
    names = [m.name for m in job.suite.metrics]
    ids = [str(row["id"]) for row in job.rows]
    if sorted(scores.ids) != sorted(ids):
        raise LedgerError("its examples are not the suite's rows")
    lengths = {len(scores.scores.get(name, ())) for name in names}
    if scores.variance is not None:
        lengths |= {len(scores.variance.get(name, ())) for name in names}
    if scores.repeats is not None:
        lengths |= {len(scores.repeats.get(name, ())) for name in names}
    if lengths != {len(scores.ids)}:
        raise LedgerError("its scores object does not hold a score per example and metric")
    try:
        outputs = view.outputs(record)
    except LedgerError:
        outputs = None  # not kept in git, say: the completed run keeps none either
    if outputs is not None and (
        list(outputs.ids) != list(scores.ids)
        or len(outputs.outputs) != len(scores.ids)
        or (outputs.usage is not None and len(outputs.usage) != len(scores.ids))
    ):
        outputs = None
    kept: list[_Example] = []
    for index, row_id in enumerate(scores.ids):
        if row_id in failed:
            continue
        if row_id in scores.errors:  # a render error, kept as it is
            kept.append(_Example(row_id, error=scores.errors[row_id]))
            continue
        example = _Example(
            row_id,
            recorded={
                name: (
                    scores.scores[name][index],
                    scores.variance[name][index] if scores.variance is not None else None,
                )
                for name in names
            },
            recorded_repeats=_recorded_repeats(scores, names, index),
        )
        if outputs is not None:
            example.outputs = list(outputs.outputs[index])
            for metric, verdicts in (outputs.verdicts or {}).items():
                if index < len(verdicts):
                    example.verdicts[metric] = [dict(v) for v in verdicts[index]]
            tokens = outputs.usage[index] if outputs.usage is not None else None
            if tokens is not None and len(tokens) == 2:
                example.usage_known = True
                example.prompt_tokens, example.completion_tokens = tokens[0], tokens[1]
        kept.append(example)
    own_tokens = outputs is not None and outputs.usage is not None
    carried = _Carried(
        calls=record.timing.calls,
        cached=record.timing.cached,
        seconds=record.timing.seconds,
        cost=record.usage.cost,
        prompt_tokens=None if own_tokens else record.usage.prompt_tokens,
        completion_tokens=None if own_tokens else record.usage.completion_tokens,
        after=record.time,
        judge=record.judge_usage,
    )
    return _Retry(
        job=replace(job, rows=[row for row in job.rows if str(row["id"]) in failed]),
        full=job,
        record=record,
        kept=kept,
        keep_outputs=keep_outputs and outputs is not None,
        carried=carried,
    )


def _recorded_repeats(
    scores: RunScores, names: Sequence[str], index: int
) -> dict[str, list[float]] | None:
    """Example ``index``'s recorded score per repeat and metric (None if not kept)."""
    if scores.repeats is None:
        return None
    out: dict[str, list[float]] = {}
    for name in names:
        values = scores.repeats.get(name)
        kept = values[index] if values is not None and index < len(values) else None
        if kept:
            out[name] = [float(v) for v in kept]
    return out


def run_jobs(
    jobs: list[Job],
    provider: Provider,
    cache: ResponseCache,
    *,
    options: EvalOptions,
    ledger: Ledger | LegacyLedger,
    root: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    needs_evidence: Callable[[Job], bool] | None = None,
    notes: list[str] | None = None,
    dry_run: bool = False,
) -> list[JobResult]:
    """Evaluate ``jobs``, reusing ledger runs by key; append each new run as it finishes.

    ``on_progress(done, total)`` is called as examples finish (reused jobs count at once).
    A job for which ``needs_evidence`` is true (a comparison will read its per-example
    scores) is reused only when its scores object can be read; otherwise it is evaluated
    again and ``notes`` says why (with a ledger that records nothing, that is an error).
    A reused run with failed examples is completed unless ``options.retry_errors`` is off
    (see the module docstring); ``notes`` says what the retry did, and what the response
    cache did not trust.

    ``dry_run`` decides reuse exactly the same way, then predicts each job that would run
    (``_Runner.predict``: a ``planned`` result; for a retry, of its failed rows only)
    instead of running it: no provider call, nothing appended. The cache should then be
    opened ``read-only``.
    """
    notes = notes if notes is not None else []
    view = ledger.read()
    results: dict[int, JobResult] = {}
    to_run: list[Job] = []
    retries: dict[int, _Retry] = {}
    for job in jobs:
        name = f"{job.suite.name}/{job.prompt.id}"
        existing = None if options.fresh else view.run(job.key)
        if existing is not None and needs_evidence is not None and needs_evidence(job):
            problem = _evidence_problem(view, existing)
            if problem is not None:
                if not ledger.record:
                    # Nothing is recorded with --no-record, nor for a --limit/--sample subset.
                    how = (
                        f"run without {options.subset.option} (a subset is never recorded)"
                        if options.subset is not None
                        else "run without --no-record"
                    )
                    raise LedgerError(
                        f"{name}: the recorded run cannot be compared: {problem}; {how} "
                        "to re-evaluate it"
                    )
                notes.append(f"{name}: {problem}; re-evaluated (the response cache keeps it cheap)")
                existing = None
        if (
            existing is not None
            and existing.errors
            and options.retry_errors
            and job.part is None  # a split job's recorded run is reused as recorded
        ):
            try:
                retry = _plan_retry(view, job, existing, options.keep_outputs)
            except LedgerError as exc:
                notes.append(
                    f"{name}: the recorded run has {existing.errors} failed example(s) but "
                    f"cannot be completed ({exc}); re-evaluated in full (the response cache "
                    "keeps it cheap)"
                )
                to_run.append(job)
                continue
            if retry is not None:
                retries[id(retry.job)] = retry
                to_run.append(retry.job)
                continue
        if existing is not None:
            results[id(job)] = JobResult(job, "reused", existing, view=view)
        else:
            to_run.append(job)
    total = sum(len(job.rows) for job in jobs)
    done = sum(len(r.job.rows) for r in results.values())
    # The examples a retry keeps are done already.
    done += sum(len(r.full.rows) - len(r.job.rows) for r in retries.values())
    report = on_progress or (lambda _done, _total: None)
    report(done, total)
    # Taken when the first run is appended, not before the first call: it runs git.
    origin: Provenance | None = None

    def progressed(count: int) -> None:
        nonlocal done
        done += count
        report(done, total)

    def failure(examples: list[_Example], errors: int) -> str:
        reasons = [e.error for e in examples if e.error]
        first = next((r for r in reasons if not r.startswith("not run:")), reasons[0])
        if errors <= options.error_budget * len(examples):
            return (
                f"{errors} of {len(examples)} examples failed, so nothing was measured "
                f"(whatever the budget); first: {first}"
            )
        return (
            f"{errors} of {len(examples)} examples failed (budget {options.error_budget:.0%}); "
            f"first: {first}"
        )

    def settle(
        job: Job,
        status: str,
        record: RunRecord | None,
        counted: list[_Example],
        errors: int,
        seconds: float,
        failure: str | None = None,
    ) -> None:
        """The job's result: ``counted`` are the examples whose calls this run made."""
        results[id(job)] = JobResult(
            job,
            status,
            record,
            errors=errors,
            calls=sum(e.calls for e in counted),
            cached=sum(e.cached for e in counted),
            seconds=seconds,
            failure=failure,
            view=view if record is not None else None,
        )

    def taken() -> Provenance:
        nonlocal origin
        if origin is None:
            origin = provenance(root)
        return origin

    def append(job: Job, examples: list[_Example], seconds: float, **built: Any) -> RunRecord:
        # A run evaluated again (--fresh) sorts after the record it replaces, even within
        # the same second: readers take the latest.
        previous = view.run(job.key)
        if previous is not None:
            built.setdefault("supersedes", previous.time)
        run = build_run(job, examples, provider, options.repeats, seconds, taken(), **built)
        record = ledger.append(run.record, run.objects, once=True)
        assert isinstance(record, RunRecord)
        return record

    def finished(job: Job, examples: list[_Example], seconds: float) -> None:
        retry = retries.get(id(job))
        if retry is not None:
            completed(retry, examples, seconds)
            return
        errors = sum(1 for e in examples if e.error)
        budget = options.error_budget * len(examples)
        # A run in which every example failed measured nothing, whatever the budget: its
        # means would be zeros that read as a gate failure.
        if examples and (errors > budget or errors == len(examples)):
            settle(job, "failed", None, examples, errors, seconds, failure(examples, errors))
            return
        if job.part is not None:
            # A part is no run record: the merge of the shard ledgers joins the parts.
            run = build_run(
                job,
                examples,
                provider,
                options.repeats,
                seconds,
                taken(),
                keep_outputs=options.keep_outputs,
            )
            part = run.record
            if isinstance(ledger, Ledger) and ledger.record:
                part = ledger.append_part(run.record, run.objects)
            settle(job, "ran", part, examples, errors, seconds)
            results[id(job)].view = None  # a part's objects are not in the ledger's view
            return
        record = append(job, examples, seconds, keep_outputs=options.keep_outputs)
        settle(job, "ran", record, examples, errors, seconds)

    def completed(retry: _Retry, retried: list[_Example], seconds: float) -> None:
        job, name = retry.full, f"{retry.full.suite.name}/{retry.full.prompt.id}"
        examples = [*retry.kept, *retried]
        fixed = sum(1 for e in retried if not e.error)
        errors = sum(1 for e in examples if e.error)
        tried = f"{name}: retried the {len(retried)} failed example(s) of its recorded run"
        if not fixed:
            if errors == len(examples):
                settle(job, "failed", None, retried, errors, seconds, failure(examples, errors))
                return
            notes.append(f"{tried}: none succeeded; the recorded run is kept as it was")
            settle(job, "reused", retry.record, retried, errors, seconds)
            return
        record = append(
            job, examples, seconds, keep_outputs=retry.keep_outputs, carried=retry.carried
        )
        kept = "recorded" if ledger.record else "reported (not recorded)"
        notes.append(
            f"{tried}: {fixed} now succeed, {len(retried) - fixed} still fail; the completed "
            f"run is {kept} under the same key (--no-retry-errors keeps recorded runs as "
            "they are)"
        )
        settle(job, "ran", record, retried, errors, seconds)

    if to_run:
        runner = _Runner(
            to_run,
            provider,
            cache,
            options,
            progressed,
            finished,
            retrying=frozenset(retries),
        )
        try:
            if dry_run:
                for job in to_run:
                    planned = retries.get(id(job))
                    results[id(planned.full if planned else job)] = runner.predict(job)
            else:
                asyncio.run(runner.run())
        finally:
            notes.extend(cache.take_warnings())
    return [results[id(job)] for job in jobs]
