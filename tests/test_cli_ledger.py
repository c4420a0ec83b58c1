"""`promptlib ledger show` and `promptlib ledger verify` on a temporary project.

The ledger (schema 2: evals/ledger/index.jsonl and objects/) is written with
``Ledger.append`` from records shaped like the ones ``promptlib.evals.runner.build_run``
writes (and, in one test, by a real `promptlib eval` with the offline retrieval provider).
Exit codes: 0 clean, 1 a problem line or object, 2 a ledger this promptlib must not read (a
newer schema) or no project.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import write
from promptlib._canonical import canonical_json, sha256_of
from promptlib.cli import app
from promptlib.ledger import Ledger, seal
from promptlib.ledger.objects import encode
from promptlib.ledger.records import (
    DatasetRef,
    ExampleIds,
    MetricIdentity,
    MetricResult,
    OutputsObject,
    PromptMetadata,
    PromptRef,
    Provenance,
    ProviderRef,
    ReleasedPrompt,
    ReleaseRecord,
    RunRecord,
    ScoresObject,
    Timing,
)

PROMPT = """\
id: demo.sentiment
version: 1.2.0
description: Labels a product review as positive or negative.
inputs:
  text: {type: string}
messages:
  - role: system
    content: "Labels: positive (the reviewer liked the product), negative (they did not)."
  - role: user
    content: "{{ text }}"
output:
  format: label
  labels: [positive, negative]
examples:
  - inputs: {text: great value}
