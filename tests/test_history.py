"""A prompt's score history across releases: ``prompt_history`` and ``show ID --history``.

The project is built and released for real, three times, with the deterministic ``fake``
provider (it answers with the rendered user message, so a prompt change really changes the
scores): 1.0.0; 1.1.0, where only ``demo.greet`` changed; 1.2.0, where ``demo.sentiment``'s
behaviour changed and ``demo.greet`` got a suite of its own. Every score asserted below was
computed by promptlib from the fake's answers, by hand from the rows:

* ``reviews`` (four rows): 1.0.0's echo gets r1 and r2 right, 0.5; 1.2.0 also maps "good"
  to positive, 0.75 (both metrics).
* ``reviews_first2`` (rows r1 and r2, ``limit: 2``): the echo is right on both, 1.0 always.
* ``greetings`` (two rows, only from 1.2.0 on): ``Say goodbye to Ada.`` is the one match.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from time import sleep

import pytest
from typer.testing import CliRunner

from conftest import write
from promptlib.cli import app
from promptlib.cli._history import BARS, GAP, WIDTH, render_history, sparkline
from promptlib.errors import NotFoundError
from promptlib.ledger import Ledger, read_v1
from promptlib.versioning.scores import (
    HistoryEntry,
    PromptHistory,
    Score,
    Series,
    prompt_history,
)

GOLDEN = Path(__file__).parent / "golden"

PYPROJECT = """\
[project]
name = "demo"
version = "1.0.0"

[tool.promptlib]
default-provider = "fake"

[tool.promptlib.providers.fake]
type = "fake"

[tool.promptlib.providers.other]
type = "fake"
default = "neutral"
"""

SENTIMENT = """\
id: demo.sentiment
version: 1.0.0
description: Labels a product review.
inputs:
  text: {type: string}
messages:
  - role: user
    content: "{{ text }}"
output: {format: label, labels: [positive, negative]}
examples:
  - inputs: {text: great}
"""

GREET = """\
id: demo.greet
version: 1.0.0
description: A greeting.
inputs:
  name: {type: string}
template: "Say hello to {{ name }}."
examples:
  - inputs: {name: Ada}
"""

REVIEWS = [
    {"id": "r1", "text": "positive", "label": "positive"},
    {"id": "r2", "text": "negative", "label": "negative"},
    {"id": "r3", "text": "good", "label": "positive"},
    {"id": "r4", "text": "bad", "label": "negative"},
]

SUITE = """\
dataset: evals/datasets/reviews.jsonl
prompts: [demo.sentiment]
inputs: {text: text}
references: label
metrics: [accuracy, exact_match]
"""

GREETINGS_SUITE = """\
dataset: evals/datasets/names.jsonl
prompts: [demo.greet]
inputs: {name: name}
references: greeting
metrics: [exact_match]
"""


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def release(root: Path) -> None:
    code, _out, err = cli(root, "release")
    assert code == 0, err


def new_project(root: Path) -> Path:
    write(root / "pyproject.toml", PYPROJECT)
    write(root / "prompts" / "demo" / "sentiment.yaml", SENTIMENT)
    write(root / "prompts" / "demo" / "greet.yaml", GREET)
    write(root / "evals" / "datasets" / "reviews.jsonl", jsonl(REVIEWS))
    write(root / "evals" / "suites" / "reviews.yaml", SUITE)
    write(root / "evals" / "suites" / "reviews_first2.yaml", SUITE + "limit: 2\n")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project after releases 1.0.0, 1.1.0 (greet changed) and 1.2.0 (sentiment
    changed, greet scored for the first time)."""
    root = new_project(tmp_path / "project")
    release(root)
    edit(root / "prompts" / "demo" / "greet.yaml", "hello", "goodbye")
    release(root)
    edit(
        root / "prompts" / "demo" / "sentiment.yaml",
        '"{{ text }}"',
        "\"{% if text == 'good' %}positive{% else %}{{ text }}{% endif %}\"",
    )
    names = [
        {"id": "n1", "name": "Ada", "greeting": "Say goodbye to Ada."},
        {"id": "n2", "name": "Bob", "greeting": "Hello Bob"},
    ]
    write(root / "evals" / "datasets" / "names.jsonl", jsonl(names))
    write(root / "evals" / "suites" / "greetings.yaml", GREETINGS_SUITE)
    release(root)
    return root


def view_of(root: Path) -> Ledger:
    return Ledger(root / "evals" / "ledger")


def after_the_release(time: str) -> None:
    """Wait until the clock has left the second of ``time``: a record of that second counts
    as made before the release (records have a one-second resolution)."""
    while datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") <= time:
        sleep(0.05)


