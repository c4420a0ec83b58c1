"""Benchmark the cost of one request: CPU per request in process and through the CLI.

A minimal OpenAI-compatible aiohttp server runs in its own process (``--serve``) and answers
``POST /v1/chat/completions`` at once or after ``--delay`` seconds (50 ms); it records when
the first request of a run arrived (``GET /stats``, ``POST /reset``). The same ``--requests``
chat requests (1,000: a system message and a row's text, ``temperature`` and ``max_tokens``)
are sent at concurrency ``--concurrency`` (32) by each client:

* **aiohttp**: ``C`` workers posting the request bodies through one ``aiohttp.ClientSession``;
* **openai SDK alone**: ``AsyncOpenAI(http_client=DefaultAioHttpClient(), max_retries=0)``,
  the transport promptlib uses, ``C`` workers;
* **promptlib in process, cache off / on**: ``promptlib.evals.run.evaluate`` on a temporary
  project (one prompt, a JSONL dataset, one suite scored with ``contains``, provider type
  ``openai`` pointing at the server, ledger on, ``fresh``); cache on starts from an empty
  response cache, so every answer is claimed, written and committed;
* **promptlib CLI**: ``promptlib --project DIR eval --suite bench --fresh`` (cache off and
  on, as above), start-up included; *time to first request* is from just before the
  process is started to the server's arrival time of its first request;
* **openai SDK, one request from a new process**: a Python process that imports the SDK,
  creates the client and sends one request: the least time to a first request of any
  command that sends through the SDK (the CLI's start-up is reported beyond it);
* **promptfoo** (``--promptfoo``; skipped with a message when node or npm is missing): the
  pinned ``promptfoo@PROMPTFOO_VERSION`` (``npm install --prefix DIR``), ``promptfoo eval``
  of the same requests with ``contains`` assertions, ``--no-cache``.

Each in-process client runs in a fresh Python process of its own, which first makes the same
run once as a warm-up (imports, connections), then measures the process's CPU time
(``time.process_time``: user + system, all threads) and wall time around one run. A CLI's
CPU time is its whole process (``RUSAGE_CHILDREN``), start-up included. CPU per request =
CPU time / requests. The server is another process, so its work is not counted. Wall time
is compared with the ideal ``requests x delay / concurrency``. Medians of ``--repeats``
interleaved runs.

``--revision REV`` measures the promptlib clients on the source of git revision REV
(``git archive`` into a temporary folder, put first on ``PYTHONPATH``) instead of the
working tree; ``--baseline REV`` also measures them on REV's source the same way,
interleaved, for a before/after table.

Targets (from the issue): promptlib's share beyond the SDK (in process, cache on, minus the
SDK alone) <= 0.3 ms per request; the CLI's first request <= 0.5 s after it starts.

Run: ``python bench/bench_overhead.py`` (``--requests N``, ``--repeats N``, ``--baseline
main``, ``--revision REV``, ``--promptfoo``, ``--promptfoo-dir DIR``, ``--no-write``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import _llm  # noqa: E402
from _llm import PROMPT, SYSTEM  # noqa: E402
from _report import write_section  # noqa: E402

SHARE_TARGET_MS = 0.3
FIRST_REQUEST_TARGET_S = 0.5
PROMPTFOO_VERSION = "0.121.20"  # the newest release that runs on Node.js 20
MODEL = "bench-model"
PARAMS = {"temperature": 0, "max_tokens": 64}
SUITE = """description: Overhead benchmark.
dataset: evals/datasets/bench.jsonl
prompts: [bench.echo]
inputs: {text: text}
references: text
metrics: [contains]
"""

AIOHTTP = "aiohttp (bare client)"
SDK = "openai SDK alone"
LIB_OFF = "promptlib in process, cache off"
LIB_ON = "promptlib in process, cache on"
CLI_OFF = "promptlib CLI, cache off"
CLI_ON = "promptlib CLI, cache on"
PROMPTFOO = "promptfoo CLI"
SDK_START = "openai SDK, one request from a new process"
IN_PROCESS = {AIOHTTP: "aiohttp", SDK: "sdk", LIB_OFF: "lib-off", LIB_ON: "lib-on"}
PROMPTLIB_CLIENTS = (LIB_OFF, LIB_ON, CLI_OFF, CLI_ON)


# -- the server ----------------------------------------------------------------------


def serve(delay: float) -> None:
    """Answer chat completions on 127.0.0.1 until stdin closes; print the base URL first."""
    from aiohttp import web

    state: dict[str, Any] = {"first": None, "count": 0}

    async def completions(request: web.Request) -> web.Response:
        if state["first"] is None:
            state["first"] = time.time()
        state["count"] += 1
        body = await request.json()
        if delay:
            await asyncio.sleep(delay)
        text = body["messages"][-1]["content"]
        return web.json_response(
            {
                "id": f"chatcmpl-{state['count']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo: {text}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
            }
        )

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(state)

    async def reset(_request: web.Request) -> web.Response:
        state.update(first=None, count=0)
        return web.json_response(state)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        print(f"http://127.0.0.1:{port}/v1", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


class Server(_llm.Server):
    """This benchmark's server (``--serve``), which also says when a run's first request
    arrived."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay, [sys.executable, __file__, "--serve", str(delay)])
        self.root = self.base_url.removesuffix("/v1")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.root + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def reset(self) -> None:
        self._call("POST", "/reset")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")


