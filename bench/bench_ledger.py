"""The ledger at the size users reach: growth per run, reads after 100 full-library runs.

1. Growth. On a copy of this project with a fresh ledger, one full-library evaluation
   (`promptlib eval`) with the offline retrieval provider, then with an OpenAI-compatible
   server on 127.0.0.1 (tests/_llm_server.py, which echoes the user message): bytes added
   to the index, to scores and example-id objects (what comparisons need), and to outputs
   objects (the model's answers), as committed (gzip files, index text).
2. Scale. Copies of this repository's ledger with +10, +30 and +100 full-library runs
   appended: each extra run is a re-keyed copy of a real run of the last full evaluation,
   with its scores and outputs objects rotated so that every copy has objects of its own.
   For each size: `eval --against v2.0.0` with everything reused, `release --dry-run` and
   `ledger verify`, as whole CLI runs (wall time, peak RSS of the process).
3. The same index read by today's schema-2 reader and the same records in schema 1's
   shape (one 1.26 MB line set per full run) read by the schema-1 reader, in process.

Run: python bench/bench_ledger.py [--sizes 10,30,100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from _report import write_section  # noqa: E402
from bench_harness import Server  # noqa: E402

from promptlib._canonical import sha256_of  # noqa: E402
from promptlib.ledger import Ledger, LineStore  # noqa: E402
from promptlib.ledger.legacy import read_records  # noqa: E402
from promptlib.ledger.objects import encode  # noqa: E402
from promptlib.ledger.records import RunRecord  # noqa: E402

# Runs the CLI in this process and prints its peak RSS (KiB) on stderr at exit. On Linux
# it reads VmHWM, the peak of this process image: ru_maxrss would also count the pages of
# the benchmark process the child was forked from.
RUNNER = """
import atexit, resource, sys
def peak():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
atexit.register(lambda: sys.stderr.write(f"\\nPEAK_RSS_KIB={peak()}\\n"))
from promptlib.cli import main
sys.argv = ["promptlib", *sys.argv[1:]]
main()
"""

PROVIDER = """
[tool.promptlib.providers.bench]
type = "openai"
model = "bench-model"
base_url = "{base_url}"
api_key_env = ""
concurrency = 32
timeout = 30
"""


def copy_project(target: Path, *, ledger: bool, extra: str = "") -> Path:
    target.mkdir(parents=True)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (target / "pyproject.toml").write_text(text + extra, encoding="utf-8")
    shutil.copy(ROOT / "CHANGELOG.md", target / "CHANGELOG.md")
    shutil.copytree(ROOT / "prompts", target / "prompts")
    shutil.copytree(ROOT / "evals" / "datasets", target / "evals" / "datasets")
    shutil.copytree(ROOT / "evals" / "suites", target / "evals" / "suites")
    if ledger:
        shutil.copytree(ROOT / "evals" / "ledger", target / "evals" / "ledger")
    return target


def cli(project: Path, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one CLI run."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, "--project", str(project), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    # Exit 1 is a failed gate: the echo server's answers fail most of them, as they should.
    if done.returncode not in (0, 1):
        raise SystemExit(f"promptlib {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    peak = int(done.stderr.rsplit("PEAK_RSS_KIB=", 1)[1].split()[0])
    return elapsed, peak / 1024


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def object_bytes(store: Any, references: set[str]) -> int:
    return sum(store.path_of(r).stat().st_size for r in references)


def growth(folder: Path, provider: str | None, base_url: str | None) -> dict[str, int]:
    extra = PROVIDER.format(base_url=base_url) if base_url else ""
    project = copy_project(folder, ledger=False, extra=extra)
    args = ["eval", "--cache", "off"] + (["--provider", provider] if provider else [])
    cli(project, *args)
    ledger = Ledger(project / "evals" / "ledger")
    view = ledger.read()
    scores = {r.scores for r in view.runs}
    outputs = {r.outputs for r in view.runs if r.outputs}
    examples = {view.object(ref)["examples"] for ref in scores}
    return {
        "runs": len(view.runs),
        "index": (project / "evals" / "ledger" / "index.jsonl").stat().st_size,
        "scores": object_bytes(ledger.objects, scores),
        "examples": object_bytes(ledger.objects, examples),
        "outputs": object_bytes(ledger.outputs, outputs),
    }


def rotated(value: dict[str, Any], field: str, shift: int) -> dict[str, Any]:
    """A copy of a scores or outputs object whose per-example lists are rotated."""

    def turn(items: list[Any]) -> list[Any]:
        cut = shift % len(items) if items else 0
        return items[cut:] + items[:cut]

    copy = dict(value)
    if field == "scores":
        copy["scores"] = {name: turn(values) for name, values in value["scores"].items()}
    else:
        copy["outputs"] = turn(value["outputs"])
    return copy


def grow(project: Path, extra_runs: int, template: list[RunRecord]) -> None:
    """Append ``extra_runs`` full-library runs: re-keyed copies of ``template``."""
    ledger = Ledger(project / "evals" / "ledger")
    view = ledger.read()
    for copy in range(1, extra_runs + 1):
        for run in template:
            objects: dict[str, Any] = {}
            scores = rotated(view.object(run.scores), "scores", copy)
            scores_ref = encode(scores)[0]
            objects[scores_ref] = scores
            outputs_ref = None
            if run.outputs:
                outputs = rotated(view.object(run.outputs, outputs=True), "outputs", copy)
                outputs_ref = encode(outputs)[0]
                objects[outputs_ref] = outputs
            data = run.to_json()
            data["key"] = sha256_of({"synthetic": copy, "key": run.key})
            data["time"] = f"2027-{1 + copy // 28 % 12:02d}-{1 + copy % 28:02d}T00:00:00Z"
            data["scores"], data["outputs"] = scores_ref, outputs_ref
            data.pop("migrated_from", None)
            ledger.append(
                RunRecord.model_validate({k: v for k, v in data.items() if v is not None}), objects
            )


def schema_1_lines(view: Any, runs: list[RunRecord]) -> list[dict[str, Any]]:
    """The same runs in schema 1's shape: per-example scores inline, keyed by example id."""
    out = []
    for run in runs:
        scores = view.scores(run)
        out.append(
            {
                "kind": "run",
                "key": run.key,
                "time": run.time,
                "suite": run.suite,
                "prompt": run.prompt.model_dump(),
                "dataset": run.dataset.model_dump(),
                "examples": run.examples,
                "provider": {**run.provider.model_dump(), "params": run.params},
                "metrics": {"config": [], "implementation": {"promptlib": "2.1.0"}},
                "eval": {},
                "repeats": run.repeats,
                "results": {k: v.model_dump() for k, v in run.results.items()},
                "scores": {name: scores.of(name) for name in run.metrics},
                "errors": {"count": run.errors, "examples": dict(scores.errors)},
                "timing": run.timing.model_dump(),
                "usage": run.usage.model_dump(),
                "package": {"version": "2.1.0", "git_commit": None, "dirty": None},
            }
        )
    return out


