"""`promptlib eval --against` with one prompt changed vs a full evaluation.

On a copy of this project (prompts, suites, datasets; a fresh ledger), evaluate the whole
library through an OpenAI-compatible server on 127.0.0.1 (tests/_llm_server.py in its own
process, answering after 5 ms), release it, change one prompt's text, and run `promptlib
eval --against latest`. Provider calls are counted from the ledger's run records
(`timing.calls`); wall times are whole CLI runs.

The cost of one paired comparison is measured by bench/bench_stats.py.

Run: python bench/bench_against.py
"""

from __future__ import annotations

import json
import shutil
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


def main() -> None:
    write_section("against", "python bench/bench_against.py", against_benchmark())


if __name__ == "__main__":
    main()