# -- the workload --------------------------------------------------------------------


def rows(count: int) -> list[dict[str, str]]:
    return [
        {
            "id": f"row-{i:04d}",
            "text": f"Customer message {i:04d}: where is order {100000 + 7919 * i}?",
        }
        for i in range(count)
    ]


def bodies(count: int) -> list[dict[str, Any]]:
    return [
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": row["text"]},
            ],
            **PARAMS,
        }
        for row in rows(count)
    ]


def make_project(folder: Path, base_url: str, count: int) -> None:
    (folder / "prompts" / "bench").mkdir(parents=True)
    (folder / "evals" / "suites").mkdir(parents=True)
    (folder / "evals" / "datasets").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "bench-overhead"\nversion = "0.0.0"\n\n'
        '[tool.promptlib]\ndefault-provider = "bench"\n\n'
        "[tool.promptlib.providers.bench]\n"
        f'type = "openai"\nmodel = "{MODEL}"\nbase_url = "{base_url}"\n'
        'api_key_env = ""\ntimeout = 30\n',
        encoding="utf-8",
    )
    (folder / "prompts" / "bench" / "echo.yaml").write_text(PROMPT, encoding="utf-8")
    (folder / "evals" / "suites" / "bench.yaml").write_text(SUITE, encoding="utf-8")
    with (folder / "evals" / "datasets" / "bench.jsonl").open("w", encoding="utf-8") as out:
        for row in rows(count):
            out.write(json.dumps(row) + "\n")


def clear_cache(project: Path) -> None:
    for leftover in (project / ".promptlib").glob("cache.sqlite*"):
        leftover.unlink()


# -- in-process clients (each in a fresh process: --client NAME) -----------------------


def _promptlib(project: Path, concurrency: int, cache: str, count: int) -> None:
    from promptlib.evals.cache import CacheMode
    from promptlib.evals.run import evaluate
    from promptlib.evals.runner import EvalOptions
    from promptlib.settings import Settings

    if cache == "on":
        clear_cache(project)
    report = evaluate(
        Settings.resolve(project),
        suites=["bench"],
        cache_mode=CacheMode(cache),
        options=EvalOptions(concurrency=concurrency, fresh=True),
    )
    outcome = report.outcomes[0]
    if outcome.status != "ran" or outcome.errors or outcome.results["contains"]["n"] != count:
        raise SystemExit(f"promptlib evaluate: unexpected outcome {outcome}")


def client_main(args: argparse.Namespace) -> None:
    """Run one in-process client twice (warm-up, measured); print the measured run."""
    work = bodies(args.requests)

    def once() -> None:
        if args.client == "aiohttp":
            asyncio.run(_llm.send_aiohttp(args.base_url, work, args.concurrency))
        elif args.client == "sdk":
            asyncio.run(_llm.send_sdk(args.base_url, work, args.concurrency))
        else:
            cache = "on" if args.client == "lib-on" else "off"
            _promptlib(Path(args.project), args.concurrency, cache, args.requests)

    once()
    cpu, wall = time.process_time(), time.perf_counter()
    once()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"cpu": cpu, "wall": wall}))


# -- the runs, from the benchmark's process --------------------------------------------


