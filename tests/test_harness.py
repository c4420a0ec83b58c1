"""The eval harness end to end, against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _llm_server import LLMServer
from conftest import write
from promptlib.cli import app
from promptlib.ledger import Ledger

SENTINEL = "sk-SENTINEL-0123456789abcdef-never-write-me"

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
examples:
  - inputs: {text: ex-1}
"""

SUITE = """\
dataset: evals/datasets/demo.jsonl
prompts: [demo.echo]
inputs: {text: text}
references: expected
metrics: [exact_match]
gates: {exact_match: %s}
provider: local
"""


def make_project(
    root: Path,
    base_url: str,
    rows: int,
    *,
    timeout: float = 5.0,
    concurrency: int = 4,
    gate: float = 0.0,
    extra: str = "",
) -> Path:
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
timeout = {timeout}
concurrency = {concurrency}

[tool.promptlib.retry]
max-attempts = 5
base-delay = 0.01
max-delay = 0.05
max-retry-after = 5
{extra}""",
    )
    write(root / "prompts" / "demo" / "echo.yaml", PROMPT)
    lines = [
        json.dumps({"id": f"r{i:03d}", "text": f"ex-{i}", "expected": f"echo: ex-{i}"})
        for i in range(1, rows + 1)
    ]
    write(root / "evals" / "datasets" / "demo.jsonl", "\n".join(lines) + "\n")
    write(root / "evals" / "suites" / "demo.yaml", SUITE % gate)
    return root


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", SENTINEL)


def run(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(project), "eval", *args])
    return result.exit_code, result.stdout, result.stderr


def runs(project: Path) -> list[dict[str, Any]]:
    """Every run of the project's ledger, with its evidence objects spelled out by example."""
    view = Ledger(project / "evals" / "ledger").read()
    out = []
    for record in view.runs:
        scores = view.scores(record)
        outputs = view.outputs(record)
        data = record.to_json()
        data["scores"] = {name: scores.of(name) for name in record.metrics}
        data["errors"] = {"count": record.errors, "examples": dict(scores.errors)}
        if scores.variance is not None:
            data["variance"] = {
                name: dict(zip(scores.ids, values, strict=True))
                for name, values in scores.variance.items()
            }
        if outputs is not None:
            data["outputs"] = dict(zip(outputs.ids, outputs.outputs, strict=True))
        out.append(data)
    return out


@pytest.mark.usefixtures("env")
def test_a_clean_run_is_recorded_and_then_reused(tmp_path: Path) -> None:
    with LLMServer() as server:
        project = make_project(tmp_path, server.base_url, rows=12)
        code, _out, err = run(project)
        assert code == 0, err
        assert server.total == 12
        [record] = runs(project)
        assert record["results"]["exact_match"] == {"mean": 1.0, "stderr": 0.0, "n": 12}
        assert sorted(record["scores"]["exact_match"]) == [f"r{i:03d}" for i in range(1, 13)]
        assert record["provider"]["name"] == "local"
        assert record["provider"]["model"] == "echo-1"
        assert record["dataset"]["rows"] == 12
        assert record["dataset"]["sha256"].startswith("sha256:")
        assert record["timing"]["calls"] == 12
        # The model's answers are kept with the run, one per example.
        assert record["outputs"] == {f"r{i:03d}": [f"echo: ex-{i}"] for i in range(1, 13)}
        assert "1 evaluated, 0 reused" in err
        code, _, err = run(project)
        assert code == 0
        assert server.total == 12  # reused from the ledger: no call
        assert "0 evaluated, 1 reused" in err
        assert len(runs(project)) == 1


SCRIPT = {
    "ex-1": ["429:0", "ok"],
    "ex-2": ["500", "503", "ok"],
    "ex-3": ["slow:3", "ok"],
    "ex-4": ["reset", "ok"],
    "ex-5": ["malformed", "ok"],
    "ex-6": ["400"],
    "ex-7": ["500", "502", "503", "500", "500", "ok"],
    "ex-8": ["nochoices", "408", "409", "ok"],
}
ATTEMPTS = {
    "ex-1": 2,
    "ex-2": 3,
    "ex-3": 2,
    "ex-4": 2,
    "ex-5": 2,
    "ex-6": 1,
    "ex-7": 5,
    "ex-8": 4,
    "ex-9": 1,
    "ex-10": 1,
}


