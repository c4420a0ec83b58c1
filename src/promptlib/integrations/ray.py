"""Ray: ``promptlib eval --executor ray`` runs the shards of an evaluation as Ray tasks.

Nothing here decides what an evaluation is: the jobs, the shards and the merge are the
ones of ``promptlib eval --shard K/N`` and ``promptlib ledger merge`` (``evals.shards``),
so a run on Ray records exactly what a local run records.

The driver (the process running ``promptlib eval``):

1. plans the jobs with no provider call (``estimate``): runs already in the ledger are
   reused, and when every job is, no cluster is contacted;
2. connects to the cluster (``ray.init``) with a runtime environment that ships the
   project folder (``working_dir``, without ``.git``, virtual environments and caches;
   git-ignored files are left out by Ray) and promptlib itself (``py_modules``), and
   forwards the ``PROMPTLIB_*`` variables and the API-key variables the providers name;
3. starts one task per shard (``RayOptions.shards``, default: the cluster's CPUs divided
   by ``num_cpus``), each asking for ``num_cpus`` and ``num_gpus``. A task evaluates shard
   K of N into a shard ledger in a temporary folder of its node and returns the folder's
   files with its job outcomes. A task whose worker process dies (killed, out of memory,
   node lost) is run again by Ray, up to ``retries`` times; the new attempt starts from an
   empty shard ledger and takes the answers the dead one got from the node's response
   cache (the project copy's ``.promptlib/``);
4. writes the returned shard ledgers into a temporary folder and merges them into the
   ledger (``merge_ledgers``), under the ledger's lock;
5. reads every job back from the merged ledger with no provider call and returns the same
   ``EvalReport`` a local run returns: gates are checked on the driver, after the merge.

Progress: each task reports its (done, total) examples to a small actor, which the driver
polls to feed ``on_progress`` as a local run does. A provider failure in a shard does not
stop the others: what finished is merged, and the failed jobs are reported as failed
(``promptlib eval`` exits 3). An error in the project (``ConfigError`` and the like) is
raised as the same class on the driver; a worker that died more than ``retries`` times,
or a cluster that cannot be reached, is a ``ProviderError`` (exit 3).

Ray is imported only when a function here needs it; without it, ``MissingDependencyError``
names the extra (``promptlib[ray]``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import (
    ConfigError,
    DatasetError,
    LedgerError,
    MissingDependencyError,
    NotFoundError,
    PromptlibError,
    ProviderError,
)
from ..evals.cache import CacheMode
from ..evals.run import EvalReport, PromptOutcome, estimate, evaluate, outcome_of
from ..evals.runner import EvalOptions, JobResult
from ..ledger import AnyLedger, Ledger
from ..settings import Settings

__all__ = [
    "EXTRA",
    "RayOptions",
    "ShardResult",
    "evaluate_on_ray",
    "forwarded_environment",
    "require_ray",
]

EXTRA = "pip install 'promptlib[ray]'"

#: Left out of the project folder shipped to the workers (beside what .gitignore leaves
#: out): version control, virtual environments, tool caches, built wheels.
EXCLUDES: tuple[str, ...] = (
    ".git",
    ".venv",
    "venv",
    "**/__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".wheelhouse",
    ".promptlib",
    "node_modules",
)

#: Seconds to wait for a TCP connection to a ``HOST:PORT`` cluster address.
_CONNECT_TIMEOUT = 5.0

#: Seconds between two progress reports of a task, and between two polls of the driver.
_REPORT_EVERY = 0.2


@dataclass(frozen=True)
class RayOptions:
    """Where and how the shards run.

    ``address`` is the cluster (``ray.init``'s: ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``;
    None: ``RAY_ADDRESS``, else a local Ray started for this run). Each task asks for
    ``num_cpus`` and ``num_gpus``; a dead worker's task is run again up to ``retries`` times.
    ``shards`` (None: the cluster's CPUs divided by ``num_cpus``, and its GPUs by
    ``num_gpus`` when tasks ask for some) is N; ``split_above`` is ``--split-above``.
    ``env`` is set in every worker (``forwarded_environment``).
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    retries: int = 3
    shards: int | None = None
    split_above: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("--ray-num-cpus and --ray-num-gpus cannot be negative")
        if self.retries < 0:
            raise ConfigError("--ray-retries cannot be negative")
        if self.shards is not None and self.shards < 1:
            raise ConfigError("--ray-shards must be at least 1")


