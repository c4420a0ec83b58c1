"""The CLI's tables at 60, 80, 120 and 200 columns: no line wider than the console, no cell cut.

``console()`` takes its width from ``$COLUMNS`` (else the terminal, else 200 in a pipe), and
each table is printed only when every prompt id, suite, metric and verdict fits whole;
otherwise a narrower layout says the same. Whatever the width, every fact of the widest
layout is printed whole (a fact wider than the console alone is folded: all of its
characters are still there) and nothing is elided with ``…``.

The projects are evaluated by a real local server (``tests/_llm_server.py``): it answers
``yes`` (right) unless the prompt's system message contains ``[bad]``, and a 400 to every
call of the prompt ``broken``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from _llm_server import LLMServer
from conftest import REPO, write
from promptlib.cli import app
from promptlib.reports._text import interval_text, p_text

WIDTHS = (60, 80, 120, 200)
# The narrowest console on which `eval` prints TAIL of the regression project as a table:
# its status column is 20 wide, narrower than the URL in the failure of `broken`.
STATUS_20 = 127
# A console on which `ledger show` of the regression project is a table only with the
# results packed onto two lines of their column.
PACKED = 170

# 59 characters: whole on a line of 60 columns, not on a line of 60 with a margin.
LONG = "support.customer_reply.refund_policy_lookup_with_escalation"
POLITE = "support.tone.politeness"
# 100 characters: wider than a console of 60 or 80 columns on its own.
HUGE = "demo." + "x" * 95
MAIN, TAIL = "customer_support_main", "tail"
ROWS = {MAIN: 30, TAIL: 12}
METRICS = ("contains", "exact_match")

PYPROJECT = """\
[project]
name = "demo"
version = "1.0.0"

[tool.promptlib.providers.local]
type = "openai"
model = "echo-1"
base_url = "{base_url}"
api_key_env = "DEMO_API_KEY"
timeout = 5
concurrency = 4

[tool.promptlib.retry]
max-attempts = 1
base-delay = 0.01
max-delay = 0.05
"""

PROMPT = """\
id: {id}
version: {version}
description: {description}
inputs:
  text: {{type: string}}
messages:
  - role: system
    content: "{system}"
  - role: user
    content: "{name} {{{{ text }}}}"
examples:
  - inputs: {{text: ex-1}}
"""

SUITE = """\
dataset: evals/datasets/{dataset}.jsonl
prompts: {prompts}
inputs: {{text: text}}
references: label
metrics: [exact_match, contains]
gates: {{exact_match: 0.5}}
provider: local
"""


def answer(messages: list[dict[str, Any]]) -> str:
    return "no" if "[bad]" in messages[0]["content"] else "yes"


def write_prompt(
    root: Path,
    prompt_id: str,
    system: str = "Answer yes.",
    version: str = "1.0.0",
    description: str | None = None,
) -> None:
    name = prompt_id.rsplit(".", 1)[-1]
    text = PROMPT.format(
        id=prompt_id,
        version=version,
        description=description or f"The {name} prompt.",
        system=system,
        name=name,
    )
    write(root / "prompts" / Path(*prompt_id.split(".")).with_suffix(".yaml"), text)


def write_suite(root: Path, name: str, prompts: Sequence[str]) -> None:
    dataset = "main" if name == MAIN else "tail"
    text = SUITE.format(dataset=dataset, prompts=json.dumps(list(prompts)))
    write(root / "evals" / "suites" / f"{name}.yaml", text)


def make_project(root: Path, base_url: str, prompts: dict[str, str], tail: Sequence[str]) -> Path:
    """``prompts``: id -> system message; suite MAIN scores them all, TAIL scores ``tail``."""
    write(root / "pyproject.toml", PYPROJECT.format(base_url=base_url))
    for prompt_id, system in prompts.items():
        write_prompt(root, prompt_id, system)
    for suite, rows in ROWS.items():
        dataset = "main" if suite == MAIN else "tail"
        lines = [
            json.dumps({"id": f"{dataset}{i:03d}", "text": f"{dataset}-{i}", "label": "yes"})
            for i in range(1, rows + 1)
        ]
        write(root / "evals" / "datasets" / f"{dataset}.jsonl", "\n".join(lines) + "\n")
    write_suite(root, MAIN, list(prompts))
    write_suite(root, TAIL, tail)
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n")
    return root


def invoke(args: Sequence[str], width: int | None, code: int = 0) -> str:
    """The command's stdout with ``$COLUMNS`` set to ``width`` (unset for None)."""
    env = {"COLUMNS": None if width is None else str(width)}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (width, result.stdout, result.stderr, result.exception)
    return result.stdout


