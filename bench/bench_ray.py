"""Benchmark ``promptlib eval --executor ray`` against one process, on a mock model server.

The mock OpenAI-compatible server (``tests/_llm_server.py``, in its own process) answers
every request after 50 ms. The project is a copy of the bundled library (prompts, datasets,
suites) whose default provider is an ``openai`` provider pointing at the server, with
``concurrency`` requests in flight per process. The subset evaluated: the two
``stores_sofmattress_*`` suites (794 examples, one request each; the whole library's 37,009
would take many minutes per run on a small shared machine). The response cache is off, so
every example is a call.

* **one process**: ``promptlib eval --suite ...`` as a subprocess;
* **Ray**: a local cluster started for the benchmark (``ray start --head --num-cpus 2``),
  and ``evaluate_on_ray`` (the library call behind ``eval --executor ray``) with two shards
  of one CPU each. The first call is *cold* (Ray creates the runtime environment: uploads
  the project and promptlib, starts the pool's workers); the next ones are *warm*: their
  shards run on the pool's workers the first call left (``--ray-keep-alive``, default).
  Then the same number of calls with ``--ray-keep-alive 0``: plain tasks, whose worker
  processes Ray starts for each run (each call is a new Ray job).

Ideal wall time: calls x 50 ms / total concurrency (concurrency per process times the
processes). Ray overhead per task: from the shard's submission to its result on the driver, minus
the shard's own evaluation time measured inside the worker (scheduling, worker start,
runtime environment, returning the shard ledger). The rest of a Ray run's wall time is the
driver's planning, connecting, the merge and the final read of the ledger.

Also measured: what a run hashes to name the project snapshot it ships (Ray's content hash
of the folder, which ``ray.init`` computes at every run and the pool's key is made from),
and reading the ledger the driver ships to the shards.

Run: ``python bench/bench_ray.py`` (``--repeats N``, ``--concurrency C``, ``--no-write``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _llm import Server  # noqa: E402
from _report import write_section  # noqa: E402

from promptlib.integrations.ray import DEFAULT_KEEP_ALIVE  # noqa: E402

DELAY = 0.05
TARGET_OVERHEAD = 0.5
SUITES = ["stores_sofmattress_intent", "stores_sofmattress_scope"]


@contextlib.contextmanager
def llm_server() -> Iterator[str]:
    with Server(DELAY) as server:
        yield server.base_url


@contextlib.contextmanager
def ray_cluster(cpus: int) -> Iterator[str]:
    """``ray start --head`` in its own temporary folder and process group; its address."""
    folder = Path(tempfile.mkdtemp(prefix="ray"))
    ray = Path(sys.executable).with_name("ray")
    with (folder / "start.log").open("w") as log:
        process = subprocess.Popen(
            [
                *(str(ray), "start", "--head", "--port", "0", "--num-cpus", str(cpus)),
                *("--node-ip-address", "127.0.0.1", "--include-dashboard", "false"),
                *("--disable-usage-stats", "--temp-dir", str(folder), "--block"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            address = folder / "ray_current_cluster"
            deadline = time.monotonic() + 120
            while not address.exists() or not address.read_text().strip():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("ray start failed:\n" + (folder / "start.log").read_text())
                time.sleep(0.2)
            yield address.read_text().strip()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            time.sleep(1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    shutil.rmtree(folder, ignore_errors=True)


def make_project(target: Path, base_url: str, concurrency: int) -> None:
    shutil.copytree(ROOT / "prompts", target / "prompts")
    shutil.copytree(ROOT / "evals" / "datasets", target / "evals" / "datasets")
    shutil.copytree(ROOT / "evals" / "suites", target / "evals" / "suites")
    (target / "pyproject.toml").write_text(
        '[project]\nname = "bench-ray"\nversion = "0.0.0"\n\n'
        '[tool.promptlib]\ndefault-provider = "mock"\n\n'
        "[tool.promptlib.providers.mock]\n"
        f'type = "openai"\nmodel = "bench-model"\nbase_url = "{base_url}"\n'
        f'api_key_env = ""\ntimeout = 30\nconcurrency = {concurrency}\n',
        encoding="utf-8",
    )


def fresh_ledger(project: Path) -> None:
    shutil.rmtree(project / "evals" / "ledger", ignore_errors=True)


def suite_args() -> list[str]:
    return [arg for name in SUITES for arg in ("--suite", name)]


def one_process(project: Path) -> tuple[float, int]:
    fresh_ledger(project)
    argv = [str(Path(sys.executable).with_name("promptlib")), "--project", str(project)]
    start = time.perf_counter()
    done = subprocess.run(
        [*argv, "eval", *suite_args(), "--cache", "off", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"promptlib eval failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, calls_of(project)


def calls_of(project: Path) -> int:
    from promptlib.ledger import open_project
    from promptlib.settings import Settings

    view = open_project(Settings.resolve(project), write=False).read(refresh=True)
    return sum(run.timing.calls for run in view.latest_runs().values())


def on_ray(project: Path, address: str, keep_alive: float) -> dict[str, Any]:
    """One ``evaluate_on_ray`` call: its wall time and each shard's times and pid."""
    from promptlib.evals.cache import CacheMode
    from promptlib.evals.runner import EvalOptions
    from promptlib.integrations import ray as executor
    from promptlib.ledger import open_project
    from promptlib.settings import Settings

    fresh_ledger(project)
    tasks: list[Any] = []
    original = executor._run_tasks

    def timed(*args: Any, **kwargs: Any) -> Any:
        results = original(*args, **kwargs)
        tasks.extend(results)
        return results

    executor._run_tasks = timed
    try:
        settings = Settings.resolve(project)
        start = time.perf_counter()
        report = executor.evaluate_on_ray(
            settings,
            suites=SUITES,
            cache_mode=CacheMode.off,
            options=EvalOptions(),
            ray_options=executor.RayOptions(address=address, shards=2, keep_alive=keep_alive),
            ledger=open_project(settings),
        )
        wall = time.perf_counter() - start
    finally:
        executor._run_tasks = original
    if report.provider_failures:
        raise SystemExit(f"failed jobs: {[o.failure for o in report.provider_failures]}")
    return {
        "wall": wall,
        "calls": calls_of(project),
        "overheads": [t.round_trip - t.seconds for t in tasks],
        "work": max(t.seconds for t in tasks),
        "pids": sorted(t.pid for t in tasks),
    }


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so that the cluster is torn down


