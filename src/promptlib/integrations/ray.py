"""Ray: ``promptlib eval --executor ray`` runs the shards of an evaluation on a Ray cluster.

Nothing here decides what an evaluation is: the jobs, the shards and the merge are the
ones of ``promptlib eval --shard K/N`` and ``promptlib ledger merge`` (``evals.shards``),
so a run on Ray records exactly what a local run records.

The driver (the process running ``promptlib eval``):

1. plans the jobs with no provider call (``estimate``): runs already in the ledger are
   reused, and when every job is, no cluster is contacted;
2. connects to the cluster (``ray.init``) with a runtime environment that ships the
   project folder (``working_dir``, without ``.git``, virtual environments, caches and
   the ledger folders; git-ignored files are left out by Ray) and promptlib itself
   (``py_modules``), and forwards the ``PROMPTLIB_*`` variables and the API-key variables
   the providers name;
3. runs N shards (``RayOptions.shards``, default: the cluster's CPUs divided by
   ``num_cpus``), each asking for ``num_cpus`` and ``num_gpus``, on the pool's workers
   (below) or, with ``keep_alive`` 0, as plain tasks. A shard (``run_shard``) evaluates
   shard K of N into a shard ledger in a temporary folder of its node, reusing runs from
   a copy of the ledger the driver sends with it (``ledger_files``), and returns the
   folder's files with its job outcomes. A shard whose worker process dies (killed, out
   of memory, node lost) is run again by Ray, up to ``retries`` times; the new attempt
   starts from an empty shard ledger and takes the answers the dead one got from the
   node's response cache (the project copy's ``.promptlib/``);
4. writes the returned shard ledgers into a temporary folder and merges them into the
   ledger (``merge_ledgers``), under the ledger's lock;
5. reads every job back from the merged ledger with no provider call and returns the same
   ``EvalReport`` a local run returns: gates are checked on the driver, after the merge.

The pool: each run is a new Ray job, and Ray starts new worker processes for each job,
each importing Ray and promptlib. So the shards run as calls on named, detached actors in
the ``promptlib`` namespace (``_PoolWorker``), which a later run finds by name and reuses
warm. The name holds ``pool_key``: a sha256 over what a fresh worker would run (the
shipped packages by Ray's content names, the forwarded variables, the resources, the
retries, the slot), so a worker is only reused for exactly that. A worker runs one call
at a time (two runs at once queue on it), is restarted when it dies, and exits by itself
after ``keep_alive`` seconds with no call. A run short of free resources for its workers
or tasks retires the other idle workers (``_make_room``).

Progress: each shard reports its (done, total) examples to a small actor, which the driver
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
import hashlib
import importlib
import json
import os
import shutil
import socket
import sys
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
from ..ledger import AnyLedger, Ledger, LegacyLedger
from ..settings import Settings

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "EXTRA",
    "NAMESPACE",
    "POOL_PREFIX",
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

#: Seconds a pool worker waits for the next run before it exits (``--ray-keep-alive``).
DEFAULT_KEEP_ALIVE = 300.0

#: The Ray namespace of the pool's workers, and the start of their names.
NAMESPACE = "promptlib"
POOL_PREFIX = "promptlib-shard-"

#: Times a shard is given to a new pool worker when the one it was sent to had exited on
#: purpose (its keep-alive ran out, or a run needing its resources retired it) before
#: running it.
_RESUBMITS = 3


@dataclass(frozen=True)
class RayOptions:
    """Where and how the shards run.

    ``address`` is the cluster (``ray.init``'s: ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``;
    None: ``RAY_ADDRESS``, else a local Ray started for this run). Each task asks for
    ``num_cpus`` and ``num_gpus``; a dead worker's task is run again up to ``retries`` times.
    ``shards`` (None: the cluster's CPUs divided by ``num_cpus``, and its GPUs by
    ``num_gpus`` when tasks ask for some) is N; ``split_above`` is ``--split-above``.
    ``env`` is set in every worker (``forwarded_environment``). ``keep_alive`` is the
    seconds a pool worker waits for the next run before it exits (0: no pool, the shards
    are plain tasks whose workers end with the run).
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    retries: int = 3
    shards: int | None = None
    split_above: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    keep_alive: float = DEFAULT_KEEP_ALIVE

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("--ray-num-cpus and --ray-num-gpus cannot be negative")
        if self.keep_alive < 0:
            raise ConfigError("--ray-keep-alive cannot be negative")
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