def timed(function: Any, repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,30,100")
    args = parser.parse_args()
    sizes = [0, *[int(s) for s in args.sizes.split(",")]]
    with tempfile.TemporaryDirectory(prefix="promptlib-bench-ledger-") as folder:
        base = Path(folder)
        offline = growth(base / "growth-offline", None, None)
        server = Server(delay=0.0)
        try:
            served = growth(base / "growth-server", "bench", server.base_url)
        finally:
            server.stop()
        source = Ledger(ROOT / "evals" / "ledger").read()
        latest: dict[tuple[str, str], RunRecord] = {}
        for run in source.runs:
            if run.provider.name == "retrieval" and run.outputs:
                latest[(run.suite, run.prompt.id)] = run
        template = sorted(latest.values(), key=lambda r: (r.suite, r.prompt.id))
        largest = max(source.runs, key=lambda r: r.examples)
        line = next(
            text
            for text in (ROOT / "evals" / "ledger" / "index.jsonl").read_text().splitlines()
            if json.loads(text)["key"] == largest.key
        )
        rows = []
        reads = []
        for size in sizes:
            project = copy_project(base / f"scale-{size}", ledger=True)
            grow(project, size, template)
            against = cli(project, "eval", "--against", "v2.0.0")
            # A release needs a change: one prompt's text, as in a pull request.
            changed = project / "prompts" / "support" / "answer" / "track_refund.yaml"
            text = changed.read_text(encoding="utf-8")
            changed.write_text(text.replace("You are ", "You are the friendly ", 1))
            dry = cli(project, "release", "--dry-run")
            verify = cli(project, "ledger", "verify")
            index = project / "evals" / "ledger" / "index.jsonl"
            runs = len(index.read_text().splitlines())
            rows.append(
                (
                    size,
                    runs,
                    index.stat().st_size,
                    tree_bytes(project / "evals" / "ledger"),
                    against,
                    dry,
                    verify,
                )
            )
            if size in (0, sizes[-1]):
                view = Ledger(project / "evals" / "ledger").read()
                v1 = base / f"v1-{size}.jsonl"
                LineStore(v1, schema=1).append(schema_1_lines(view, list(view.runs)))
                reads.append(
                    (
                        size,
                        timed(lambda p=project: Ledger(p / "evals" / "ledger").read()),
                        timed(lambda v=v1: read_records(v), repeats=1),
                        v1.stat().st_size,
                    )
                )
    base_against, base_dry = rows[0][4][0], rows[0][5][0]
    table = [
        "| extra full-library runs | index lines | index | ledger on disk "
        "| `eval --against v2.0.0` (all reused) | `release --dry-run` | `ledger verify` |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, runs, index_size, total, against, dry, verify in rows:
        table.append(
            f"| +{size} | {runs:,} | {index_size / 1e6:.1f} MB | {total / 1e6:.1f} MB "
            f"| {against[0]:.2f} s ({against[0] / base_against:.2f}x), {against[1]:.0f} MB "
            f"| {dry[0]:.2f} s ({dry[0] / base_dry:.2f}x), {dry[1]:.0f} MB "
            f"| {verify[0]:.2f} s, {verify[1]:.0f} MB |"
        )
    per_run = offline["runs"]

    def kb(value: int) -> str:
        return f"{value / 1e3:.0f} KB"

    committed = [offline["index"] + offline["scores"], served["index"] + served["scores"]]
    growth_rows = [
        ("index lines", offline["index"], served["index"]),
        ("scores objects", offline["scores"], served["scores"]),
        ("example-id objects (shared by later runs of the same rows)", offline["examples"],
         served["examples"]),
        ("**index + scores (target <= 250 KB)**", *committed),
        ("outputs objects (the model's answers; may live in Git LFS or DVC)",
         offline["outputs"], served["outputs"]),
    ]  # fmt: skip
    growth_table = "\n".join(
        f"| {label} | {kb(first)} | {kb(second)} |" for label, first, second in growth_rows
    )
    read_rows = "\n".join(
        f"| +{size} | {new:.2f} s | {old:.2f} s ({old / new:.0f}x) | {old_size / 1e6:.0f} MB |"
        for size, new, old, old_size in reads
    )
    body = f"""
**Growth per full-library run** ({per_run} runs, offline retrieval provider; bytes as
committed: index text, gzip objects):

| | offline provider | local server (echo answers) |
| --- | ---: | ---: |
{growth_table}

Schema 1 added 1.26 MB per full-library run, in one file.

**At scale** (this repository's ledger plus synthetic full-library runs; whole CLI runs,
wall time with the ratio to +0, and peak RSS; targets: <= 1.5x and <= 150 MB):

{chr(10).join(table)}

**Reading the index** in process (every line checked; median of 3), against the same runs
in schema 1's shape read by the schema-1 reader (once):

| extra runs | schema 2: index read | schema 1: lines read and checked | schema-1 file |
| ---: | ---: | ---: | ---: |
{read_rows}

The index line of the largest run ({largest.examples:,} rows, `{largest.suite}`):
**{len(line):,} bytes** (target <= 4 KB).
"""
    write_section("ledger", "python bench/bench_ledger.py", body)


if __name__ == "__main__":
    main()