def environment(source: Path | None, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLIB_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)  # as an installed wheel runs
    if source is not None:
        env["PYTHONPATH"] = str(source)
    else:
        env.pop("PYTHONPATH", None)
    return env


def run_client(
    name: str, server: Server, project: Path, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, float]:
    argv = [
        sys.executable,
        __file__,
        "--client",
        IN_PROCESS[name],
        "--base-url",
        server.base_url,
        "--project",
        str(project),
        "--requests",
        str(args.requests),
        "--concurrency",
        str(args.concurrency),
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed: {done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(
    cache: str, server: Server, project: Path, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, float]:
    clear_cache(project)
    argv = [
        str(Path(sys.executable).with_name("promptlib")),
        "--project",
        str(project),
        "eval",
        "--suite",
        "bench",
        "--concurrency",
        str(args.concurrency),
        "--cache",
        cache,
        "--fresh",
        "--format",
        "json",
    ]
    server.reset()
    cpu = _children_cpu()
    started = time.time()
    wall = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall
    cpu = _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"promptlib eval failed ({done.returncode}): {done.stderr[-3000:]}")
    result = json.loads(done.stdout)["results"][0]
    if (
        result["status"] != "ran"
        or result["errors"]
        or result["metrics"]["contains"]["n"] != (args.requests)
    ):
        raise SystemExit(f"promptlib eval: unexpected result {result}")
    first = server.stats()["first"]
    return {"cpu": cpu, "wall": wall, "first": first - started}


# The least any command that sends its requests through the SDK takes to its first request:
# start Python, import the SDK, create a client, send.
_SDK_START_CODE = """
import asyncio, openai
async def main():
    client = openai.AsyncOpenAI(
        api_key="no-key", base_url={base_url!r}, max_retries=0,
        http_client=openai.DefaultAioHttpClient(),
    )
    await client.chat.completions.create(model={model!r}, messages=[
        {{"role": "user", "content": "Customer message 0000: where is order 100000?"}}
    ])
    await client.close()
asyncio.run(main())
"""


def run_sdk_start(server: Server, env: dict[str, str]) -> dict[str, float]:
    code = _SDK_START_CODE.format(base_url=server.base_url, model=MODEL)
    server.reset()
    started = time.time()
    wall = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - wall
    return {"first": server.stats()["first"] - started, "process": wall}


def install_promptfoo(folder: Path) -> tuple[list[str], str]:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise RuntimeError("node and npm are not on PATH")
    package = folder / "node_modules" / "promptfoo" / "package.json"
    meta = json.loads(package.read_text(encoding="utf-8")) if package.exists() else {}
    if meta.get("version") != PROMPTFOO_VERSION:
        folder.mkdir(parents=True, exist_ok=True)
        print(f"installing promptfoo@{PROMPTFOO_VERSION} into {folder} ...", file=sys.stderr)
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(folder),
                "--no-audit",
                "--no-fund",
                f"promptfoo@{PROMPTFOO_VERSION}",
            ],
            check=True,
            capture_output=True,
        )
        meta = json.loads(package.read_text(encoding="utf-8"))
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    entry = folder / "node_modules" / "promptfoo" / meta["bin"]["promptfoo"]
    return [node, str(entry)], f"promptfoo {meta['version']} on Node.js {version.stdout.strip()}"


def promptfoo_config(folder: Path, base_url: str, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "{{text}}"}]
    config = {
        "description": "promptlib overhead benchmark",
        "prompts": [json.dumps(messages)],
        "providers": [
            {
                "id": f"openai:chat:{MODEL}",
                "config": {"apiBaseUrl": base_url, "apiKey": "no-key", **PARAMS},
            }
        ],
        "tests": [
            {"vars": {"text": row["text"]}, "assert": [{"type": "contains", "value": row["text"]}]}
            for row in rows(count)
        ],
    }
    (folder / "promptfooconfig.json").write_text(json.dumps(config), encoding="utf-8")