def run_shard(
    request: Mapping[str, Any], progress: Any = None, ledgers: Sequence[LedgerFiles] = ()
) -> ShardResult:
    """The shard's work: evaluate shard ``index`` of ``count`` of the project in the current
    folder (the shipped ``working_dir``) into a fresh shard ledger; return its files.

    ``request`` holds ``index``, ``count``, ``split_above``, ``suites``, ``prompts``,
    ``provider``, ``cache_mode`` (a ``CacheMode`` value) and ``options`` (``EvalOptions``).
    ``progress`` is the driver's progress actor (None: no reports). ``ledgers`` are the
    ledgers the driver's view reads (``ledger_files``), as the driver read them before the
    run: the shard reuses and completes runs from copies of them, never from a ledger in
    its working folder (the project's ledger is not shipped, see ``_runtime_env``).
    """
    from ..evals.shards import DEFAULT_SPLIT_ABOVE, Shard

    index, count = int(request["index"]), int(request["count"])
    split_above = request.get("split_above") or DEFAULT_SPLIT_ABOVE
    scratch = Path(tempfile.mkdtemp(prefix=f"promptlib-shard-{index}-of-{count}-"))
    folder = scratch / "ledger"
    try:
        try:
            settings = Settings.resolve(Path.cwd())
            ledger = Ledger(folder, also_read=_read_copies(scratch, ledgers))
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
        shutil.rmtree(scratch, ignore_errors=True)


#: One ledger as shipped to a shard: ("ledger", files of a schema-2 folder by relative
#: path) or ("legacy", {file name: bytes}) for a schema-1 file.
LedgerFiles = tuple[str, dict[str, bytes]]


def ledger_files(ledger: Ledger) -> list[LedgerFiles]:
    """The files of every ledger ``ledger``'s view reads (its folder and ``also_read``),
    without lock files; a folder or file that does not exist yet is left out."""
    shipped: list[LedgerFiles] = []
    for source in (ledger, *ledger.also_read):
        if isinstance(source, Ledger):
            if source.folder.is_dir():
                files = {
                    path.relative_to(source.folder).as_posix(): path.read_bytes()
                    for path in sorted(source.folder.rglob("*"))
                    if path.is_file() and not path.name.endswith(".lock")
                }
                shipped.append(("ledger", files))
        elif isinstance(source, LegacyLedger):
            if source.path.is_file():
                shipped.append(("legacy", {source.path.name: source.path.read_bytes()}))
        else:  # pragma: no cover - open_project makes only these two kinds
            raise LedgerError(f"--executor ray cannot ship a {type(source).__name__}")
    return shipped


def _read_copies(scratch: Path, ledgers: Sequence[LedgerFiles]) -> list[AnyLedger]:
    """Read-only ledgers over copies of ``ledgers`` written under ``scratch``."""
    copies: list[AnyLedger] = []
    for number, (kind, files) in enumerate(ledgers):
        copy = scratch / f"read-{number}"
        copy.mkdir(parents=True)
        for relative, data in files.items():
            path = copy / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if kind == "legacy":
            copies.append(LegacyLedger(copy / next(iter(files))))
        else:
            copies.append(Ledger(copy, record=False))
    return copies


class _PoolWorker:
    """A pool worker: a named, detached actor that runs shards (``run_shard``) one call at
    a time, and exits by itself once ``keep_alive`` seconds have passed with no call.

    Exiting goes through ``ray.kill(..., no_restart=True)`` on its own handle, so Ray does
    not restart it (a worker that *dies* is restarted, up to the run's ``retries``)."""

    def __init__(self, keep_alive: float) -> None:
        import threading

        import ray

        self._handle = ray.get_runtime_context().current_actor
        self._lock = threading.Lock()
        self._busy = False
        self._keep_alive = keep_alive
        self._last = time.monotonic()
        threading.Thread(target=self._expire, name="keep-alive", daemon=True).start()

    def run(
        self,
        request: Mapping[str, Any],
        progress: Any,
        ledgers: Sequence[LedgerFiles],
        keep_alive: float,
    ) -> ShardResult:
        with self._lock:
            self._busy = True
            self._keep_alive = keep_alive  # the latest run's --ray-keep-alive
        try:
            return run_shard(request, progress, ledgers)
        finally:
            with self._lock:
                self._busy = False
                self._last = time.monotonic()

    def retire(self) -> None:
        """Exit now: called after the calls already queued, it never interrupts one."""
        import ray

        ray.actor.exit_actor()

    def _expire(self) -> None:
        import ray

        while True:
            with self._lock:
                left = self._keep_alive - (time.monotonic() - self._last)
                if not self._busy and left <= 0:
                    break
            time.sleep(1.0 if self._busy else min(max(left, 0.05), 1.0))
        ray.kill(self._handle, no_restart=True)


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
    capacity = _capacity(ray, options)
    return 1 if capacity == sys.maxsize else capacity  # tasks that ask for no resources