@pytest.mark.usefixtures("env")
def test_retries_attempt_counts_and_recorded_errors(tmp_path: Path) -> None:
    with LLMServer(script=SCRIPT) as server:
        project = make_project(tmp_path, server.base_url, rows=10, timeout=0.5)
        code, _out, err = run(project, "--error-budget", "0.25")
        assert code == 0, err
        assert dict(server.counts) == ATTEMPTS
    [record] = runs(project)
    errors = record["errors"]["examples"]
    assert sorted(errors) == ["r006", "r007"]
    assert errors["r006"].startswith("provider 'local' (http://127.0.0.1:")
    assert "HTTP 400" in errors["r006"]
    assert errors["r006"].endswith("(not retried)")
    assert errors["r007"].endswith("(gave up after 5 attempts)")
    scored = set(record["scores"]["exact_match"])
    assert scored | set(errors) == {f"r{i:03d}" for i in range(1, 11)}  # no example lost
    assert not scored & set(errors)
    assert record["results"]["exact_match"]["n"] == 8
    assert record["timing"]["calls"] == sum(ATTEMPTS.values())


@pytest.mark.usefixtures("env")
def test_a_call_past_the_providers_timeout_fails_with_the_providers_reason(
    tmp_path: Path,
) -> None:
    """The openai provider bounds each call itself, so the recorded error says what to
    change (its ``timeout``), and each attempt is given up after that long."""
    with LLMServer(script={"ex-2": ["slow:5"] * 5}) as server:
        project = make_project(tmp_path, server.base_url, rows=4, timeout=0.3)
        code, _out, err = run(project, "--error-budget", "0.5")
        assert code == 0, err
        assert server.counts["ex-2"] == 5
    [record] = runs(project)
    error = record["errors"]["examples"]["r002"]
    assert "no complete answer within 0.3 s; raise the provider's timeout" in error
    assert error.endswith("(gave up after 5 attempts)")


@pytest.mark.usefixtures("env")
def test_retry_after_is_honoured(tmp_path: Path) -> None:
    with LLMServer(script={"ex-1": ["429:1", "ok"]}) as server:
        project = make_project(tmp_path, server.base_url, rows=1)
        started = time.monotonic()
        code, _, err = run(project)
        elapsed = time.monotonic() - started
        assert code == 0, err
        assert server.counts["ex-1"] == 2
    assert elapsed >= 1.0  # the backoff alone would be at most 0.05 s


@pytest.mark.usefixtures("env")
def test_beyond_the_error_budget_exits_3_and_records_nothing(tmp_path: Path) -> None:
    script = {f"ex-{i}": ["500"] * 5 for i in range(1, 5)}
    with LLMServer(script=script) as server:
        project = make_project(tmp_path, server.base_url, rows=10)
        code, _, err = run(project)
    assert code == 3
    # Past its budget a job skips its remaining examples; the reason shown is a real one.
    assert "of 10 examples failed (budget 10%); first: provider 'local'" in err
    assert "HTTP 500" in err
    assert runs(project) == []


def test_a_provider_that_is_down_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_API_KEY", SENTINEL)
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    project = make_project(tmp_path, f"http://127.0.0.1:{port}/v1", rows=400, concurrency=4)
    code, _, err = run(project)
    assert code == 3
    assert "400 of 400 examples failed" in err
    assert "connection failed" in err


@pytest.mark.usefixtures("env")
def test_failures_in_a_row_stop_the_calls(tmp_path: Path) -> None:
    rows = 400
    script = {f"ex-{i}": ["500"] * 5 for i in range(1, rows + 1)}
    with LLMServer(script=script) as server:
        project = make_project(tmp_path, server.base_url, rows=rows, concurrency=4)
        code, _, err = run(project, "--error-budget", "0.9")
        assert code == 3
        # Without the fuse every example would be tried 5 times (2,000 calls); the run
        # stops after 20 examples failed in a row (plus those already in flight).
        assert server.total <= (20 + 4) * 5
    assert "400 of 400 examples failed" in err


def test_the_projects_retry_policy_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptlib.settings import RetryPolicy

    seen: list[RetryPolicy] = []
    original = RetryPolicy.delay

    def spy(self: RetryPolicy, attempt: int, retry_after: float | None, rng: Any) -> float:
        seen.append(self)
        return original(self, attempt, retry_after, rng)

    monkeypatch.setattr(RetryPolicy, "delay", spy)
    monkeypatch.setenv("DEMO_API_KEY", SENTINEL)
    with LLMServer(script={"ex-1": ["503", "ok"]}) as server:
        project = make_project(tmp_path, server.base_url, rows=1)
        assert run(project)[0] == 0
    assert seen == [RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, max_retry_after=5)]


@pytest.mark.usefixtures("env")
def test_a_failed_gate_exits_1(tmp_path: Path) -> None:
    with LLMServer(answer=lambda messages: "wrong") as server:
        project = make_project(tmp_path, server.base_url, rows=3, gate=0.5)
        code, _, err = run(project)
    assert code == 1
    assert "gate failed: demo/demo.echo: exact_match 0.000 < 0.5" in err
    assert len(runs(project)) == 1  # the run is recorded all the same


