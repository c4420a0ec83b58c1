"""Benchmark ``promptlib eval`` of the whole bundled library with the retrieval provider.

The project's ``prompts/``, ``evals/datasets/``, ``evals/suites/`` and ``pyproject.toml``
are copied into a temporary folder (no ledger: every run starts with a fresh one), and
every suite is evaluated with the offline ``retrieval`` provider, the project's default:

* **CLI**: ``promptlib --project COPY eval --format json`` as a subprocess (start-up,
  library loading and report included), the ledger deleted before each run; median of
  ``--repeats``;
* **in process**: ``promptlib.evals.run.evaluate(settings, options=EvalOptions(fresh=
  True))``, the library call behind it. The first call runs under cProfile (it includes the
  one-time costs of a process: imports of numpy and bm25s, NLTK's stemmer, ...); the next
  ``--repeats`` calls are timed without it.

Examples per second count every example of every job (51 prompts, one job each). The
profile is grouped by promptlib module: the cumulative time of the function through which
the run enters each part (rendering, the retrieval provider, metrics, the ledger, dataset
and library loading), "everything else" being the harness itself (its loop, asyncio,
inputs and references per row, run records).

Run: ``python bench/bench_eval_library.py`` (``--repeats N``, ``--no-write``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _report import top_functions, write_section  # noqa: E402

from promptlib.reports import to_json  # noqa: E402

# (label, file, function): the function through which an evaluation enters each part.
# Several functions of one label add up (e.g. every metric class's ``score``).
PARTS = [
    ("library loading (`load`: YAML, validation, templates)", "collection.py", ("load",)),
    ("suites and datasets (`load_suites`, `load_dataset`)", "", ()),
    ("rendering (`Prompt.render`: input checks, sandboxed Jinja)", "prompt.py", ("render",)),
    (
        "retrieval provider (`RetrievalProvider.complete`: parsing, BM25)",
        "retrieval.py",
        ("complete",),
    ),
    ("metrics (`score` of each metric: ROUGE, accuracy, ...)", "metrics.py", ("score",)),
    ("ledger (`Ledger.read`, `Ledger.append`)", "core.py", ("read", "append")),
    ("run records and evidence objects (`build_run`)", "runner.py", ("build_run",)),
]
SUITES_AND_DATA = [("suite.py", "load_suites"), ("dataset.py", "load_dataset")]


def copy_project(target: Path) -> None:
    shutil.copytree(ROOT / "prompts", target / "prompts")
    shutil.copytree(ROOT / "evals" / "datasets", target / "evals" / "datasets")
    shutil.copytree(ROOT / "evals" / "suites", target / "evals" / "suites")
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")


def fresh_ledger(project: Path) -> None:
    shutil.rmtree(project / "evals" / "ledger", ignore_errors=True)


def count_examples(results: list[dict[str, Any]]) -> int:
    return sum(
        max((int(m["n"]) for m in r["metrics"].values()), default=0) + int(r["errors"])
        for r in results
    )


def cli(project: Path, env: dict[str, str]) -> tuple[float, int, int]:
    fresh_ledger(project)
    argv = [str(Path(sys.executable).with_name("promptlib")), "--project", str(project)]
    start = time.perf_counter()
    done = subprocess.run(
        [*argv, "eval", "--format", "json"], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a gate failed, which is a result, not a crash
        raise SystemExit(f"promptlib eval failed ({done.returncode}): {done.stderr[-2000:]}")
    results = json.loads(done.stdout)["results"]
    if any(r["status"] != "ran" for r in results):
        raise SystemExit(f"unexpected statuses: {[r['status'] for r in results]}")
    return wall, len(results), count_examples(results)


def in_process(project: Path, profiler: cProfile.Profile | None = None) -> tuple[float, int]:
    from promptlib.evals.run import evaluate
    from promptlib.evals.runner import EvalOptions
    from promptlib.settings import Settings

    fresh_ledger(project)
    settings = Settings.resolve(project)
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = evaluate(settings, options=EvalOptions(fresh=True))
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - start
    examples = count_examples(to_json(report)["results"])
    return wall, examples


def timed_parts(project: Path) -> tuple[str, float]:
    """One more in-process call with a timer around each part's entry functions.

    cProfile charges its overhead to every small call, and rendering makes a million of
    them; timers around the entry points (tens of thousands of calls) distort far less.
    """
    import inspect

    from promptlib.evals import metrics, suite
    from promptlib.evals import run as evaluation
    from promptlib.evals import runner as harness
    from promptlib.ledger import core as ledger
    from promptlib.library import prompt
    from promptlib.providers import retrieval

    spent: dict[str, float] = defaultdict(float)
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        patched.append((owner, name, original))
        setattr(owner, name, timed_async if inspect.iscoroutinefunction(original) else timed)

    labels = [label for label, _file, _names in PARTS]
    wrap(evaluation, "load", labels[0])
    wrap(evaluation, "load_suites", labels[1])
    wrap(suite, "load_dataset", labels[1])
    wrap(prompt.Prompt, "render", labels[2])
    # The retrieval provider answers without awaiting anything, so the time of
    # ``complete`` is all its own.
    wrap(retrieval.RetrievalProvider, "complete", labels[3])
    for _name, cls in inspect.getmembers(metrics, inspect.isclass):
        if cls.__module__ == metrics.__name__ and "score" in cls.__dict__:
            wrap(cls, "score", labels[4])
    wrap(ledger.Ledger, "read", labels[5])
    wrap(ledger.Ledger, "append", labels[5])
    wrap(harness, "build_run", labels[6])
    try:
        total, _examples = in_process(project)
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    rest = "everything else: the harness (loop, asyncio, inputs, references)"
    spent[rest] = total - sum(spent.values())
    table = ["| part | seconds | share |", "| --- | ---: | ---: |"]
    for label in [*labels, rest]:
        table.append(f"| {label} | {spent[label]:.2f} | {spent[label] / total:.0%} |")
    table.append(f"| **total (`evaluate`)** | {total:.2f} | 100% |")
    return "\n".join(table), total


def profile_table(profiler: cProfile.Profile, top: int) -> tuple[str, str]:
    stats: dict[Any, Any] = pstats.Stats(profiler, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    cumulative: dict[tuple[str, str], float] = defaultdict(float)
    rows = []
    total = 0.0
    for (filename, line, name), (_cc, calls, own, cum, _callers) in stats.items():
        if "promptlib" in filename:
            cumulative[(Path(filename).name, name)] += cum
            if filename.endswith("run.py") and name == "evaluate":
                total = cum
        rows.append((own, cum, calls, filename, line, name))
    parts: dict[str, float] = {}
    for label, file, names in PARTS:
        if not file:
            parts[label] = sum(cumulative[key] for key in SUITES_AND_DATA)
        else:
            parts[label] = sum(cumulative[(file, name)] for name in names)
    parts["everything else: the harness (loop, asyncio, inputs, references)"] = total - sum(
        parts.values()
    )
    table = ["| part | seconds | share |", "| --- | ---: | ---: |"]
    for label, seconds in parts.items():
        table.append(f"| {label} | {seconds:.2f} | {seconds / total:.0%} |")
    table.append(f"| **total (`evaluate`)** | {total:.2f} | 100% |")
    functions = top_functions(rows, top)
    return "\n".join(table), functions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-eval-library-"))
    try:
        project = workdir / "project"
        copy_project(project)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLIB_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")  # as an installed wheel runs
        cli(project, env)  # warm-up: bytecode cache, OS file cache
        cli_runs = []
        jobs = examples = 0
        for _ in range(args.repeats):
            wall, jobs, examples = cli(project, env)
            cli_runs.append(wall)
            print(f"CLI: {wall:.2f} s, {jobs} jobs, {examples} examples", file=sys.stderr)
        profiler = cProfile.Profile()
        profiled_wall, profiled_examples = in_process(project, profiler)
        lib_runs = []
        for _ in range(args.repeats):
            wall, lib_examples = in_process(project)
            if lib_examples != examples or profiled_examples != examples:
                raise SystemExit(f"in process: {lib_examples} examples, CLI: {examples}")
            lib_runs.append(wall)
            print(f"in process: {wall:.2f} s", file=sys.stderr)
        parts, top = profile_table(profiler, args.profile_top)
        timed, timed_total = timed_parts(project)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    cli_wall = statistics.median(cli_runs)
    lib_wall = statistics.median(lib_runs)
    body = f"""
`promptlib eval` of the whole bundled library ({jobs} prompt runs over every suite,
{examples:,} examples) with the offline `retrieval` provider, on a copy of the project with a
fresh ledger. CLI: median of {args.repeats} runs after a warm-up run (bytecode cached, as an
installed wheel runs). In process: `evaluate()` in one process, median of {args.repeats}
calls after a first, profiled call.

| run | wall s | examples/s |
| --- | ---: | ---: |
| CLI: `promptlib --project COPY eval --format json` | {cli_wall:.2f} | {examples / cli_wall:,.0f} |
| in process: `evaluate(...)`, `fresh=True` | {lib_wall:.2f} | {examples / lib_wall:,.0f} |

Where the time goes, measured with timers around the function through which each part is
entered (one more in-process call, {timed_total:.2f} s; the metrics' one-time set-up, such as
loading NLTK's stemmer, happened in earlier calls):

{timed}

The same split from the first in-process call under cProfile ({profiled_wall:.1f} s with the
profiler's overhead, one-time costs of the process included), by the promptlib function
through which each part is entered (cumulative time):

{parts}

Top functions by own time in that call:

{top}
"""
    if args.no_write:
        print(body)
    else:
        write_section("eval-library", "python bench/bench_eval_library.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