@dataclass
class Printed:
    """What the commands printed, by command and width (None: no $COLUMNS), and the facts
    the tables must show: the JSON of the same reports and of the ledger."""

    root: Path
    out: dict[tuple[str, int | None], str] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)

    def collect(self, name: str, args: Sequence[str], code: int, *more: int) -> None:
        project = ["--project", str(self.root)]
        for width in (*WIDTHS, *more, None):
            self.out[name, width] = invoke([*project, *args], width, code)
        if name != "list":
            self.json[name] = json.loads(invoke([*project, *args, "--format", "json"], 200, code))


@pytest.fixture(scope="module")
def _module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """conftest's isolation, for the module's fixtures (they outlive one test)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("PROMPTLIB_", "OPENAI_", "GITHUB_")) or name == "COLUMNS":
                patch.delenv(name)
        home = tmp_path_factory.mktemp("home")
        patch.setenv("HOME", str(home))
        patch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        patch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        patch.setenv("DEMO_API_KEY", "sk-test")
        yield


@pytest.fixture(scope="module")
def server(_module_env: None) -> Iterator[LLMServer]:
    # Every call of `broken` fails (400, not retried): its run fails beyond the error budget.
    script = {f"broken tail-{i}": ["400"] * 1000 for i in range(1, ROWS[TAIL] + 1)}
    with LLMServer(answer=answer, script=script) as running:
        yield running


def release_and_change(root: Path, changes: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["--project", str(root), "release"])
    assert result.exit_code == 0, result.stdout + result.stderr
    for prompt_id, system in changes.items():
        write_prompt(root, prompt_id, system, version="1.1.0")


@pytest.fixture(scope="module")
def regression(server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Printed:
    """LONG regresses in both suites and POLITE improves; `broken` fails in TAIL."""
    root = tmp_path_factory.mktemp("regression")
    make_project(root, server.base_url, {LONG: "Answer yes.", POLITE: "[bad] Answer yes."}, [LONG])
    release_and_change(root, {LONG: "[bad] Answer yes.", POLITE: "Answer yes."})
    printed = Printed(root)
    printed.collect("against", ["eval", "--against", "v1.0.0"], 1)
    write_prompt(root, "broken")
    write_suite(root, TAIL, [LONG, "broken"])
    # A gate failed, and `broken` failed: exit 3.
    printed.collect("eval", ["eval"], 3, STATUS_20)
    printed.collect("ledger", ["ledger", "show"], 0, PACKED)
    return printed


@pytest.fixture(scope="module")
def huge(server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Printed:
    """A 100-character prompt id (and a 95-character word in its description)."""
    root = tmp_path_factory.mktemp("huge")
    make_project(root, server.base_url, {HUGE: "Answer yes.", POLITE: "Answer yes."}, [HUGE])
    release_and_change(root, {HUGE: "[bad] Answer yes."})
    printed = Printed(root)
    printed.collect("against", ["eval", "--against", "v1.0.0"], 1)
    printed.collect("eval", ["eval"], 1)
    printed.collect("ledger", ["ledger", "show"], 0)
    printed.collect("list", ["list"], 0)
    return printed


def assert_fits(out: str, width: int) -> None:
    assert "\N{HORIZONTAL ELLIPSIS}" not in out
    for line in out.splitlines():
        assert cell_len(line) <= width, f"{cell_len(line)} > {width}: {line!r}"


def whole(out: str, fact: str) -> bool:
    """``fact`` appears on one line of ``out``, as whole words (not inside a longer one)."""
    return re.search(rf"(?<!\S){re.escape(fact)}(?!\S)", out) is not None


def assert_whole(out: str, *facts: str) -> None:
    for fact in facts:
        assert whole(out, fact), (fact, out)


def squeezed(text: str) -> str:
    """``text`` without whitespace: what is left of a fact wrapped or folded onto lines."""
    return re.sub(r"\s+", "", text)


def row(*cells: str) -> re.Pattern[str]:
    """A line holding ``cells`` in order, separated by spaces only."""
    return re.compile(r"(?m)^\s*" + r"\s+".join(map(re.escape, cells)) + r"\s*$")


def comparison_cells(c: dict[str, Any]) -> list[str]:
    return [
        str(c["n"]),
        f"{c['baseline']:.3f}",
        f"{c['candidate']:.3f}",
        f"{c['diff']:+.3f}",
        interval_text(tuple(c["ci95"])),
        p_text(c["p_holm"]),
    ]


def verdict(c: dict[str, Any]) -> str:
    return c["verdict"] if c["primary"] else f"{c['verdict']} [secondary]"


# ---------------------------------------------------------------------------- list


@pytest.mark.parametrize("width", WIDTHS)
def test_list_of_the_bundled_library_fits_and_keeps_every_id_and_version(width: int) -> None:
    library = json.loads(invoke(["--project", str(REPO), "list", "--format", "json"], 200))
    assert len(library) > 20
    out = invoke(["--project", str(REPO), "list"], width)
    assert_fits(out, width)
    tokens = out.split()
    # Tags and description wrap at word breaks (both inside a table row): no word is cut.
    words = {word.strip("[],") for word in tokens}
    for prompt in library:
        assert whole(out, prompt["id"]), prompt["id"]
        # Each id is followed by its version, in the table and in a block alike.
        assert tokens[tokens.index(prompt["id"]) + 1] == prompt["version"], prompt["id"]
        for word in [*prompt["tags"], *prompt["description"].split()]:
            assert word.strip("[],") in words, (prompt["id"], word)


@pytest.mark.parametrize("width", WIDTHS)
def test_list_of_prompts_without_tags_keeps_every_column_whole(width: int, tmp_path: Path) -> None:
    # No prompt has tags: the tags column is as wide as its header, not 0.
    write(tmp_path / "pyproject.toml", "[project]\nname = 'demo'\nversion = '1.0.0'\n")
    description = (
        "Answers a customer question about the refund policy, with the policy text quoted "
        "and a link to the form, politely and briefly."
    )
    for name in ("reply", "refund_policy_lookup"):
        write_prompt(tmp_path, f"support.{name}", description=description)
    out = invoke(["--project", str(tmp_path), "list"], width)
    assert_fits(out, width)
    for name in ("reply", "refund_policy_lookup"):
        assert re.search(rf"(?m)^support\.{name}\s+1\.0\.0\s+text(\s|$)", out), out
    # The description wraps in its column (the only one that wraps) or under its prompt.
    assert squeezed(out).count(squeezed(description)) == 2
    if width >= 120:
        assert row("id", "version", "output", "tags", "description").search(out), out


# --------------------------------------------------------------------- eval --against


@pytest.mark.parametrize("width", WIDTHS)
def test_against_fits_and_shows_every_fact_whole(regression: Printed, width: int) -> None:
    out = regression.out["against", width]
    assert_fits(out, width)
    comparisons = regression.json["against"]["comparisons"]
    assert {(c["prompt"], c["suite"], c["metric"], c["verdict"]) for c in comparisons} == {
        (LONG, MAIN, "exact_match", "regressed"),
        (LONG, MAIN, "contains", "regressed"),
        (LONG, TAIL, "exact_match", "regressed"),
        (LONG, TAIL, "contains", "regressed"),
        (POLITE, MAIN, "exact_match", "improved"),
        (POLITE, MAIN, "contains", "improved"),
    }
    for c in comparisons:
        for fact in (c["prompt"], c["suite"], c["metric"], verdict(c), *comparison_cells(c)):
            assert whole(out, fact), (fact, out)


def test_against_is_one_table_row_per_comparison_at_200_columns(regression: Printed) -> None:
    out = regression.out["against", 200]
    header = row("prompt", "suite", "metric", "n", "base", "cand", "Δ", "95% CI", "p (Holm)")
    assert re.search(header.pattern.removesuffix(r"\s*$") + r"\s+verdict\s*$", out), out
    for c in regression.json["against"]["comparisons"]:
        cells = (c["prompt"], c["suite"], c["metric"], *comparison_cells(c), verdict(c))
        assert row(*cells).search(out), (cells, out)


def test_against_narrower_layouts_at_120_and_80_columns(regression: Printed) -> None:
    comparisons = regression.json["against"]["comparisons"]
    # 120: a heading per prompt and suite, a table row per metric beneath it.
    out = regression.out["against", 120]
    assert row("prompt · suite").search(out), out
    for c in comparisons:
        assert row(f"{c['prompt']} · {c['suite']}").search(out), out
        assert row(c["metric"], *comparison_cells(c), verdict(c)).search(out), out
        assert not row(c["prompt"], c["suite"], c["metric"]).search(out), out
    # 80 and 60: the same headings, then a block per metric: its name and verdict, then
    # its numbers, each labelled.
    for width in (80, 60):
        out = regression.out["against", width]
        for c in comparisons:
            assert not re.search(rf"{re.escape(c['metric'])}\s+{c['n']}\s", out), out
            assert row(c["metric"], verdict(c)).search(out), out
            n, base, cand, diff, ci, p = comparison_cells(c)
            facts = [f"n {n}", f"base {base}", f"cand {cand}", f"Δ {diff}"]
            assert whole(out, "  ".join(facts)), out
            assert_whole(out, f"95% CI {ci}", f"p (Holm) {p}")


# ----------------------------------------------------------------------------- eval


@pytest.mark.parametrize("width", WIDTHS)
def test_eval_table_fits_and_shows_every_fact_whole(regression: Printed, width: int) -> None:
    out = regression.out["eval", width]
    assert_fits(out, width)
    results = regression.json["eval"]["results"]
    assert {(r["suite"], r["prompt"], r["status"]) for r in results} == {
        (MAIN, LONG, "reused"),
        (MAIN, POLITE, "reused"),
        (TAIL, LONG, "reused"),
        (TAIL, "broken", "failed"),
    }
    for r in results:
        assert_whole(out, f"suite {r['suite']}", r["prompt"], r["version"], str(r["errors"]))
        for metric, value in r["metrics"].items():
            assert_whole(out, metric, str(value["n"]))
            gate = r["gates"].get(metric)
            if gate is not None and not gate["passed"]:
                assert whole(out, f"{value['mean']:.3f} < {gate['threshold']:g}"), out
            else:
                assert whole(out, f"{value['mean']:.3f}"), out
        if r["status"] == "failed":
            # The failure wraps inside its column or block; every character is shown.
            assert squeezed(f"failed: {r['failure']}") in squeezed(out), out
    assert out.count("gate failed") == 2, out


def test_eval_layouts_by_width(regression: Printed) -> None:
    header = row("prompt", "version", *METRICS, "n", "errors", "status")
    # 200: a table per suite; the long failure wraps inside the status column.
    out = regression.out["eval", 200]
    assert len(header.findall(out)) == 2, out
    assert row(POLITE, "1.1.0", "1.000", "1.000", "30", "0", "reused").search(out), out
    assert max(map(cell_len, out.splitlines())) <= 200
    # 127: the narrowest table; the failure wraps in a status column of 20, and the URL in
    # it (a word wider than the column) is folded, not cut.
    out = regression.out["eval", STATUS_20]
    assert_fits(out, STATUS_20)
    assert len(header.findall(out)) == 2, out
    assert re.search(r"(?m)^ broken\s+1\.0\.0\s+0\s+12\s+failed: ", out), out
    failure = next(r["failure"] for r in regression.json["eval"]["results"] if r["failure"])
    url = re.search(r"\(http\S+", failure)
    assert url is not None
    assert len(url[0]) > 20
    assert squeezed(failure) in squeezed(out), out
    # 60: one block per prompt.
    out = regression.out["eval", 60]
    assert not header.search(out), out
    assert row(POLITE, "1.1.0", "reused").search(out), out
    assert row("n 30", "errors 0", "contains 1.000", "exact_match 1.000").search(out), out


# ---------------------------------------------------------------------- ledger show


@pytest.mark.parametrize("width", WIDTHS)
def test_ledger_show_fits_and_shows_every_fact_whole(regression: Printed, width: int) -> None:
    out = regression.out["ledger", width]
    assert_fits(out, width)
    records = regression.json["ledger"]
    runs = [r for r in records if r["kind"] == "run"]
    # Released: LONG and POLITE in MAIN, LONG in TAIL; then the same of the changed prompts.
    # The failed run of `broken` is not recorded.
    assert len(runs) == 6
    for r in records:
        assert whole(out, r["time"]), out
        if r["kind"] == "release":
            assert_whole(out, r["version"], f"{len(r['prompts'])} prompts")
            continue
        for fact in (r["prompt"]["id"], r["prompt"]["version"], r["suite"], r["provider"]["name"]):
            # A record's block hangs its facts by 2 under the time: at 60 columns a fact of
            # 59 (LONG) is wider than a line of the block and folds, every character kept.
            if len(fact) <= width - 2:
                assert whole(out, fact), (fact, out)
            else:
                assert fact in squeezed(out), (fact, out)
        for metric, value in r["results"].items():
            # Each result is whole on one line: packed into the column, or flowed.
            fact = f"{metric} {value['mean']:.3f} (n={value['n']})"
            assert re.search(rf"(?<!\S){re.escape(fact)}(,|\s|$)", out), (fact, out)


# ------------------------------------------------------- a cell wider than the console


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", ["list", "against", "eval", "ledger"])
def test_a_cell_wider_than_the_console_is_folded_not_cut(
    huge: Printed, command: str, width: int
) -> None:
    out = huge.out[command, width]
    assert_fits(out, width)
    assert HUGE in squeezed(out), out
    if command == "list":
        assert "x" * 95 in squeezed(out), out  # the description's 95-character word
    if width == 200:
        assert whole(out, HUGE), out  # it fits: not folded
    if command == "against":
        for c in huge.json["against"]["comparisons"]:
            assert_whole(out, c["metric"], verdict(c), *comparison_cells(c))


# ----------------------------------------------------------------- piped, no $COLUMNS


def test_piped_without_columns_is_200_wide(regression: Printed) -> None:
    for command in ("against", "eval", "ledger"):
        assert regression.out[command, None] == regression.out[command, 200], command
    # A real pipe, with no $COLUMNS: the bundled library's list is a table wider than 80.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    exe = Path(sys.executable).with_name("promptlib")
    result = subprocess.run(
        [str(exe), "--project", str(REPO), "list"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    widest = max(map(cell_len, result.stdout.splitlines()))
    assert 80 < widest <= 200
    assert result.stdout == invoke(["--project", str(REPO), "list"], 200)


def test_ledger_show_packs_the_results_before_giving_up_the_table(regression: Printed) -> None:
    header = row("time", "kind", "prompt / release", "version", "suite", "provider", "results")
    assert header.search(regression.out["ledger", 200]), regression.out["ledger", 200]
    out = regression.out["ledger", PACKED]
    assert_fits(out, PACKED)
    assert header.search(out), out
    # A run's two results, one per line of the column: the first ends with the comma.
    assert re.search(r"contains \d\.\d{3} \(n=\d+\),\s*\n\s+exact_match \d\.\d{3} \(n=\d+\)", out)
    assert not header.search(regression.out["ledger", 120]), regression.out["ledger", 120]
