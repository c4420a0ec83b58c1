"""Template bombs, and a worker that runs each through the real CLI in a process of its own.

Used by tests/test_bombs.py and bench/bench_bombs.py. Every bomb is a template whose size
is set by its integer input ``n``: with the bomb's ``n`` it tries to use unbounded time or
memory, with ``benign`` it renders. Each bomb runs twice, as users meet it:

* ``validate``: a project whose prompt has the bomb's ``n`` in its example; ``promptlib
  validate`` renders examples, so it must report the bomb as an error (exit 1);
* ``render``: a project whose example is benign; ``promptlib render bomb --var n=...``
  must refuse (exit 2). A bomb refused when the template is parsed (``parse_time``) makes
  the prompt fail to load, which ``render`` reports as a failed gate (exit 1).

Run as a script (``python tests/_bombs.py [--workers N] [NAME ...]``), the worker imports
the CLI once, then runs every command in a forked child with ``RLIMIT_AS`` at 1 GiB (so
that a bomb that gets through fails instead of taking the machine down) and
``RLIMIT_CPU`` at 60 s, three children at a time unless told otherwise. It prints one
JSON list: per bomb and command, the exit code, the output, the wall time and the child's
peak resident memory (``VmHWM``, the peak of the child's own pages; ``ru_maxrss`` would
also count pages the fork shared with the worker).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

MEMORY_CAP = 1 << 30
CPU_SECONDS = 60


@dataclass(frozen=True)
class Bomb:
    name: str
    template: str
    n: int
    expect: str  # a regular expression the error message matches
    benign: int = 1
    partials: dict[str, str] = field(default_factory=dict)
    parse_time: bool = False


S = "{% set s = 'a' * 100000 %}"  # 100,000 characters (the output limit is 1,000,000)
BIG = "{% set s = 'a' * 1000000 %}"  # exactly the output limit

BOMBS: list[Bomb] = [
    # Repetition and concatenation.
    Bomb("str_repeat", "{{ 'a' * n }}", 10**9, "repeating a value"),
    Bomb("list_repeat", "{{ [0] * n }}", 10**9, "repeating a value"),
    Bomb("nested_repeat", "{{ ('a' * 100000) * n }}", 100000, "repeating a value"),
    Bomb(
        "concat_doubling",
        "{% set ns = namespace(s='a') %}{% for i in range(n) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        64,
        "joining text with ~",
    ),
    Bomb(
        "list_doubling",
        "{% set ns = namespace(x=[0]) %}{% for i in range(n) %}{% set ns.x = ns.x + ns.x %}"
        "{% endfor %}{{ ns.x|length }}",
        64,
        "joining values",
    ),
    Bomb(
        "plus_doubling_macro",
        "{% macro d(s, k) %}{{ d(s + s, k - 1) if k else s|length }}{% endmacro %}{{ d('a', n) }}",
        64,
        "joining values",
    ),
    # Ranges, loops, recursion, partials.
    Bomb("range_huge", "{{ range(n)|list|length }}", 10**9, "Range too big"),
    Bomb("print_range_list", "{{ range(n)|list }}", 10**7, "Range too big"),
    Bomb(
        "nested_loops",
        "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}",
        100000,
        "rendering took longer",
    ),
    Bomb(
        "nested_loops_output",
        "{% for i in range(n) %}{% for j in range(n) %}x{% endfor %}{% endfor %}",
        100000,
        "output is over the limit",
    ),
    Bomb(
        "recursive_macro",
        "{% macro f(k) %}{{ f(k + 1) if k < n else k }}{% endmacro %}{{ f(0) }}",
        10**6,
        "recursion is too deep",
    ),
    Bomb(
        "macro_fanout",
        "{% macro f(k) %}{% if k %}{{ f(k - 1) }}{{ f(k - 1) }}{% endif %}{% endmacro %}{{ f(n) }}",
        60,
        "rendering took longer",
    ),
    Bomb(
        "recursive_loop_fanout",
        "{% for x in range(n) recursive %}{{ loop(range(x)) }}{% endfor %}",
        60,
        "rendering took longer",
    ),
    Bomb(
        "partial_in_loop",
        "{% for i in range(n) %}{% include 'inner.j2' %}{% endfor %}",
        100000,
        "rendering took longer",
        partials={"inner.j2": "{% for j in range(n) %}{% endfor %}"},
    ),
    Bomb(
        "self_including_partial",
        "{{ n }}{% include 'loop.j2' %}",
        1,
        "partials include each other in a cycle",
        partials={"loop.j2": "{% for i in range(n) %}{% include 'loop.j2' %}{% endfor %}"},
        parse_time=True,
    ),
    Bomb(
        "mutually_including_partials",
        "{{ n }}{% include 'a.j2' %}",
        1,
        "partials include each other in a cycle",
        partials={
            "a.j2": "{% include 'b.j2' %}",
            "b.j2": "{% for i in range(9) %}{% include 'a.j2' %}{% endfor %}",
        },
        parse_time=True,
    ),
    Bomb(
        "deep_nesting",
        "{{ n }}{{ " + "(" * 500 + "1" + ")" * 500 + " }}",
        1,
        "nests expressions too deeply",
        parse_time=True,
    ),
    Bomb(
        "capture_block",
        "{% set x %}{% for i in range(n) %}{{ 'a' * 100000 }}{% endfor %}{% endset %}{{ x|length }}",
        100000,
        "loops and macros produced",
    ),
    Bomb(
        "filter_block_indent",
        "{% filter indent(10000) %}{% for i in range(n) %}{{ '\\n' }}{% endfor %}{% endfilter %}",
        100000,
        "indent would build",
    ),
    # Padding and widths.
    Bomb("format_filter_width", "{{ ('%' ~ n ~ 's')|format('x') }}", 10**8, "format width"),
    Bomb(
        "format_filter_many_widths",
        "{{ ('%9999s' * n)|format(*range(n)) }}",
        100000,
        "formatting with % would build",
    ),
    Bomb("str_format_width", "{{ ('{:>' ~ n ~ '}').format('x') }}", 10**8, "format width"),
    Bomb(
        "str_format_many_widths",
        "{{ ('{:9999}' * n).format(*range(n)) }}",
        100000,
        "str.format would build",
    ),
    Bomb(
        "str_format_repeated_field",
        "{{ ('{0}' * n).format('a' * 100000) }}",
        100000,
        "str.format would build",
    ),
    Bomb("percent_repr", S + "{{ '%s' % ([s] * n,) }}", 1000, "formatting with % would build"),
    Bomb(
        "percent_repeated_key",
        "{{ ('%(a)s' * n) % {'a': 'b' * 100000} }}",
        100000,
        "formatting with % would build",
    ),
    Bomb("center_width", "{{ 'x'|center(n) }}", 10**8, "center width"),
    Bomb("ljust_width", "{{ 'x'.ljust(n) }}", 10**8, "str.ljust width"),
    Bomb("zfill_width", "{{ 'x'.zfill(n) }}", 10**8, "str.zfill width"),
    Bomb("expandtabs_width", "{{ '\\t\\t'.expandtabs(n) }}", 10**7, "str.expandtabs width"),
    Bomb(
        "expandtabs_many_tabs",
        "{{ ('\\t' * n).expandtabs(10000) }}",
        1000000,
        "str.expandtabs would build",
    ),
    Bomb("indent_width", "{{ 'a\\nb'|indent(n) }}", 10**7, "indent width"),
    Bomb("indent_many_lines", "{{ ('\\n' * n)|indent(10000) }}", 1000000, "indent would build"),
    # Replacing, joining, translating.
    Bomb("replace_filter", "{{ ('a' * n)|replace('a', 'a' * n) }}", 100000, "replace would build"),
    Bomb("replace_method", "{{ ('a' * n).replace('a', 'a' * n) }}", 100000, "replace would build"),
    Bomb(
        "replace_chain",
        "{{ ('a' * n)" + "|replace('a', 'aaaaaaaaaa')" * 4 + " }}",
        1000,
        "replace would build",
    ),
    Bomb("join_separator", "{{ range(n)|join('x' * n) }}", 100000, "join would build"),
    Bomb("join_big_items", BIG + "{{ ([s] * n)|join }}", 100000, "join would build"),
    Bomb(
        "map_join_chain",
        "{{ range(n)|map('string')|map('center', 10000)|join }}",
        100000,
        "built values of over 64 MB|join would build",
    ),
    Bomb("str_join_method", BIG + "{{ ''.join([s] * n) }}", 100000, "str.join would build"),
    Bomb(
        "str_translate",
        "{{ ('a' * n).translate({97: 'b' * n}) }}",
        100000,
        "str.translate would build",
    ),
    # Batching, slicing, summing, sorting.
    Bomb("batch_huge", "{{ range(10)|batch(n, 0)|list }}", 10**9, "batch width"),
    Bomb("slice_huge", "{{ range(10)|slice(n, 0)|list }}", 10**9, "slice width"),
    Bomb(
        "sum_start_list",
        "{{ [range(n)|list, range(n)|list]|sum(start=[])|length }}",
        100000,
        "sum would build",
    ),
    Bomb(
        "sort_in_loop",
        "{% set xs = range(n)|map('string')|list %}{% for i in range(n) %}"
        "{% set ys = xs|sort(reverse=true) %}{% endfor %}",
        100000,
        "rendering took longer|built values of over 64 MB",
    ),
    Bomb(
        "dictsort_in_loop",
        "{% set d = dict.fromkeys(range(n)) %}{% for i in range(n) %}{% set x = d|dictsort %}"
        "{% endfor %}",
        100000,
        "rendering took longer|built values of over 64 MB",
    ),
    Bomb(
        "dictsort_printed",
        "{{ dict.fromkeys(range(n))|dictsort }}",
        100000,
        "printing a value would write out",
    ),
    Bomb(
        "list_of_astral_chars",
        "{{ ('\U0001f600' * n)|list|length }}",
        1000000,
        "the list filter would go through",
    ),
    # Integers.
    Bomb("power_big_exponent", "{{ 10 ** n }}", 10**8, "exponent too large"),
    Bomb("power_tower", "{{ (2 ** 5000) ** n }}", 5000, "exponent too large"),
    Bomb(
        "bigint_square_loop",
        "{% set ns = namespace(x=10 ** n) %}{% for i in range(n // 60) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
        2500,
        "multiplying would build an integer",
    ),
    Bomb("int_to_bytes", "{{ (1).to_bytes(n, 'big')|length }}", 10**9, "to_bytes length"),
    Bomb(
        "int_from_bytes",
        "{% set x = (0).from_bytes(('a' * n).encode(), 'big') %}{{ x * x }}",
        1000000,
        "integer of 7,999,999 bits",
    ),
    # Text made from containers.
    Bomb("tojson_indent_width", "{{ range(9)|list|tojson(indent=n) }}", 10**6, "tojson indent"),
    Bomb(
        "tojson_indent_items",
        "{{ range(n)|list|tojson(indent=10000) }}",
        100000,
        "tojson would build",
    ),
    Bomb("tojson_big", S + "{{ ([s] * n)|tojson }}", 1000, "tojson would build"),
    Bomb("pprint_big", S + "{{ ([s] * n)|pprint }}", 1000, "the pprint filter would write out"),
    Bomb(
        "pprint_nested",
        "{{ (range(n)|batch(1)|list)|pprint }}",
        100000,
        "the pprint filter would write out|pprint would build",
    ),
    Bomb("wordwrap_width_1", "{{ ('a ' * n)|wordwrap(1) }}", 500000, "wordwrap would build"),
    Bomb(
        "wordwrap_wrapstring",
        "{{ ('a ' * 1000)|wordwrap(2, wrapstring='x' * n) }}",
        10000,
        "wordwrap would build",
    ),
    Bomb("print_list_of_text", S + "{{ [s] * n }}", 100000, "printing a value would write out"),
    Bomb(
        "string_filter_list",
        S + "{{ ([s] * n)|string|length }}",
        1000,
        "the string filter would write out",
    ),
    Bomb("tilde_list", S + "{{ ('' ~ ([s] * n))|length }}", 1000, "joining text with ~"),
    Bomb(
        "upper_list", S + "{{ ([s] * n)|upper|length }}", 1000, "the upper filter would write out"
    ),
    Bomb("escape_expansion", "{{ ('\"' * n)|e|length }}", 1000000, "the e filter would build"),
    Bomb("urlize_rel", "{{ ('x.com ' * n)|urlize(rel='x' * 10000) }}", 1000, "urlize would build"),
    Bomb("urlize_words", "{{ ('a ' * n)|urlize }}", 500000, "urlize would go through"),
    # Memory a loop or a recursion keeps.
    Bomb(
        "loop_keeps_text",
        "{% set s = 'a' * 999000 %}{% set ns = namespace(x=[]) %}{% for i in range(n) %}"
        "{% set ns.x = [ns.x, s ~ i] %}{% endfor %}{{ ns.x|length }}",
        100000,
        "built values of over 64 MB",
    ),
    Bomb(
        "loop_keeps_slices",
        BIG + "{% set ns = namespace(x=[]) %}{% for i in range(n) %}"
        "{% set ns.x = [ns.x, s[i:]] %}{% endfor %}{{ ns.x|length }}",
        100000,
        "built values of over 64 MB",
    ),
    Bomb(
        "loop_keeps_lists",
        "{% set ns = namespace(x=none) %}{% for i in range(n) %}{% for j in range(n) %}"
        "{% set ns.x = [ns.x, i, j] %}{% endfor %}{% endfor %}",
        100000,
        "built values of over 64 MB|rendering took longer",
    ),
    Bomb(
        "loop_keeps_namespaces",
        "{% set ns = namespace(x=none) %}{% for i in range(n) %}{% for j in range(n) %}"
        "{% set ns.x = namespace(p=ns.x) %}{% endfor %}{% endfor %}",
        100000,
        "built values of over 64 MB|rendering took longer",
    ),
    Bomb(
        "loop_keeps_macros",
        "{% set ns = namespace(x=none) %}{% for i in range(n) %}{% for j in range(n) %}"
        "{% set prev = ns.x %}{% macro f() %}{{ prev }}{% endmacro %}{% set ns.x = f %}"
        "{% endfor %}{% endfor %}",
        100000,
        "built values of over 64 MB|rendering took longer",
    ),
    Bomb(
        "loop_keeps_loops",
        "{% set ns = namespace(x=none) %}{% for i in range(n) %}{% for j in range(n) %}"
        "{% for k in [j] %}{% set ns.x = [ns.x, loop] %}{% endfor %}{% endfor %}{% endfor %}",
        100000,
        "built values of over 64 MB|rendering took longer",
    ),
    Bomb(
        "recursion_keeps_text",
        "{% macro f(k, t) %}{{ f(k + 1, t ~ k) if k < n else k }}{% endmacro %}"
        "{{ f(0, 'a' * 999000) }}",
        10**6,
        "built values of over 64 MB|recursion is too deep",
    ),
]

BY_NAME = {bomb.name: bomb for bomb in BOMBS}


def prompt_file(bomb: Bomb, example: int) -> str:
    return (
        "id: bomb\n"
        "version: 1.0.0\n"
        "description: A template bomb.\n"
        "inputs:\n"
        "  n: {type: integer, description: How big the bomb is.}\n"
        f"template: {json.dumps(bomb.template, ensure_ascii=False)}\n"
        "examples:\n"
        f"  - inputs: {{n: {example}}}\n"
    )


def make_project(where: Path, bomb: Bomb, example: int) -> Path:
    """A project whose only prompt, ``bomb``, renders ``bomb`` with ``n = example``."""
    (where / "prompts" / "_partials").mkdir(parents=True)
    (where / "pyproject.toml").write_text("[project]\nname = 'bombs'\nversion = '0.1.0'\n")
    (where / "prompts" / "bomb.yaml").write_text(prompt_file(bomb, example), encoding="utf-8")
    for name, source in bomb.partials.items():
        (where / "prompts" / "_partials" / name).write_text(source, encoding="utf-8")
    return where


def commands(bomb: Bomb, base: Path) -> list[tuple[str, list[str]]]:
    """The two CLI runs of a bomb, each in a project of its own under ``base``."""
    loud = make_project(base / bomb.name / "validate", bomb, bomb.n)
    quiet = make_project(base / bomb.name / "render", bomb, bomb.benign)
    return [
        ("validate", ["--project", str(loud), "validate", "--no-cache"]),
        ("render", ["--project", str(quiet), "render", "bomb", "--var", f"n={bomb.n}"]),
    ]


def _peak_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(cli: Any, args: list[str], out: Path) -> None:  # pragma: no cover - in the fork
    """Run the CLI with ``args``; write its output and peak memory under ``out``; exit."""
    code = 70
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
        stdout = os.open(out / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        stderr = os.open(out / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        sys.argv = ["promptlib", *args]
        try:
            cli(args, prog_name="promptlib")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        (out / "peak").write_text(str(_peak_kib()))
    except BaseException:  # a traceback here is a result to report
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def run(names: list[str], workers: int = 3) -> list[dict[str, Any]]:
    """Run the named bombs (``validate`` and ``render`` each); one result per command.

    ``workers`` children run at a time: most of the wall time goes to bombs stopped by the
    2 s deadline, which takes 2 s whatever share of a CPU they get.
    """
    # Built once, before forking: each child starts with the CLI (the click command typer
    # builds on every call) and the library stack loaded, as a warm process would.
    import typer.main

    from promptlib.cli import app
    from promptlib.evals import checks  # noqa: F401
    from promptlib.library import collection, loader  # noqa: F401

    cli = typer.main.get_command(app)

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bombs-") as tmp:
        base = Path(tmp)
        jobs = [
            (BY_NAME[name], command, args)
            for name in names
            for command, args in commands(BY_NAME[name], base)
        ]
        running: dict[int, tuple[Bomb, str, Path, float]] = {}
        while jobs or running:
            while jobs and len(running) < workers:
                bomb, command, args = jobs.pop(0)
                out = base / bomb.name / f"{command}.out"
                out.mkdir()
                started = time.monotonic()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    _child(cli, args, out)
                running[pid] = (bomb, command, out, started)
            pid, status = os.wait()
            bomb, command, out, started = running.pop(pid)
            seconds = time.monotonic() - started
            peak = out / "peak"
            results.append(
                {
                    "name": bomb.name,
                    "command": command,
                    "code": os.waitstatus_to_exitcode(status),
                    "seconds": round(seconds, 3),
                    "peak_mib": round(int(peak.read_text()) / 1024, 1) if peak.exists() else None,
                    "stdout": (out / "stdout").read_text(errors="replace")[-4000:],
                    "stderr": (out / "stderr").read_text(errors="replace")[-4000:],
                }
            )
    return results


if __name__ == "__main__":
    arguments = sys.argv[1:]
    workers = 3
    if arguments[:1] == ["--workers"]:
        workers, arguments = int(arguments[1]), arguments[2:]
    json.dump(run(arguments or [bomb.name for bomb in BOMBS], workers), sys.stdout)
