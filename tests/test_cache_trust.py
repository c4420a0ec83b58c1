"""The response cache is not trusted blindly, and failed examples are not frozen in the ledger.

End to end against the real OpenAI-compatible server of ``tests/_llm_server.py``, which
counts requests per example (the user message, ``ex-N`` for row ``rNNN``) and answers
``echo: ex-N``, the reference: every answer scores 1 on ``exact_match`` and any other text
scores 0. A cached row changed behind promptlib's back (its text, its JSON, its shape, its
key) is a miss: that one request is made again, the real answer is scored and replaces the
row, and a warning names the cache. A re-run completes the failed examples of a recorded
run with exactly one call per failed request. Evals of the same work running at once ask
for each answer once: the others wait for it through the cache.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _llm_server import LLMServer
from conftest import write
from promptlib.cli import app
from promptlib.evals.cache import CacheMode, ResponseCache, row_digest
from promptlib.ledger import Ledger
from promptlib.providers.contract import Response, Usage

PROMPT = """\
id: demo.echo
version: 1.0.0
description: Sends the row's text; the test server echoes it.
inputs:
  text: {type: string}
messages:
  - role: system
    content: Repeat the key.
  - role: user
    content: "{{ text }}"
"""

SUITE = """\
dataset: evals/datasets/demo.jsonl
prompts: [demo.echo]
inputs: {text: text}
references: expected
metrics: [exact_match]
gates: {exact_match: 0.5}
provider: local
"""

# "Repeat the key." and "ex-N" are 4 prompt words; "echo: ex-N" is 2 completion words.
PROMPT_TOKENS, COMPLETION_TOKENS = 4, 2


def make_project(root: Path, base_url: str, rows: int) -> Path:
    write(
        root / "pyproject.toml",
        f"""[project]
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
max-attempts = 2
base-delay = 0.01
max-delay = 0.02
""",
    )
    write(root / "prompts" / "demo" / "echo.yaml", PROMPT)
    lines = [
        json.dumps({"id": f"r{i:03d}", "text": f"ex-{i}", "expected": f"echo: ex-{i}"})
        for i in range(1, rows + 1)
    ]
    write(root / "evals" / "datasets" / "demo.jsonl", "\n".join(lines) + "\n")
    write(root / "evals" / "suites" / "demo.yaml", SUITE)
    return root


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def eval_(root: Path, *args: str) -> tuple[int, str, str]:
    return cli(root, "eval", *args)


def cache_file(root: Path) -> Path:
    return root / ".promptlib" / "cache.sqlite"


def sql(path: Path, statement: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(statement, parameters).fetchall()
        db.commit()
    return rows


def row_of(path: Path, answer: str) -> tuple[str, str]:
    """The (key, response) of the cached row whose text is ``answer``."""
    [row] = [
        (key, response)
        for key, response in sql(path, "SELECT key, response FROM responses")
        if json.loads(response)["text"] == answer
    ]
    return row


def runs(root: Path) -> list[dict[str, Any]]:
    """Every run record in the order it was appended, with its per-example scores, errors
    and outputs (readers order runs by time, to the second: ``--fresh`` re-runs within a
    second of each other would be in any order)."""
    view = Ledger(root / "evals" / "ledger").read()
    out = []
    for record in view.runs:
        scores = view.scores(record)
        outputs = view.outputs(record)
        data = record.to_json()
        data["by_example"] = dict(zip(scores.ids, scores.scores["exact_match"], strict=True))
        data["failed"] = dict(scores.errors)
        data["answers"] = (
            dict(zip(outputs.ids, outputs.outputs, strict=True)) if outputs is not None else None
        )
        data["latest"] = view.run(record.key) == record
        out.append((record.hash, data))
    index = root / "evals" / "ledger" / "index.jsonl"
    lines = index.read_text(encoding="utf-8").splitlines() if index.exists() else []
    appended = [json.loads(line)["hash"] for line in lines]
    return [data for _, data in sorted(out, key=lambda pair: appended.index(pair[0]))]


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


# ------------------------------------------------------------------- untrusted cached rows


def replace_text(path: Path) -> str:
    key, response = row_of(path, "echo: ex-2")
    changed = response.replace("echo: ex-2", "something else entirely")
    sql(path, "UPDATE responses SET response = ? WHERE key = ?", changed, key)
    return "its response does not match its digest"


def break_json(path: Path) -> str:
    key, _ = row_of(path, "echo: ex-2")
    sql(path, "UPDATE responses SET response = ? WHERE key = ?", '{"text": "echo: ex-2"', key)
    return "its response does not match its digest"


def sealed(response: str, expected: str) -> Any:
    """A change that also rewrites the digest, so that the content check has to catch it."""

    def change(path: Path) -> str:
        key, _ = row_of(path, "echo: ex-2")
        sql(
            path,
            "UPDATE responses SET response = ?, digest = ? WHERE key = ?",
            response,
            row_digest(key, response),
            key,
        )
        return expected

    return change


def legacy_garbage(path: Path) -> str:
    key, _ = row_of(path, "echo: ex-2")
    sql(path, "UPDATE responses SET response = '{oops', digest = NULL WHERE key = ?", key)
    return "its response is not a cached answer"


def copy_other_row(path: Path) -> str:
    """Another request's answer, copied with its (valid) digest under ex-2's key."""
    key, _ = row_of(path, "echo: ex-2")
    other, _ = row_of(path, "echo: ex-1")
    sql(
        path,
        "UPDATE responses SET (response, digest) = "
        "(SELECT response, digest FROM responses WHERE key = ?) WHERE key = ?",
        other,
        key,
    )
    return "its response does not match its digest"


def blob(path: Path) -> str:
    key, response = row_of(path, "echo: ex-2")
    sql(path, "UPDATE responses SET response = ? WHERE key = ?", response.encode(), key)
    return "its response is not text"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(replace_text, id="text replaced"),
        pytest.param(break_json, id="invalid JSON"),
        pytest.param(sealed("{not json", "not a cached answer"), id="invalid JSON sealed"),
        pytest.param(sealed("[1, 2]", "a JSON list, not an object"), id="a list"),
        pytest.param(sealed('{"text": 7}', "'text' is not a string"), id="text a number"),
        pytest.param(
            sealed(
                '{"text": "echo: ex-2", "usage": {"prompt_tokens": "4"}}',
                "'usage' does not hold two token counts",
            ),
            id="usage not counts",
        ),
        pytest.param(
            sealed('{"text": "echo: ex-2", "cost": -1}', "'cost' is not a non-negative number"),
            id="negative cost",
        ),
        pytest.param(legacy_garbage, id="row without digest, invalid JSON"),
        pytest.param(copy_other_row, id="another key's row and digest"),
        pytest.param(blob, id="a blob"),
    ],
)
def test_an_untrusted_row_is_asked_again_and_replaced(
    tmp_path: Path, server: LLMServer, change: Any
) -> None:
    root = make_project(tmp_path / "project", server.base_url, rows=3)
    code, _, err = eval_(root)
    assert code == 0, err
    assert server.total == 3
    path = cache_file(root)
    expected = change(path)

    code, out, err = eval_(root, "--fresh")
    assert code == 0, out + err
    # Exactly the changed request was made again; the others came from the cache.
    assert server.total == 4
    assert server.counts["ex-2"] == 2
    # The warning names the cache, the example and what was wrong.
    assert f"response cache {path}: 1 cached answer(s) not trusted" in err
    assert "demo.echo r002 (sha256:" in err
    assert expected in err
    assert "each was asked again and replaced" in err
    # The real answer was scored, not the changed row.
    latest = runs(root)[-1]
    assert latest["results"]["exact_match"] == {"mean": 1.0, "stderr": 0.0, "n": 3}
    assert latest["answers"]["r002"] == ["echo: ex-2"]
    assert latest["timing"] == {**latest["timing"], "calls": 1, "cached": 2}

    # The row was rewritten: it is trusted again, with no call and no warning.
    key, response = row_of(path, "echo: ex-2")
    assert sql(path, "SELECT digest FROM responses WHERE key = ?", key) == [
        (row_digest(key, response),)
    ]
    code, out, err = eval_(root, "--fresh")
    assert code == 0, out + err
    assert server.total == 4
    assert "not trusted" not in err


def test_read_only_reports_an_untrusted_row_and_leaves_it(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url, rows=2)
    assert eval_(root)[0] == 0
    path = cache_file(root)
    replace_text(path)
    before = sql(path, "SELECT key, response, digest FROM responses ORDER BY key")
    code, out, err = eval_(root, "--fresh", "--cache", "read-only")
    assert code == 0, out + err
    assert server.counts["ex-2"] == 2
    assert "(this cache mode does not replace it)" in err
    assert sql(path, "SELECT key, response, digest FROM responses ORDER BY key") == before


def test_a_dry_run_counts_an_untrusted_row_as_a_call(tmp_path: Path, server: LLMServer) -> None:
    root = make_project(tmp_path / "project", server.base_url, rows=3)
    assert eval_(root)[0] == 0
    replace_text(cache_file(root))
    code, out, err = eval_(root, "--fresh", "--dry-run", "--format", "json")
    assert code == 0, out + err
    [estimate] = json.loads(out)["providers"]
    assert (estimate["calls"], estimate["cached"]) == (1, 2)
    assert server.total == 3


# ------------------------------------------------------------------ cache files from before


def downgrade(path: Path) -> None:
    """Make ``path`` a cache file as promptlib wrote it before rows had digests."""
    sql(path, "ALTER TABLE responses DROP COLUMN digest")


def test_an_old_cache_file_is_migrated_and_its_rows_sealed(
    tmp_path: Path, server: LLMServer
) -> None:
    root = make_project(tmp_path / "project", server.base_url, rows=3)
    assert eval_(root)[0] == 0
    path = cache_file(root)
    downgrade(path)

    # Rows without a digest are read as before (no call, no warning), and sealed.
    code, out, err = eval_(root, "--fresh")
    assert code == 0, out + err
    assert server.total == 3
    assert "not trusted" not in err
    stored = sql(path, "SELECT key, response, digest FROM responses")
    assert len(stored) == 3
    assert all(digest == row_digest(key, response) for key, response, digest in stored)

    # From then on a change is caught.
    replace_text(path)
    code, out, err = eval_(root, "--fresh")
    assert code == 0, out + err
    assert server.total == 4
    assert "1 cached answer(s) not trusted" in err


def test_read_only_reads_an_old_cache_file_without_changing_it(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    writer = ResponseCache(path, CacheMode.on)
    key, material = "sha256:" + "a" * 64, {"messages": [{"role": "user", "content": "x"}]}
    answer = Response("yes", Usage(4, 1), 0.5, "m")
    writer.put(key, material, answer)
    writer.close()
    downgrade(path)

    reader = ResponseCache(path, CacheMode.read_only)
    assert reader.get(key) == answer
    reader.close()
    columns = [row[1] for row in sql(path, "PRAGMA table_info(responses)")]
    assert "digest" not in columns

    writer = ResponseCache(path, CacheMode.on)
    assert writer.get(key) == answer
    assert writer.backfilled == 1
    writer.close()
    [(stored, digest)] = sql(path, "SELECT response, digest FROM responses")
    assert digest == row_digest(key, stored)


# ------------------------------------------------------------------ a file that is no cache


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage, not SQLite\n" * 200)


def damaged(path: Path) -> None:
    """A real SQLite file whose pages after the header were overwritten."""
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [garbage, damaged], ids=["garbage bytes", "damaged pages"])
@pytest.mark.parametrize("extra", [(), ("--dry-run",)], ids=["eval", "eval --dry-run"])
def test_a_file_that_is_not_a_cache_is_a_clear_error(
    tmp_path: Path, server: LLMServer, damage: Any, extra: tuple[str, ...]
) -> None:
    root = make_project(tmp_path / "project", server.base_url, rows=2)
    assert eval_(root)[0] == 0
    path = cache_file(root)
    # Fold the write-ahead log into the file, so that the damage is the file's alone.
    sql(path, "PRAGMA wal_checkpoint(TRUNCATE)")
    damage(path)
    code, out, err = eval_(root, "--fresh", *extra)
    assert code == 2, out + err
    assert f"error: {path}: cannot " in err
    assert "the file is not a usable SQLite database" in err
    assert "deleting it is safe: it costs those calls again, never a result" in err
    assert "Delete it (with cache.sqlite-wal and cache.sqlite-shm beside it, if present)" in err
    assert "bug" not in err
    assert server.total == 2
    assert len(runs(root)) == 1

    # Deleting it, as told, works.
    for name in ("cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm"):
        (path.parent / name).unlink(missing_ok=True)
    code, out, err = eval_(root, "--fresh")
    assert code == 0, out + err
    assert server.total == 4


# ------------------------------------------------------------------ failed examples thaw


FLAKY = {"ex-2": ["500", "500"], "ex-5": ["400"], "ex-7": ["503", "503"]}


def record_with_errors(tmp_path: Path, server: LLMServer, rows: int = 10) -> Path:
    root = make_project(tmp_path / "project", server.base_url, rows=rows)
    code, out, err = eval_(root, "--error-budget", "0.3")
    assert code == 0, out + err
    [first] = runs(root)
    assert sorted(first["failed"]) == ["r002", "r005", "r007"]
    assert first["results"]["exact_match"]["n"] == rows - 3
    return root


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_rerun_retries_only_the_failed_examples(tmp_path: Path, cache: str) -> None:
    with LLMServer(script=FLAKY) as server:
        root = record_with_errors(tmp_path, server)
        first_calls = server.total  # 2 + 2 + 1 attempts failed, 7 succeeded
        assert first_calls == 12

        code, out, err = eval_(root, "--cache", cache)
        assert code == 0, out + err
        # One call per failed example (the server is healthy now), even with the cache
        # off: the examples that had succeeded are taken from the ledger, not asked again.
        assert server.total - first_calls == 3
        assert {k: server.counts[k] for k in ("ex-2", "ex-5", "ex-7")} == {
            "ex-2": 3,
            "ex-5": 2,
            "ex-7": 3,
        }
        assert (
            "demo/demo.echo: retried the 3 failed example(s) of its recorded run: 3 now "
            "succeed, 0 still fail; the completed run is recorded under the same key"
        ) in err
        assert "1 evaluated, 0 reused" in err

        first, second = runs(root)
        assert second["key"] == first["key"]
        assert (first["latest"], second["latest"]) == (False, True)
        assert second["time"] > first["time"]
        assert second["errors"] == 0
        assert second["failed"] == {}
        assert second["results"]["exact_match"] == {"mean": 1.0, "stderr": 0.0, "n": 10}
        assert second["by_example"] == {f"r{i:03d}": 1 for i in range(1, 11)}
        assert second["answers"] == {f"r{i:03d}": [f"echo: ex-{i}"] for i in range(1, 11)}
        # Usage covers every answer the completed run holds; timing adds the retry's calls.
        assert second["usage"]["prompt_tokens"] == 10 * PROMPT_TOKENS
        assert second["usage"]["completion_tokens"] == 10 * COMPLETION_TOKENS
        assert second["timing"]["calls"] == first_calls + 3

        # The completed run is reused as it is, and the ledger is sound.
        code, out, err = eval_(root)
        assert code == 0, out + err
        assert server.total - first_calls == 3
        assert "0 evaluated, 1 reused" in err
        assert len(runs(root)) == 2
        code, out, err = cli(root, "ledger", "verify")
        assert code == 0, out + err


def test_no_retry_errors_keeps_the_recorded_run(tmp_path: Path) -> None:
    with LLMServer(script=FLAKY) as server:
        root = record_with_errors(tmp_path, server)
        before = server.total
        code, out, err = eval_(root, "--no-retry-errors")
        assert code == 0, out + err
        assert server.total == before
        assert "0 evaluated, 1 reused" in err
        assert "retried" not in err
        [record] = runs(root)
        assert record["errors"] == 3


def test_a_retry_that_fails_again_keeps_the_recorded_run(tmp_path: Path) -> None:
    script = {**FLAKY, "ex-5": ["400", "400", "400"]}
    with LLMServer(script=script) as server:
        root = record_with_errors(tmp_path, server)
        before = server.total
        code, out, err = eval_(root)
        assert code == 0, out + err
        # ex-5 is asked once more (a 400 is not retried) and fails; the others succeed.
        assert server.total - before == 3
        assert "2 now succeed, 1 still fail;" in err
        _, second = runs(root)
        assert second["failed"].keys() == {"r005"}
        assert second["results"]["exact_match"]["n"] == 9

        # Nothing better to record: the latest run stays as it is.
        code, out, err = eval_(root)
        assert code == 0, out + err
        assert server.total - before == 4
        assert "none succeeded; the recorded run is kept as it was" in err
        assert len(runs(root)) == 2


def test_a_retry_completes_a_repeated_example_from_the_cache(tmp_path: Path) -> None:
    # ex-2's first repeat succeeds, its second fails (a 400 is not retried).
    with LLMServer(script={"ex-2": ["ok", "400"]}) as server:
        root = make_project(tmp_path / "project", server.base_url, rows=3)
        code, out, err = eval_(root, "--repeats", "2", "--error-budget", "0.5")
        assert code == 0, out + err
        assert server.total == 6
        code, out, err = eval_(root, "--repeats", "2")
        assert code == 0, out + err
        # Only the repeat that failed is asked again; the other answer is in the cache.
        assert server.total == 7
        first, second = runs(root)
        assert first["failed"].keys() == {"r002"}
        assert second["errors"] == 0
        assert second["answers"]["r002"] == ["echo: ex-2", "echo: ex-2"]
        assert second["usage"]["prompt_tokens"] == 6 * PROMPT_TOKENS
        view = Ledger(root / "evals" / "ledger").read()
        record = view.run(second["key"])
        assert record is not None
        assert view.scores(record).variance == {"exact_match": [0, 0, 0]}


def test_a_dry_run_predicts_the_retry(tmp_path: Path) -> None:
    with LLMServer(script=FLAKY) as server:
        root = record_with_errors(tmp_path, server)
        before = server.total
        code, out, err = eval_(root, "--dry-run", "--format", "json")
        assert code == 0, out + err
        [estimate] = json.loads(out)["providers"]
        assert (estimate["planned"], estimate["reused"], estimate["calls"]) == (1, 0, 3)
        code, out, err = eval_(root, "--dry-run", "--format", "json", "--no-retry-errors")
        assert code == 0, out + err
        [estimate] = json.loads(out)["providers"]
        assert (estimate["planned"], estimate["reused"], estimate["calls"]) == (0, 1, 0)
        assert server.total == before


def test_every_example_failing_is_a_provider_failure_even_with_a_full_budget(
    tmp_path: Path,
) -> None:
    script = {f"ex-{i}": ["400"] for i in range(1, 5)}
    with LLMServer(script=script) as server:
        root = make_project(tmp_path / "project", server.base_url, rows=4)
        code, out, err = eval_(root, "--error-budget", "1.0")
        assert server.total == 4
    # Exit 3 (the provider failed), not 1 (a gate of 0.5 failed on means of zero).
    assert code == 3, out + err
    assert (
        "error: demo/demo.echo: 4 of 4 examples failed, so nothing was measured (whatever the "
        "budget); first: "
    ) in err
    assert "HTTP 400" in err
    assert "gate failed" not in err
    assert runs(root) == []


# ------------------------------------------------------------------ concurrent evals share


def test_concurrent_evals_of_the_same_work_ask_once_per_request(tmp_path: Path) -> None:
    """Four evals started together: each request is asked once, the others wait for it,
    and each run is recorded once."""
    rows = 40
    with LLMServer(delay=0.05) as server:
        root = make_project(tmp_path / "project", server.base_url, rows=rows)
        exe = Path(sys.executable).with_name("promptlib")
        children = [
            subprocess.Popen(
                [str(exe), "--project", str(root), "eval"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "DEMO_API_KEY": "sk-test"},
            )
            for _ in range(4)
        ]
        results = [child.communicate(timeout=120) for child in children]
        assert [child.returncode for child in children] == [0] * 4, results
        assert server.total == rows
        assert set(server.counts.values()) == {1}
    recorded = runs(root)
    # One record per run key: the processes that finished later found it recorded.
    assert len(recorded) == len({record["key"] for record in recorded})
    for record in recorded:
        assert record["results"]["exact_match"] == {"mean": 1.0, "stderr": 0.0, "n": rows}
    assert sql(cache_file(root), "SELECT COUNT(*) FROM claims") == [(0,)]


def test_a_claim_of_a_process_that_is_gone_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first, second = ResponseCache(path), ResponseCache(path)
    key = "sha256:" + "b" * 64
    assert first.claim(key)
    assert not second.claim(key)  # held by a live process (this one)
    sql(path, "UPDATE claims SET pid = ?", _gone_pid())
    assert second.claim(key)
    second.release(key)
    assert first.claim(key)
    sql(path, "UPDATE claims SET expires = 0")  # an expired lease
    assert second.claim(key)
    first.close()
    second.close()
    assert sql(path, "SELECT COUNT(*) FROM claims") == [(0,)]


def _gone_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_render_errors_are_not_retried(tmp_path: Path) -> None:
    """A row that does not render (a number for a string input) fails the same way under the
    same run key: its error is kept as it is, never retried."""
    with LLMServer(script={"ex-5": ["400"]}) as server:
        root = make_project(tmp_path / "project", server.base_url, rows=10)
        dataset = root / "evals" / "datasets" / "demo.jsonl"
        lines = dataset.read_text(encoding="utf-8").splitlines()
        lines[2] = json.dumps({"id": "r003", "text": 3, "expected": "echo: ex-3"})  # not a string
        dataset.write_text("\n".join(lines) + "\n", encoding="utf-8")
        code, out, err = eval_(root, "--error-budget", "0.3")
        assert code == 0, out + err
        [first] = runs(root)
        assert sorted(first["failed"]) == ["r003", "r005"]
        assert first["failed"]["r003"].startswith("render: ")
        before = server.total

        # Only ex-5 is asked again; r003's render error stays in the completed run.
        code, out, err = eval_(root)
        assert code == 0, out + err
        assert server.total - before == 1
        assert "retried the 1 failed example(s) of its recorded run: 1 now succeed" in err
        _, second = runs(root)
        assert second["failed"] == {"r003": first["failed"]["r003"]}
        assert second["results"]["exact_match"]["n"] == 9

        # Nothing left to retry: reused, no call, no note.
        code, out, err = eval_(root)
        assert code == 0, out + err
        assert server.total - before == 1
        assert "retried" not in err
        assert "0 evaluated, 1 reused" in err
