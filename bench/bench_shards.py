"""Benchmark sharded evaluation (``eval --shard K/N``) and ``promptlib ledger merge``.

Project: a temporary copy of this repository's library (``prompts/``, ``evals/suites/``,
``evals/datasets/``, ``pyproject.toml``) with no ledger, plus a provider ``bench`` of type
``openai`` pointing at ``tests/_llm_server.py`` run in its own process, answering every
request after ``--delay`` seconds (50 ms).

1. **Wall time.** The examples of ``--suites`` (default: support_answers, support_intent
   and routing_banking_intent: 28 whole jobs of 28-41 rows, two jobs of 915 rows that are
   split, one of 450 that is split; a subset of the library's examples, because the whole
   library at 50 ms per call takes minutes per configuration; ``--suites all``: every suite
   of the library) evaluated by 1, 2 and 4
   shards, each shard a separate ``promptlib eval --shard K/N --provider bench --cache off``
   process with ``--concurrency C`` (16), all started at once. Wall time is from the first
   start to the last exit, start-up included; the ideal is ``calls x delay / (N x C)``.
   Then the merge of those shard ledgers (``promptlib ledger merge``, a subprocess).
2. **Merge of the full library.** Every job of the library (every suite, every prompt) by
   4 shards with the offline ``retrieval`` provider (the merge reads and writes the same
   records and objects whatever the provider), then ``promptlib ledger merge`` of the 4
   shard ledgers into an empty ledger: the subprocess's wall time (start-up included) and
   ``merge_ledgers`` in this process. Target (from the issue): <= 2 s.

Wall times are the median of ``--repeats`` (3), merge times of ``--merge-repeats`` (5).
Run: ``python bench/bench_shards.py`` (``--delay``, ``--concurrency``, ``--shards 1,2,4``,
``--suites a,b``, ``--repeats``, ``--merge-repeats``, ``--no-write``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _llm import Server  # noqa: E402
from _report import write_section  # noqa: E402

PROMPTLIB = str(Path(sys.executable).with_name("promptlib"))
TARGET_MERGE = 2.0


def make_project(folder: Path, base_url: str, concurrency: int) -> Path:
    for part in ("prompts", "evals/suites", "evals/datasets"):
        shutil.copytree(ROOT / part, folder / part)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    text += (
        "\n[tool.promptlib.providers.bench]\n"
        f'type = "openai"\nmodel = "bench-model"\nbase_url = "{base_url}"\n'
        f'api_key_env = ""\ntimeout = 30\nconcurrency = {concurrency}\n'
    )
    (folder / "pyproject.toml").write_text(text, encoding="utf-8")
    return folder


def run_shards(project: Path, count: int, args: list[str], prefix: str) -> tuple[float, int]:
    """Run shards 1..count at once; (wall seconds, provider calls reported by them)."""
    env = {**os.environ, "PROMPTLIB_DEBUG": "0"}
    start = time.perf_counter()
    children = []
    for k in range(1, count + 1):
        folder = project / f"{prefix}-{k}"
        shutil.rmtree(folder, ignore_errors=True)
        argv = [PROMPTLIB, "--project", str(project), "eval", "--shard", f"{k}/{count}"]
        argv += [*args, "--ledger", str(folder), "--format", "json"]
        children.append(
            subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    calls = 0
    for child in children:
        out, err = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"a shard failed ({child.returncode}): {err}")
        calls += sum(job["calls"] for job in json.loads(out)["jobs"])
    return time.perf_counter() - start, calls


def merge(project: Path, count: int, prefix: str, into: Path) -> float:
    shutil.rmtree(into, ignore_errors=True)
    folders = [str(project / f"{prefix}-{k}") for k in range(1, count + 1)]
    argv = [PROMPTLIB, "--project", str(project), "ledger", "merge", *folders, "--into", str(into)]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the merge failed ({done.returncode}): {done.stderr}")
    return wall


def merge_in_process(project: Path, count: int, prefix: str, into: Path) -> tuple[float, int]:
    from promptlib.evals.shards import library_fingerprints, merge_ledgers
    from promptlib.library.collection import load

    shutil.rmtree(into, ignore_errors=True)
    folders = [project / f"{prefix}-{k}" for k in range(1, count + 1)]
    start = time.perf_counter()
    report = merge_ledgers(folders, into, library=library_fingerprints(load(project)))
    return time.perf_counter() - start, len(report.appended)


def library_load(project: Path) -> float:
    """Seconds to load the library and take its fingerprints (the foreign-project check)."""
    from promptlib.evals.shards import library_fingerprints
    from promptlib.library.collection import load

    start = time.perf_counter()
    library_fingerprints(load(project))
    return time.perf_counter() - start


def contents(merged: Path) -> tuple[int, int]:
    """The runs of ``merged`` and the examples they hold."""
    from promptlib.ledger import Ledger

    view = Ledger(merged).read()
    runs = list(view.latest_runs().values())
    return len(runs), sum(len(view.scores(run).ids) for run in runs)


def matching(merged: Path) -> int:
    """How many runs of ``merged`` have the scores object and aggregates of the run of the
    same key in this repository's ledger (recorded by an unsharded run)."""
    from promptlib.ledger import Ledger

    recorded = Ledger(ROOT / "evals" / "ledger").read()
    same = 0
    for key, run in Ledger(merged).read().latest_runs().items():
        other = recorded.run(key)
        if other is not None and (other.scores, other.results) == (run.scores, run.results):
            same += 1
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--suites", default="support_answers,support_intent,routing_banking_intent")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--merge-repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args()
    counts = [int(n) for n in options.shards.split(",")]
    suites = [s for s in options.suites.split(",") if s]
    rows: list[str] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as scratch:
        server = Server(options.delay)
        try:
            project = make_project(Path(scratch) / "project", server.base_url, options.concurrency)
            args = ["--provider", "bench", "--cache", "off", "--concurrency"]
            args += [str(options.concurrency)]
            for suite in suites if suites != ["all"] else []:
                args += ["--suite", suite]
            for count in counts:
                walls, merges, calls = [], [], 0
                for _ in range(options.repeats):
                    wall, calls = run_shards(project, count, args, f"sub{count}")
                    walls.append(wall)
                    merges.append(merge(project, count, f"sub{count}", project / "merged"))
                ideal = calls * options.delay / (count * options.concurrency)
                wall = statistics.median(walls)
                rows.append(
                    f"| {count} | {count} x {options.concurrency} | {calls:,} | {ideal:.2f} s "
                    f"| {wall:.2f} s | {wall / ideal:.2f}x | {statistics.median(merges):.2f} s |"
                )
                sys.stderr.write(rows[-1] + "\n")
        finally:
            server.stop()
        # The full library, offline, by 4 shards; then the merge.
        project = Path(scratch) / "project"
        start = time.perf_counter()
        run_shards(project, 4, ["--cache", "off"], "full")
        full_eval = time.perf_counter() - start
        cli_merges, lib_merges, loads, appended = [], [], [], 0
        for _ in range(options.merge_repeats):
            loads.append(library_load(project))
            cli_merges.append(merge(project, 4, "full", project / "merged-full"))
            seconds, appended = merge_in_process(project, 4, "full", project / "merged-lib")
            lib_merges.append(seconds)
        same = matching(project / "merged-lib")
        jobs, examples = contents(project / "merged-lib")
        size = sum(
            f.stat().st_size
            for k in range(1, 5)
            for f in (project / f"full-{k}").rglob("*")
            if f.is_file()
        )
    load_after = os.getloadavg()[0]
    scope = (
        "every suite of the bundled library"
        if suites == ["all"]
        else f"the suites {', '.join(suites)} of the bundled library (a subset of its examples)"
    )
    cli_merge, lib_merge = statistics.median(cli_merges), statistics.median(lib_merges)
    verdict = "met" if cli_merge <= TARGET_MERGE else "NOT met"
    body = f"""## Sharded evaluation and merge

`eval --shard K/N` processes started at once against `tests/_llm_server.py` answering in
{options.delay * 1000:.0f} ms, each with concurrency {options.concurrency}, on {scope}.
Ideal = calls x delay / total concurrency. Merge = `promptlib ledger merge` of those shard
ledgers (a subprocess, start-up included). Median of {options.repeats}. Load average
(1 min) when the benchmark started and ended: {load_before:.1f} and {load_after:.1f}, on
{os.cpu_count()} CPUs: other processes shared the machine, which inflates every wall time
below; compare the rows with each other and with the ideal, not across machines.

| shards | concurrency | calls | ideal | wall | vs ideal | merge |
|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Merge of the full library: 4 shard ledgers holding all {jobs} jobs ({examples:,} examples, split
jobs joined from 4 parts each; {size / 1e6:.1f} MB on disk; written by 4 shards with the
offline `retrieval` provider in {full_eval:.1f} s) into an empty ledger, {appended} runs
appended: `promptlib ledger merge` {cli_merge:.2f} s (start-up and loading the library
included), `merge_ledgers()` in process {lib_merge:.2f} s, of which loading the library
for the foreign-project check {statistics.median(loads):.2f} s (medians of
{options.merge_repeats}). Target <= {TARGET_MERGE:.0f} s for the command: {verdict}.
{same} of the {appended} merged runs have the very scores object and aggregates that the
repository's ledger (`evals/ledger`) holds for the same run key, recorded unsharded.

The shards share the machine's cores: with more shards than cores, the client work
(rendering, scoring, JSON) of the shards competes, so the wall time moves away from the
ideal as N grows; on separate CI runners each shard has its own.
"""
    if options.no_write:
        sys.stdout.write(body)
    else:
        command = "python bench/bench_shards.py"
        if options.suites != parser.get_default("suites"):
            command += f" --suites {options.suites}"
        if options.repeats != parser.get_default("repeats"):
            command += f" --repeats {options.repeats}"
        write_section("shards", command, body)


if __name__ == "__main__":
    main()