def means(entry: HistoryEntry) -> dict[tuple[str, str, str], float]:
    return {(s.suite, s.metric, s.provider): s.mean for s in entry.scores}


# -- the library function ----------------------------------------------------------------------


def test_history_rows_flags_and_scores(project: Path) -> None:
    view = view_of(project).read()
    history = prompt_history(view, "demo.sentiment")
    rows = [(e.release, e.version, e.previous, e.changed) for e in history.entries]
    assert rows == [
        ("1.0.0", "1.0.0", None, None),
        ("1.1.0", "1.0.0", "1.0.0", False),
        ("1.2.0", "1.1.0", "1.1.0", True),
    ]
    assert history.releases == 3
    first, same, changed = history.entries
    assert first.fingerprint == same.fingerprint != changed.fingerprint
    # The fingerprints are the releases' own.
    records = {r.version: r for r in view.releases}
    for entry in history.entries:
        assert entry.fingerprint == records[entry.release].prompts["demo.sentiment"].fingerprint
        assert entry.time == records[entry.release].time
    assert means(first) == {
        ("reviews", "accuracy", "fake"): 0.5,
        ("reviews", "exact_match", "fake"): 0.5,
        ("reviews_first2", "accuracy", "fake"): 1.0,
        ("reviews_first2", "exact_match", "fake"): 1.0,
    }
    assert means(same) == means(first)
    # The unchanged release is scored by the very runs of the release before it.
    assert [s.run for s in same.scores] == [s.run for s in first.scores]
    assert means(changed) == {
        ("reviews", "accuracy", "fake"): 0.75,
        ("reviews", "exact_match", "fake"): 0.75,
        ("reviews_first2", "accuracy", "fake"): 1.0,
        ("reviews_first2", "exact_match", "fake"): 1.0,
    }
    assert {s.run for s in changed.scores}.isdisjoint({s.run for s in first.scores})
    score = changed.score("reviews", "accuracy")
    assert score is not None
    assert (score.n, score.provider, score.model) == (4, "fake", None)
    assert score.stderr == pytest.approx((0.75 * 0.25 / 3) ** 0.5)
    run = view.run(score.run)
    assert run is not None
    assert (run.prompt.fingerprint, run.suite, run.time) == (
        changed.fingerprint,
        "reviews",
        score.time,
    )
    assert score.dataset == run.dataset.sha256
    assert changed.score("reviews", "rougeL") is None


def test_a_release_whose_behaviour_had_no_run_has_no_scores(project: Path) -> None:
    history = prompt_history(view_of(project).read(), "demo.greet")
    assert [(e.release, e.version, e.changed) for e in history.entries] == [
        ("1.0.0", "1.0.0", None),
        ("1.1.0", "1.1.0", True),
        ("1.2.0", "1.1.0", False),
    ]
    # Its suite came with 1.2.0: the same fingerprint as 1.1.0, scored only then. 1.1.0
    # had no run of it when it was released, and gets the later run's scores as the
    # fallback of "the run that existed when the release was made"; 1.0.0's fingerprint
    # was never run at all.
    assert [means(e) for e in history.entries] == [
        {},
        {("greetings", "exact_match", "fake"): 0.5},
        {("greetings", "exact_match", "fake"): 0.5},
    ]
    assert history.series() == (Series("greetings", "exact_match", "fake", (None, 0.5, 0.5)),)


def test_series_follow_the_entries(project: Path) -> None:
    history = prompt_history(view_of(project).read(), "demo.sentiment")
    assert history.series() == (
        Series("reviews", "accuracy", "fake", (0.5, 0.5, 0.75)),
        Series("reviews", "exact_match", "fake", (0.5, 0.5, 0.75)),
        Series("reviews_first2", "accuracy", "fake", (1.0, 1.0, 1.0)),
        Series("reviews_first2", "exact_match", "fake", (1.0, 1.0, 1.0)),
    )


def test_later_runs_do_not_replace_the_run_a_release_was_made_with(project: Path) -> None:
    before = prompt_history(view_of(project).read(), "demo.sentiment")
    after_the_release(before.entries[-1].time)
    # A fifth row changes the dataset: evaluating now records a new run (a new key) of the
    # fingerprint 1.2.0 released, in the same suite with the same provider.
    rows = [*REVIEWS, {"id": "r5", "text": "meh", "label": "negative"}]
    write(project / "evals" / "datasets" / "reviews.jsonl", jsonl(rows))
    code, _out, err = cli(project, "eval", "--suite", "reviews")
    assert code == 0, err
    view = view_of(project).read()
    newer = [
        r
        for r in view.runs
        if r.suite == "reviews" and r.prompt.fingerprint == before.entries[-1].fingerprint
    ]
    assert len({r.key for r in newer}) == 2
    assert prompt_history(view, "demo.sentiment") == before


