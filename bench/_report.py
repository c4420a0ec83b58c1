"""Write one benchmark's results into docs/benchmarks.md.

Each benchmark owns one section, delimited by HTML comments, so that scripts can be
re-run independently without clobbering each other's figures:

    <!-- bench:NAME -->
    ...markdown written by bench/NAME script...
    <!-- /bench:NAME -->
"""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every figure below was produced by a script under `bench/`; the command is given with each
section. Re-running a script rewrites only its own section. Numbers are wall-clock times on
the machine named in the section, so compare ratios measured in the same run, not absolute
times across sections.
"""


def machine() -> str:
    """A one-line description of where the numbers were taken."""
    cpus = os.cpu_count() or 0
    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{cpus} CPUs, {datetime.now(timezone.utc).date().isoformat()}"
    )


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or append) the section NAME of docs/benchmarks.md."""
    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else HEADER
    block = (
        f"<!-- bench:{name} -->\n"
        f"Command: `{command}`  \nMachine: {machine()}\n\n{body.strip()}\n"
        f"<!-- /bench:{name} -->"
    )
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    sys.stdout.write(block + "\n")


def top_functions(rows: list[tuple[float, float, int, str, int, str]], top: int) -> str:
    """A Markdown table of the ``top`` profile rows by own time.

    Each row is ``(own seconds, cumulative seconds, calls, filename, line, function)``, as
    taken from ``pstats.Stats(...).stats``.
    """
    lines = ["| function | calls | own s | cumulative s |", "| --- | ---: | ---: | ---: |"]
    for own, cum, calls, filename, line, name in sorted(rows, reverse=True)[:top]:
        where = name if filename == "~" else f"{_short(filename)}:{line}({name})"
        lines.append(f"| `{where}` | {calls:,} | {own:.2f} | {cum:.2f} |")
    return "\n".join(lines)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename
