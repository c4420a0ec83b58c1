"""What an evaluation costs: ``eval --against`` evaluates only what changed, ``--gates-all``,
``--dry-run`` and the ``--limit`` / ``--sample`` subsets.

The project is the one of ``tests/test_against.py``: three prompts (alpha, beta, gamma),
two suites (``main``: alpha and beta on 40 rows; ``extra``: alpha and gamma on 15 rows),
and a real local OpenAI-compatible server that counts the calls it receives per prompt.
Every count asserted here is a request the server received, never a number promptlib says.
"""

from __future__ import annotations

import json
import random
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from _llm_server import LLMServer
from promptlib.evals.subset import Subset
from test_against import (
    MAIN_ROWS,
    ROWS,
    answer,
    calls,
    change_alpha,
    cli,
    make_project,
    prompt_file,
    release,
    run_count,
    since,
    write_prompt,
)

PROMPTS = ["demo.alpha", "demo.beta", "demo.gamma"]
NOT_CHECKED = (
    "Thresholds (gates) checked for the {n} changed or added prompt(s) evaluated; "
    "{skipped} unchanged prompt(s) not evaluated, their thresholds not checked "
    "(`promptlib eval` checks them; --gates-all adds them here)."
)
ALL_CHECKED = "Thresholds (gates) checked for all 3 prompt(s) evaluated (--gates-all)."


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


@pytest.fixture
def server() -> Any:
    with LLMServer(answer=answer) as running:
        yield running


def forget_runs(root: Path) -> None:
    """Keep only the release record in the ledger and empty the response cache, so that
    every score that is needed must come from the provider again (as after a provider
    change)."""
    index = root / "evals" / "ledger" / "index.jsonl"
    lines = index.read_text(encoding="utf-8").splitlines(keepends=True)
    index.write_text("".join(x for x in lines if '"kind":"release"' in x), encoding="utf-8")
    for path in (root / ".promptlib").iterdir():
        path.unlink()
    assert run_count(root) == 0


def released(root: Path, server: LLMServer, *, forget: bool = False) -> Path:
    release(root, server)
    if forget:
        forget_runs(root)
    return root


def state(root: Path) -> dict[str, bytes]:
    """Every file of the ledger and of the response-cache folder, with its bytes."""
    files = {}
    for folder in (root / "evals" / "ledger", root / ".promptlib"):
        if folder.exists():
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def by_side(
    server: LLMServer, before: int = 0, *, compared: bool = True
) -> Counter[tuple[str, str]]:
    """Requests received since the ``before``-th, by prompt and side.

    In a comparison (``compared``), alpha's candidate says "please" in its system message
    (the tests change it so) and its baseline does not; every other request is counted as
    the candidate's.
    """
    out: Counter[tuple[str, str]] = Counter()
    for seen in server.requests[before:]:
        name = seen.key.split()[0]
        baseline = compared and name == "alpha"
        baseline = baseline and "please" not in seen.body["messages"][0]["content"]
        side = "baseline" if baseline else "candidate"
        out[(name, side)] += 1
    return out


def predicted(report: dict[str, Any]) -> Counter[tuple[str, str]]:
    """The calls a dry run's JSON predicts, by prompt and side (candidate without one)."""
    out: Counter[tuple[str, str]] = Counter()
    for job in report["jobs"]:
        name = job["prompt"].removeprefix("demo.")
        if job["calls"]:
            out[(name, job.get("side", "candidate"))] += job["calls"]
    return out


def dry_run(root: Path, *args: str) -> dict[str, Any]:
    """``eval ARGS --dry-run --format json``, checked; its JSON."""
    code, out, err = cli(root, "eval", *args, "--dry-run", "--format", "json")
    assert code == 0, out + err
    report: dict[str, Any] = json.loads(out)
    assert report["dry_run"] is True
    assert report["calls"] == sum(job["calls"] for job in report["jobs"])
    return report