"""

SUITE = """\
dataset: evals/datasets/reviews.jsonl
prompts: [demo.*]
inputs: {text: text}
references: label
metrics: [accuracy]
gates: {accuracy: 0.5}
"""

REVIEWS = [
    {"id": "r1", "text": "I liked it a lot, great value", "label": "positive"},
    {"id": "r2", "text": "did not like it at all", "label": "negative"},
    {"id": "r3", "text": "great", "label": "positive"},
]


def fingerprint(char: str) -> str:
    return "sha256:" + char * 64


def run_record(
    prompt_id: str, version: str, time: str, scores: dict[str, float], suite: str = "reviews"
) -> tuple[RunRecord, dict[str, Any]]:
    """A run record with every field ``runner.build_run`` writes, and its objects."""
    ids = sorted(scores)
    examples = ExampleIds(ids=ids).model_dump(mode="json")
    examples_ref = encode(examples)[0]
    scores_object = ScoresObject(
        examples=examples_ref, scores={"accuracy": [scores[i] for i in ids]}
    ).model_dump(mode="json", exclude_none=True)
    scores_ref = encode(scores_object)[0]
    outputs = OutputsObject(
        examples=examples_ref, outputs=[["positive" if scores[i] else "negative"] for i in ids]
    ).model_dump(mode="json", exclude_none=True)
    outputs_ref = encode(outputs)[0]
    n = len(scores)
    record = RunRecord(
        time=time,
        # Each (prompt, version) is its own job: a key of its own.
        key=fingerprint(
            "b" if prompt_id != "demo.sentiment" else "a" if version == "1.1.0" else "f"
        ),
        suite=suite,
        prompt=PromptRef(id=prompt_id, version=version, fingerprint=fingerprint("c")),
        dataset=DatasetRef(path="evals/datasets/reviews.jsonl", sha256=fingerprint("d"), rows=n),
        provider=ProviderRef(name="retrieval", type="retrieval", fingerprint=fingerprint("e")),
        params={"temperature": 0},
        metrics={
            "accuracy": MetricIdentity(
                kind="accuracy", algorithm="promptlib-label-accuracy/1", binary=True
            )
        },
        repeats=1,
        examples=n,
        results={
            "accuracy": MetricResult(mean=round(sum(scores.values()) / n, 6), stderr=0.333333, n=n)
        },
        errors=0,
        timing=Timing(seconds=0.004, calls=n, cached=0),
        provenance=Provenance(promptlib="0.1.0"),
        scores=scores_ref,
        outputs=outputs_ref,
    )
    return record, {examples_ref: examples, scores_ref: scores_object, outputs_ref: outputs}


def release_record(
    version: str, time: str, prompts: list[tuple[str, str]]
) -> tuple[ReleaseRecord, dict[str, Any]]:
    """A release record with every field ``history.release_record`` writes, and its objects."""
    behaviour = {
        "format": 1,
        "messages": [{"role": "user", "content": "{{ text }}"}],
        "partials": {"label_answer.j2": "Answer with the label only."},
        "inputs": {"text": {"type": "string", "required": True}},
        "model": {},
        "output": {"format": "label", "labels": ["positive", "negative"]},
    }
    metadata = PromptMetadata(metadata={"description": "Labels a product review."}).model_dump()
    behaviour_ref, metadata_ref = encode(behaviour)[0], encode(metadata)[0]
    record = ReleaseRecord(
        time=time,
        version=version,
        git_commit="0123456789abcdef0123456789abcdef01234567",
        previous="1.0.0",
        bump="major",
        prompts={
            pid: ReleasedPrompt(version=v, fingerprint=behaviour_ref, metadata=metadata_ref)
            for pid, v in prompts
        },
    )
    return record, {behaviour_ref: behaviour, metadata_ref: metadata}


RUN_OLD = run_record(
    "demo.sentiment", "1.1.0", "2024-05-01T10:00:00Z", {"r1": 1.0, "r2": 0.0, "r3": 0.0}
)
RELEASE = release_record(
    "2.0.0", "2024-05-02T09:00:00Z", [("demo.sentiment", "1.1.0"), ("demo.topic", "1.0.0")]
)
RUN_NEW = run_record(
    "demo.sentiment", "1.2.0", "2024-05-03T10:00:00Z", {"r1": 1.0, "r2": 0.0, "r3": 1.0}
)
RUN_OTHER = run_record(
    "demo.topic", "1.0.0", "2024-05-04T10:00:00Z", {"r1": 1.0, "r2": 1.0, "r3": 1.0}
)


def sealed(item: tuple[Any, dict[str, Any]]) -> dict[str, Any]:
    return seal(item[0].to_json())


def unchained(record: dict[str, Any]) -> dict[str, Any]:
    """A record as sealed on its own, without the ``after`` an append gives it."""
    return seal({k: v for k, v in record.items() if k not in ("after", "hash")})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a ledger of three runs and one release; the test runs inside it."""
    root = tmp_path.resolve() / "project"
    write(root / "pyproject.toml", "[project]\nname = 'demo'\nversion = '2.0.0'\n")
    write(root / "prompts" / "demo" / "sentiment.yaml", PROMPT)
    write(
        root / "evals" / "datasets" / "reviews.jsonl",
        "".join(json.dumps(r) + "\n" for r in REVIEWS),
    )
    write(root / "evals" / "suites" / "reviews.yaml", SUITE)
    # Appended out of time order, as a union merge of two branches would leave them.
    ledger = Ledger(root / "evals" / "ledger")
    for record, objects in (RUN_NEW, RUN_OLD, RELEASE, RUN_OTHER):
        ledger.append(record, objects)
    monkeypatch.chdir(root)
    monkeypatch.setenv("COLUMNS", "240")
    return root


def ledger_file(project: Path) -> Path:
    return project / "evals" / "ledger" / "index.jsonl"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def show_json(*args: str) -> list[dict[str, Any]]:
    code, out, err = run("ledger", "show", "--format", "json", *args)
    assert code == 0, err
    records: list[dict[str, Any]] = json.loads(out)
    return records


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# ------------------------------------------------------------------------------------ show


def test_show_json_lists_sealed_records_in_time_order(project: Path) -> None:
    records = show_json()
    assert [(r["kind"], r["time"]) for r in records] == [
        ("run", "2024-05-01T10:00:00Z"),
        ("release", "2024-05-02T09:00:00Z"),
        ("run", "2024-05-03T10:00:00Z"),
        ("run", "2024-05-04T10:00:00Z"),
    ]
    assert [unchained(r) for r in records] == [
        sealed(r) for r in (RUN_OLD, RELEASE, RUN_NEW, RUN_OTHER)
    ]
    # Each record names the one appended before it (in line order: RUN_NEW came first).
    by_time = {r["time"]: r for r in records}
    assert "after" not in by_time["2024-05-03T10:00:00Z"]
    assert by_time["2024-05-01T10:00:00Z"]["after"] == by_time["2024-05-03T10:00:00Z"]["hash"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], [RUN_OLD, RELEASE, RUN_NEW, RUN_OTHER]),
        (["--kind", "run"], [RUN_OLD, RUN_NEW, RUN_OTHER]),
        (["--kind", "release"], [RELEASE]),
        (["--prompt", "demo.sentiment"], [RUN_OLD, RELEASE, RUN_NEW]),
        (["-p", "demo.topic"], [RELEASE, RUN_OTHER]),
        (["--prompt", "demo.sentiment", "--kind", "run"], [RUN_OLD, RUN_NEW]),
        (["--prompt", "demo.topic", "--kind", "release"], [RELEASE]),
        (["--prompt", "demo.unknown"], []),
        (["--prompt", "demo"], []),
    ],
)
def test_show_filters(project: Path, args: list[str], expected: list[dict[str, Any]]) -> None:
    assert [unchained(r) for r in show_json(*args)] == [sealed(r) for r in expected]


