"""Benchmark start-up: the interpreter, ``import promptlib``, ``load()`` and ``--help``.

Each command runs as a fresh subprocess (``--runs`` times, interleaved round-robin so that
a slow moment of the machine hits every command alike), from a temporary folder outside
any project, and the median wall time is reported, with the median minus the bare
interpreter's (``python -c pass``):

* ``python -c pass``
* ``python -c "import promptlib"``
* ``python -c "import promptlib; promptlib.load()"`` (loads the bundled library)
* ``promptlib --help``

Two settings of Python's bytecode cache:

* **cached** (what an installed wheel has): ``PYTHONPYCACHEPREFIX`` points at a temporary
  folder, filled by one warm-up run of each command;
* **not cached**: ``PYTHONDONTWRITEBYTECODE=1`` with no prefix, as in this development
  environment, where the editable source tree has no ``__pycache__``: every promptlib
  module is compiled from source at each start (installed dependencies keep theirs).

Targets (from the issue, bytecode cached): ``promptlib --help`` <= 200 ms over the bare
interpreter; ``import promptlib`` <= 120 ms over it. ``python -X importtime`` (median of
``--importtime-runs`` runs per module) shows where the time of ``--help`` and ``load()``
goes.

Run: ``python bench/bench_startup.py`` (``--runs N``, ``--no-write``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _report import write_section  # noqa: E402

HELP_TARGET_MS = 200.0
IMPORT_TARGET_MS = 120.0
PYTHON = sys.executable
PROMPTLIB = str(Path(sys.executable).with_name("promptlib"))
HELP_CODE = "import sys; sys.argv = ['promptlib', '--help']; from promptlib.cli import main; main()"
COMMANDS: list[tuple[str, list[str]]] = [
    ("`python -c pass`", [PYTHON, "-c", "pass"]),
    ('`python -c "import promptlib"`', [PYTHON, "-c", "import promptlib"]),
    (
        '`python -c "import promptlib; promptlib.load()"`',
        [PYTHON, "-c", "import promptlib; promptlib.load()"],
    ),
    ("`promptlib --help`", [PROMPTLIB, "--help"]),
]
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def environment(cached: bool, prefix: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLIB_")}
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cached:
        env["PYTHONPYCACHEPREFIX"] = str(prefix)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed: {done.stderr.decode(errors='replace')}")
    return seconds


def measure(runs: int, env: dict[str, str], cwd: Path) -> dict[str, float]:
    for _label, argv in COMMANDS:  # warm-up: fills the bytecode cache, the OS file cache
        run(argv, env, cwd)
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        for label, argv in COMMANDS:
            times[label].append(run(argv, env, cwd))
    return {label: statistics.median(values) * 1000 for label, values in times.items()}


def importtime(code: str, env: dict[str, str], cwd: Path, runs: int) -> dict[str, list[float]]:
    """Per module: [self ms, cumulative ms, depth], medians over ``runs`` runs."""
    samples: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for _ in range(runs):
        done = subprocess.run(
            [PYTHON, "-X", "importtime", "-c", code],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        for line in done.stderr.splitlines():
            match = _IMPORTTIME.match(line)
            if match:
                own, cumulative, indent, name = match.groups()
                samples[name].append((int(own), int(cumulative), len(indent) // 2))
    return {
        name: [
            statistics.median(s[0] for s in values) / 1000,
            statistics.median(s[1] for s in values) / 1000,
            values[0][2],
        ]
        for name, values in samples.items()
    }


def import_table(modules: dict[str, list[float]], names: list[str]) -> str:
    lines = ["| module | cumulative ms | self ms |", "| --- | ---: | ---: |"]
    for name in names:
        if name in modules:
            own, cumulative, _depth = modules[name]
            lines.append(f"| `{name}` | {cumulative:.1f} | {own:.1f} |")
    return "\n".join(lines)


def heaviest(modules: dict[str, list[float]], top: int, prefix: str = "") -> list[str]:
    chosen = [n for n in modules if n.startswith(prefix)] if prefix else list(modules)
    return sorted(chosen, key=lambda n: -modules[n][1])[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--importtime-runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not Path(PROMPTLIB).exists():
        raise SystemExit(f"{PROMPTLIB}: not found; install promptlib into this environment")

    workdir = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        cwd = workdir / "elsewhere"
        cwd.mkdir()
        prefix = workdir / "pycache"
        cached_env = environment(True, prefix)
        results = {
            "cached": measure(args.runs, cached_env, cwd),
            "not cached": measure(args.runs, environment(False, prefix), cwd),
        }
        help_modules = importtime(HELP_CODE, cached_env, cwd, args.importtime_runs)
        load_modules = importtime(
            "import promptlib; promptlib.load()", cached_env, cwd, args.importtime_runs
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    bare = {setting: values[COMMANDS[0][0]] for setting, values in results.items()}
    lines = [
        "| command | median ms (bytecode cached) | over bare | median ms (not cached) "
        "| over bare |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, _argv in COMMANDS:
        cached = results["cached"][label]
        uncached = results["not cached"][label]
        lines.append(
            f"| {label} | {cached:.0f} | {cached - bare['cached']:+.0f} | {uncached:.0f} | "
            f"{uncached - bare['not cached']:+.0f} |"
        )
    help_over = results["cached"][COMMANDS[3][0]] - bare["cached"]
    import_over = results["cached"][COMMANDS[1][0]] - bare["cached"]

    def verdict(value: float, target: float) -> str:
        return "met" if value <= target else "**missed**"

    if "promptlib.library" in help_modules:
        library = help_modules["promptlib.library"][1]
        why = (
            f"`promptlib.library` is imported ({library:.0f} ms with everything below it: "
            "`loader`, `prompt`, `model`, pydantic, Jinja2, PyYAML), which `--help` never uses."
        )
    else:
        why = (
            "`--help` imports neither `promptlib.library` nor the prompt model, pydantic, "
            "Jinja2 or PyYAML; what remains is typer and the command modules."
        )
    help_names = heaviest(help_modules, 14)
    load_names = heaviest(load_modules, 10, "promptlib")
    body = f"""
Fresh subprocesses from a folder outside any project; median of {args.runs} runs each,
the commands interleaved. *Over bare* subtracts `python -c pass` measured in the same run.
*Bytecode cached* is how an installed wheel runs (here `PYTHONPYCACHEPREFIX` in a temporary
folder, filled by a warm-up run); *not cached* is this development environment's
`PYTHONDONTWRITEBYTECODE=1`, where the editable `src/promptlib` has no `__pycache__` and is
compiled at every start.

{chr(10).join(lines)}

Targets (bytecode cached): `promptlib --help` {help_over:.0f} ms over the bare interpreter
(target <= {HELP_TARGET_MS:.0f} ms): {verdict(help_over, HELP_TARGET_MS)}; `import promptlib`
{import_over:.0f} ms over it (target <= {IMPORT_TARGET_MS:.0f} ms):
{verdict(import_over, IMPORT_TARGET_MS)}.

`python -X importtime` of `promptlib --help` (bytecode cached, median of
{args.importtime_runs} runs; the heaviest modules by cumulative time). {why}

{import_table(help_modules, help_names)}

`python -X importtime` of `import promptlib; promptlib.load()`, promptlib modules:

{import_table(load_modules, load_names)}
"""
    if args.no_write:
        print(body)
    else:
        write_section("startup", "python bench/bench_startup.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
