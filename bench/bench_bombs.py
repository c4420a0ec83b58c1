"""Template, input and file bombs: how long each takes to be refused, and at what memory.

1. Every template bomb of ``tests/_bombs.py`` through ``promptlib validate`` (the bomb is
   in the prompt's example: exit 1) and ``promptlib render bomb --var n=...`` (exit 2),
   each command in a forked child of a worker that has imported the CLI, one child at a
   time, under ``RLIMIT_AS`` of 1 GiB. Per bomb: the worst of the two commands.
2. What reaches the sandbox from outside, each in a fresh ``python`` process: a prompt
   file over the size limit, duplicate keys, a bad value as large as the file may be,
   deeply nested ``--var`` JSON, and an input object with a million keys (Python API).

Time is the wall time of the process; memory its peak resident set (``VmHWM``). The
limits to hold: 5 s and 256 MB per bomb. Run: ``python bench/bench_bombs.py``
(``--no-write`` prints the section instead of writing it).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from _report import write_section  # noqa: E402

from _bombs import BOMBS, BY_NAME, run  # noqa: E402

SECONDS, MIB = 5.0, 256
# The CLI in a fresh process, printing its peak resident memory (KiB) at exit.
RUNNER = """
import atexit, sys
def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
atexit.register(lambda: sys.stderr.write(f"\\nPEAK_RSS_KIB={peak()}\\n"))
from promptlib.cli import main
sys.argv = ["promptlib", *sys.argv[1:]]
main()
"""
# A million-key object given to Prompt.render: refused by the input limits.
MILLION_KEYS = """
import sys, time
from promptlib.errors import InputError
from promptlib.library.loader import scan
prompt = scan(__import__("pathlib").Path(sys.argv[1])).prompts["obj"]
huge = dict.fromkeys(map(str, range(1_000_000)), 0)
started = time.monotonic()
try:
    prompt.render(data=huge)
except InputError as exc:
    print(exc)
print(f"REFUSED_IN={time.monotonic() - started:.3f}")
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("VmHWM:"):
            sys.stderr.write(f"PEAK_RSS_KIB={line.split()[1]}")
"""
OBJECT_PROMPT = (
    "id: obj\nversion: 1.0.0\ndescription: An object input.\n"
    "inputs:\n  data: {type: object, description: Any data.}\n"
    "  items: {type: array, description: A list., required: false, default: []}\n"
    "template: '{{ data|length }} {{ items|length }}'\n"
    "examples:\n  - inputs: {data: {a: 1}}\n"
)


def cell(text: str, width: int = 70) -> str:
    """Text for a Markdown table cell: cut, with pipes and backticks escaped."""
    text = text if len(text) <= width else text[: width - 3] + "..."
    return text.replace("|", "\\|")


def message(output: str) -> str:
    """The refusal a command printed: the problem after "does not render", or the error."""
    for line in output.splitlines():
        for marker in ("does not render: ", "error: bomb: ", ": template: "):
            if marker in line:
                return line.split(marker, 1)[1]
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[0] if lines else ""


def project(where: Path) -> Path:
    (where / "prompts").mkdir(parents=True)
    (where / "pyproject.toml").write_text("[project]\nname = 'b'\nversion = '0.1.0'\n")
    return where


def fresh(args: list[str], script: str = RUNNER) -> tuple[int, str, float, float]:
    """Exit code, output, wall seconds and peak MiB of one fresh process."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        check=False,
    )
    seconds = time.monotonic() - started
    found = re.search(r"PEAK_RSS_KIB=(\d+)", done.stderr)
    peak = int(found.group(1)) / 1024 if found else float("nan")
    output = re.sub(r"\n?PEAK_RSS_KIB=\d+\n?", "", done.stdout + done.stderr)
    return done.returncode, output, seconds, peak