HEADER = "time kind prompt / release version suite provider results"
ROW_OLD = "2024-05-01T10:00:00Z run demo.sentiment 1.1.0 reviews retrieval accuracy 0.333 (n=3)"
ROW_RELEASE = "2024-05-02T09:00:00Z release release 2.0.0 2 prompts"
ROW_NEW = "2024-05-03T10:00:00Z run demo.sentiment 1.2.0 reviews retrieval accuracy 0.667 (n=3)"
ROW_OTHER = "2024-05-04T10:00:00Z run demo.topic 1.0.0 reviews retrieval accuracy 1.000 (n=3)"


@pytest.mark.parametrize(
    ("args", "rows"),
    [
        ([], [ROW_OLD, ROW_RELEASE, ROW_NEW, ROW_OTHER]),
        (["--format", "table"], [ROW_OLD, ROW_RELEASE, ROW_NEW, ROW_OTHER]),
        (["--kind", "release"], [ROW_RELEASE]),
        (["--prompt", "demo.topic", "--kind", "run"], [ROW_OTHER]),
        (["--prompt", "demo.sentiment"], [ROW_OLD, ROW_RELEASE, ROW_NEW]),
        (["--prompt", "demo.unknown"], []),
    ],
)
def test_show_table(project: Path, args: list[str], rows: list[str]) -> None:
    code, out, err = run("ledger", "show", *args)
    assert code == 0, err
    assert [" ".join(line.split()) for line in out.splitlines() if line.strip()] == [HEADER, *rows]
    assert err == f"{len(rows)} records ({project / 'evals' / 'ledger'})\n"


def test_show_skips_a_bad_line_with_a_warning(project: Path) -> None:
    path = ledger_file(project)
    content = lines(path)
    assert b'"time":"2024-05-01T10:00:00Z"' in content[1]
    content[1] = content[1].replace(b'"mean":0.333333', b'"mean":0.933333')
    path.write_bytes(b"".join(content))
    code, out, err = run("ledger", "show", "--format", "json")
    assert code == 0
    assert [r["time"] for r in json.loads(out)] == [
        "2024-05-02T09:00:00Z",
        "2024-05-03T10:00:00Z",
        "2024-05-04T10:00:00Z",
    ]
    assert err.startswith(f"warning: {path}:2: hash: hash mismatch: the line says ")


def test_show_and_verify_deduplicate_a_union_merge(project: Path) -> None:
    path = ledger_file(project)
    content = lines(path)
    path.write_bytes(b"".join([*content, content[0], content[2]]))
    assert [unchained(r) for r in show_json()] == [
        sealed(r) for r in (RUN_OLD, RELEASE, RUN_NEW, RUN_OTHER)
    ]
    code, out, _ = run("ledger", "verify")
    assert code == 0
    assert out == (
        f"{path}: ok: 6 lines, 4 records (3 run, 1 release), 2 duplicates; 9 objects referenced\n"
    )


def test_show_rejects_an_unknown_kind(project: Path) -> None:
    code, _out, err = run("ledger", "show", "--kind", "runs")
    assert code == 2
    assert "run" in err
    assert "release" in err


# ---------------------------------------------------------------------------------- verify

CLEAN = "ok: 4 lines, 4 records (3 run, 1 release); 9 objects referenced"


def test_verify_a_clean_ledger(project: Path) -> None:
    code, out, err = run("ledger", "verify")
    assert code == 0
    assert out == f"{ledger_file(project)}: {CLEAN}\n"
    assert err == ""


