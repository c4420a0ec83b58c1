"""Benchmark eval throughput against a local OpenAI-compatible server that answers in 50 ms.

The server is ``tests/_llm_server.py`` (aiohttp), run in a separate process so that it
does not share the client's GIL; every answer waits ``--delay`` seconds (50 ms). The
workload is ``--examples`` rows (1,000), each one chat request (a system message and the
row's text), scored with ``contains`` against the text the server echoes. The ideal wall
time at concurrency C is ``examples x delay / C``; each figure is reported with its ratio
to it (1.00x is ideal; >= 90% of ideal means <= 1.11x).

At each concurrency (1, 8, 32), interleaved, median of ``--repeats`` (concurrency 1 runs
once: 50 s per tool):

* **promptlib eval (CLI)**: ``promptlib --project DIR eval --suite bench --concurrency C
  --cache off --fresh --format json`` in a temporary project (one prompt, a 1,000-row
  JSONL dataset, one suite, provider type ``openai`` pointing at the server, ledger on):
  wall time of the subprocess, start-up included; and the harness's own time for the job
  (``seconds`` in the report: first request to last score);
* **promptlib eval (CLI), cache on**: the same with ``--cache on`` and an empty response
  cache (the default mode; each answer is committed to SQLite), at concurrency 8 and 32;
* **promptlib `evaluate()` in process**: the library call behind the command, in this
  process after a warm-up call (the SDK already imported);
* **raw asyncio + aiohttp**: ``C`` workers posting the same request bodies through one
  ``aiohttp.ClientSession``;
* **openai SDK**: ``AsyncOpenAI(http_client=DefaultAioHttpClient(), max_retries=0)``, ``C``
  workers, the same requests;
* **promptfoo** (when it can be installed with npm; ``--no-promptfoo`` to skip): ``promptfoo
  eval`` with an ``openai:chat:bench-model`` provider whose ``apiBaseUrl`` is the server,
  the same 1,000 test cases (``contains`` assertions), ``--max-concurrency C``,
  ``--no-cache``; wall time of the command, and its own ``durationMs``. It is installed into
  ``--promptfoo-dir`` (outside the repository; default: a folder in the system temporary
  directory, reused by later runs). When promptfoo requires a newer Node.js than the one on
  PATH, the matching ``node-<os>-<arch>`` package (Node.js's binary as an npm package) is
  installed beside it.

Targets (from the issue): the promptlib path at concurrency 32 >= 90% of ideal (<= 1.11x);
promptlib faster than promptfoo at every concurrency.

Run: ``python bench/bench_harness.py`` (``--examples N``, ``--repeats N``,
``--concurrency 1,8,32``, ``--no-promptfoo``, ``--promptfoo-dir DIR``, ``--no-write``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import _llm  # noqa: E402
from _llm import PROMPT, SYSTEM, Server  # noqa: E402
from _report import write_section  # noqa: E402

TARGET = 1.11
MODEL = "bench-model"
PARAMS = {"temperature": 0, "max_tokens": 64}
SUITE = """description: Throughput benchmark.
dataset: evals/datasets/bench.jsonl
prompts: [bench.echo]
inputs: {text: text}
references: text
metrics: [contains]
"""
PROMPTLIB_CLI = "promptlib eval (CLI)"
PROMPTLIB_CACHE = "promptlib eval (CLI), cache on"
PROMPTLIB_LIB = "promptlib `evaluate()` in process"
RAW = "raw asyncio + aiohttp"
SDK = "openai SDK (`DefaultAioHttpClient`)"
PROMPTFOO = "promptfoo eval (CLI)"


def rows(count: int) -> list[dict[str, str]]:
    return [
        {
            "id": f"row-{i:04d}",
            "text": f"Customer message {i:04d}: where is order {100000 + 7919 * i}?",
        }
        for i in range(count)
    ]


def make_project(folder: Path, base_url: str, data: list[dict[str, str]]) -> None:
    (folder / "prompts" / "bench").mkdir(parents=True)
    (folder / "evals" / "suites").mkdir(parents=True)
    (folder / "evals" / "datasets").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "bench-harness"\nversion = "0.0.0"\n\n'
        '[tool.promptlib]\ndefault-provider = "bench"\n\n'
        "[tool.promptlib.providers.bench]\n"
        f'type = "openai"\nmodel = "{MODEL}"\nbase_url = "{base_url}"\n'
        'api_key_env = ""\ntimeout = 30\n',
        encoding="utf-8",
    )
    (folder / "prompts" / "bench" / "echo.yaml").write_text(PROMPT, encoding="utf-8")
    (folder / "evals" / "suites" / "bench.yaml").write_text(SUITE, encoding="utf-8")
    with (folder / "evals" / "datasets" / "bench.jsonl").open("w", encoding="utf-8") as out:
        for row in data:
            out.write(json.dumps(row) + "\n")


# -- the contenders -------------------------------------------------------------------


def promptlib_cli(
    project: Path, concurrency: int, env: dict[str, str], cache: str, examples: int
) -> tuple[float, float]:
    if cache == "on":
        for leftover in (project / ".promptlib").glob("cache.sqlite*"):
            leftover.unlink()
    argv = [
        str(Path(sys.executable).with_name("promptlib")),
        "--project",
        str(project),
        "eval",
        "--suite",
        "bench",
        "--concurrency",
        str(concurrency),
        "--cache",
        cache,
        "--fresh",
        "--format",
        "json",
    ]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"promptlib eval failed ({done.returncode}): {done.stderr}")
    result = json.loads(done.stdout)["results"][0]
    check(PROMPTLIB_CLI, result["status"] == "ran" and result["errors"] == 0, result)
    check(PROMPTLIB_CLI, result["metrics"]["contains"]["n"] == examples, result)
    return wall, float(result["seconds"])


def promptlib_inprocess(project: Path, concurrency: int, examples: int) -> tuple[float, float]:
    from promptlib.evals.cache import CacheMode
    from promptlib.evals.run import evaluate
    from promptlib.evals.runner import EvalOptions
    from promptlib.settings import Settings

    settings = Settings.resolve(project)
    start = time.perf_counter()
    report = evaluate(
        settings,
        suites=["bench"],
        cache_mode=CacheMode.off,
        options=EvalOptions(concurrency=concurrency, fresh=True),
    )
    wall = time.perf_counter() - start
    outcome = report.outcomes[0]
    ok = outcome.status == "ran" and not outcome.errors
    check(PROMPTLIB_LIB, ok and outcome.results["contains"]["n"] == examples, outcome)
    return wall, outcome.seconds


def bare(
    client: Callable[[str, list[dict[str, Any]], int], Any],
    base_url: str,
    bodies: list[dict[str, Any]],
    concurrency: int,
) -> tuple[float, None]:
    start = time.perf_counter()
    asyncio.run(client(base_url, bodies, concurrency))
    return time.perf_counter() - start, None


def promptfoo(
    runner: list[str], folder: Path, concurrency: int, env: dict[str, str], examples: int
) -> tuple[float, float]:
    output = folder / "out.json"
    output.unlink(missing_ok=True)
    argv = [
        *runner,
        "eval",
        "-c",
        str(folder / "promptfooconfig.json"),
        "--max-concurrency",
        str(concurrency),
        "--no-cache",
        "--no-table",
        "--no-progress-bar",
        "-o",
        str(output),
    ]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=folder, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if not output.exists():
        raise SystemExit(f"promptfoo failed ({done.returncode}): {done.stdout[-2000:]}")
    stats = json.loads(output.read_text(encoding="utf-8"))["results"]["stats"]
    check(PROMPTFOO, stats["successes"] == examples and not stats["errors"], stats)
    return wall, stats["durationMs"] / 1000


def check(who: str, ok: bool, detail: object) -> None:
    if not ok:
        raise SystemExit(f"{who}: unexpected result: {str(detail)[:2000]}")


# -- promptfoo installation -----------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def install_promptfoo(folder: Path) -> tuple[list[str], dict[str, str], str]:
    """The command that runs promptfoo (node + its entry point), its env and its version."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        raise RuntimeError("npm and node are not on PATH")
    package = folder / "node_modules" / "promptfoo" / "package.json"
    if not package.exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"installing promptfoo into {folder} ...", file=sys.stderr)
        subprocess.run(
            [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "promptfoo"],
            check=True,
            capture_output=True,
        )
    meta = json.loads(package.read_text(encoding="utf-8"))
    required = meta.get("engines", {}).get("node", "")
    have = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    node_version = have.stdout.strip()
    if required and _version(node_version) < _version(required):
        minimum = ".".join(map(str, _version(required)))
        arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
        name = f"node-{sys.platform}-{arch}"
        binary = folder / "node" / "node_modules" / name / "bin" / "node"
        if not binary.exists():
            print(
                f"installing {name}@^{minimum} (promptfoo needs node {required}) ...",
                file=sys.stderr,
            )
            subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(folder / "node"),
                    "--no-audit",
                    "--no-fund",
                    f"{name}@^{minimum}",
                ],
                check=True,
                capture_output=True,
            )
        node = str(binary)
        node_version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    entry = folder / "node_modules" / "promptfoo" / meta["bin"]["promptfoo"]
    env = {
        **os.environ,
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_CONFIG_DIR": str(folder / "config"),
    }
    return [node, str(entry)], env, f"promptfoo {meta['version']} on Node.js {node_version}"


