"""Template, input and file bombs stop with a clear message, within 256 MB.

Each bomb of the table in tests/_bombs.py runs through ``promptlib validate`` (exit 1) and
``promptlib render`` (exit 2) in a process of its own: forked children of one worker
subprocess, each with its peak resident memory measured and capped by ``RLIMIT_AS``. A
few bombs also run in fresh ``python`` processes, the CLI exactly as users start it.
Times are recorded, never asserted: bench/bench_bombs.py writes them to
docs/benchmarks.md. The other tests cover what reaches the sandbox from outside: prompt
files over the size limit, bounded error messages, deep ``--var`` JSON and huge inputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from typer.testing import CliRunner

from _bombs import BOMBS, BY_NAME, MEMORY_CAP, Bomb, make_project
from conftest import REPO, write
from promptlib.cli import app
from promptlib.errors import InputError
from promptlib.library import loader
from promptlib.library.model import InputSpec
from promptlib.library.prompt import check_value
from promptlib.library.render import DEFAULT_LIMITS, Renderer

HERE = Path(__file__).resolve().parent
MEMORY_MIB = 256
# Runs the CLI in a fresh process, its address space capped like the worker's children,
# and prints its peak resident memory (KiB) at exit.
RUNNER = f"""
import atexit, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))
def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0
atexit.register(lambda: sys.stderr.write(f"\\nPEAK_RSS_KIB={{peak()}}\\n"))
from promptlib.cli import main
sys.argv = ["promptlib", *sys.argv[1:]]
main()
"""
FRESH = ["loop_keeps_text", "bigint_square_loop", "tojson_indent_items"]
DEADLINE = "rendering took longer than 2 s"

linux_only = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak memory is read from /proc"
)


def _environ(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLIB_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), COLUMNS="200")
    env["PYTHONPATH"] = str(REPO / "src")
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    """Every bomb through validate and render: one worker, a forked child per command."""
    home = tmp_path_factory.mktemp("home")
    done = subprocess.run(
        [sys.executable, str(HERE / "_bombs.py")],
        capture_output=True,
        text=True,
        env=_environ(home),
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {(r["name"], r["command"]): r for r in json.loads(done.stdout)}


def _expected_exit(bomb: Bomb, command: str) -> int:
    # A bomb refused at parse time leaves the prompt unloadable: render reports the
    # library's problem (a failed gate) rather than bad input.
    return 1 if command == "validate" or bomb.parse_time else 2


def test_the_table_has_forty_distinct_bombs() -> None:
    assert len(BOMBS) >= 40
    assert len(BY_NAME) == len(BOMBS)


@linux_only
@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize("bomb", BOMBS, ids=[b.name for b in BOMBS])
def test_bomb_is_refused_clearly_within_memory(
    results: dict[tuple[str, str], dict[str, Any]], bomb: Bomb, command: str
) -> None:
    run = results[(bomb.name, command)]
    output = run["stdout"] + run["stderr"]
    assert run["code"] == _expected_exit(bomb, command), output
    assert "Traceback" not in output
    assert "hit a bug" not in output
    # On a busy machine a bomb may meet the deadline before the check meant for it.
    assert re.search(f"{bomb.expect}|{DEADLINE}", output), output
    if command == "render" and not bomb.parse_time:
        assert run["stderr"].startswith("error: bomb: "), output
    assert run["peak_mib"] is not None
    assert run["peak_mib"] < MEMORY_MIB, f"{bomb.name} {command}: {run['peak_mib']} MiB"


@linux_only
def test_bombs_in_fresh_cli_processes(tmp_path: Path) -> None:
    """A few bombs through the CLI as users start it: a new process each (all at once)."""
    env = _environ(tmp_path / "home")
    runs: list[tuple[Bomb, int, subprocess.Popen[str]]] = []
    for name in FRESH:
        bomb = BY_NAME[name]
        loud = make_project(tmp_path / name / "validate", bomb, bomb.n)
        quiet = make_project(tmp_path / name / "render", bomb, bomb.benign)
        for args, expected in (
            (["--project", str(loud), "validate", "--no-cache"], 1),
            (["--project", str(quiet), "render", "bomb", "--var", f"n={bomb.n}"], 2),
        ):
            process = subprocess.Popen(
                [sys.executable, "-c", RUNNER, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            runs.append((bomb, expected, process))
    for bomb, expected, process in runs:
        stdout, stderr = process.communicate(timeout=120)
        output = stdout + stderr
        found = re.search(r"PEAK_RSS_KIB=(\d+)", stderr)
        assert process.returncode == expected, output
        assert re.search(f"{bomb.expect}|{DEADLINE}", output), output
        assert "Traceback" not in output
        assert found is not None, output
        assert int(found.group(1)) < MEMORY_MIB * 1024, f"{bomb.name}: {found.group(1)} KiB"


# -- what the limits must not change ----------------------------------------------------

VARIABLES = {
    "xs": [1, 2, 3, 4, 5],
    "text": "a quick brown fox jumps over the lazy dog again and again",
    "users": [
        {"name": "ann", "age": 31, "tags": ["a"]},
        {"name": "bob", "age": 25, "tags": ["b", "c"]},
    ],
}
# Every filter and method the limits wrap, used as prompts use them: the output must be
# exactly what Jinja's own sandbox renders.
EVERYDAY = [
    "{{ xs|join(', ') }} {{ users|join(', ', attribute='name') }}",
    "{{ [[1], [2, 3]]|sum(start=[]) }} {{ [(1,), (2,)]|sum(start=()) }} {{ xs|sum }}",
    "{{ users|sum(attribute='age') }} {{ users|sum(attribute='tags', start=[]) }}",
    "{{ xs|slice(2)|list }} {{ xs|slice(2, 0)|list }} {{ xs|batch(2, 0)|list }}",
    "{{ {'b': [1, {'c': 'x<'}], 'a': None}|tojson }}",
    "{{ {'b': [1, {'c': 'x'}], 'a': None, 'd': {}}|tojson(indent=2) }}",
    "{{ [1, [2, [3]]]|tojson(indent='  ') }}",
    "{{ {'b': [1, 2], 'a': 'x' * 90, 'c': [users, users]}|pprint }}",
    "{{ text|wordwrap(10) }}|{{ text|wordwrap(10, wrapstring='<br>') }}|{{ text|wordwrap(3, false) }}",
    "{{ text|indent(2, first=true) }}|{{ text|indent('> ', blank=true) }}",
    "{{ '%s-%05d'|format('a', 42) }} {{ '%(a)s!'|format(a=1) }} {{ '%d%%'|format(5) }}",
    "{{ '%-5s|%.2f' % ('ab', 3.14159) }} {{ '%s' % xs }} {{ '%(a)s' % {'a': 1} }} {{ '%c' % 65 }}",
    "{{ '{} {:>6}'.format('a', 'b') }} {{ '{x} {y[0]}'.format_map({'x': 1, 'y': [2]}) }}",
    "{{ 'abc'.translate({97: 'xy', 98: none}) }} {{ 'a\\tb'.expandtabs(4) }} {{ 'x'|center(9) }}",
    "{{ text|replace('a', 'AA') }} {{ text.replace('a', 'AA', 1) }} {{ text|replace('a', 'A', 2) }}",
    "{{ ', '.join(xs|map('string')) }} {{ '-'.join('abc') }} {{ xs ~ 'x' ~ 3 ~ none }}",
    "{{ 'see https://example.com or www.x.org'|urlize }} {{ 'a x.com'|urlize(rel='me') }}",
    "{{ xs[1:] }} {{ text[::2] }} {{ (xs * 2)|unique|list }} {{ users|groupby('age')|list }}",
    "{{ {'b': 1, 'a': 2}|dictsort }} {{ xs|reverse|list }} {{ 'abc'|reverse }} {{ xs|max }}",
    "{{ users|map(attribute='name')|list }} {{ xs|select('odd')|list }} {{ text|truncate(9) }}",
    "{{ text|title }} {{ text|upper }} {{ text|wordcount }} {{ '<b>x</b> &amp;'|striptags }}",
    "{{ {'a': 'x y'}|xmlattr }} {{ {'a': 'x y', 'b': 2}|urlencode }} {{ '<&>'|e }}",
    "{{ ('a', 1) }} {{ [none, true, 1.5] }} {{ {'k': (1, 2)} }} {{ 10 ** 20 }} {{ 2 ** 0.5 }}",
    "{% set ns = namespace(x=[]) %}{% for i in range(3) %}{% set ns.x = ns.x + [i] %}"
    "{% endfor %}{{ ns.x }} {{ ns }}",
    "{% macro m(a, b=[1]) %}{{ a }}{{ b }}{% endmacro %}{% for i in range(2) %}{{ m(i) }}"
    "{% endfor %}{% macro c() %}{{ caller(1) }}{% endmacro %}{% call(x) c() %}[{{ x }}]{% endcall %}",
    "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}{% set p, q = 1, 2 %}{{ p }}{{ q }}",
    "{{ (2 ** 100) * 3 }} {{ 7 // 2 }} {{ dict(a=1, b=[2])|items|list }} {{ (1).to_bytes(2, 'big') }}",
    "{% filter upper %}{% for x in xs %}{{ x }}{% endfor %}{% endfilter %}"
    "{% set t %}{% for x in xs %}{{ x }},{% endfor %}{% endset %}{{ t }}",
    "{{ users|selectattr('age', 'gt', 30)|map(attribute='name')|join }}"
    "{{ users|sort(attribute='age')|map(attribute='name')|list }}",
    "{{ 1000000|filesizeformat }} {{ none|default('d') }} {{ '42'|int + 1 }} {{ 3.7|round }}",
    "{% for x in xs %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %}",
]


@pytest.mark.parametrize("source", EVERYDAY)
def test_everyday_templates_render_as_in_jinja(source: str) -> None:
    plain = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    plain.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    renderer = Renderer()
    ours = renderer.render(renderer.compile(renderer.parse(source)), VARIABLES)
    assert ours == plain.from_string(source).render(VARIABLES)


def test_sum_of_lists_is_linear_and_keeps_python_errors() -> None:
    renderer = Renderer()

    def render(source: str) -> str:
        return renderer.render(renderer.compile(renderer.parse(source)), {})

    # The brief's quadratic case (36 s before): a concatenation of 100,000 lists.
    assert render("{{ (range(100000)|batch(1)|list)|sum(start=[])|length }}") == "100000"
    with pytest.raises(Exception, match='can only concatenate list \\(not "tuple"\\) to list'):
        render("{{ [[1], (2,)]|sum(start=[]) }}")


# -- prompt files -----------------------------------------------------------------------


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(tmp_path / "pyproject.toml", "[project]\nname = 'p'\nversion = '0.1.0'\n")
    (tmp_path / "prompts").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path / "prompts"


def test_prompt_file_over_the_size_limit_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _project(tmp_path, monkeypatch)
    big = prompts / "big.yaml"
    big.write_text("id: big\n" + "a: 1\n" * 400_000, encoding="utf-8")  # 2 MB

    def parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(loader, "read_yaml", parse)
    result = CliRunner().invoke(app, ["validate", "--no-cache"])
    assert result.exit_code == 1
    assert (
        "prompts/big.yaml: the file is 2,000,008 bytes, over the limit of 1,000,000 bytes "
        "for a prompt file, so it was not parsed" in result.stdout
    )
    assert DEFAULT_LIMITS.max_file_bytes == 1_000_000


@pytest.mark.parametrize(
    ("setting", "code", "message"),
    [
        ("2048", 1, "over the limit of 2,048 bytes for a prompt file"),
        ("5_000_000", 0, ""),
        ("12", 2, "PROMPTLIB_MAX_PROMPT_BYTES='12': the largest prompt file to read"),
        ("lots", 2, "give a whole number of at least 1024"),
    ],
)
def test_the_size_limit_is_configurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, code: int, message: str
) -> None:
    prompts = _project(tmp_path, monkeypatch)
    write(
        prompts / "demo" / "long.yaml",
        "id: demo.long\nversion: 1.0.0\ndescription: A long prompt.\n"
        "messages:\n  - role: user\n    content: |\n"
        + "      The same line of a long instruction, again.\n"
        * 80,
    )
    monkeypatch.setenv("PROMPTLIB_MAX_PROMPT_BYTES", setting)
    result = CliRunner().invoke(app, ["validate", "--no-cache"])
    assert result.exit_code == code, result.stdout + result.stderr
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_million_duplicate_keys_print_a_bounded_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _project(tmp_path, monkeypatch)
    (prompts / "many.yaml").write_text("id: many\n" + "a: 1\n" * 1_000_000, encoding="utf-8")
    (prompts / "some.yaml").write_text("id: some\n" + "a: 1\n" * 30_000, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "--no-cache"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) < 110
    assert "over the limit of 1,000,000 bytes" in lines[0]
    assert sum("duplicate key 'a'" in line for line in lines) == 100
    assert "29,899 more problems like the ones above are not listed; fix those first" in (
        result.stdout
    )


def test_a_bad_mapping_is_quoted_as_a_short_excerpt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _project(tmp_path, monkeypatch)
    mapping = ", ".join(f"k{i}: {'v' * 40}" for i in range(20_000))  # 900 KB
    (prompts / "bad.yaml").write_text(
        f"id: bad\nversion: 1.0.0\ndescription: {{{mapping}}}\ntemplate: hi\n", encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["validate", "--no-cache"])
    assert result.exit_code == 1
    problem = next(line for line in result.stdout.splitlines() if "description" in line)
    assert "input should be a valid string, got {'k0': 'vvvv" in problem
    assert len(problem) < 2048


def test_a_ten_megabyte_value_is_quoted_as_a_short_excerpt() -> None:
    mapping = {f"key{i}": "v" * 100 for i in range(100_000)}  # 10 MB as text
    spec = InputSpec(type="string", description="a text")
    problem = check_value("text", spec, mapping)
    assert problem is not None
    assert problem.startswith("input 'text': input should be a valid string (string), got dict")
    assert len(problem) < 2048


# -- inputs -----------------------------------------------------------------------------


def _object_prompt(prompts: Path) -> None:
    (prompts / "obj.yaml").write_text(
        "id: obj\nversion: 1.0.0\ndescription: An object input.\n"
        "inputs:\n  data: {type: object, description: Any data.}\n"
        "  items: {type: array, description: A list., required: false, default: []}\n"
        "template: '{{ data|length }} {{ items|length }}'\n"
        "examples:\n  - inputs: {data: {a: 1}}\n",
        encoding="utf-8",
    )


def test_deeply_nested_var_json_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _object_prompt(_project(tmp_path, monkeypatch))
    deep = "[" * 10_000 + "]" * 10_000
    result = CliRunner().invoke(
        app, ["render", "obj", "--var", "data={}", "--var", f"items={deep}"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --var items: the JSON value is nested too deeply to read; pass flatter data\n"
    )
    nested = "[" * 100 + "]" * 100  # readable JSON, but deeper than inputs may be
    result = CliRunner().invoke(
        app, ["render", "obj", "--var", "data={}", "--var", f"items={nested}"]
    )
    assert result.exit_code == 2
    assert "input 'items' is nested more than 32 levels deep; pass flatter data" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_million_key_input_is_refused_before_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _project(tmp_path, monkeypatch)
    _object_prompt(prompts)
    prompt = loader.scan(prompts).prompts["obj"]
    huge = dict.fromkeys(map(str, range(1_000_000)), 0)
    with pytest.raises(InputError) as caught:
        prompt.render(data=huge)
    assert list(caught.value.problems) == [
        "input 'data' is too large: the inputs of one render may hold at most 2,000,000 "
        "characters and items together; pass less data"
    ]
    assert len(str(caught.value)) < 2048
