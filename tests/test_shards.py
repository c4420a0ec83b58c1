"""Sharded evaluation and ``promptlib ledger merge``, against a real server on 127.0.0.1.

The project has three prompts and two suites: ``main`` scores alpha and beta on 40 rows
(above ``--split-above 20``: split across the shards), ``extra`` scores alpha and gamma on
15 rows (whole jobs, assigned by run key). The server answers each row deterministically,
right on some rows and wrong on others, so means and standard errors are not trivial.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _llm_server import LLMServer
from conftest import write
from promptlib.cli import app
from promptlib.evals.shards import Shard, assign, owner, ranges
from promptlib.ledger import Ledger

PROMPT = """\
id: demo.{name}
version: 1.0.0
description: The {name} prompt.
inputs:
  text: {{type: string}}
messages:
  - role: system
    content: Answer yes or no.
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
provider: local
"""

MAIN, EXTRA = 40, 15
SPLIT = ["--split-above", "20"]


def answer(messages: list[dict[str, Any]]) -> str:
    """``yes`` or ``no`` by a checksum of the user message: the same answer every time."""
    text = str(messages[-1]["content"])
    return "yes" if zlib.crc32(text.encode()) % 3 else "no"


def make_project(root: Path, base_url: str, *, concurrency: int = 4) -> Path:
    write(
        root / "pyproject.toml",
        f"""[project]
name = "demo"
version = "1.0.0"

[tool.promptlib.providers.local]
type = "openai"
model = "yes-no-1"
base_url = "{base_url}"
api_key_env = "DEMO_API_KEY"
timeout = 5
concurrency = {concurrency}