def run_promptfoo(
    runner: list[str], folder: Path, args: argparse.Namespace, server: Server
) -> dict[str, float]:
    output = folder / "out.json"
    output.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_CONFIG_DIR": str(folder / "config"),
    }
    argv = [
        *runner,
        "eval",
        "-c",
        str(folder / "promptfooconfig.json"),
        "--max-concurrency",
        str(args.concurrency),
        "--no-cache",
        "--no-table",
        "--no-progress-bar",
        "-o",
        str(output),
    ]
    server.reset()
    cpu = _children_cpu()
    started = time.time()
    wall = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=folder, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall
    cpu = _children_cpu() - cpu
    if not output.exists():
        raise SystemExit(f"promptfoo failed ({done.returncode}): {done.stdout[-2000:]}")
    stats = json.loads(output.read_text(encoding="utf-8"))["results"]["stats"]
    if stats["successes"] != args.requests or stats["errors"]:
        raise SystemExit(f"promptfoo: unexpected result {stats}")
    return {"cpu": cpu, "wall": wall, "first": server.stats()["first"] - started}


def extract(revision: str, into: Path) -> Path:
    """The ``src`` folder of git revision ``revision``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


# -- the report ----------------------------------------------------------------------

Results = dict[tuple[str, float, str], list[dict[str, float]]]


def median(results: Results, key: tuple[str, float, str], field: str) -> float | None:
    values = [r[field] for r in results.get(key, []) if field in r]
    return statistics.median(values) if values else None


def report(
    results: Results, args: argparse.Namespace, delays: list[float], trees: list[str], note: str
) -> str:
    n = args.requests
    slow = max(delays)
    ideal = n * slow / args.concurrency
    tree_label = {
        "after": f"`{args.revision}`" if args.revision else "this tree",
        "before": f"`{args.baseline}`",
    }
    lines = [
        "| client | source | CPU ms/request, answer at once | CPU ms/request, after "
        f"{slow * 1000:.0f} ms | wall s ({slow * 1000:.0f} ms) | wall / ideal | "
        "first request s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = [AIOHTTP, SDK, LIB_OFF, LIB_ON, SDK_START, CLI_OFF, CLI_ON, PROMPTFOO]
    for name in order:
        for tree in trees if name in PROMPTLIB_CLIENTS else ["after"]:
            if not any((name, d, tree) in results for d in delays):
                continue
            cells = []
            for delay in (0.0, slow):
                cpu = median(results, (name, delay, tree), "cpu")
                cells.append(f"{cpu / n * 1000:.3f}" if cpu is not None else "")
            if name == SDK_START:
                first = median(results, (name, slow, tree), "first")
                lines.append(f"| {name} |  |  |  |  |  | {first:.2f} |")
                continue
            wall = median(results, (name, slow, tree), "wall")
            first = median(results, (name, slow, tree), "first")
            source = tree_label[tree] if name in PROMPTLIB_CLIENTS else ""
            lines.append(
                f"| {name} | {source} | {cells[0]} | {cells[1]} | "
                + (f"{wall:.2f} | {wall / ideal:.2f}x" if wall is not None else " | ")
                + f" | {f'{first:.2f}' if first is not None else ''} |"
            )
    verdicts = []
    for tree in trees:
        for delay in delays:
            sdk = median(results, (SDK, delay, "after"), "cpu")
            for name in (LIB_OFF, LIB_ON):
                ours = median(results, (name, delay, tree), "cpu")
                if sdk is None or ours is None:
                    continue
                share = (ours - sdk) / n * 1000
                target = " (target <= 0.3)" if name == LIB_ON else ""
                verdict = ("met" if share <= SHARE_TARGET_MS else "**missed**") if target else ""
                verdicts.append(
                    f"{tree_label[tree]}, {name}, answer "
                    f"{'at once' if not delay else f'after {delay * 1000:.0f} ms'}: "
                    f"{share:.3f} ms/request beyond the SDK alone{target}"
                    + (f": {verdict}" if verdict else "")
                )
        firsts = [
            v
            for name in (CLI_OFF, CLI_ON)
            for d in delays
            for r in results.get((name, d, tree), [])
            if (v := r.get("first")) is not None
        ]
        floor = median(results, (SDK_START, slow, "after"), "first")
        if firsts:
            first = statistics.median(firsts)
            verdict = "met" if first <= FIRST_REQUEST_TARGET_S else "**missed**"
            beyond = (
                f"; {first - floor:.2f} s beyond a new process that only imports the SDK and "
                f"sends one request through it ({floor:.2f} s)"
                if floor is not None
                else ""
            )
            verdicts.append(
                f"{tree_label[tree]}, CLI time to first request: {first:.2f} s "
                f"(target <= {FIRST_REQUEST_TARGET_S}): {verdict}{beyond}"
            )
    return f"""
{n:,} chat requests at concurrency {args.concurrency}, to a minimal aiohttp server in its own
process answering at once or after {slow * 1000:.0f} ms; ideal wall time after {slow * 1000:.0f}
ms = requests x delay / concurrency = {ideal:.2f} s. Each in-process client runs in a fresh
process and is measured on its second run (the first warms imports and connections); CPU is
the client process's (user + system), so the server's work is not counted. CLI rows are whole
processes, start-up included; *first request* is from starting the process to the server
receiving its first request. Medians of {args.repeats} interleaved runs. promptfoo: {note}.