def test_providers_are_kept_apart(project: Path) -> None:
    code, _out, err = cli(project, "eval", "--provider", "other", "--suite", "reviews")
    assert code == 0, err
    history = prompt_history(view_of(project).read(), "demo.sentiment")
    first, _same, last = history.entries
    assert ("reviews", "accuracy", "other") not in means(first)
    assert means(last)[("reviews", "accuracy", "other")] == 0.0  # it answers "neutral"
    assert means(last)[("reviews", "accuracy", "fake")] == 0.75
    assert last.score("reviews", "accuracy", "other") is not None
    assert Series("reviews", "accuracy", "other", (None, None, 0.0)) in history.series()
    code, out, err = cli(project, "show", "demo.sentiment", "--history")
    assert code == 0, err
    lines = out.splitlines()
    # Two providers: each score column names its provider, each trend line too.
    at = lines.index("release  reviews   reviews      reviews_first2  reviews_first2  reviews")
    assert lines[at + 1 : at + 7] == [
        "         accuracy  exact_match  accuracy        exact_match     accuracy",
        "         fake      fake         fake            fake            other",
        "1.0.0    0.500     0.500        1.000           1.000           -",
        "1.1.0    0.500     0.500        1.000           1.000           -",
        "1.2.0    0.750     0.750        1.000           1.000           0.000",
        "",
    ]
    # The sixth column does not fit in 80 columns: it is wrapped, with the release column.
    assert lines[at + 7 : at + 13] == [
        "release  reviews",
        "         exact_match",
        "         other",
        "1.0.0    -",
        "1.1.0    -",
        "1.2.0    0.000",
    ]
    assert lines[-6:] == [
        "reviews accuracy (fake)            ▁▁█  lowest 0.500, highest 0.750",
        "reviews exact_match (fake)         ▁▁█  lowest 0.500, highest 0.750",
        "reviews_first2 accuracy (fake)     ▄▄▄  constant 1.000",
        "reviews_first2 exact_match (fake)  ▄▄▄  constant 1.000",
        "reviews accuracy (other)           ··▄  constant 0.000",
        "reviews exact_match (other)        ··▄  constant 0.000",
    ]
    assert all(len(line) <= WIDTH for line in lines)


def test_a_prompt_known_only_to_the_ledger_still_has_its_history(project: Path) -> None:
    (project / "prompts" / "demo" / "greet.yaml").unlink()
    code, out, err = cli(project, "show", "demo.greet", "--history")
    assert code == 0, err
    assert out.startswith("demo.greet: in 3 of 3 release(s), 2 fingerprint(s)\n")


@pytest.mark.parametrize(
    ("prompt_id", "known", "error"),
    [
        ("demo.sentimen", (), "did you mean demo.sentiment, demo.greet?"),
        ("demo.unscored", ("demo.unscored",), None),
        ("demo.unscored", (), "did you mean demo.greet?"),
        ("zzz", ("demo.unscored",), "`promptlib list` shows them all"),
    ],
)
def test_unknown_and_never_released_ids(
    project: Path, prompt_id: str, known: tuple[str, ...], error: str | None
) -> None:
    view = view_of(project).read()
    if error is None:
        history = prompt_history(view, prompt_id, known=known)
        assert (history.entries, history.releases) == ((), 3)
        assert history.series() == ()
        return
    with pytest.raises(NotFoundError, match=re.escape(error)) as info:
        prompt_history(view, prompt_id, known=known)
    assert set(info.value.known) == {"demo.greet", "demo.sentiment", *known}


def test_the_history_is_json_data(project: Path) -> None:
    history = prompt_history(view_of(project).read(), "demo.sentiment")
    data = history.to_json()
    assert json.loads(json.dumps(data)) == data
    code, out, err = cli(project, "show", "demo.sentiment", "--history", "--format", "json")
    assert code == 0, err
    assert json.loads(out) == data
    assert [e["changed"] for e in data["entries"]] == [None, False, True]
    assert data["series"][0] == {
        "suite": "reviews",
        "metric": "accuracy",
        "provider": "fake",
        "means": [0.5, 0.5, 0.75],
    }
    assert set(data["entries"][2]["scores"][0]) == {
        "suite",
        "metric",
        "provider",
        "mean",
        "stderr",
        "n",
        "run",
        "time",
        "dataset",
        "model",
    }