def rows_sent(server: LLMServer, prompt: str, before: int = 0) -> list[str]:
    """The row texts (``main-7``) of the requests received for ``prompt``, sorted."""
    return sorted(
        seen.key.split()[1] for seen in server.requests[before:] if seen.key.split()[0] == prompt
    )


# -- eval --against evaluates the changed and added prompts only ---------------------------


def test_against_with_nothing_changed_evaluates_nothing(tmp_path: Path, server: LLMServer) -> None:
    # No run and no cached answer is left: any prompt evaluated would call the provider.
    root = released(make_project(tmp_path / "project", server.base_url), server, forget=True)
    before = calls(server)
    code, out, err = cli(root, "eval", "--against", "v1.0.0")
    assert code == 0, out + err
    assert sum(since(server, before).values()) == 0
    assert run_count(root) == 0
    assert "against v1.0.0 (ledger release record): 3 unchanged" in out
    assert NOT_CHECKED.format(n=0, skipped=3) in out

    code, out, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert (report["evaluated"], report["not_evaluated"]) == ([], PROMPTS)
    assert report["gates"] == "changed and added"
    assert report["comparisons"] == []
    _, markdown, _ = cli(root, "eval", "--against", "v1.0.0", "--format", "markdown")
    assert NOT_CHECKED.format(n=0, skipped=3) in markdown
    assert sum(since(server, before).values()) == 0
    assert dry_run(root, "--against", "v1.0.0")["calls"] == 0


@pytest.mark.parametrize("gates_all", [False, True], ids=["changed-only", "gates-all"])
def test_against_calls_the_provider_for_the_changed_prompt_only_unless_gates_all(
    tmp_path: Path, server: LLMServer, gates_all: bool
) -> None:
    root = released(make_project(tmp_path / "project", server.base_url), server, forget=True)
    change_alpha(root, "Answer yes, please.")
    flag = ["--gates-all"] if gates_all else []
    before = calls(server)
    code, out, err = cli(root, "eval", "--against", "v1.0.0", *flag, "--format", "json")
    assert code == 0, out + err
    # alpha on both sides (its baseline from the release record), each row once per side.
    expected = {"alpha": 2 * ROWS["alpha"], "beta": 0, "gamma": 0}
    if gates_all:
        expected.update(beta=ROWS["beta"], gamma=ROWS["gamma"])
    assert since(server, before) == expected
    assert run_count(root) == (6 if gates_all else 4)
    report = json.loads(out)
    assert report["passed"] is True
    assert report["evaluated"] == (PROMPTS if gates_all else ["demo.alpha"])
    assert report["not_evaluated"] == ([] if gates_all else ["demo.beta", "demo.gamma"])
    assert report["gates"] == ("all" if gates_all else "changed and added")
    # Only a changed prompt is compared, whoever is evaluated.
    assert {c["prompt"] for c in report["comparisons"]} == {"demo.alpha"}

    # Every report says whose thresholds were checked; all runs are in the ledger now.
    gates = ALL_CHECKED if gates_all else NOT_CHECKED.format(n=1, skipped=2)
    _, table, _ = cli(root, "eval", "--against", "v1.0.0", *flag)
    _, markdown, _ = cli(root, "eval", "--against", "v1.0.0", *flag, "--format", "markdown")
    _, junit, _ = cli(root, "eval", "--against", "v1.0.0", *flag, "--format", "junit")
    assert gates in table
    assert gates in markdown
    properties = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert properties["gates"] == gates
    assert sum(since(server, before).values()) == sum(expected.values())