{chr(10).join(lines)}

Results:

{chr(10).join("- " + v for v in verdicts)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV")
    parser.add_argument("--revision", metavar="REV")
    parser.add_argument("--promptfoo", action="store_true")
    parser.add_argument(
        "--promptfoo-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / f"promptlib-bench-promptfoo-{PROMPTFOO_VERSION}",
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--serve", type=float, metavar="DELAY", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--project", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    if args.client:
        client_main(args)
        return 0

    note = "not run (`--promptfoo` to include it)"
    runner: list[str] = []
    if args.promptfoo:
        try:
            runner, note = install_promptfoo(args.promptfoo_dir)
        except (RuntimeError, OSError, subprocess.CalledProcessError, KeyError) as exc:
            note = f"not run: {exc}"
            print(f"promptfoo skipped: {exc}", file=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    delays = [0.0, args.delay]
    results: Results = defaultdict(list)
    try:
        sources: dict[str, Path | None] = {
            "after": extract(args.revision, workdir / "revision") if args.revision else None
        }
        if args.baseline:
            sources["before"] = extract(args.baseline, workdir / "baseline")
        envs = {
            tree: environment(src, workdir / f"pycache-{tree}") for tree, src in sources.items()
        }
        for delay in delays:
            server = Server(delay)
            try:
                projects = {}
                for tree in sources:
                    projects[tree] = workdir / f"project-{tree}-{delay}"
                    make_project(projects[tree], server.base_url, args.requests)
                if runner:
                    promptfoo_config(workdir / f"promptfoo-{delay}", server.base_url, args.requests)
                for tree in sources:  # warm-up: bytecode caches, the OS file cache
                    run_cli("off", server, projects[tree], args, envs[tree])
                for repeat in range(args.repeats):
                    plan: list[tuple[str, str]] = [(AIOHTTP, "after"), (SDK, "after")]
                    plan += [(name, tree) for name in PROMPTLIB_CLIENTS for tree in sources]
                    if runner:
                        plan.append((PROMPTFOO, "after"))
                    if delay == max(delays):
                        plan.append((SDK_START, "after"))
                    for name, tree in plan:
                        if name == SDK_START:
                            result = run_sdk_start(server, envs["after"])
                            results[(name, delay, tree)].append(result)
                            print(
                                f"delay {delay} repeat {repeat + 1}/{args.repeats} {name}: "
                                f"first {result['first']:.2f} s",
                                file=sys.stderr,
                            )
                            continue
                        if name in IN_PROCESS:
                            result = run_client(name, server, projects[tree], args, envs[tree])
                        elif name == PROMPTFOO:
                            result = run_promptfoo(
                                runner, workdir / f"promptfoo-{delay}", args, server
                            )
                        else:
                            cache = "on" if name == CLI_ON else "off"
                            result = run_cli(cache, server, projects[tree], args, envs[tree])
                        results[(name, delay, tree)].append(result)
                        print(
                            f"delay {delay} repeat {repeat + 1}/{args.repeats} {name} [{tree}]: "
                            f"{result['cpu'] / args.requests * 1000:.3f} CPU ms/request, "
                            f"{result['wall']:.2f} s"
                            + (f", first {result['first']:.2f} s" if "first" in result else ""),
                            file=sys.stderr,
                        )
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    body = report(results, args, delays, list(sources), note)
    command = "python bench/bench_overhead.py" + (
        f" --baseline {args.baseline}" if args.baseline else ""
    )
    if args.revision:
        command += f" --revision {args.revision}"
    if args.promptfoo:
        command += " --promptfoo"
    if args.repeats != 3:
        command += f" --repeats {args.repeats}"
    if args.no_write:
        print(body)
    else:
        write_section("overhead", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