# -- the command -------------------------------------------------------------------------------


def test_show_history_prints_releases_scores_and_sparklines(project: Path) -> None:
    code, out, err = cli(project, "show", "demo.sentiment", "--history")
    assert code == 0, err
    history = prompt_history(view_of(project).read(), "demo.sentiment")
    fp = [e.fingerprint[:19] for e in history.entries]
    when = [f"{e.time[:10]} {e.time[11:16]}" for e in history.entries]
    assert out.splitlines() == [
        "demo.sentiment: in 3 of 3 release(s), 2 fingerprint(s)",
        "",
        "release  released (UTC)    prompt  fingerprint          behaviour",
        f"1.0.0    {when[0]}  1.0.0   {fp[0]}  first release",
        f"1.1.0    {when[1]}  1.0.0   {fp[1]}  unchanged since 1.0.0",
        f"1.2.0    {when[2]}  1.1.0   {fp[2]}  changed since 1.1.0",
        "",
        "scores: the mean of each metric of the run of the release's fingerprint",
        "(provider fake; - where that fingerprint has no run):",
        "release  reviews   reviews      reviews_first2  reviews_first2",
        "         accuracy  exact_match  accuracy        exact_match",
        "1.0.0    0.500     0.500        1.000           1.000",
        "1.1.0    0.500     0.500        1.000           1.000",
        "1.2.0    0.750     0.750        1.000           1.000",
        "",
        "trends (one mark per release, ▁ lowest to █ highest, · no score):",
        "reviews accuracy            ▁▁█  lowest 0.500, highest 0.750",
        "reviews exact_match         ▁▁█  lowest 0.500, highest 0.750",
        "reviews_first2 accuracy     ▄▄▄  constant 1.000",
        "reviews_first2 exact_match  ▄▄▄  constant 1.000",
    ]


def test_show_history_says_which_releases_had_no_run(project: Path) -> None:
    code, out, err = cli(project, "show", "demo.greet", "--history")
    assert code == 0, err
    assert "1.0.0" in out
    table = [line for line in out.splitlines() if line.startswith("1.")]
    assert [line.split("  ")[-1].strip() for line in table[:3]] == [
        "first release; no run",
        "changed since 1.0.0",
        "unchanged since 1.1.0",
    ]
    assert table[3:] == ["1.0.0    -", "1.1.0    0.500", "1.2.0    0.500"]
    assert "greetings exact_match  ·▄▄  constant 0.500" in out.splitlines()


def test_unknown_id_exits_2_with_suggestions(project: Path) -> None:
    code, out, err = cli(project, "show", "demo.sentimnt", "--history")
    assert (code, out) == (2, "")
    assert err == (
        "error: no prompt 'demo.sentimnt' in the library or the ledger; did you mean "
        "demo.sentiment, demo.greet?\n"
    )
    code, out, err = cli(project, "show", "nothing.like.it", "--history")
    assert (code, out) == (2, "")
    assert "`promptlib list` shows them all" in err
    assert "Traceback" not in err


def test_a_prompt_never_released_says_so(project: Path) -> None:
    write(project / "prompts" / "demo" / "fresh.yaml", GREET.replace("demo.greet", "demo.fresh"))
    code, out, err = cli(project, "show", "demo.fresh", "--history")
    assert (code, err) == (0, "")
    assert out == (
        "demo.fresh has never been released: none of the 3 release(s) in the ledger "
        "contains it (`promptlib release` records one)\n"
    )
    code, out, _err = cli(project, "show", "demo.fresh", "--history", "--format", "json")
    assert (code, json.loads(out)) == (
        0,
        {"prompt": "demo.fresh", "releases": 3, "entries": [], "series": []},
    )


def test_a_project_with_no_ledger_yet(tmp_path: Path) -> None:
    root = new_project(tmp_path / "project")
    code, out, err = cli(root, "show", "demo.sentiment", "--history")
    assert (code, err) == (0, "")
    assert out.startswith("demo.sentiment has never been released: none of the 0 release(s)")
    assert not (root / "evals" / "ledger").exists()  # reading wrote nothing
    code, _out, err = cli(root, "show", "demo.nope", "--history")
    assert code == 2
    assert "no prompt 'demo.nope' in the library or the ledger" in err


def test_outside_a_project_exits_2(in_tmp: Path) -> None:
    result = CliRunner().invoke(app, ["show", "banking.intent", "--history"])
    assert result.exit_code == 2
    assert "not inside a promptlib project" in result.stderr