def promptfoo_config(folder: Path, base_url: str, data: list[dict[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "{{text}}"}]
    config = {
        "description": "promptlib throughput benchmark",
        "prompts": [json.dumps(messages)],
        "providers": [
            {
                "id": f"openai:chat:{MODEL}",
                "config": {"apiBaseUrl": base_url, "apiKey": "no-key", **PARAMS},
            }
        ],
        "tests": [
            {"vars": {"text": row["text"]}, "assert": [{"type": "contains", "value": row["text"]}]}
            for row in data
        ],
    }
    (folder / "promptfooconfig.json").write_text(json.dumps(config), encoding="utf-8")


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-promptfoo", action="store_true")
    parser.add_argument(
        "--promptfoo-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "promptlib-bench-promptfoo",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    data = rows(args.examples)

    runner: list[str] = []
    promptfoo_env: dict[str, str] = {}
    promptfoo_note = "not run (--no-promptfoo)"
    if not args.no_promptfoo:
        try:
            runner, promptfoo_env, promptfoo_note = install_promptfoo(args.promptfoo_dir)
        except (RuntimeError, OSError, subprocess.CalledProcessError, KeyError) as exc:
            promptfoo_note = f"not run: {exc}"
            runner = []

    workdir = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    server = Server(args.delay)
    times: dict[tuple[int, str], list[tuple[float, float | None]]] = defaultdict(list)
    try:
        project = workdir / "project"
        make_project(project, server.base_url, data)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLIB_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")  # as an installed wheel runs

        from promptlib import load

        prompt = load(project)["bench.echo"]
        bodies = [
            {
                "model": MODEL,
                "messages": [m.to_dict() for m in prompt.render(text=row["text"])],
                **PARAMS,
            }
            for row in data
        ]
        if runner:
            promptfoo_config(workdir / "promptfoo", server.base_url, data)
        # Warm-up: bytecode cache, the SDK's import in this process, the server's first
        # connections, node's file cache.
        promptlib_cli(project, 32, env, "off", args.examples)
        promptlib_inprocess(project, 32, args.examples)
        if runner:
            promptfoo(runner, workdir / "promptfoo", 32, promptfoo_env, args.examples)

        for concurrency in levels:
            contenders: dict[str, Callable[[], tuple[float, float | None]]] = {
                PROMPTLIB_CLI: lambda c=concurrency: promptlib_cli(
                    project, c, env, "off", args.examples
                ),
                PROMPTLIB_LIB: lambda c=concurrency: promptlib_inprocess(project, c, args.examples),
                RAW: lambda c=concurrency: bare(_llm.send_aiohttp, server.base_url, bodies, c),
                SDK: lambda c=concurrency: bare(_llm.send_sdk, server.base_url, bodies, c),
            }
            if concurrency >= 8:
                contenders[PROMPTLIB_CACHE] = lambda c=concurrency: promptlib_cli(
                    project, c, env, "on", args.examples
                )
            if runner:
                contenders[PROMPTFOO] = lambda c=concurrency: promptfoo(
                    runner, workdir / "promptfoo", c, promptfoo_env, args.examples
                )
            repeats = 1 if concurrency == 1 else args.repeats
            for repeat in range(repeats):
                for name, run in contenders.items():
                    result = run()
                    times[(concurrency, name)].append(result)
                    print(
                        f"c={concurrency} repeat {repeat + 1}/{repeats} {name}: "
                        f"{result[0]:.2f}s" + (f" (own {result[1]:.2f}s)" if result[1] else ""),
                        file=sys.stderr,
                    )
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    order = [PROMPTLIB_CLI, PROMPTLIB_CACHE, PROMPTLIB_LIB, RAW, SDK, PROMPTFOO]
    tables = []
    verdicts = []
    for concurrency in levels:
        ideal = args.examples * args.delay / concurrency
        lines = [
            f"**Concurrency {concurrency}** (ideal {ideal:.2f} s)",
            "",
            "| client | runs | wall s | wall / ideal | % of ideal | own time s | own / ideal |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        medians: dict[str, tuple[float, float | None]] = {}
        for name in order:
            results = times.get((concurrency, name))
            if not results:
                continue
            wall = statistics.median(r[0] for r in results)
            owns = [r[1] for r in results if r[1] is not None]
            own = statistics.median(owns) if owns else None
            medians[name] = (wall, own)
            own_cells = f"{own:.2f} | {own / ideal:.2f}x" if own is not None else "| "
            lines.append(
                f"| {name} | {len(results)} | {wall:.2f} | {wall / ideal:.2f}x | "
                f"{ideal / wall:.0%} | {own_cells} |"
            )
        tables.append("\n".join(lines))
        ours_wall, ours_own = medians[PROMPTLIB_CLI]
        if concurrency == 32:
            for label, value in (
                ("CLI wall", ours_wall),
                ("harness own time", ours_own or 0.0),
                ("`evaluate()` in process", medians[PROMPTLIB_LIB][0]),
            ):
                ratio = value / ideal
                verdict = "met" if ratio <= TARGET else "**missed**"
                verdicts.append(
                    f"concurrency 32, {label}: {ratio:.2f}x (target <= {TARGET}x): {verdict}"
                )
        if PROMPTFOO in medians:
            foo_wall, foo_own = medians[PROMPTFOO]
            faster = ours_wall < foo_wall and (ours_own or 0) < (foo_own or 0)
            verdicts.append(
                f"concurrency {concurrency}, promptlib vs promptfoo: CLI wall {ours_wall:.2f} s vs "
                f"{foo_wall:.2f} s ({foo_wall / ours_wall:.1f}x faster), own time "
                f"{ours_own or 0:.2f} s vs {foo_own or 0:.2f} s "
                f"({(foo_own or 0) / (ours_own or 1):.1f}x faster): "
                + ("met" if faster else "**missed**")
            )
    body = f"""
{args.examples:,} examples against `tests/_llm_server.py` (aiohttp, its own process) answering
after {args.delay * 1000:.0f} ms; ideal wall time = examples x delay / concurrency. Medians of
{args.repeats} interleaved runs (concurrency 1: one run per client). *Own time* is what the
tool reports for the evaluation itself (promptlib: the job's `seconds`, first request to last
score; promptfoo: `durationMs`), without process start-up. The CLI runs with a bytecode cache,
as an installed wheel does. promptfoo: {promptfoo_note}.

{chr(10).join(chr(10) + t for t in tables)}

Targets:

{chr(10).join("- " + v for v in verdicts)}
"""
    if args.no_write:
        print(body)
    else:
        write_section("harness", "python bench/bench_harness.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