@dataclass
class ShardResult:
    """What one task returns: its shard ledger's files (path -> bytes), its job outcomes,
    its ledger notes, and the pid of the worker process that ran it."""

    index: int
    files: dict[str, bytes]
    outcomes: list[PromptOutcome]
    repaired: list[str]
    pid: int
    error: tuple[str, str] | None = None  # (error class name, message)
    # Seconds the shard's evaluation took in the task, and from the task's submission to
    # its result on the driver: the difference is what running it on Ray cost.
    seconds: float = 0.0
    round_trip: float = 0.0


def require_ray() -> Any:
    """The ``ray`` module; ``MissingDependencyError`` naming the extra without it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingDependencyError(f"--executor ray needs Ray: {EXTRA}") from exc


def forwarded_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables every worker gets: ``PROMPTLIB_*`` (the project's configuration
    overrides; not ``PROMPTLIB_PROJECT``, the project being the shipped folder) and the
    API-key variables the configured providers name (``api_key_env``)."""
    names = {n for n in environ if n.startswith("PROMPTLIB_") and n != "PROMPTLIB_PROJECT"}
    providers = settings.config.get("providers", {})
    if isinstance(providers, Mapping):
        for table in providers.values():
            if not isinstance(table, Mapping):
                continue
            for option in ("api_key_env", "api-key-env"):
                value = table.get(option)
                if isinstance(value, str) and value:
                    names.add(value)
    if "OPENAI_API_KEY" in environ:
        names.add("OPENAI_API_KEY")  # the openai provider's default key variable
    return {name: environ[name] for name in sorted(names) if name in environ}


class _Progress:
    """The driver's view of every task's progress: shard -> (done, total)."""

    def __init__(self) -> None:
        self.shards: dict[int, tuple[int, int]] = {}

    def update(self, index: int, done: int, total: int) -> None:
        self.shards[index] = (done, total)

    def read(self) -> dict[int, tuple[int, int]]:
        return dict(self.shards)


# Errors a task raises that mean the same on the driver: raised there as the same class.
_ERRORS: dict[str, type[PromptlibError]] = {
    cls.__name__: cls
    for cls in (ConfigError, DatasetError, LedgerError, NotFoundError, ProviderError)
}


