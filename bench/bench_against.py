"""`promptlib eval --against` with one prompt changed vs a full evaluation, and stats cost.

1. On a copy of this project (prompts, suites, datasets; a fresh ledger), evaluate the whole
   library through an OpenAI-compatible server on 127.0.0.1 (tests/_llm_server.py in its
   own process, answering after 5 ms), release it, change one prompt's text, and run
   `promptlib eval --against latest`. Provider calls are counted from the ledger's run
   records (`timing.calls`); wall times are whole CLI runs.
2. The cost of one paired comparison (`promptlib.compare.stats.compare_paired`) on 1,000 examples
   with 10,000 resamples: a 0/1 metric (exact McNemar + bootstrap interval) and a
   continuous one (sign-flip permutation test + bootstrap interval).

Run: python bench/bench_against.py
"""

from __future__ import annotations

import json
import random
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

from _report import write_section  # noqa: E402
from bench_harness import Server  # noqa: E402

from promptlib.compare.stats import compare_paired  # noqa: E402

PROMPTLIB = str(Path(sys.executable).with_name("promptlib"))
CHANGED = "support.answer.track_refund"
PROVIDER = """
[tool.promptlib.providers.bench]
type = "openai"
model = "bench-model"
base_url = "{base_url}"
api_key_env = ""
concurrency = 32
timeout = 30
"""


def copy_project(folder: Path, base_url: str) -> Path:
    project = folder / "project"
    project.mkdir()
    for name in ("README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy(ROOT / name, project / name)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (project / "pyproject.toml").write_text(
        text + PROVIDER.format(base_url=base_url), encoding="utf-8"
    )
    shutil.copytree(ROOT / "prompts", project / "prompts")
    shutil.copytree(ROOT / "evals" / "suites", project / "evals" / "suites")
    shutil.copytree(ROOT / "evals" / "datasets", project / "evals" / "datasets")
    return project


def promptlib(project: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [PROMPTLIB, "--project", str(project), *args], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"promptlib {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def run_calls(project: Path) -> tuple[int, int]:
    """(provider calls, run records) in the project's ledger so far."""
    calls = runs = 0
    ledger = project / "evals" / "ledger" / "index.jsonl"
    for line in ledger.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "run":
            calls += int(record["timing"]["calls"])
            runs += 1
    return calls, runs


def against_benchmark() -> str:
    with tempfile.TemporaryDirectory(prefix="promptlib-bench-") as folder:
        server = Server(delay=0.005)
        try:
            project = copy_project(Path(folder), server.base_url)
            full_seconds = promptlib(project, "eval", "--provider", "bench", "--cache", "off")
            full_calls, full_runs = run_calls(project)
            promptlib(project, "release", "--provider", "bench")
            released_calls, _ = run_calls(project)
            path = project / "prompts" / Path(*CHANGED.split(".")).with_suffix(".yaml")
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace("You are ", "You are the friendly ", 1), encoding="utf-8")
            against_seconds = promptlib(
                project, "eval", "--against", "latest", "--provider", "bench", "--cache", "off"
            )
            after_calls, after_runs = run_calls(project)
        finally:
            server.stop()
    against_calls = after_calls - released_calls
    rows = [
        f"| full evaluation (`promptlib eval`) | {full_runs} | {full_calls:,} "
        f"| {full_seconds:.2f} |",
        f"| `release` right after it (every run reused) | 0 "
        f"| {released_calls - full_calls:,} | — |",
        f"| `eval --against latest`, `{CHANGED}` changed | {after_runs - full_runs} | "
        f"{against_calls:,} | {against_seconds:.2f} |",
    ]
    calls_ratio = full_calls / against_calls if against_calls else float("inf")
    time_ratio = full_seconds / against_seconds
    verdict = "met" if calls_ratio >= 20 and time_ratio >= 20 else "**missed**"
    return (
        "| run | new run records | provider calls | wall s |\n| --- | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + f"\n\nCalls: {calls_ratio:,.0f}x fewer; wall time: {time_ratio:.1f}x shorter "
        f"(target: only the changed prompt's calls, >= 20x cheaper): {verdict}. The "
        f"changed prompt is scored on {against_calls:,} rows; every other prompt's candidate "
        "run and the baseline's runs come from the ledger. The `--against` wall time is "
        "mostly fixed cost: start-up, loading the library and the 3.6 MB ledger, and the "
        "statistics."
    )


def stats_benchmark() -> str:
    rng = random.Random(7)
    n, resamples, repeats = 1000, 10_000, 20
    base_binary = [float(rng.random() < 0.8) for _ in range(n)]
    cand_binary = [1.0 - x if rng.random() < 0.1 else x for x in base_binary]
    base_cont = [rng.random() for _ in range(n)]
    cand_cont = [min(1.0, max(0.0, x + rng.gauss(0.01, 0.1))) for x in base_cont]
    rule = {"alpha": 0.05, "power": 0.8, "min_effect": 0.02}
    lines = []
    for label, base, cand, binary in (
        ("0/1 metric: exact McNemar + bootstrap interval", base_binary, cand_binary, True),
        ("continuous metric: sign-flip test + bootstrap interval", base_cont, cand_cont, False),
    ):
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            compare_paired(
                base, cand, binary=binary, resamples=resamples, seed=1, key=f"k{i}", **rule
            )
            times.append((time.perf_counter() - started) * 1000)
        lines.append(f"| {label} | {statistics.median(times):.1f} | {min(times):.1f} |")
    return (
        f"One comparison, {n:,} paired examples, {resamples:,} resamples, median of {repeats} "
        "(numpy, chunked 1,000 resamples at a time):\n\n"
        "| comparison | median ms | best ms |\n| --- | ---: | ---: |\n"
        + "\n".join(lines)
        + "\n\nTarget: well under 100 ms per comparison."
    )


def main() -> None:
    body = against_benchmark() + "\n\n" + stats_benchmark()
    write_section("against", "python bench/bench_against.py", body)


if __name__ == "__main__":
    main()