def snapshot_costs(project: Path, repeats: int = 3) -> tuple[float, float, int]:
    """Median seconds to hash the project snapshot as Ray ships it (the folder without the
    executor's excludes and the ledger), and to read the ledger shipped to the shards;
    the number of files hashed."""
    from ray._private.runtime_env.packaging import get_uri_for_directory

    from promptlib.integrations import ray as executor
    from promptlib.ledger import open_project
    from promptlib.settings import Settings

    settings = Settings.resolve(project)
    ledger = open_project(settings)
    assert isinstance(ledger, executor.Ledger)
    env = executor._runtime_env(project, {}, [ledger.folder])
    hashing, reading = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        get_uri_for_directory(str(project), include_gitignore=True, excludes=env["excludes"])
        hashing.append(time.perf_counter() - start)
        start = time.perf_counter()
        executor.ledger_files(ledger)
        reading.append(time.perf_counter() - start)
    files = sum(1 for path in project.rglob("*") if path.is_file())
    return statistics.median(hashing), statistics.median(reading), files


def worker_imports(repeats: int = 3) -> float:
    """Median seconds a fresh Python process takes to import what a shard imports: with
    --ray-keep-alive 0, each run of the executor is a new Ray job, whose tasks run in new
    worker processes."""
    code = "import ray, promptlib.evals.run, promptlib.evals.shards, promptlib.providers.openai"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm Ray runs (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="per process (default 8)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as scratch, llm_server() as base_url:
        project = Path(scratch) / "project"
        make_project(project, base_url, args.concurrency)
        local_wall, local_calls = one_process(project)
        with ray_cluster(2) as address:
            cold = on_ray(project, address, DEFAULT_KEEP_ALIVE)
            warm = [on_ray(project, address, DEFAULT_KEEP_ALIVE) for _ in range(args.repeats)]
            plain = [on_ray(project, address, 0) for _ in range(args.repeats)]
        hashing, reading, files = snapshot_costs(project)
    calls = local_calls
    imports = worker_imports()
    load = os.getloadavg()[0]
    if any(run["calls"] != calls for run in [cold, *warm, *plain]):
        raise SystemExit("the Ray runs made another number of calls than one process")
    if any(run["pids"] != cold["pids"] for run in warm):
        raise SystemExit("a warm run did not run on the pool's workers")
    ideal_one = calls * DELAY / args.concurrency
    ideal_two = calls * DELAY / (2 * args.concurrency)
    warm_wall = statistics.median(run["wall"] for run in warm)
    warm_work = statistics.median(run["work"] for run in warm)
    overheads = [o for run in warm for o in run["overheads"]]
    plain_wall = statistics.median(run["wall"] for run in plain)
    plain_overheads = [o for run in plain for o in run["overheads"]]
    rows = [
        "| run | processes x concurrency | wall s | ideal s | wall / ideal |",
        "| --- | --- | ---: | ---: | ---: |",
        f"| one process (`promptlib eval`) | 1 x {args.concurrency} | {local_wall:.2f} | "
        f"{ideal_one:.2f} | {local_wall / ideal_one:.2f} |",
        f"| Ray, cold (runtime environment created) | 2 x {args.concurrency} | "
        f"{cold['wall']:.2f} | {ideal_two:.2f} | {cold['wall'] / ideal_two:.2f} |",
        f"| Ray, warm pool (median of {len(warm)}) | 2 x {args.concurrency} | "
        f"{warm_wall:.2f} | {ideal_two:.2f} | {warm_wall / ideal_two:.2f} |",
        f"| Ray, `--ray-keep-alive 0` (median of {len(plain)}) | 2 x {args.concurrency} | "
        f"{plain_wall:.2f} | {ideal_two:.2f} | {plain_wall / ideal_two:.2f} |",
    ]
    verdict = "meets" if max(overheads) <= TARGET_OVERHEAD else "misses"
    body = f"""### Ray executor against one process

{calls:,} examples (the two `stores_sofmattress_*` suites of the bundled library, one call
each, cache off) answered by the mock OpenAI-compatible server in {DELAY * 1000:.0f} ms.
Ray: a local cluster of 2 CPUs, `--ray-shards 2`. Ideal: calls x {DELAY * 1000:.0f} ms /
total concurrency.

{chr(10).join(rows)}

Ray overhead per shard (submission to result on the driver, minus the shard's own
evaluation in the worker), warm runs on the pool: median {statistics.median(overheads):.2f} s,
max {max(overheads):.2f} s (target <= {TARGET_OVERHEAD} s: {verdict} it); with
`--ray-keep-alive 0` (plain tasks, new worker processes every run): median
{statistics.median(plain_overheads):.2f} s, max {max(plain_overheads):.2f} s; cold run: max
{max(cold["overheads"]):.2f} s (it includes creating the runtime environment and starting the
pool's workers). The rest of a warm run beyond its slowest shard ({warm_work:.2f} s of
evaluation), i.e. {warm_wall - warm_work:.2f} s, is connecting to the cluster, the driver's
planning, the merge and the final read of the ledger.

Where the plain tasks' overhead goes: each `promptlib eval --executor ray` is a new Ray
job, and Ray does not share worker processes between jobs, so every task starts a new
Python process that imports Ray, promptlib and its dependencies: {imports:.2f} s in a fresh
process on this machine at the time. The pool's workers are started once and kept.

Hashing the project snapshot as Ray ships it ({files:,} files of the bundled library's
prompts, datasets and suites): {hashing:.2f} s per run, done by `ray.init` with or without
the pool (the pool's key is a sha256 of Ray's content names, not a second pass over the
files); reading the ledger shipped to the shards: {reading * 1000:.1f} ms (the ledger of
one run here). The load average (1 min) was {load:.1f} on these CPUs when the figures were
taken: the one-process run took {local_wall / ideal_one:.1f}x its ideal, and every figure
above is inflated by the same contention.
"""
    command = "python bench/bench_ray.py"
    if args.no_write:
        sys.stdout.write(body)
    else:
        write_section("bench_ray", command, body)


if __name__ == "__main__":
    main()