def test_a_failing_threshold_of_an_unchanged_prompt_fails_only_with_gates_all(
    tmp_path: Path, server: LLMServer
) -> None:
    # gamma answers wrong on every row; the extra suite gets a threshold after the release.
    root = make_project(tmp_path / "project", server.base_url)
    write_prompt(root, "gamma", prompt_file("gamma", "[bad] Answer yes."))
    released(root, server)
    extra = root / "evals" / "suites" / "extra.yaml"
    extra.write_text(
        extra.read_text(encoding="utf-8") + "gates: {exact_match: 0.5}\n", encoding="utf-8"
    )
    change_alpha(root, "Answer yes, please.")

    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["passed"] is True
    assert report["gate_failures"] == []
    assert "demo.gamma" in report["not_evaluated"]

    before = calls(server)
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--gates-all", "--format", "json")
    assert code == 1, out + err
    # gamma's run is reused from the ledger; its scores are checked against the threshold.
    assert since(server, before)["gamma"] == 0
    report = json.loads(out)
    assert report["passed"] is False
    assert report["gate_failures"] == [
        {"suite": "extra", "prompt": "demo.gamma", "gates": {"exact_match": 0.5}}
    ]
    assert "gate failed: extra/demo.gamma" in err
    # Every comparison passed: the threshold alone fails the run.
    assert all(not c["fails_gate"] for c in report["comparisons"])
    code, markdown, _ = cli(
        root, "eval", "--against", "v1.0.0", "--gates-all", "--format", "markdown"
    )
    assert code == 1
    assert markdown.startswith("### ❌ promptlib eval --against v1.0.0: 1 gate(s) failed\n")


# -- eval --dry-run: the calls a run would make, with nothing written ----------------------