def run_shard(request: Mapping[str, Any], progress: Any = None) -> ShardResult:
    """The task: evaluate shard ``index`` of ``count`` of the project in the current
    folder (the shipped ``working_dir``) into a fresh shard ledger; return its files.

    ``request`` holds ``index``, ``count``, ``split_above``, ``suites``, ``prompts``,
    ``provider``, ``cache_mode`` (a ``CacheMode`` value) and ``options`` (``EvalOptions``).
    ``progress`` is the driver's progress actor (None: no reports).
    """
    from ..evals.shards import DEFAULT_SPLIT_ABOVE, Shard
    from ..ledger import open_project

    index, count = int(request["index"]), int(request["count"])
    split_above = request.get("split_above") or DEFAULT_SPLIT_ABOVE
    folder = Path(tempfile.mkdtemp(prefix=f"promptlib-shard-{index}-of-{count}-"))
    try:
        try:
            settings = Settings.resolve(Path.cwd())
            ledger = open_project(settings, folder=folder)
            options: EvalOptions = replace(
                request["options"], shard=Shard(index, count, split_above)
            )
            start = time.perf_counter()
            report = evaluate(
                settings,
                suites=request["suites"],
                prompts=request["prompts"],
                provider=request["provider"],
                cache_mode=CacheMode(request["cache_mode"]),
                options=options,
                on_progress=_reporter(progress, index),
                ledger=ledger,
            )
        except PromptlibError as exc:
            name = type(exc).__name__ if type(exc).__name__ in _ERRORS else "ConfigError"
            return ShardResult(index, {}, [], [], os.getpid(), error=(name, str(exc)))
        files = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.name.endswith(".lock")
        }
        seconds = time.perf_counter() - start
        return ShardResult(
            index, files, report.outcomes, report.repaired, os.getpid(), seconds=seconds
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _reporter(progress: Any, index: int) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done >= total or now - last >= _REPORT_EVERY:
            last = now
            progress.update.remote(index, done, total)

    return report


def _shard_count(ray: Any, options: RayOptions) -> int:
    if options.shards is not None:
        return options.shards
    resources = ray.cluster_resources()
    counts = []
    if options.num_cpus > 0:
        counts.append(int(resources.get("CPU", 1) // options.num_cpus))
    if options.num_gpus > 0:
        counts.append(int(resources.get("GPU", 0) // options.num_gpus))
    return max(1, min(counts, default=1))


def _runtime_env(root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    package = Path(__file__).resolve().parent.parent  # promptlib/, this module's package
    return {
        "working_dir": str(root),
        "excludes": list(EXCLUDES),
        "py_modules": [str(package)],
        "env_vars": dict(env),
    }


def _check_reachable(address: str | None) -> None:
    """Refuse at once a ``HOST:PORT`` cluster that accepts no connection: ``ray.init``
    would retry for minutes before saying so."""
    if address is None or "://" in address:
        return
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ProviderError(
            f"Ray: cannot start the run on {address}: no Ray cluster answers there ({exc}); "
            "check --ray-address (`ray status` on the head node shows it)"
        ) from exc


@contextlib.contextmanager
def _connected(ray: Any, root: Path, options: RayOptions) -> Iterator[None]:
    _check_reachable(options.address)
    try:
        ray.init(
            address=options.address,
            runtime_env=_runtime_env(root, options.env),
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise ProviderError(
            f"Ray: cannot start the run on {where}: {exc}; check --ray-address (`ray status` "
            "on the head node shows it)"
        ) from exc
    try:
        yield
    finally:
        ray.shutdown()


def evaluate_on_ray(
    settings: Settings,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    cache_mode: CacheMode = CacheMode.on,
    options: EvalOptions | None = None,
    ray_options: RayOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    ledger: AnyLedger,
) -> EvalReport:
    """``evaluate`` with the shards of the run as Ray tasks (see the module docstring);
    new runs are merged into ``ledger``, which must record (no subset, no --no-record)."""
    options = options or EvalOptions()
    ray_options = ray_options or RayOptions()
    root = settings.require_root()
    if options.subset is not None:
        raise ConfigError(
            f"--executor ray records the shards' runs and merges them, and a subset "
            f"({options.subset.option}) is never recorded: run it without --executor ray"
        )
    if not isinstance(ledger, Ledger) or not ledger.record:
        raise ConfigError(
            "--executor ray merges the shards' runs into a ledger: it takes no --no-record, "
            "and a schema-1 ledger must be migrated first (`promptlib ledger migrate`)"
        )
    ray = require_ray()
    request = {
        "suites": list(suites),
        "prompts": list(prompts),
        "provider": provider,
        "cache_mode": cache_mode.value,
        "options": options,
        "split_above": ray_options.split_above,
    }
    plan = estimate(
        settings,
        suites=suites,
        prompts=prompts,
        provider=provider,
        cache_mode=cache_mode,
        options=options,
        ledger=ledger,
    )
    before = {_id_of(r): r for _, results in plan.groups for r in results}
    if all(r.status == "reused" for r in before.values()):
        # Nothing to evaluate: no cluster is needed to report the recorded runs.
        return evaluate(
            settings,
            suites=suites,
            prompts=prompts,
            provider=provider,
            cache_mode=cache_mode,
            options=options,
            on_progress=on_progress,
            ledger=ledger,
        )
    total = sum(len(r.job.rows) for r in before.values())
    with _connected(ray, root, ray_options):
        count = _shard_count(ray, ray_options)
        results = _run_tasks(ray, request, count, ray_options, total, on_progress)
    shown = plan.ledger or ledger.where
    return _merge_and_report(settings, request, results, count, ledger, before, shown, options)


def _id_of(result: JobResult) -> tuple[str, str]:
    """A job's name in a report: (suite, prompt)."""
    return (result.job.suite.name, result.job.prompt.id)


def _run_tasks(
    ray: Any,
    request: Mapping[str, Any],
    count: int,
    options: RayOptions,
    total: int,
    on_progress: Callable[[int, int], None] | None,
) -> list[ShardResult]:
    from ray.exceptions import RayError, RayTaskError

    actor = ray.remote(num_cpus=0)(_Progress).remote()
    task = ray.remote(run_shard).options(
        num_cpus=options.num_cpus,
        num_gpus=options.num_gpus,
        max_retries=options.retries,
        retry_exceptions=False,
    )
    submitted = time.perf_counter()
    pending = {
        task.remote({**request, "index": index, "count": count}, actor): index
        for index in range(1, count + 1)
    }
    done: dict[int, ShardResult] = {}
    shown = -1
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=_REPORT_EVERY)
        for ref in ready:
            index = pending.pop(ref)
            try:
                done[index] = ray.get(ref)
                done[index].round_trip = time.perf_counter() - submitted
            except RayTaskError as exc:  # a bug in the task, not a project error
                raise RuntimeError(f"shard {index}/{count} on Ray: {exc}") from exc
            except RayError as exc:
                raise ProviderError(
                    f"Ray: shard {index}/{count} was lost ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}) after "
                    f"{options.retries} retries; nothing was merged. Run again: the shards' "
                    "response caches keep what was answered (raise --ray-retries for a "
                    "cluster that loses workers)"
                ) from exc
        if on_progress is not None:
            progress = ray.get(actor.read.remote())
            finished = sum(d for d, _ in progress.values())
            if finished != shown:
                shown = finished
                on_progress(finished, max(total, sum(t for _, t in progress.values())))
    if on_progress is not None and shown != total:
        # Every shard finished: a task's last report may still be on its way to the actor.
        on_progress(total, total)
    results = [done[i] for i in sorted(done)]
    for result in results:
        if result.error is not None:
            name, message = result.error
            raise _ERRORS.get(name, ConfigError)(f"shard {result.index}/{count}: {message}")
    return results


def _merge_and_report(
    settings: Settings,
    request: Mapping[str, Any],
    results: Sequence[ShardResult],
    count: int,
    ledger: Ledger,
    before: Mapping[tuple[str, str], JobResult],
    shown: str,
    options: EvalOptions,
) -> EvalReport:
    from ..evals.shards import library_fingerprints, merge_ledgers
    from ..library.collection import load

    root = settings.require_root()
    # Every shard's outcomes, by job: a split job has one per shard that ran a part.
    by_job: dict[tuple[str, str], list[PromptOutcome]] = {}
    for result in results:
        for outcome in result.outcomes:
            by_job.setdefault((outcome.suite, outcome.prompt), []).append(outcome)
    failed = {
        before[name].job.key
        for name, outcomes in by_job.items()
        if name in before and any(o.status == "failed" for o in outcomes)
    }
    with tempfile.TemporaryDirectory(prefix="promptlib-ray-") as scratch:
        folders = []
        for result in results:
            folder = Path(scratch) / f"shard-{result.index}-of-{count}"
            for relative, data in result.files.items():
                path = folder / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            folder.mkdir(parents=True, exist_ok=True)
            folders.append(folder)
        merge_ledgers(
            folders, ledger.folder, library=library_fingerprints(load(root)), failed=failed
        )
    ledger.read(refresh=True)  # the merge appended through another handle on the folder
    after = estimate(
        settings,
        suites=request["suites"],
        prompts=request["prompts"],
        provider=request["provider"],
        cache_mode=CacheMode.read_only,
        options=replace(options, fresh=False, retry_errors=False),
        ledger=ledger,
    )
    outcomes: list[PromptOutcome] = []
    providers: list[str] = []
    for name, group in after.groups:
        if name not in providers:
            providers.append(name)
        for job in group:
            outcomes.append(_outcome(job, before.get(_id_of(job)), by_job.get(_id_of(job))))
    repaired = [note for result in results for note in result.repaired]
    return EvalReport(
        provider=", ".join(providers), outcomes=outcomes, ledger=shown, repaired=repaired
    )


def _outcome(
    result: JobResult, planned: JobResult | None, shards: Sequence[PromptOutcome] | None
) -> PromptOutcome:
    """A job's line in the report, from the merged ledger and what its shards did."""
    if planned is not None and planned.status == "reused" and result.status == "reused":
        return outcome_of(result)
    shards = shards or []
    calls = sum(o.calls for o in shards)
    cached = sum(o.cached for o in shards)
    seconds = max((o.seconds for o in shards), default=0.0)
    failures = [o for o in shards if o.status == "failed"]
    if failures or result.record is None:
        first = failures[0] if failures else None
        failure = first.failure if first is not None else "no shard ran it"
        return replace(
            outcome_of(JobResult(result.job, "failed", None, failure=failure)),
            errors=sum(o.errors for o in shards),
            calls=calls,
            cached=cached,
            seconds=seconds,
        )
    ran = JobResult(
        result.job,
        "ran",
        result.record,
        errors=result.record.errors,
        calls=calls,
        cached=cached,
        seconds=seconds,
    )
    return outcome_of(ran)