def outside_bombs(base: Path) -> list[tuple[str, str, int, str, float, float]]:
    """(what, command, exit code, message, seconds, MiB) for the bombs from outside."""
    rows = []
    big = project(base / "big")
    (big / "prompts" / "big.yaml").write_text("id: big\n" + "a: 1\n" * 10_000_000)
    dups = project(base / "dups")
    (dups / "prompts" / "dups.yaml").write_text("id: dups\n" + "a: 1\n" * 199_000)
    bad = project(base / "bad")
    mapping = ", ".join(f"k{i}: {'v' * 40}" for i in range(18_000))
    (bad / "prompts" / "bad.yaml").write_text(
        f"id: bad\nversion: 1.0.0\ndescription: {{{mapping}}}\ntemplate: hi\n"
    )
    obj = project(base / "obj")
    (obj / "prompts" / "obj.yaml").write_text(OBJECT_PROMPT)
    validate = ["validate", "--no-cache"]
    render = ["render", "obj", "--var", "data={}", "--var"]
    # (what, arguments, the line of the output to show)
    cases = [
        ("a 50 MB prompt file", ["--project", str(big), *validate], "over the limit"),
        (
            "199,000 duplicate keys in a 1 MB file",
            ["--project", str(dups), *validate],
            "more problems",
        ),
        ("a 900 KB mapping where text belongs", ["--project", str(bad), *validate], "got"),
        (
            "`--var` JSON nested 10,000 deep",
            ["--project", str(obj), *render, "items=" + "[" * 10_000 + "]" * 10_000],
            "nested",
        ),
        (
            "`--var` JSON nested 100 deep",
            ["--project", str(obj), *render, "items=" + "[" * 100 + "]" * 100],
            "nested",
        ),
    ]
    for what, args, pick in cases:
        code, output, seconds, peak = fresh(args)
        lines = [line.replace(f"{base}/", "") for line in output.splitlines() if line.strip()]
        shown = next((line for line in lines if pick in line), lines[0] if lines else "")
        rows.append((what, args[2], code, f"{len(lines)} lines, e.g. {shown}", seconds, peak))
    code, output, seconds, peak = fresh([str(obj / "prompts")], MILLION_KEYS)
    refused = re.search(r"REFUSED_IN=([\d.]+)", output)
    shown = next((line.strip() for line in output.splitlines() if "too large" in line), output)
    rows.append(
        (
            "a 1,000,000-key object input (`Prompt.render`)",
            "API",
            code,
            shown,
            float(refused.group(1)) if refused else float("nan"),
            peak,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    results = run([bomb.name for bomb in BOMBS], workers=1)
    worst: dict[str, dict[str, object]] = {}
    failures = []
    for result in results:
        bomb = BY_NAME[result["name"]]
        expected = 1 if result["command"] == "validate" or bomb.parse_time else 2
        output = result["stdout"] + result["stderr"]
        held = (
            result["code"] == expected
            and "Traceback" not in output
            and result["peak_mib"] is not None
            and result["peak_mib"] < MIB
            and result["seconds"] < SECONDS
        )
        if not held:
            failures.append(f"{bomb.name} {result['command']}")
        row = worst.setdefault(bomb.name, {"seconds": 0.0, "mib": 0.0, "message": ""})
        row["seconds"] = max(float(row["seconds"]), result["seconds"])  # type: ignore[arg-type]
        row["mib"] = max(float(row["mib"]), result["peak_mib"] or float("inf"))  # type: ignore[arg-type]
        if result["command"] == "render" or not row["message"]:
            row["message"] = message(output)
    lines = []
    for bomb in BOMBS:
        row = worst[bomb.name]
        lines.append(
            f"| `{bomb.name}` | `{cell(bomb.template)}` | {bomb.n:,} | "
            f"{cell(str(row['message']), 80)} | {row['seconds']:.2f} | {row['mib']:.0f} |"
        )
    slowest = max(worst, key=lambda name: float(worst[name]["seconds"]))  # type: ignore[arg-type]
    largest = max(worst, key=lambda name: float(worst[name]["mib"]))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        outside = outside_bombs(Path(tmp))
    outside_lines = [
        f"| {what} | {command} | {code} | {cell(shown, 110)} | {seconds:.2f} | {peak:.0f} |"
        for what, command, code, shown, seconds, peak in outside
    ]
    verdict = (
        f"all {len(BOMBS)} held"
        if not failures
        else f"**{len(failures)} commands did not hold**: {', '.join(failures)}"
    )
    body = f"""
Every template bomb of `tests/_bombs.py` ({len(BOMBS)} bombs, each sized by its integer
input `n`) through `promptlib validate` (the bomb is the prompt's example: exit 1) and
`promptlib render bomb --var n=N` (exit 2; a bomb refused when the template is parsed
leaves the prompt unloadable: exit 1), each command in a forked child of a worker that has
imported the CLI, one at a time, under `RLIMIT_AS` of 1 GiB. Per bomb, the worst of its two
commands: wall time of the child, and its peak resident memory (`VmHWM`; the CLI alone
uses about 40 MiB). Limits to hold: {SECONDS:g} s and {MIB} MiB.

Result: {verdict}. Slowest: `{slowest}` {float(worst[slowest]["seconds"]):.2f} s (bombs that
only loop are stopped by the 2 s render deadline); largest: `{largest}`
{float(worst[largest]["mib"]):.0f} MiB.

| bomb | template | n | refused with | worst s | worst MiB |
| --- | --- | ---: | --- | ---: | ---: |
{chr(10).join(lines)}

From outside the template, each in a fresh `python` process (start-up and imports
included; the million-key row times `Prompt.render` alone, after building the object):

| bomb | command | exit | what it printed | s | MiB |
| --- | --- | ---: | --- | ---: | ---: |
{chr(10).join(outside_lines)}
"""
    if args.no_write:
        print(body)
    else:
        write_section("bombs", "python bench/bench_bombs.py", body)
    print(json.dumps({"failures": failures}), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