def _runtime_env(root: Path, env: Mapping[str, str], ledgers: Sequence[Path]) -> dict[str, Any]:
    """What Ray ships: the project folder without ``EXCLUDES`` and without the ledger
    folders (``ledgers``; a shard reads them from ``ledger_files``, as the driver read them:
    shipped with the folder, every merge would make a new snapshot), and promptlib."""
    package = Path(__file__).resolve().parent.parent  # promptlib/, this module's package
    excludes = list(EXCLUDES)
    for folder in ledgers:
        try:
            relative = folder.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue  # outside the project: not shipped anyway
        if relative != ".":
            excludes.append(f"/{relative}")  # anchored at the project folder
    return {
        "working_dir": str(root),
        "excludes": excludes,
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
def _connected(
    ray: Any, root: Path, options: RayOptions, ledgers: Sequence[Path]
) -> Iterator[dict[str, Any]]:
    """Connected to the cluster as a job whose runtime environment ships the project;
    yields that environment as Ray resolved it (the packages by their content URIs)."""
    _check_reachable(options.address)
    try:
        ray.init(
            address=options.address,
            runtime_env=_runtime_env(root, options.env, ledgers),
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
        yield dict(ray.get_runtime_context().runtime_env or {})
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
    folders = [ledger.folder, *(o.folder for o in ledger.also_read if isinstance(o, Ledger))]
    if settings.ledger_dir is not None:
        folders.append(settings.ledger_dir)
    with _connected(ray, root, ray_options, folders) as runtime_env:
        count = _shard_count(ray, ray_options)
        shipped = ray.put(ledger_files(ledger))
        pool = _Pool.open(ray, runtime_env, count, ray_options)
        results = _run_tasks(ray, request, count, ray_options, total, on_progress, shipped, pool)
    shown = plan.ledger or ledger.where
    return _merge_and_report(settings, request, results, count, ledger, before, shown, options)


def _id_of(result: JobResult) -> tuple[str, str]:
    """A job's name in a report: (suite, prompt)."""
    return (result.job.suite.name, result.job.prompt.id)


def pool_key(runtime_env: Mapping[str, Any], options: RayOptions, slot: int) -> str | None:
    """The key of pool worker ``slot``: sha256 over what a fresh worker would run, i.e.
    the packages Ray ships (the project snapshot and promptlib's sources, named by Ray
    after a hash of their content), the forwarded variables, the resources, the retries,
    the slot, and the Python and Ray versions. None when a package is not named by its
    content (the run then uses plain tasks)."""
    import ray

    working_dir = runtime_env.get("working_dir")
    modules = list(runtime_env.get("py_modules") or [])
    if not modules or not all(_content_uri(u) for u in [working_dir, *modules]):
        return None
    described = {
        "working_dir": working_dir,
        "py_modules": modules,
        "env_vars": dict(sorted(dict(runtime_env.get("env_vars") or {}).items())),
        "num_cpus": options.num_cpus,
        "num_gpus": options.num_gpus,
        "retries": options.retries,
        "slot": slot,
        "python": sys.version,
        "ray": ray.__version__,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _content_uri(uri: object) -> bool:
    """A package URI Ray names by a hash of the package's content."""
    return isinstance(uri, str) and "://_ray_pkg_" in uri


@dataclass
class _Pool:
    """The pool workers a run sends its shards to: shard K goes to slot ((K-1) mod M) + 1,
    where M is the shards the cluster can hold at once (a worker keeps its resources while
    it waits, so more workers than that would wait for the keep-alive of the others)."""

    ray: Any
    runtime_env: dict[str, Any]
    options: RayOptions
    names: dict[int, str]  # slot -> actor name

    @classmethod
    def open(
        cls, ray: Any, runtime_env: Mapping[str, Any], count: int, options: RayOptions
    ) -> _Pool | None:
        """The run's pool (None: ``keep_alive`` 0, or packages not named by content: the
        shards are then plain tasks). Room is made for it (``_make_room``)."""
        slots = min(count, _capacity(ray, options))
        if options.keep_alive <= 0:
            _make_room(ray, options, set(), slots)
            return None
        names: dict[int, str] = {}
        for slot in range(1, slots + 1):
            key = pool_key(runtime_env, options, slot)
            if key is None:
                _make_room(ray, options, set(), slots)
                return None
            names[slot] = f"{POOL_PREFIX}{slot}-{key[:32]}"
        _make_room(ray, options, set(names.values()), slots)
        return cls(ray, dict(runtime_env), options, names)

    def submit(
        self, request: Mapping[str, Any], progress: Any, ledgers: Any
    ) -> Any:  # an ObjectRef
        name = self.names[(int(request["index"]) - 1) % len(self.names) + 1]
        worker = (
            self.ray.remote(_PoolWorker)
            .options(
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=self.options.num_cpus,
                num_gpus=self.options.num_gpus,
                max_restarts=self.options.retries,
                max_task_retries=self.options.retries,
                runtime_env=self.runtime_env,
            )
            .remote(self.options.keep_alive)
        )
        return worker.run.remote(request, progress, ledgers, self.options.keep_alive)


def _make_room(ray: Any, options: RayOptions, ours: set[str], slots: int) -> None:
    """Retire the pool workers the run does not use when the cluster lacks the free
    resources for the run's new workers or tasks (``slots`` at once, ``ours`` already up):
    idle workers would otherwise hold them until their keep-alive ran out. A worker is
    retired after the calls already sent to it, so no run using it loses a shard."""
    alive = set(pool_workers(ray))
    others = alive - ours
    wanted = slots - len(ours & alive)
    if not others or wanted <= 0:
        return
    free = ray.available_resources()
    if (
        wanted * options.num_cpus <= free.get("CPU", 0.0) + 1e-9
        and wanted * options.num_gpus <= free.get("GPU", 0.0) + 1e-9
    ):
        return
    for name in sorted(others):
        with contextlib.suppress(ValueError):  # it exited meanwhile
            ray.get_actor(name, namespace=NAMESPACE).retire.remote()


def pool_workers(ray: Any) -> list[str]:
    """The names of the pool workers alive on the connected cluster."""
    return sorted(
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry.get("namespace") == NAMESPACE and entry["name"].startswith(POOL_PREFIX)
    )


def _capacity(ray: Any, options: RayOptions) -> int:
    """Pool workers of ``options``' resources the whole cluster holds at once."""
    resources = ray.cluster_resources()
    counts = []
    if options.num_cpus > 0:
        counts.append(int(resources.get("CPU", 0) // options.num_cpus))
    if options.num_gpus > 0:
        counts.append(int(resources.get("GPU", 0) // options.num_gpus))
    return max(1, min(counts)) if counts else sys.maxsize


def _exited_on_purpose(exc: BaseException) -> bool:
    """A pool worker that ended on purpose (its keep-alive ran out, it was retired or
    killed with ``ray.kill``) before running a call: not a lost shard."""
    text = str(exc)
    return "killed by `ray.kill`" in text or "INTENDED_USER_EXIT" in text


def _run_tasks(
    ray: Any,
    request: Mapping[str, Any],
    count: int,
    options: RayOptions,
    total: int,
    on_progress: Callable[[int, int], None] | None,
    ledgers: Any = (),
    pool: _Pool | None = None,
) -> list[ShardResult]:
    from ray.exceptions import RayActorError, RayError, RayTaskError

    actor = ray.remote(num_cpus=0)(_Progress).remote() if on_progress is not None else None
    task = ray.remote(run_shard).options(
        num_cpus=options.num_cpus,
        num_gpus=options.num_gpus,
        max_retries=options.retries,
        retry_exceptions=False,
    )

    def submit(index: int) -> Any:
        shard = {**request, "index": index, "count": count}
        if pool is not None:
            return pool.submit(shard, actor, ledgers)
        return task.remote(shard, actor, ledgers)

    submitted = time.perf_counter()
    pending = {submit(index): index for index in range(1, count + 1)}
    resubmitted = dict.fromkeys(pending.values(), 0)
    done: dict[int, ShardResult] = {}
    shown = -1
    reading = actor.read.remote() if actor is not None else None
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=_REPORT_EVERY)
        for ref in ready:
            index = pending.pop(ref)
            try:
                done[index] = ray.get(ref)
                done[index].round_trip = time.perf_counter() - submitted
            except RayTaskError as exc:  # a bug in the task, not a project error
                raise RuntimeError(f"shard {index}/{count} on Ray: {exc}") from exc
            except RayActorError as exc:
                if pool is None or not _exited_on_purpose(exc):
                    raise _lost(index, count, options, exc) from exc
                if resubmitted[index] >= _RESUBMITS:
                    raise _lost(index, count, options, exc) from exc
                resubmitted[index] += 1
                pending[submit(index)] = index  # to a new worker of the same name
            except RayError as exc:
                raise _lost(index, count, options, exc) from exc
        if actor is not None and ray.wait([reading], timeout=0)[0]:
            # Never waited for: the driver notices a finished shard while the progress
            # actor starts.
            progress = ray.get(reading)
            reading = actor.read.remote()
            finished = sum(d for d, _ in progress.values())
            if on_progress is not None and finished != shown:
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


def _lost(index: int, count: int, options: RayOptions, exc: BaseException) -> ProviderError:
    return ProviderError(
        f"Ray: shard {index}/{count} was lost ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}) after "
        f"{options.retries} retries; nothing was merged. Run again: the shards' "
        "response caches keep what was answered (raise --ray-retries for a "
        "cluster that loses workers)"
    )


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