def test_verify_a_tampered_line(project: Path) -> None:
    path = ledger_file(project)
    content = lines(path)
    assert b'"time":"2024-05-01T10:00:00Z"' in content[1]
    content[1] = content[1].replace(b'"mean":0.333333', b'"mean":0.933333')
    path.write_bytes(b"".join(content))
    claimed = json.loads(content[1])["hash"]
    body = {k: v for k, v in json.loads(content[1]).items() if k != "hash"}
    code, out, err = run("ledger", "verify")
    assert code == 1
    assert out == (
        f"{path}:2: hash: hash mismatch: the line says {claimed} but its content hashes to "
        f"{sha256_of(body)}; the record was changed after it was written: restore it from "
        "git or delete it\n"
    )
    assert err == (
        f"{path}: 1 problem: 4 lines, 3 records (2 run, 1 release); 7 objects referenced, "
        "2 unreferenced (left by interrupted writes; harmless)\n"
    )


def test_verify_a_line_that_is_not_json(project: Path) -> None:
    path = ledger_file(project)
    content = lines(path)
    content.insert(2, b"<<<<<<< HEAD\n")
    path.write_bytes(b"".join(content))
    code, out, err = run("ledger", "verify")
    assert code == 1
    assert out.startswith(f"{path}:3: not a JSON record (")
    assert out.endswith("); restore the line from git or delete it\n")
    assert err == (
        f"{path}: 1 problem: 5 lines, 4 records (3 run, 1 release); 9 objects referenced\n"
    )


def test_verify_a_torn_last_line(project: Path) -> None:
    path = ledger_file(project)
    partial = canonical_json(sealed(RUN_OTHER) | {"time": "2024-05-05T10:00:00Z"}).encode()[:57]
    with path.open("ab") as handle:
        handle.write(partial)
    code, out, err = run("ledger", "verify")
    assert code == 1
    assert out == (
        f"{path}:5: torn last line (57 bytes, no newline): an interrupted write; the next "
        "append moves it aside to a .torn file\n"
    )
    assert err == (
        f"{path}: 1 problem: 5 lines, 4 records (3 run, 1 release); 9 objects referenced\n"
    )
    # show still lists the committed records.
    assert len(show_json()) == 4


def test_verify_a_complete_record_without_its_newline(project: Path) -> None:
    path = ledger_file(project)
    path.write_bytes(path.read_bytes().removesuffix(b"\n"))
    code, out, _ = run("ledger", "verify")
    assert code == 1
    assert out.startswith(f"{path}:4: last line has no newline (")


def test_verify_a_missing_or_altered_object(project: Path) -> None:
    ledger = project / "evals" / "ledger"
    scores = RUN_NEW[0].scores.removeprefix("sha256:")
    (ledger / "objects" / scores[:2] / f"{scores[2:]}.json.gz").unlink()
    outputs = RUN_OTHER[0].outputs
    assert outputs is not None
    outputs_path = ledger / "outputs" / outputs[7:9] / f"{outputs[9:]}.json.gz"
    outputs_path.write_bytes(gzip.compress(b'{"format":"promptlib-outputs/1"}', mtime=0))
    code, out, err = run("ledger", "verify")
    assert code == 1
    problems = out.splitlines()
    assert len(problems) == 2
    assert f"the ledger object {RUN_NEW[0].scores} is missing" in out
    assert f"not its name {outputs}: it was changed after it was written" in out
    assert "2 object problem(s)" in err


def test_absent_outputs_objects_are_counted_not_failed(project: Path) -> None:
    # A team may keep the model's answers out of git: the ledger still verifies.
    shutil.rmtree(project / "evals" / "ledger" / "outputs")
    code, out, _ = run("ledger", "verify")
    assert code == 0
    assert "3 outputs object(s) not here (kept elsewhere or not kept" in out
    code, out, _ = run("outputs", "demo.sentiment", "--run", RUN_NEW[0].key)
    assert code == 0
    assert "note: outputs are not available: " in out


@pytest.mark.parametrize("command", ["verify", "show"])
def test_a_newer_schema_is_refused_with_exit_2(project: Path, command: str) -> None:
    path = ledger_file(project)
    body = {"kind": "run", "schema": 3, "time": "2030-01-01T00:00:00Z", "new_field": {"x": 1}}
    newer = canonical_json({**body, "hash": sha256_of(body)}).encode() + b"\n"
    content = lines(path)
    content.insert(1, newer)
    path.write_bytes(b"".join(content))
    code, out, err = run("ledger", command)
    assert code == 2
    assert out == ""
    assert err == (
        f"error: {path}: line 2: written by a newer promptlib (schema 3 > 2); upgrade "
        "promptlib to read this ledger\n"
    )