def test_a_dry_run_of_eval_on_a_new_project_predicts_its_calls_and_creates_nothing(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    code, out, err = cli(root, "eval", "--dry-run")
    assert code == 0, out + err
    assert server.total == 0
    assert state(root) == {}
    assert not (root / ".promptlib").exists()
    lines = out.splitlines()
    assert lines[:3] == [
        "dry run: eval",
        "provider  jobs  reused  to run  examples  cached  calls",
        "local        4       0       4       110       0    110",
    ]
    assert "  main/demo.beta [local]: 40 examples, 0 cached, 40 calls" in lines
    assert "dry run: 110 provider call(s) would be made" in err

    report = dry_run(root)
    assert predicted(report) == {
        ("alpha", "candidate"): ROWS["alpha"],
        ("beta", "candidate"): ROWS["beta"],
        ("gamma", "candidate"): ROWS["gamma"],
    }
    assert all("side" not in job for job in report["jobs"])
    assert state(root) == {}
    code, out, err = cli(root, "eval")
    assert code == 0, out + err
    assert by_side(server, compared=False) == predicted(report)


@pytest.mark.parametrize(
    ("mode", "repeats", "cached"),
    [
        ("on", 1, 4 * 5),
        ("read-only", 1, 4 * 5),
        ("refresh", 1, 0),
        ("off", 1, 0),
        # The cached answers are the first repeat's: the second repeat of every row calls.
        ("on", 2, 4 * 5),
    ],
)
def test_a_dry_run_of_eval_counts_the_answers_the_cache_holds(
    tmp_path: Path, server: LLMServer, mode: str, repeats: int, cached: int
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    # A subset run records nothing, but caches its answers: the first 5 rows of each job.
    assert cli(root, "eval", "--limit", "5")[0] == 0
    assert run_count(root) == 0
    args = ["--cache", mode, "--repeats", str(repeats)]
    report = dry_run(root, *args)
    assert report["providers"] == [
        {
            "provider": "local",
            "jobs": 4,
            "reused": 0,
            "planned": 4,
            "examples": 110,
            "cached": cached,
            "calls": 110 * repeats - cached,
        }
    ]
    before = len(server.requests)
    code, out, err = cli(root, "eval", *args)
    assert code == 0, out + err
    assert by_side(server, before, compared=False) == predicted(report)
    assert report["calls"] == 110 * repeats - cached


@pytest.mark.parametrize("gates_all", [False, True], ids=["changed-only", "gates-all"])
def test_a_dry_run_of_eval_against_predicts_the_calls_of_both_sides(
    tmp_path: Path, server: LLMServer, gates_all: bool
) -> None:
    # Cold: no run but the release record, no cached answer.
    root = released(make_project(tmp_path / "project", server.base_url), server, forget=True)
    change_alpha(root, "Answer yes, please.")
    flag = ["--gates-all"] if gates_all else []
    report = dry_run(root, "--against", "v1.0.0", *flag)
    expected = Counter(
        {("alpha", "candidate"): ROWS["alpha"], ("alpha", "baseline"): ROWS["alpha"]}
    )
    if gates_all:
        expected.update(
            {("beta", "candidate"): ROWS["beta"], ("gamma", "candidate"): ROWS["gamma"]}
        )
    assert predicted(report) == expected
    assert report["against"] == "v1.0.0"
    assert report["gates"] == ("all" if gates_all else "changed and added")
    sides = sorted((job["side"], job["suite"], job["prompt"]) for job in report["jobs"])
    assert sides == sorted(
        [
            ("baseline", "extra", "demo.alpha"),
            ("baseline", "main", "demo.alpha"),
            ("candidate", "extra", "demo.alpha"),
            ("candidate", "main", "demo.alpha"),
            *(
                [("candidate", "extra", "demo.gamma"), ("candidate", "main", "demo.beta")]
                if gates_all
                else []
            ),
        ]
    )
    assert {job["status"] for job in report["jobs"]} == {"planned"}
    before = len(server.requests)
    code, out, err = cli(root, "eval", "--against", "v1.0.0", *flag)
    assert code == 0, out + err
    assert by_side(server, before) == expected


def test_a_dry_run_of_eval_against_counts_a_partly_warm_cache(
    tmp_path: Path, server: LLMServer
) -> None:
    root = released(make_project(tmp_path / "project", server.base_url), server)
    change_alpha(root, "Answer yes, please.")
    # The candidate's first 5 rows of each suite are answered (and cached) by a subset
    # run; the baseline's full runs are in the ledger.
    assert cli(root, "eval", "--against", "v1.0.0", "--limit", "5")[0] == 0
    report = dry_run(root, "--against", "v1.0.0")
    assert predicted(report) == {("alpha", "candidate"): ROWS["alpha"] - 2 * 5}
    jobs = {(job["side"], job["suite"], job["prompt"]): job for job in report["jobs"]}
    assert jobs[("candidate", "main", "demo.alpha")]["cached"] == 5
    assert jobs[("candidate", "extra", "demo.alpha")]["cached"] == 5
    assert jobs[("baseline", "main", "demo.alpha")]["status"] == "reused"
    assert report["providers"][0]["reused"] == 2
    before = len(server.requests)
    code, out, err = cli(root, "eval", "--against", "v1.0.0")
    assert code == 0, out + err
    assert by_side(server, before) == {("alpha", "candidate"): ROWS["alpha"] - 10}


def test_a_dry_run_writes_nothing(tmp_path: Path, server: LLMServer) -> None:
    root = released(make_project(tmp_path / "project", server.base_url), server)
    change_alpha(root, "Answer yes, please.")
    index = root / "evals" / "ledger" / "index.jsonl"
    objects = root / "evals" / "ledger" / "objects"
    cache = root / ".promptlib" / "cache.sqlite"
    assert index.is_file()
    assert objects.is_dir()
    assert cache.is_file()
    before = (index.read_bytes(), sorted(objects.rglob("*")), cache.read_bytes(), state(root))
    requests = server.total
    for args in (
        ["--dry-run"],
        ["--dry-run", "--format", "json"],
        ["--dry-run", "--cache", "refresh"],
        ["--dry-run", "--fresh"],
        ["--dry-run", "--limit", "3"],
        ["--against", "v1.0.0", "--dry-run"],
        ["--against", "v1.0.0", "--dry-run", "--gates-all", "--format", "json"],
        ["--against", "v1.0.0", "--dry-run", "--sample", "4", "--seed", "1"],
    ):
        code, out, err = cli(root, "eval", *args)
        assert code == 0, (args, out, err)
        if "json" not in args:
            assert "provider call(s) would be made" in err, args
        after = (index.read_bytes(), sorted(objects.rglob("*")), cache.read_bytes(), state(root))
        assert after == before, args
    assert server.total == requests
    _, out, _ = cli(root, "eval", "--against", "v1.0.0", "--dry-run")
    assert out.splitlines()[:2] == [
        "dry run: against v1.0.0 (ledger release record): 1 changed, 2 unchanged",
        "evaluated: the changed and added prompts; 2 unchanged prompt(s) not evaluated "
        "(--gates-all adds them)",
    ]
    assert "  main/demo.alpha (candidate) [local]: 40 examples, 0 cached, 40 calls" in out


# -- --limit and --sample ------------------------------------------------------------------


def test_limit_evaluates_the_first_rows_of_each_job_and_records_nothing(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    code, out, err = cli(root, "eval", "--limit", "5", "--cache", "off")
    assert code == 0, out + err
    assert dict(calls(server)) == {"alpha": 10, "beta": 5, "gamma": 5}
    assert rows_sent(server, "beta") == [f"main-{i}" for i in range(1, 6)]
    assert rows_sent(server, "gamma") == [f"extra-{i}" for i in range(1, 6)]
    assert run_count(root) == 0
    assert "a subset is never recorded" in err
    assert (
        "Subset: the first 10 of 55 rows (--limit 5); not an evaluation of the full suites." in out
    )

    code, out, _ = cli(root, "eval", "--limit", "5", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["subset"] == {
        "limit": 5,
        "sample": None,
        "seed": None,
        "rows": 10,
        "of": 55,
        "partial": True,
        "suites": {"extra": {"rows": 5, "of": 15}, "main": {"rows": 5, "of": 40}},
        "text": "the first 10 of 55 rows (--limit 5)",
    }
    assert {r["metrics"]["exact_match"]["n"] for r in report["results"]} == {5}
    _, markdown, _ = cli(root, "eval", "--limit", "5", "--format", "markdown")
    assert "Subset: the first 10 of 55 rows (--limit 5)" in markdown
    _, junit, _ = cli(root, "eval", "--limit", "5", "--format", "junit")
    properties = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert str(properties["subset"]).startswith("Subset: the first 10 of 55 rows")
    assert run_count(root) == 0


def test_a_subset_has_its_own_run_key_unless_it_keeps_every_row(
    tmp_path: Path, server: LLMServer
) -> None:
    root = released(make_project(tmp_path / "project", server.base_url), server)
    # The released full runs are not reused for a subset that drops rows ...
    report = dry_run(root, "--limit", "5")
    assert report["providers"][0]["reused"] == 0
    assert report["providers"][0]["planned"] == 4
    assert {job["examples"] for job in report["jobs"]} == {5}
    report = dry_run(root, "--sample", "5", "--seed", "3")
    assert report["providers"][0]["reused"] == 0
    # ... but are for one that keeps every row: its key is the full run's.
    report = dry_run(root, "--limit", str(MAIN_ROWS))
    assert report["providers"][0]["reused"] == 4
    assert report["calls"] == 0
    assert report["subset"]["partial"] is False
    before = calls(server)
    code, out, err = cli(root, "eval", "--limit", "1000")
    assert code == 0, out + err
    assert sum(since(server, before).values()) == 0
    assert "Subset: all 55 rows (--limit 1000 keeps every row)." in out
    assert run_count(root) == 4


def test_the_same_seed_samples_the_same_rows_and_a_new_row_moves_at_most_one(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    dataset = root / "evals" / "datasets" / "main.jsonl"

    def sample(seed: int) -> list[str]:
        before = len(server.requests)
        args = ["--sample", "6", "--seed", str(seed), "--prompt", "demo.beta", "--cache", "off"]
        code, out, err = cli(root, "eval", *args)
        assert code == 0, out + err
        size = len(dataset.read_text(encoding="utf-8").splitlines())
        assert f"Subset: sampled 6 of {size} rows (seed {seed})" in out
        return rows_sent(server, "beta", before)

    first = sample(7)
    assert len(first) == 6
    assert sample(7) == first
    assert sample(8) != first
    assert run_count(root) == 0
    # A new row at the top of the dataset: the sample keeps all but at most one row.
    new = json.dumps({"id": "main000", "text": "main-new", "label": "yes"})
    dataset.write_text(new + "\n" + dataset.read_text(encoding="utf-8"), encoding="utf-8")
    after = sample(7)
    assert len(after) == 6
    assert len(set(first) - set(after)) <= 1
    assert set(after) - set(first) <= {"main-new"}


def test_against_with_a_sample_compares_the_same_rows_on_both_sides(
    tmp_path: Path, server: LLMServer
) -> None:
    root = released(make_project(tmp_path / "project", server.base_url), server, forget=True)
    change_alpha(root, "Answer yes, please.")
    args = ["--against", "v1.0.0", "--sample", "6", "--seed", "7"]
    report = dry_run(root, *args)
    assert predicted(report) == {("alpha", "candidate"): 12, ("alpha", "baseline"): 12}
    before = len(server.requests)
    code, out, err = cli(root, "eval", *args, "--format", "json", "--cache", "off")
    assert code == 0, out + err
    assert by_side(server, before) == predicted(report)
    sides: dict[bool, list[str]] = {True: [], False: []}
    for seen in server.requests[before:]:
        sides["please" in seen.body["messages"][0]["content"]].append(seen.key)
    assert sorted(sides[True]) == sorted(sides[False])
    assert run_count(root) == 0
    result = json.loads(out)
    assert [(c["suite"], c["n"]) for c in result["comparisons"]] == [("extra", 6), ("main", 6)]
    assert result["subset"]["text"] == "sampled 12 of 55 rows (seed 7)"
    _, markdown, _ = cli(root, "eval", *args, "--format", "markdown")
    assert (
        "Subset: sampled 12 of 55 rows (seed 7), the same rows on both sides; not a "
        "comparison on the full suites."
    ) in markdown


def _rows(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i:04d}", "text": str(i)} for i in range(n)]


def _ids(rows: list[Any]) -> list[str]:
    return [str(r["id"]) for r in rows]


def test_subset_limit_keeps_the_first_rows_and_a_large_subset_keeps_all() -> None:
    rows = _rows(30)
    assert Subset(5).apply(rows) == rows[:5]
    assert Subset(30).apply(rows) == rows
    assert Subset(100).apply(rows) == rows
    assert Subset(100, seed=1).apply(rows) == rows


def test_subset_sample_is_seeded_in_file_order_and_independent_of_position() -> None:
    rows = _rows(200)
    picked = Subset(20, seed=7).apply(rows)
    assert len(picked) == 20
    assert _ids(picked) == sorted(_ids(picked))  # file order
    assert Subset(20, seed=7).apply(rows) == picked
    assert Subset(20, seed=8).apply(rows) != picked
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(_ids(Subset(20, seed=7).apply(shuffled))) == _ids(picked)


@pytest.mark.parametrize("seed", range(5))
def test_subset_sample_moves_by_at_most_one_row_per_row_added_or_removed(seed: int) -> None:
    rng = random.Random(seed)
    rows = _rows(100)
    subset = Subset(10, seed=seed)
    picked = set(_ids(subset.apply(rows)))
    for position in rng.sample(range(101), 10):
        new = {"id": f"new{position}", "text": "new"}
        grown = set(_ids(subset.apply([*rows[:position], new, *rows[position:]])))
        assert len(grown) == 10
        assert len(picked - grown) <= 1
        assert grown - picked <= {new["id"]}
    for position in rng.sample(range(100), 10):
        shrunk = set(_ids(subset.apply(rows[:position] + rows[position + 1 :])))
        assert len(shrunk) == 10
        removed = rows[position]["id"]
        assert picked - shrunk <= {removed}
        assert len(shrunk - picked) == (1 if removed in picked else 0)


# -- bad combinations ----------------------------------------------------------------------


BAD_COMBINATIONS = [
    (["--limit", "5", "--sample", "5", "--seed", "1"], "--limit and --sample are exclusive"),
    (["--seed", "1"], "--seed only applies to --sample; add --sample N or drop --seed"),
    (["--sample", "5"], "--sample needs --seed S"),
    (["--limit", "0"], "--limit must be at least 1 (got 0)"),
    (["--limit", "-3"], "--limit must be at least 1 (got -3)"),
    (["--sample", "0", "--seed", "1"], "--sample must be at least 1 (got 0)"),
    (["--gates-all"], "--gates-all applies to --against"),
    (["--dry-run", "--format", "markdown"], "--dry-run prints a table or JSON, not markdown"),
    (
        ["--against", "v1.0.0", "--dry-run", "--format", "junit"],
        "--dry-run prints a table or JSON, not junit",
    ),
    (["--dry-run", "--output", "{out}"], "--dry-run writes nothing, so it takes no --output"),
]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(*case, id="_".join(a.removeprefix("--").strip("{}") for a in case[0]))
        for case in BAD_COMBINATIONS
    ],
)
def test_a_bad_combination_of_options_exits_2_with_its_message(
    tmp_path: Path, server: LLMServer, args: list[str], message: str
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    output = tmp_path / "report.json"
    code, out, err = cli(root, "eval", *(a.replace("{out}", str(output)) for a in args))
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in out + err
    assert "hit a bug" not in err
    assert server.total == 0
    assert not output.exists()
    assert state(root) == {}


def test_a_dry_run_reads_a_schema_1_ledger_without_asking_for_a_migration(
    tmp_path: Path,
) -> None:
    golden = Path(__file__).parent / "golden"
    root = tmp_path / "project"
    shutil.copytree(golden / "project", root)
    shutil.copytree(golden / "prompts", root / "prompts")
    shutil.copy(golden / "ledger" / "v1" / "ledger.jsonl", root / "evals" / "ledger.jsonl")
    before = (root / "evals" / "ledger.jsonl").read_bytes()
    code, out, err = cli(root, "eval", "--dry-run", "--format", "json")
    assert code == 0, out + err
    assert json.loads(out)["dry_run"] is True
    # A run records, so it still asks for the migration first.
    code, _, err = cli(root, "eval")
    assert code == 2
    assert "promptlib ledger migrate" in err
    assert (root / "evals" / "ledger.jsonl").read_bytes() == before
    assert not (root / "evals" / "ledger").exists()


def test_a_subset_that_cannot_compare_a_recorded_run_says_which_option_records_nothing(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url)
    release(root, server)
    change_alpha(root, "Answer yes, please.")
    # The baseline's evidence is gone; a subset that keeps every row has the full run's key,
    # so the recorded run is the one to compare, and a subset records nothing to replace it.
    for line in (root / "evals" / "ledger" / "index.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "run" and record["prompt"]["id"] == "demo.alpha":
            digest = record["scores"].removeprefix("sha256:")
            (root / "evals" / "ledger" / "objects" / digest[:2] / f"{digest[2:]}.json.gz").unlink()
    code, out, err = cli(root, "eval", "--against", "v1.0.0", "--limit", "1000")
    assert code == 2, out + err
    assert "run without --limit 1000 (a subset is never recorded) to re-evaluate it" in err
    assert "--no-record" not in err