@pytest.mark.usefixtures("env")
def test_the_api_key_is_written_nowhere(tmp_path: Path) -> None:
    with LLMServer(script={"ex-2": ["401"]}) as server:
        project = make_project(tmp_path, server.base_url, rows=3)
        code, out, err = run(project, "--error-budget", "0.5", "--format", "json")
        assert code == 0, err
        assert f"Bearer {SENTINEL}" in server.authorizations  # it was used...
    files = [p for p in project.rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in files)
    assert any(p.name.endswith(".json.gz") for p in files)  # the ledger's objects
    for path in files:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        assert SENTINEL.encode() not in data, path  # ...and stored nowhere
    assert SENTINEL not in out + err
    [record] = runs(project)
    assert "401" in record["errors"]["examples"]["r002"]


@pytest.mark.usefixtures("env")
def test_repeats_make_distinct_calls_and_record_variance(tmp_path: Path) -> None:
    answers = iter(["echo: ex-1", "nope", "echo: ex-1"])
    with LLMServer(answer=lambda messages: next(answers)) as server:
        project = make_project(tmp_path, server.base_url, rows=1)
        code, _, err = run(project, "--repeats", "3", "--concurrency", "1")
        assert code == 0, err
        assert server.counts["ex-1"] == 3
    [record] = runs(project)
    assert record["repeats"] == 3
    assert record["scores"]["exact_match"]["r001"] == pytest.approx(2 / 3, abs=1e-6)
    assert record["variance"]["exact_match"]["r001"] == pytest.approx(2 / 9, abs=1e-6)


@pytest.mark.usefixtures("env")
def test_cache_modes(tmp_path: Path) -> None:
    with LLMServer() as server:
        project = make_project(tmp_path, server.base_url, rows=5)
        assert run(project)[0] == 0
        assert server.total == 5
        assert run(project, "--fresh")[0] == 0  # re-run, answers from the cache
        assert server.total == 5
        assert run(project, "--fresh", "--cache", "refresh")[0] == 0
        assert server.total == 10
        assert run(project, "--fresh", "--cache", "off")[0] == 0
        assert server.total == 15
        (project / ".promptlib" / "cache.sqlite").unlink()
        assert run(project, "--fresh", "--cache", "read-only")[0] == 0
        assert server.total == 20
        assert run(project, "--fresh", "--cache", "read-only")[0] == 0
        assert server.total == 25  # read-only wrote nothing
    # Each run appends a record; readers collapse exact duplicates (two runs in the same
    # second with the same timings), so only a lower bound is certain.
    assert len(runs(project)) >= 2
    assert Ledger(project / "evals" / "ledger").verify().ok


def _cached(project: Path) -> int:
    with sqlite3.connect(project / ".promptlib" / "cache.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


@pytest.mark.usefixtures("env")
def test_an_interrupted_eval_resumes_with_only_the_missing_calls(tmp_path: Path) -> None:
    rows = 120
    with LLMServer(delay=0.02) as server:
        project = make_project(tmp_path, server.base_url, rows=rows, concurrency=2)
        exe = Path(sys.executable).with_name("promptlib")
        child = subprocess.Popen(
            [str(exe), "--project", str(project), "eval"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DEMO_API_KEY": SENTINEL},
        )
        deadline = time.monotonic() + 30
        while server.total < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert 40 <= server.total < rows
        cached = _cached(project)
        assert cached >= 38
        before = server.total
        code, _, err = run(project)
        assert code == 0, err
        assert server.total - before == rows - cached
    [record] = runs(project)
    assert record["results"]["exact_match"] == {"mean": 1.0, "stderr": 0.0, "n": rows}


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    ("fmt", "marker"),
    [
        ("json", '"passed": true'),
        ("markdown", "| `demo.echo` | 1.0.0 | 1.000 | 2 | ran |"),
        ("junit", '<testsuite name="promptlib eval" tests="1" failures="0" errors="0">'),
    ],
)
def test_report_formats_and_output_file(tmp_path: Path, fmt: str, marker: str) -> None:
    with LLMServer() as server:
        project = make_project(tmp_path, server.base_url, rows=2)
        out_file = tmp_path / "report" / f"eval.{fmt}"
        code, out, err = run(project, "--format", fmt, "--output", str(out_file))
    assert code == 0, err
    assert marker in out
    assert out_file.read_text(encoding="utf-8").strip() == out.strip()


def test_unknown_provider_and_suite_are_usage_errors(tmp_path: Path) -> None:
    project = make_project(tmp_path, "http://127.0.0.1:9", rows=1)
    code, _, err = run(project, "--provider", "nope")
    assert code == 2
    assert "unknown provider 'nope'; configured providers: local, retrieval" in err
    code, _, err = run(project, "--suite", "nope")
    assert code == 2
    assert "unknown suite 'nope'; suites: demo" in err


def test_missing_api_key_variable_is_a_clear_error(tmp_path: Path) -> None:
    project = make_project(tmp_path, "http://127.0.0.1:9", rows=1)
    code, _, err = run(project)
    assert code == 2
    assert "DEMO_API_KEY" in err