[tool.promptlib.retry]
max-attempts = 3
base-delay = 0.01
max-delay = 0.05
""",
    )
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n")
    for name in ("alpha", "beta", "gamma"):
        write(root / "prompts" / "demo" / f"{name}.yaml", PROMPT.format(name=name))
    for dataset, rows in (("main", MAIN), ("extra", EXTRA)):
        lines = [
            json.dumps({"id": f"{dataset}-{i:03d}", "text": f"{dataset} {i}", "label": "yes"})
            for i in range(1, rows + 1)
        ]
        write(root / "evals" / "datasets" / f"{dataset}.jsonl", "\n".join(lines) + "\n")
    write(
        root / "evals" / "suites" / "main.yaml",
        SUITE.format(dataset="main", prompts="[demo.alpha, demo.beta]"),
    )
    write(
        root / "evals" / "suites" / "extra.yaml",
        SUITE.format(dataset="extra", prompts="[demo.alpha, demo.gamma]"),
    )
    return root


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


def cli(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(project), *args])
    return result.exit_code, result.stdout, result.stderr


def evidence(folder: Path) -> dict[str, dict[str, Any]]:
    """Each run of a ledger by key: aggregates, per-example scores, errors and answers."""
    view = Ledger(folder).read()
    out = {}
    for key, record in view.latest_runs().items():
        scores = view.scores(record)
        outputs = view.outputs(record)
        out[key] = {
            "job": f"{record.suite}/{record.prompt.id}",
            "examples": record.examples,
            "results": {m: r.model_dump() for m, r in record.results.items()},
            "errors": record.errors,
            "ids": list(scores.ids),
            "scores": {m: list(v) for m, v in scores.scores.items()},
            "failed": dict(scores.errors),
            "outputs": [list(o) for o in outputs.outputs] if outputs is not None else None,
            "scores_object": record.scores,
            "outputs_object": record.outputs,
            "consistency": record.consistency,
        }
    return out


def run_shards(project: Path, count: int, prefix: str = "shard", *extra: str) -> list[Path]:
    folders = []
    for k in range(1, count + 1):
        folder = project / f"{prefix}-{k}"
        code, _, err = cli(
            project, "eval", "--shard", f"{k}/{count}", *SPLIT, "--ledger", str(folder), *extra
        )
        assert code == 0, err
        folders.append(folder)
    return folders


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_merged_shards_equal_an_unsharded_run(tmp_path: Path, count: int) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        code, _, err = cli(project, "eval", "--ledger", str(project / "whole"))
        assert code == 0, err
        folders = run_shards(project, count)
        # Nothing but the shard ledgers was written by the shards.
        assert not (project / "evals" / "ledger").exists()
        code, out, err = cli(
            project, "ledger", "merge", *map(str, folders), "--into", str(project / "merged")
        )
        assert code == 0, err
    assert "4 run(s) appended (2 joined from parts)" in out
    whole, merged = evidence(project / "whole"), evidence(project / "merged")
    assert len(whole) == 4
    assert merged == whole
    jobs = {v["job"]: v for v in merged.values()}
    assert jobs["main/demo.alpha"]["examples"] == MAIN
    main = jobs["main/demo.alpha"]["results"]["exact_match"]
    assert 0 < main["mean"] < 1
    assert main["stderr"] > 0
    assert main["n"] == MAIN
    report = Ledger(project / "merged").verify()
    assert report.ok, report.problems


def test_merged_shards_with_repeats_keep_every_repeat_and_the_consistency(
    tmp_path: Path,
) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        code, _, err = cli(project, "eval", "--repeats", "2", "--ledger", str(project / "whole"))
        assert code == 0, err
        folders = run_shards(project, 3, "shard", "--repeats", "2")
        code, out, err = cli(
            project, "ledger", "merge", *map(str, folders), "--into", str(project / "merged")
        )
        assert code == 0, err
    assert "(2 joined from parts)" in out
    whole, merged = evidence(project / "whole"), evidence(project / "merged")
    assert merged == whole
    joined = next(v for v in merged.values() if v["job"] == "main/demo.alpha")
    assert joined["consistency"] is not None
    assert joined["consistency"]["exact_match"].n == MAIN
    view = Ledger(project / "merged").read()
    [record] = [
        r for r in view.latest_runs().values() if r.prompt.id == "demo.alpha" and r.suite == "main"
    ]
    assert view.scores(record).repeats is not None


def test_a_merge_into_the_project_ledger_is_reused_with_no_model_call(tmp_path: Path) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        folders = run_shards(project, 2)
        calls = server.total
        code, _, err = cli(project, "ledger", "merge", *map(str, folders))
        assert code == 0, err
        # Merging again appends nothing: the records are there already.
        code, out, err = cli(project, "ledger", "merge", *map(str, folders))
        assert code == 0, err
        assert "0 run(s) appended (0 joined from parts), 4 already there" in out
        code, out, err = cli(project, "eval", "--format", "json", "--cache", "off")
        assert code == 0, err
        assert server.total == calls
    statuses = [o["status"] for o in json.loads(out)["results"]]
    assert statuses == ["reused"] * 4
    lines = (project / "evals" / "ledger" / "index.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_assignment_is_deterministic_and_covers_every_row_once(tmp_path: Path) -> None:
    from promptlib.evals.run import choose_suites
    from promptlib.evals.runner import plan_jobs
    from promptlib.library.collection import load
    from promptlib.providers import create_provider

    project = make_project(tmp_path, "http://127.0.0.1:9/v1")
    config = {"type": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    provider = create_provider("local", {"local": {**config, "api_key_env": ""}}, environ={})
    jobs = plan_jobs(choose_suites(project, []), list(load(project).values()), provider)
    for count in (1, 2, 3, 7):
        seen: dict[str, list[str]] = {}
        for k in range(1, count + 1):
            for job in assign(jobs, Shard(k, count, 20)):
                seen.setdefault(job.key, []).extend(str(r["id"]) for r in job.rows)
                if len(job.rows) + (job.part[0] if job.part else 0) > 20 or job.part:
                    assert job.part is not None
                else:
                    assert owner(job.key, count) == k
        assert {key: sorted(ids) for key, ids in seen.items()} == {
            job.key: sorted(str(r["id"]) for r in job.rows) for job in jobs
        }
    assert ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert ranges(2, 3) == [(0, 0), (0, 1), (1, 2)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/2", "1 <= K <= N"),
        ("0/2", "1 <= K <= N"),
        ("2", "expected K/N"),
        ("a/b", "expected K/N"),
    ],
)
def test_bad_shard_options_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    project = make_project(tmp_path, "http://127.0.0.1:9/v1")
    code, _, err = cli(project, "eval", "--shard", text, "--ledger", str(tmp_path / "s"))
    assert code == 2
    assert message in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give it --ledger DIR"),
        (["--ledger", "evals/ledger"], "never writes the project's ledger"),
        (["--ledger", "s", "--no-record"], "without --no-record"),
        (["--ledger", "s", "--limit", "3"], "takes no --limit"),
        (["--ledger", "s", "--format", "markdown"], "made from the merged ledger"),
    ],
)
def test_a_shard_writes_only_its_shard_ledger(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    project = make_project(tmp_path, "http://127.0.0.1:9/v1")
    extra = [str(project / e) if e in ("s", "evals/ledger") else e for e in extra]
    code, _, err = cli(project, "eval", "--shard", "1/2", *extra)
    assert code == 2, err
    assert message in err
    assert not (project / "evals" / "ledger").exists()


def test_a_missing_shard_fails_naming_its_jobs(tmp_path: Path) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        folders = run_shards(project, 3)
    code, _, err = cli(project, "ledger", "merge", str(folders[0]), str(folders[2]))
    assert code == 1
    assert "shard 2/3 is missing" in err
    # Both split jobs have a part in every shard; whole jobs only in their owner.
    assert "main/demo.alpha" in err
    assert "main/demo.beta" in err
    assert not (project / "evals" / "ledger" / "index.jsonl").exists()


def test_a_shard_that_did_not_finish_a_job_fails_naming_it(tmp_path: Path) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        folders = run_shards(project, 2)
    # Drop a shard's record of one whole job, as if it had stopped before it. Which shard
    # holds the two whole jobs depends on their run keys (the server's port is in them).
    index = next(f / "index.jsonl" for f in folders if (f / "index.jsonl").is_file())
    lines = index.read_text().splitlines(keepends=True)
    dropped = json.loads(lines[-1])
    index.write_text("".join(lines[:-1]))
    code, _, err = cli(project, "ledger", "merge", *map(str, folders))
    assert code == 1
    assert f"{dropped['suite']}/{dropped['prompt']['id']}" in err
    assert "is not in shard" in err


def test_disagreeing_shards_fail_naming_the_job_and_example(tmp_path: Path) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        folders = run_shards(project, 2)
        # Shard 1 again, into another folder, with an answer that changed for one example.
        flipped = "main 3"

        def other(messages: list[dict[str, Any]]) -> str:
            base = answer(messages)
            if str(messages[-1]["content"]).endswith(flipped):
                return "no" if base == "yes" else "yes"
            return base

        server.answer = other
        again = project / "again-1"
        code, _, err = cli(
            project, "eval", "--shard", "1/2", *SPLIT, "--ledger", str(again), "--cache", "off"
        )
        assert code == 0, err
    code, _, err = cli(project, "ledger", "merge", *map(str, folders), str(again))
    assert code == 1
    assert "disagree" in err
    assert "example main-003" in err
    assert "main/demo.alpha" in err or "main/demo.beta" in err


def test_corrupt_and_foreign_shard_ledgers_are_refused_by_name(tmp_path: Path) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path / "one", server.base_url)
        folders = run_shards(project, 2)
        other = make_project(tmp_path / "two", server.base_url)
        (other / "prompts" / "demo" / "gamma.yaml").write_text(
            PROMPT.format(name="gamma").replace("Answer yes or no.", "Say yes or no.")
        )
        foreign = run_shards(other, 2)
    code, _, err = cli(project, "ledger", "merge", str(folders[0]), str(foreign[1]))
    assert code == 1
    assert str(foreign[1]) in err
    assert "another project" in err
    # A damaged object in a shard ledger.
    victim = next((folders[1] / "objects").rglob("*.json.gz"))
    victim.write_bytes(b"not gzip")
    code, _, err = cli(project, "ledger", "merge", *map(str, folders))
    assert code == 1
    assert str(folders[1]) in err
    assert "corrupt shard ledger" in err
    # A folder that is no shard ledger.
    code, _, err = cli(project, "ledger", "merge", str(folders[0]), str(tmp_path))
    assert code == 1
    assert f"{tmp_path}: not a shard ledger" in err
    assert not (project / "evals" / "ledger" / "index.jsonl").exists()


def test_a_killed_shard_resumes_from_the_response_cache(tmp_path: Path) -> None:
    with LLMServer(answer=answer, delay=0.02) as server:
        project = make_project(tmp_path, server.base_url, concurrency=2)
        folder = project / "shard-1"
        exe = Path(sys.executable).with_name("promptlib")
        args = [str(exe), "--project", str(project), "eval", "--shard", "1/1", *SPLIT]
        child = subprocess.Popen(
            [*args, "--ledger", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DEMO_API_KEY": "sk-test"},
        )
        deadline = time.monotonic() + 30
        while server.total < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        total = 2 * MAIN + 2 * EXTRA
        assert 30 <= server.total < total
        with sqlite3.connect(project / ".promptlib" / "cache.sqlite") as db:
            cached = int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        before = server.total
        code, _, err = cli(project, "eval", "--shard", "1/1", *SPLIT, "--ledger", str(folder))
        assert code == 0, err
        # Only the calls whose answers the killed shard had not cached are made again.
        assert server.total - before == total - cached
        code, _, err = cli(project, "ledger", "merge", str(folder), "--into", str(tmp_path / "m"))
        assert code == 0, err
    assert len(evidence(tmp_path / "m")) == 4


def test_concurrent_merges_append_each_record_once(tmp_path: Path) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        folders = run_shards(project, 3)
    exe = Path(sys.executable).with_name("promptlib")
    args = [str(exe), "--project", str(project), "ledger", "merge", *map(str, folders)]
    children = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    lines = (project / "evals" / "ledger" / "index.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert len({json.loads(line)["key"] for line in lines}) == 4
    assert Ledger(project / "evals" / "ledger").verify().ok


def test_against_on_shards_records_both_sides_then_compares_from_the_merge(
    tmp_path: Path,
) -> None:
    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        code, _, err = cli(project, "eval")
        assert code == 0, err
        code, _, err = cli(project, "release")
        assert code == 0, err
        # A change of beta's user message: other answers on some rows.
        path = project / "prompts" / "demo" / "beta.yaml"
        path.write_text(PROMPT.format(name="beta").replace('"beta {{', '"beta v2 {{'))
        before = server.total
        folders = []
        for k in (1, 2):
            folder = project / f"against-{k}"
            code, _, err = cli(
                project,
                "eval",
                "--against",
                "latest",
                "--shard",
                f"{k}/2",
                *SPLIT,
                "--ledger",
                str(folder),
            )
            assert code == 0, err
            folders.append(folder)
        assert server.total - before == MAIN  # the changed prompt's rows, once over the shards
        code, _, err = cli(project, "ledger", "merge", *map(str, folders))
        assert code == 0, err
        calls = server.total
        code, out, err = cli(project, "eval", "--against", "latest", "--format", "json")
        assert server.total == calls  # every run of both sides came from the merged ledger
    assert code in (0, 1), err
    report = json.loads(out)
    [comparison] = [c for c in report["comparisons"] if c["metric"] == "exact_match"]
    assert (comparison["prompt"], comparison["suite"], comparison["n"]) == (
        "demo.beta",
        "main",
        MAIN,
    )
    merged = evidence(project / "evals" / "ledger")
    means = sorted(
        v["results"]["exact_match"]["mean"] for v in merged.values() if v["job"] == "main/demo.beta"
    )
    assert means == sorted([comparison["baseline"], comparison["candidate"]])


def test_the_in_process_api_runs_a_shard_and_merges(tmp_path: Path) -> None:
    from promptlib.evals.run import evaluate
    from promptlib.evals.runner import EvalOptions
    from promptlib.evals.shards import library_fingerprints, merge_ledgers
    from promptlib.ledger import open_project
    from promptlib.library.collection import load
    from promptlib.settings import Settings

    with LLMServer(answer=answer) as server:
        project = make_project(tmp_path, server.base_url)
        settings = Settings.resolve(project)
        folders = []
        for k in (1, 2, 3):
            folder = tmp_path / f"shard-{k}"
            folders.append(folder)
            evaluate(
                settings,
                options=EvalOptions(shard=Shard(k, 3, split_above=20)),
                ledger=open_project(settings, folder=folder),
            )
        report = merge_ledgers(
            folders, tmp_path / "merged", library=library_fingerprints(load(project))
        )
        code, _, err = cli(project, "eval", "--ledger", str(project / "whole"))
        assert code == 0, err
    assert sorted(report.appended) == sorted(evidence(project / "whole"))
    assert evidence(tmp_path / "merged") == evidence(project / "whole")
