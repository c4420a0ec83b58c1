"""The schema-2 ledger: objects, one read per command, scratch ledgers, outputs, merges.

Objects are checked for what their contract promises (named by their content, written
once, never partial, even under SIGKILL); the ledger for what commands rely on (--no-record
writes nothing, --ledger DIR keeps the project's ledger untouched and still reuses it, a
missing scores object is re-evaluated rather than compared blindly, two branches merge with
real git and verify).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import write
from promptlib import ledger as ledger_api
from promptlib.cli import app
from promptlib.errors import LedgerError
from promptlib.ledger import Ledger, MissingObjectError, ObjectStore

GOLDEN = Path(__file__).parent / "golden"
WRITER = Path(__file__).parent / "_object_writer.py"


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(GOLDEN / "project", root)
    shutil.copytree(GOLDEN / "prompts", root / "prompts")
    return root


# --- Objects ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [{}, {"b": [1, 2.5, None], "a": "naïve ⏎"}, ["x"] * 1000])
def test_an_object_is_named_by_the_sha256_of_its_canonical_json(tmp_path: Path, value: Any) -> None:
    store = ObjectStore(tmp_path / "objects")
    reference = store.put(value)
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert reference == "sha256:" + digest
    path = tmp_path / "objects" / digest[:2] / f"{digest[2:]}.json.gz"
    assert gzip.decompress(path.read_bytes()) == canonical.encode("utf-8")
    assert store.get(reference) == value
    assert list(store) == [reference]


def test_an_object_is_written_once_and_the_same_everywhere(tmp_path: Path) -> None:
    first, second = ObjectStore(tmp_path / "a"), ObjectStore(tmp_path / "b")
    reference = first.put({"x": 1})
    path = first.path_of(reference)
    stamp = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert first.put({"x": 1}) == reference
    assert path.stat().st_mtime_ns == stamp  # never rewritten
    second.put({"x": 1})
    assert second.path_of(reference).read_bytes() == path.read_bytes()  # gzip mtime 0


def test_a_changed_or_missing_object_is_refused_with_its_name(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    reference = store.put({"x": 1})
    store.path_of(reference).write_bytes(gzip.compress(b'{"x":2}', mtime=0))
    with pytest.raises(LedgerError, match=f"not its name {reference}"):
        store.get(reference)
    store.path_of(reference).unlink()
    with pytest.raises(MissingObjectError, match=f"the ledger object {reference} is missing"):
        store.get(reference)
    with pytest.raises(LedgerError, match="is not an object reference"):
        store.get("sha256:nothex")


def test_sigkill_never_leaves_a_partial_object_under_its_name(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    stored: set[str] = set()
    for kill in range(12):
        child = subprocess.Popen(
            [sys.executable, str(WRITER), str(root), str(kill)], stdout=subprocess.PIPE, bufsize=0
        )
        assert child.stdout is not None
        assert json.loads(child.stdout.readline()) == {"event": "ready"}
        time.sleep(0.05 + 0.03 * (kill % 5))
        child.send_signal(signal.SIGKILL)
        output, _ = child.communicate()
        stored |= {json.loads(line)["reference"] for line in output.splitlines()}
    store = ObjectStore(root)
    names = list(store)
    assert stored <= set(names)  # everything reported stored is there
    for reference in names:
        assert store.problem(reference) is None, reference  # and nothing is half-written
    # Temporary files a kill left behind are not objects.
    leftovers = [p for p in root.rglob(".tmp-*")]
    assert all(p.name.startswith(".tmp-") for p in leftovers)


# --- Commands and the ledger ---------------------------------------------------------------


def index_lines(root: Path) -> list[str]:
    path = root / "evals" / "ledger" / "index.jsonl"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_no_record_writes_nothing(project: Path) -> None:
    code, out, err = cli(project, "eval", "--no-record", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["ledger"] == "not recorded (--no-record)"
    assert not (project / "evals" / "ledger").exists()


def test_a_run_evaluated_again_within_the_same_second_is_the_one_readers_take(
    project: Path,
) -> None:
    # Records are timed to the second; a --fresh re-run must still sort after the record it
    # replaces, or readers (reports, the MLflow export) would take either of the two.
    assert cli(project, "eval")[0] == 0
    for _ in range(3):
        assert cli(project, "eval", "--fresh")[0] == 0
    records = [json.loads(line) for line in index_lines(project)]
    assert len(records) == 4
    assert len({r["key"] for r in records}) == 1
    times = [r["time"] for r in records]
    assert times == sorted(times)
    assert len(set(times)) == 4
    latest = ledger_api.open(project).run(records[0]["key"])
    assert latest is not None
    assert latest.hash == records[-1]["hash"]


def test_a_scratch_ledger_gets_the_new_runs_and_reuses_the_projects(
    project: Path, tmp_path: Path
) -> None:
    assert cli(project, "eval")[0] == 0
    committed = index_lines(project)
    scratch = tmp_path / "scratch"
    # Reused from the project's ledger: nothing new anywhere.
    code, _, err = cli(project, "eval", "--ledger", str(scratch))
    assert code == 0, err
    assert "0 evaluated, 1 reused" in err
    assert not (scratch / "index.jsonl").exists()
    # A changed prompt: its run goes to the scratch ledger only.
    prompt = project / "prompts" / "golden" / "classify.yaml"
    prompt.write_text(prompt.read_text(encoding="utf-8").replace("Classify", "Label"))
    code, _, err = cli(project, "eval", "--ledger", str(scratch))
    assert code == 0, err
    assert "1 evaluated, 0 reused" in err
    assert index_lines(project) == committed
    assert len((scratch / "index.jsonl").read_text().splitlines()) == 1
    assert Ledger(scratch).verify().ok


def test_outputs_are_kept_and_shown_unless_told_not_to(project: Path) -> None:
    assert cli(project, "eval")[0] == 0
    code, out, err = cli(project, "outputs", "golden.classify", "--format", "json")
    assert code == 0, err
    [document] = json.loads(out)
    by_id = {e["id"]: e for e in document["examples"]}
    assert by_id["banking77-test-1682"] == {
        "id": "banking77-test-1682",
        "inputs": {"text": "Can I receive a refund for my item?"},
        "outputs": ["refund"],
        "references": ["refund"],
        "scores": {"accuracy": 1},
        "error": None,
    }
    code, out, _ = cli(project, "outputs", "golden.classify", "--worst", "2")
    assert code == 0
    assert out.count("\n  [banking77-test-") == 2
    assert "    output: refund" in out or "    output: other" in out
    code, out, _ = cli(project, "outputs", "golden.classify", "--format", "jsonl")
    assert len(out.splitlines()) == 6
    # --no-outputs keeps the scores only.
    prompt = project / "prompts" / "golden" / "classify.yaml"
    prompt.write_text(prompt.read_text(encoding="utf-8").replace("Classify", "Label"))
    assert cli(project, "eval", "--no-outputs")[0] == 0
    code, out, _ = cli(project, "outputs", "golden.classify")
    assert code == 0
    assert "note: outputs were not kept for this run" in out
    assert "output:" not in out


def test_outputs_by_run_key_and_release(project: Path) -> None:
    assert cli(project, "eval")[0] == 0
    assert cli(project, "release")[0] == 0
    [run] = Ledger(project / "evals" / "ledger").read().runs
    code, out, _ = cli(project, "outputs", "golden.classify", "--run", run.key[7:19])
    assert code == 0
    assert out.startswith(f"golden.classify 2.0.0 in golden_refund (run {run.key[:19]}...")
    code, out, _ = cli(project, "outputs", "golden.classify", "--release", "v1.0.0")
    assert code == 0
    code, _, err = cli(project, "outputs", "golden.classify", "--release", "v9.0.0")
    assert code == 2
    assert "no release v9.0.0 in the ledger; releases: v1.0.0" in err
    code, _, err = cli(project, "outputs", "golden.chat")
    assert code == 2
    assert "the ledger has no run of golden.chat" in err


def test_the_python_api_reads_a_project(project: Path) -> None:
    assert cli(project, "eval")[0] == 0
    view = ledger_api.open(project)
    [run] = view.runs
    assert view.scores(run).of("accuracy")["banking77-test-0100"] == 1
    outputs = view.outputs(run)
    assert outputs is not None
    assert outputs.of("banking77-test-0100") == ["other"]


def test_a_missing_scores_object_is_re_evaluated_not_compared_blindly(project: Path) -> None:
    assert cli(project, "eval")[0] == 0
    assert cli(project, "release")[0] == 0
    prompt = project / "prompts" / "golden" / "classify.yaml"
    prompt.write_text(prompt.read_text(encoding="utf-8").replace("Classify", "Label"))
    [baseline] = Ledger(project / "evals" / "ledger").read().runs
    ObjectStore(project / "evals" / "ledger" / "objects").path_of(baseline.scores).unlink()
    code, _, err = cli(project, "eval", "--against", "v1.0.0", "--no-record")
    assert code == 2
    assert f"the ledger object {baseline.scores} is missing" in err
    code, out, err = cli(project, "eval", "--against", "v1.0.0")
    assert code == 0, out + err
    assert "re-evaluated (the response cache keeps it cheap)" in err
    # The same scores again: the re-evaluation wrote the missing object back.
    assert Ledger(project / "evals" / "ledger").verify().ok
    runs = Ledger(project / "evals" / "ledger").read(refresh=True).runs
    assert sum(r.key == baseline.key for r in runs) == 2


# --- Git ----------------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    identity = [
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ]
    done = subprocess.run(
        ["git", *identity, *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_two_branches_that_add_runs_merge_and_verify(project: Path) -> None:
    write(project / ".gitattributes", "evals/ledger/index.jsonl merge=union\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "start")
    git(project, "checkout", "-qb", "one")
    assert cli(project, "eval")[0] == 0
    git(project, "add", "-A")
    git(project, "commit", "-qm", "one")
    git(project, "checkout", "-q", "main")
    time.sleep(1.1)  # a later time: the second record of the key must win deterministically
    assert cli(project, "eval", "--fresh", "--no-outputs")[0] == 0
    prompt = project / "prompts" / "golden" / "classify.yaml"
    prompt.write_text(prompt.read_text(encoding="utf-8").replace("Classify", "Label"))
    assert cli(project, "eval")[0] == 0
    git(project, "add", "-A")
    git(project, "commit", "-qm", "two")
    git(project, "merge", "-q", "--no-edit", "one")
    ledger = Ledger(project / "evals" / "ledger")
    assert ledger.verify().ok
    view = ledger.read()
    assert len(view.runs) == 3
    keys = {run.key for run in view.runs}
    assert len(keys) == 2
    # The key evaluated on both branches: both records kept, the later one read.
    twice = [run for run in view.runs if sum(r.key == run.key for r in view.runs) == 2]
    assert len(twice) == 2
    assert view.run(twice[0].key) == max(twice, key=lambda r: (r.time, r.hash or ""))