def test_a_missing_ledger_is_empty(project: Path) -> None:
    shutil.rmtree(project / "evals" / "ledger")
    code, out, _ = run("ledger", "verify")
    assert code == 0
    assert out == f"{ledger_file(project)}: ok: 0 lines, 0 records; 0 objects referenced\n"
    assert show_json() == []


def test_outside_a_project_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in ("verify", "show"):
        code, _out, err = run("ledger", command)
        assert code == 2
        assert err.startswith("error: not inside a promptlib project")


def test_project_option(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("--project", str(project), "ledger", "verify")
    assert code == 0
    assert out == f"{ledger_file(project)}: {CLEAN}\n"


# ------------------------------------------------------------------- after a real eval run


def test_records_of_a_real_eval_are_shown_and_verified(project: Path) -> None:
    shutil.rmtree(project / "evals" / "ledger")
    code, _out, err = run("eval")
    assert code == 0, err
    [record] = show_json()
    assert record["kind"] == "run"
    assert record["prompt"]["id"] == "demo.sentiment"
    assert record["prompt"]["version"] == "1.2.0"
    assert record["suite"] == "reviews"
    assert record["provider"]["name"] == "retrieval"
    assert record["dataset"]["rows"] == 3
    # The hand-written records above have the same fields as a real one.
    assert set(record) == set(sealed(RUN_NEW))
    code, out, _ = run("ledger", "verify")
    assert code == 0
    assert out == f"{ledger_file(project)}: ok: 1 line, 1 record (1 run); 3 objects referenced\n"
    code, out, _ = run("ledger", "show", "--kind", "run")
    assert code == 0
    mean = record["results"]["accuracy"]["mean"]
    assert f"accuracy {mean:.3f} (n=3)" in " ".join(out.split())


def test_the_hand_written_release_has_the_fields_of_a_real_one(project: Path) -> None:
    from promptlib import load
    from promptlib.versioning.history import release_record as real_release_record

    real = real_release_record(load(project), "2.0.0", commit=None, previous=None, bump=None)
    assert set(real.record.to_json()) | {"git_commit", "previous", "bump"} == set(
        RELEASE[0].to_json()
    )
    # A real release record is shown like the hand-written one.
    Ledger(project / "evals" / "ledger").append(real.record, real.objects)
    code, out, _ = run("ledger", "show", "--kind", "release", "--prompt", "demo.sentiment")
    assert code == 0
    assert "release 2.0.0 1 prompts" in " ".join(out.split())


# ----------------------------------------------------------------------- a schema-1 ledger


def test_a_schema_1_ledger_is_read_only(project: Path) -> None:
    shutil.rmtree(project / "evals" / "ledger")
    golden = Path(__file__).parent / "golden" / "ledger" / "v1" / "ledger.jsonl"
    shutil.copy(golden, project / "evals" / "ledger.jsonl")
    assert [r["kind"] for r in show_json()] == ["run", "release"]
    code, out, _ = run("ledger", "verify")
    assert code == 0
    assert (
        out == f"{project / 'evals' / 'ledger.jsonl'}: ok: 2 lines, 2 records (1 run, 1 release)\n"
    )
    code, _, err = run("eval")
    assert code == 2
    assert "this project's ledger is schema 1; run `promptlib ledger migrate`" in err


def test_verify_finds_a_deleted_line(project: Path) -> None:
    path = ledger_file(project)
    content = lines(path)
    deleted = json.loads(content[1])["hash"]
    path.write_bytes(b"".join([content[0], *content[2:]]))
    code, out, _ = run("ledger", "verify")
    assert code == 1
    assert out == (
        f"{path}:2: after: this record was appended after {deleted[:19]}..., which is not "
        "in the file: a line was deleted; restore the file from git\n"
    )
    # Deleting the last line leaves no trace (nothing names it): docs/security.md says so.
    path.write_bytes(b"".join(content[:-1]))
    code, _, _ = run("ledger", "verify")
    assert code == 0