def test_a_schema_1_ledger_is_read(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(GOLDEN / "project", root)
    shutil.copytree(GOLDEN / "prompts", root / "prompts")
    shutil.copy(GOLDEN / "ledger" / "v1" / "ledger.jsonl", root / "evals" / "ledger.jsonl")
    legacy = read_v1(root / "evals" / "ledger.jsonl")
    [release_record] = legacy.releases
    [run] = legacy.runs
    code, out, err = cli(root, "show", "golden.classify", "--history", "--format", "json")
    assert code == 0, err
    [entry] = json.loads(out)["entries"]
    assert (entry["release"], entry["version"], entry["changed"]) == ("1.0.0", "2.0.0", None)
    assert entry["fingerprint"] == release_record.prompts["golden.classify"].fingerprint
    assert [(s["suite"], s["metric"], s["mean"], s["run"]) for s in entry["scores"]] == [
        ("golden_refund", "accuracy", run.results["accuracy"].mean, run.key)
    ]
    code, out, err = cli(root, "show", "golden.chat", "--history")
    assert code == 0, err
    assert out.splitlines()[-1] == (
        "no scores: no run of any of its released fingerprints is recorded"
    )
    assert not (root / "evals" / "ledger").exists()  # schema 1 stays as it is


# -- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.5, 0.5, 0.75], "▁▁█"),
        ([2.0, 4.0, 3.0], "▁█▅"),  # 3 is level 3.5: the nearest level, rounded up
        ([0.2, 0.9, 0.3], "▁█▂"),
        ([0.0, 1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7, 6 / 7, 1.0], BARS),
        ([1.0, 0.0], "█▁"),
        ([3.0, 3.0], "▄▄"),  # constant: the middle level
        ([None, 0.5, None, 0.7], f"{GAP}▁{GAP}█"),
        ([None, None], GAP * 2),
        ([12.0, 40.0, 26.0], "▁█▅"),  # any range, not only 0-1
        ([-0.5, 0.0], "▁█"),
        ([], ""),
    ],
)
def test_sparkline(values: list[float | None], expected: str) -> None:
    assert sparkline(values) == expected


def _history(suites: int, releases: int) -> PromptHistory:
    """A history with long suite names (for layout only: the numbers are arbitrary)."""
    entries = tuple(
        HistoryEntry(
            release=f"{i}.0.0",
            time=f"2026-01-{1 + i % 28:02d}T00:00:00Z",
            version=f"{i}.0.0",
            fingerprint="sha256:" + f"{i:064x}"[::-1],
            previous=f"{i - 1}.0.0" if i else None,
            changed=bool(i % 2) if i else None,
            scores=tuple(
                Score(
                    suite=f"a_rather_long_suite_name_{s}",
                    metric="rougeLsum",
                    provider="fake",
                    mean=(i + s) / (releases + suites),
                    stderr=0.0,
                    n=1,
                    run="sha256:" + "0" * 64,
                    time="2026-01-01T00:00:00Z",
                    dataset="sha256:" + "0" * 64,
                )
                for s in range(suites)
            ),
        )
        for i in range(releases)
    )
    return PromptHistory("a.prompt.with.a.long.id", entries, releases)


def test_wide_tables_wrap_and_long_sparklines_are_left_out() -> None:
    history = _history(suites=5, releases=70)
    text = render_history(history)
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    # Every value is printed, whole: each release row appears once per table of columns.
    for series in history.series():
        for mean in series.means:
            assert f"{mean:.3f}" in text
    tables = [i for i, line in enumerate(lines) if line.startswith("release  a_rather")]
    assert len(tables) == 3  # 5 columns of 25 characters: 2 + 2 + 1
    assert lines.count("69.0.0   0.920                       0.933") == 1
    assert lines.count("69.0.0   0.973") == 1
    assert "(5 sparkline(s) left out: wider than 80 columns)" in lines
    trends = lines[lines.index(next(x for x in lines if x.startswith("trends"))) + 1 :]
    assert trends[0] == "a_rather_long_suite_name_0 rougeLsum  lowest 0.000, highest 0.920"
    assert not any(mark in line for line in trends for mark in BARS)
    # With few releases, the sparklines fit.
    short = render_history(_history(suites=5, releases=3))
    assert "a_rather_long_suite_name_0 rougeLsum  ▁▅█  lowest 0.000, highest 0.250" in short


def test_every_line_fits_80_columns_and_ids_are_whole(project: Path) -> None:
    for prompt_id in ("demo.sentiment", "demo.greet"):
        code, out, _err = cli(project, "show", prompt_id, "--history")
        assert code == 0
        assert all(len(line) <= WIDTH for line in out.splitlines())
        assert out.startswith(f"{prompt_id}: ")
