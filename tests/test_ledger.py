"""The ledger: envelopes and hashes, order independence, crash safety, concurrency, git.

Child processes run tests/_ledger_writer.py, which reports a record as committed only
after ``LineStore.append`` returned.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import filelock
import pytest

from conftest import write
from promptlib._canonical import canonical_json, sha256_of
from promptlib.errors import LedgerError
from promptlib.ledger import KINDS, SCHEMA_VERSION, LineStore, LineView, Repair, Torn, seal

WRITER = Path(__file__).with_name("_ledger_writer.py")
TORN_MESSAGE = (
    "torn last line ({size} bytes, no newline): an interrupted write; the next append "
    "moves it aside to a .torn file"
)


def record(number: int, kind: str = "run", **extra: Any) -> dict[str, Any]:
    return seal(
        {"kind": kind, "id": f"r{number}", "time": f"2024-01-{number:02d}T00:00:00Z", **extra}
    )


def line(value: dict[str, Any]) -> bytes:
    return canonical_json(value).encode("utf-8") + b"\n"


def rehashed(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` with a hash that matches its content, whatever the content."""
    body = {key: item for key, item in value.items() if key != "hash"}
    return {**body, "hash": sha256_of(body)}


def without(value: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: item for key, item in value.items() if key not in names}


R = [record(1), record(2, "release", version="1.0.0"), record(3)]
L = [line(r) for r in R]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "evals" / "ledger.jsonl"


def ids(records: Any) -> list[str]:
    return [r["id"] for r in records]


# --- Sealing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"kind": "run"},
        {
            "kind": "release",
            "version": "2.1.0",
            "prompts": [{"id": "support.refund", "version": "1.0.0"}],
        },
        {
            "kind": "run",
            "text": "naïve — 日本語 \u2028",
            "scores": (0.5, 1, -0.0, 1e-300, 12345678901234567890),
        },
        {
            "kind": "run",
            "nested": {"b": [None, True, False, {"z": 1, "a": 2}]},
            "time": "2024-05-01T10:00:00Z",
        },
        {"kind": "run", "schema": SCHEMA_VERSION},
    ],
)
def test_seal_append_read_round_trip(ledger_path: Path, value: dict[str, Any]) -> None:
    sealed = seal(value)
    assert sealed["schema"] == SCHEMA_VERSION
    body = json.dumps(
        without(sealed, "hash"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert sealed["hash"] == "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()
    assert seal(sealed) == sealed, "sealing is idempotent"
    assert "hash" not in value, "seal copies; it does not touch its argument"
    result = LineStore(ledger_path).append(value)
    assert result.records == (sealed,)
    assert ledger_path.read_bytes() == line(sealed)
    assert LineStore(ledger_path).read().records == (sealed,)
    assert LineStore(ledger_path).verify(bodies=False).ok


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"id": "x"}, r"needs a 'kind' \(one of: run, release\)"),
        ({"kind": "eval"}, r"unknown record kind 'eval'; known kinds: run, release"),
        ({"kind": "run", "m": {"mean": float("nan")}}, r"m\.mean: nan has no JSON form"),
        ({"kind": "run", "s": [1.0, float("inf")]}, r"s\[1\]: inf has no JSON form"),
        ({"kind": "run", "by_id": {1: 0.5}}, r"by_id: key 1 is not a string"),
        ({"kind": "run", "tags": {"a"}}, r"tags: a set is not a JSON value"),
        ({"kind": "run", "x": Opaque()}, r"x: a Opaque is not a JSON value"),
        ({"kind": "run", "schema": 1}, r"says schema 1, but this store writes schema 2"),
        ({"kind": "run", "schema": True}, r"says schema True"),
        ({"kind": "run", "time": 1714557600}, r"'time' must be a string"),
        ({**R[0], "id": "changed"}, r"does not match its content .* changed after it was sealed"),
        (["kind", "run"], r"must be a mapping, not list"),
    ],
)
def test_seal_rejects(value: Any, error: str) -> None:
    with pytest.raises(LedgerError, match=error):
        seal(value)


# --- Reading: every line checked ----------------------------------------------------------

NAN_LINE = b'{"hash":"sha256:' + b"0" * 64 + b'","kind":"run","schema":1,"x":NaN}\n'
DUPLICATE_KEY = b'{"hash":"sha256:' + b"0" * 64 + b'","kind":"run","kind":"release","schema":1}\n'

# Each row: ledger bytes; expected problems as (line, severity, key, message pattern); the
# ids of the records read; whether verify() passes.
LINE_CASES: dict[str, tuple[bytes, list[tuple[int, str, str, str]], list[str], bool]] = {
    "valid": (L[0] + L[1] + L[2], [], ["r1", "r2", "r3"], True),
    "tampered field": (
        L[0] + line({**R[1], "version": "9.9.9"}) + L[2],
        [
            (
                2,
                "error",
                "hash",
                r"hash mismatch: the line says sha256:\w+ but its content hashes to sha256:\w+",
            )
        ],
        ["r1", "r3"],
        False,
    ),
    "tampered hash": (
        line({**R[0], "hash": R[1]["hash"]}) + L[1],
        [(1, "error", "hash", r"hash mismatch")],
        ["r2"],
        False,
    ),
    "not JSON": (
        L[0] + b"{this is not json\n" + L[1],
        [(2, "error", "", r"not a JSON record")],
        ["r1", "r2"],
        False,
    ),
    "git conflict marker": (
        b"<<<<<<< HEAD\n" + L[0],
        [(1, "error", "", r"not a JSON record")],
        ["r1"],
        False,
    ),
    "NaN literal": (
        NAN_LINE + L[0],
        [(1, "error", "", r"not a JSON record \(NaN is not valid JSON\)")],
        ["r1"],
        False,
    ),
    "duplicate key": (DUPLICATE_KEY, [(1, "error", "", r"key 'kind' appears twice")], [], False),
    "not UTF-8": (
        L[0] + b'{"kind":"\xff"}\n',
        [(2, "error", "", r"not UTF-8 text")],
        ["r1"],
        False,
    ),
    "not an object": (
        b"[1, 2]\n" + L[0],
        [(1, "error", "", r"not a JSON object but a list")],
        ["r1"],
        False,
    ),
    "missing kind": (
        L[0] + line(rehashed(without(R[1], "kind"))),
        [(2, "error", "kind", r"missing envelope field kind;")],
        ["r1"],
        False,
    ),
    "missing hash": (
        line(without(R[0], "hash")),
        [(1, "error", "hash", r"missing envelope field hash")],
        [],
        False,
    ),
    "missing schema and kind": (
        line(rehashed(without(R[0], "schema", "kind"))),
        [(1, "error", "schema", r"missing envelope fields schema, kind")],
        [],
        False,
    ),
    "unknown kind": (
        line(rehashed({**R[0], "kind": "eval"})),
        [(1, "error", "kind", r"unknown record kind 'eval' for schema 2")],
        [],
        False,
    ),
    "schema not an int": (
        line(rehashed({**R[0], "schema": "1"})),
        [(1, "error", "schema", r"positive integer")],
        [],
        False,
    ),
    "schema zero": (
        line(rehashed({**R[0], "schema": 0})),
        [(1, "error", "schema", r"positive integer")],
        [],
        False,
    ),
    "hash not sha256": (
        line({**R[0], "hash": "md5:abc"}),
        [(1, "error", "hash", r"'sha256:' and 64 hex digits")],
        [],
        False,
    ),
    "time not a string": (
        line(rehashed({**R[0], "time": 5})),
        [(1, "error", "time", r"time must be a string")],
        [],
        False,
    ),
    "exact duplicate": (L[0] + L[1] + L[0] + L[1], [], ["r1", "r2"], True),
    "blank line": (L[0] + b"\n" + L[1], [(2, "warning", "", r"blank line")], ["r1", "r2"], True),
    "reformatted": (
        json.dumps(R[0], indent=None).encode() + b"\n",
        [(1, "warning", "", r"not in canonical form \(the hash still matches")],
        ["r1"],
        True,
    ),
    "CRLF line ends": (
        L[0].replace(b"\n", b"\r\n") + L[1].replace(b"\n", b"\r\n"),
        [],
        ["r1", "r2"],
        True,
    ),
    "torn last line": (
        L[0] + L[1][:-20],
        [(2, "error", "", re.escape(TORN_MESSAGE.format(size=len(L[1]) - 20)))],
        ["r1"],
        False,
    ),
    "torn first line": (
        L[0][:5],
        [(1, "error", "", re.escape(TORN_MESSAGE.format(size=5)))],
        [],
        False,
    ),
    "complete record without newline": (
        L[0] + L[1][:-1],
        [
            (
                2,
                "error",
                "",
                r"last line has no newline \(\d+ bytes\): a complete record .* the next append ends it",
            )
        ],
        ["r1"],
        False,
    ),
    "empty file": (b"", [], [], True),
}


@pytest.mark.parametrize(
    ("data", "problems", "expected", "ok"), LINE_CASES.values(), ids=LINE_CASES.keys()
)
def test_every_line_is_checked(
    ledger_path: Path,
    data: bytes,
    problems: list[tuple[int, str, str, str]],
    expected: list[str],
    ok: bool,
) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(data)
    view = LineStore(ledger_path).read()
    assert ids(view.records) == expected
    assert [(p.line, p.severity, p.key) for p in view.problems] == [row[:3] for row in problems]
    for problem, (number, _, _, pattern) in zip(view.problems, problems, strict=True):
        assert re.search(pattern, problem.message), problem.message
        assert str(problem).startswith(f"{ledger_path}:{number}:"), "file and line lead the message"
    report = LineStore(ledger_path).verify(bodies=False)
    assert report.ok is ok
    assert report.problems == view.problems
    assert report.records == len(expected)
    assert report.lines == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert ledger_path.read_bytes() == data, "reading never changes the file"


@pytest.mark.parametrize(
    ("data", "summary"),
    [
        (b"", "ok: 0 lines, 0 records"),
        (L[0], "ok: 1 line, 1 record (1 run)"),
        (L[0] + L[1] + L[0] + L[0], "ok: 4 lines, 2 records (1 run, 1 release), 2 duplicates"),
        (L[0] + b"\n" + L[2], "ok: 3 lines, 2 records (2 run), 1 warning"),
        (L[0] + b"{\n" + L[1][:9], "2 problems: 3 lines, 1 record (1 run)"),
    ],
)
def test_verify_counts_lines_records_and_duplicates(
    ledger_path: Path, data: bytes, summary: str
) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(data)
    report = LineStore(ledger_path).verify(bodies=False)
    assert report.summary() == f"{ledger_path}: {summary}"
    assert sum(report.kinds.values()) == report.records


def test_torn_tail_is_described(ledger_path: Path) -> None:
    write(ledger_path, (L[0] + L[1][:7]).decode())
    view = LineStore(ledger_path).read()
    assert view.torn == Torn(line=2, size=7, complete=False)
    assert view.errors == view.problems


@pytest.mark.parametrize("method", ["read", "verify"])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_newer_schema_stops_the_reader(ledger_path: Path, method: str, where: int) -> None:
    newer = line({**R[0], "schema": SCHEMA_VERSION + 1, "hash": "sha3-256:whatever", "new": True})
    lines = [L[1], L[2]]
    lines.insert(where, newer)
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(b"".join(lines))
    expected = (
        f"{ledger_path}: line {where + 1}: written by a newer promptlib (schema 3 > 2); "
        "upgrade promptlib to read this ledger"
    )
    with pytest.raises(LedgerError, match=re.escape(expected)):
        getattr(LineStore(ledger_path), method)()


def test_order_does_not_depend_on_line_order(ledger_path: Path) -> None:
    rng = random.Random(7)
    values = [
        seal(
            {
                "kind": rng.choice(KINDS),
                "n": n,
                **({"time": f"2024-0{rng.randint(1, 3)}"} if n % 4 else {}),
            }
        )
        for n in range(40)
    ]
    lines = [line(v) for v in values]
    lines += lines[:5]  # duplicates, as a union merge of two branches may leave them
    ledger_path.parent.mkdir(parents=True)
    views = []
    for _ in range(20):
        rng.shuffle(lines)
        ledger_path.write_bytes(b"".join(lines))
        views.append(LineStore(ledger_path).read().records)
    records = views[0]
    assert all(view == records for view in views)
    assert len(records) == 40
    assert list(records) == sorted(values, key=lambda v: (v.get("time", ""), v["hash"]))


def test_of_kind(ledger_path: Path) -> None:
    write(ledger_path, b"".join(L).decode())
    view = LineStore(ledger_path).read()
    assert ids(view.of_kind("run")) == ["r1", "r3"]
    assert ids(view.of_kind("release")) == ["r2"]
    assert len(view) == 3
    assert ids(view) == ["r1", "r2", "r3"]
    with pytest.raises(LedgerError, match="unknown record kind 'runs'"):
        view.of_kind("runs")


def test_a_missing_file_is_an_empty_ledger(ledger_path: Path) -> None:
    ledger = LineStore(ledger_path)
    assert ledger.read().records == ()
    report = ledger.verify(bodies=False)
    assert (report.ok, report.lines, report.records) == (True, 0, 0)
    assert ledger.append([]).records == ()
    assert not ledger_path.parent.exists(), "reading and empty appends create nothing"


# --- Appending ----------------------------------------------------------------------------


def test_append_creates_folders_and_only_ever_appends(ledger_path: Path) -> None:
    ledger = LineStore(ledger_path)
    first = ledger.append({"kind": "run", "id": "a"})
    assert first.created
    assert ledger_path.is_file()
    before = ledger_path.read_bytes()
    second = ledger.append([{"kind": "release", "id": "b"}, {"kind": "run", "id": "c"}])
    assert not second.created
    after = ledger_path.read_bytes()
    assert after.startswith(before)
    assert after[len(before) :] == b"".join(line(r) for r in second.records)
    assert ids(second.records) == ["b", "c"]
    assert len(second.hashes) == 2
    assert sorted(ids(ledger.read().records)) == ["a", "b", "c"]


def test_an_invalid_record_appends_nothing(ledger_path: Path) -> None:
    ledger = LineStore(ledger_path)
    ledger.append(R[0])
    before = ledger_path.read_bytes()
    with pytest.raises(
        LedgerError,
        match=rf"^{re.escape(str(ledger_path))}: nothing appended: record 2 of 3: .*kind",
    ):
        ledger.append([{"kind": "run", "id": "ok"}, {"id": "no kind"}, {"kind": "run"}])
    assert ledger_path.read_bytes() == before


@pytest.mark.parametrize(
    ("tail", "action"),
    [
        (L[1][:1], "truncated"),
        (L[1][:-2], "truncated"),
        (b"\x00" * 300, "truncated"),
        (L[1][:-1], "completed"),
        (L[1][:-1] + b"\r", "completed"),
    ],
    ids=["one byte", "all but the end", "zeros", "only the newline missing", "CRLF without LF"],
)
def test_append_repairs_an_unterminated_last_line(
    ledger_path: Path, tail: bytes, action: str
) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(L[0] + L[2] + tail)
    result = LineStore(ledger_path).append(R[0] if action == "truncated" else [])
    assert result.repaired == Repair(line=3, size=len(tail), action=action)  # type: ignore[arg-type]
    assert str(result.repaired).startswith(
        "moved a torn last line" if action == "truncated" else "line 3 was a complete"
    )
    if action == "truncated":
        # The bytes are kept aside, never deleted: they may be a record damaged by hand.
        assert result.repaired is not None
        assert result.repaired.saved is not None
        assert result.repaired.saved.read_bytes() == tail
        assert str(result.repaired.saved) in str(result.repaired)
    report = LineStore(ledger_path).verify(bodies=False)
    assert report.ok, report.problems
    expected = ["r1", "r3"] if action == "truncated" else ["r1", "r2", "r3"]
    assert ids(LineStore(ledger_path).read().records) == expected
    if action == "truncated":
        assert ledger_path.read_bytes() == L[0] + L[2] + L[0]


def test_a_damaged_final_byte_never_deletes_a_committed_record(ledger_path: Path) -> None:
    # One wrong final byte (the closing brace and newline replaced by one character) of a
    # large record: the next append must not treat 300 KB of a committed record as a torn
    # write and delete it.
    big = line(record(4, payload="x" * 300_000))
    damaged = big[:-2] + b"]"
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(L[0] + damaged)
    result = LineStore(ledger_path).append(R[1])
    assert result.repaired is not None
    assert result.repaired.saved is not None
    assert result.repaired.saved.read_bytes() == damaged
    assert result.repaired.saved.name.startswith("ledger.jsonl.torn-2-")
    # Restoring it is one edit: the saved bytes are the whole line but its last byte.
    assert json.loads(result.repaired.saved.read_bytes()[:-1] + b"}")["id"] == "r4"


def test_repair_scans_back_over_a_long_torn_line(ledger_path: Path) -> None:
    big = line(record(4, payload="x" * 300_000))
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(L[0] + L[1] + big[:250_000])
    result = LineStore(ledger_path).append(R[2])
    assert result.repaired == Repair(line=3, size=250_000, action="truncated")
    assert ledger_path.read_bytes() == L[0] + L[1] + L[2]


def test_append_waits_for_the_lock_then_gives_up(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger = LineStore(ledger_path, lock_timeout=0.2)
    with (
        filelock.FileLock(f"{ledger_path}.lock"),
        pytest.raises(LedgerError, match=r"another writer has held the lock .* for over 0\.2 s"),
    ):
        ledger.append(R[0])
    assert not ledger_path.exists()


def test_a_reader_waits_out_an_append_in_flight(ledger_path: Path) -> None:
    """An unterminated last line under a held lock is an append in flight, not a tear."""
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(L[0] + L[1][:10])
    views = []
    with filelock.FileLock(f"{ledger_path}.lock"):
        reader = threading.Thread(target=lambda: views.append(LineStore(ledger_path).read()))
        reader.start()
        time.sleep(0.2)
        assert reader.is_alive()
        with ledger_path.open("ab") as handle:
            handle.write(L[1][10:])
    reader.join(10)
    assert views[0].problems == ()
    assert ids(views[0].records) == ["r1", "r2"]


# --- Crash safety -------------------------------------------------------------------------


def events(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(text) for text in output.decode("utf-8").splitlines()]


def start_writer(path: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a writer and wait for its "ready" line.

    Its output is read unbuffered (binary, ``bufsize=0``): ``readline`` then takes exactly
    one line from the pipe, and ``communicate`` later gets every byte after it. A buffered
    text stream would read ahead, and ``communicate`` (which reads the pipe itself when
    stdin is a pipe too) would lose the lines read ahead.
    """
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
        cwd=cwd,
    )
    assert child.stdout is not None
    assert events(child.stdout.readline()) == [{"event": "ready"}]
    return child


def check_committed(view: LineView, committed: dict[str, str]) -> None:
    """Every record a writer saw committed is in ``view``, verified."""
    by_id = {r["id"]: r for r in view.records}
    lost = sorted(set(committed) - set(by_id))
    assert lost == [], f"committed records lost: {lost}"
    assert all(by_id[i]["hash"] == h for i, h in committed.items())


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path: Path) -> None:
    kills, per_ledger = 60, 8  # a fresh ledger every few kills keeps each file tens of MB
    rng = random.Random(20240501)
    committed: dict[Path, dict[str, str]] = {}
    torn_tails = repaired_by_child = repaired_by_parent = 0
    started = time.monotonic()
    previous: Torn | None = None
    for kill in range(kills):
        path = tmp_path / f"ledger-{kill // per_ledger}" / "evals" / "ledger.jsonl"
        if kill % per_ledger == 0:
            previous = None
        mine = committed.setdefault(path, {})
        sizes = f"--small-size 200 --min-size {1 << 20} --max-size {4 << 20}"
        child = start_writer(
            path, *f"--tag k{kill} {sizes} --seed {kill} --announce-writes".split()
        )
        early = b""
        if kill % 2:
            # A uniformly random moment rarely falls inside the write itself (a few per
            # cent of an append), so every other kill waits for a large write to start.
            assert child.stdout is not None
            while (text := child.stdout.readline()) and b'"writing"' not in text:
                early += text
            time.sleep(rng.uniform(0.0, 0.001))
        else:
            time.sleep(rng.uniform(0.0, 0.06))
        child.send_signal(signal.SIGKILL)
        output, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        for event in events(early + output):
            if event["event"] == "committed":
                mine[event["id"]] = event["hash"]
            elif event["event"] == "repaired":
                # Only the writer's first append can find a torn line: the one seen last time.
                assert previous is not None
                action = "completed" if previous.complete else "truncated"
                assert (event["line"], event["size"], event["action"]) == (
                    previous.line,
                    previous.size,
                    action,
                )
                repaired_by_child += 1

        view = LineStore(path).read()
        report = LineStore(path).verify(bodies=False)
        check_committed(view, mine)
        if view.torn is None:
            assert report.ok, report.problems
        else:
            # A torn tail is reported, never accepted, and is the only problem. (When the
            # kill cuts the write just before its newline, 1 in 4096 tears, the line is a
            # complete record that the next append keeps.)
            assert not report.ok
            assert [p.message for p in view.problems] == [view.torn.message()]
            if not view.torn.complete:
                assert view.torn.message() == TORN_MESSAGE.format(size=view.torn.size)
            assert view.torn.line == report.lines == len(view.records) + report.duplicates + 1
            torn_tails += view.torn != previous
            if torn_tails % 2:
                # Repair half of them here; the next writer repairs the others.
                result = LineStore(path).append({"kind": "run", "id": f"parent-{kill}"})
                action = "completed" if view.torn.complete else "truncated"
                assert result.repaired == Repair(view.torn.line, view.torn.size, action)
                mine[f"parent-{kill}"] = result.hashes[0]
                repaired_by_parent += 1
                view = LineStore(path).read()
                assert view.problems == ()
                check_committed(view, mine)
        previous = view.torn

    for path, mine in committed.items():
        LineStore(path).append([])
        assert LineStore(path).verify(bodies=False).ok
        check_committed(LineStore(path).read(), mine)
    total = sum(len(mine) for mine in committed.values())
    elapsed = time.monotonic() - started
    print(
        f"\n{kills} kills: {torn_tails} left a new torn tail ({repaired_by_parent} repaired by the "
        f"test, {repaired_by_child} by the next writer); {total} committed records all present; "
        f"{elapsed:.1f} s"
    )
    assert total > 0


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
@pytest.mark.parametrize("on_limit", ["kill", "error"])
def test_a_short_write_is_completed_or_cut_off(
    ledger_path: Path, tmp_path: Path, on_limit: str
) -> None:
    """RLIMIT_FSIZE makes the kernel cut a write short: a deterministic torn write.

    With SIGXFSZ at its default the writer dies on the loop's second ``os.write`` and
    leaves exactly the bytes under the limit; with it ignored (Python's default) the second
    write fails with EFBIG and append cuts the partial line off again.
    """
    LineStore(ledger_path).append([R[0], R[1]])
    size = ledger_path.stat().st_size
    limit = size + 1000
    options = f"--tag w --count 1 --min-size 5000 --max-size 5000 --fsize-limit {limit}"
    child = start_writer(ledger_path, *options.split(), "--on-limit", on_limit, cwd=tmp_path)
    output, _ = child.communicate(timeout=30)
    view = LineStore(ledger_path).read()
    if on_limit == "kill":
        assert child.returncode == -signal.SIGXFSZ
        assert [e["event"] for e in events(output)] == ["appending"]
        assert ledger_path.stat().st_size == limit
        assert view.torn == Torn(line=3, size=1000)
        assert LineStore(ledger_path).append(R[2]).repaired == Repair(3, 1000, "truncated")
    else:
        assert child.returncode == 3
        appending, event = events(output)
        assert (appending["event"], event["event"]) == ("appending", "error")
        assert event["message"].startswith(
            f"{ledger_path}: cannot append to the ledger: File too large; 0 of 1 records were "
            "committed before the error"
        )
        assert ledger_path.stat().st_size == size, "the partial line was cut off"
        assert view.problems == ()
    assert LineStore(ledger_path).verify(bodies=False).ok
    assert {"r1", "r2"} <= set(ids(LineStore(ledger_path).read().records))


# --- Concurrency --------------------------------------------------------------------------


def test_concurrent_writers_never_interleave(ledger_path: Path) -> None:
    writers, count = 3, 100
    options = "--min-size 1 --max-size 65536 --wait --pause 0.005"
    children = [
        start_writer(ledger_path, *f"--tag w{n} --count {count} --seed {n} {options}".split())
        for n in range(writers)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0] * writers
    report = LineStore(ledger_path).verify(bodies=False)
    assert report.ok, report.problems[:3]
    assert (report.lines, report.records, report.duplicates) == (
        writers * count,
        writers * count,
        0,
    )
    # Each writer's records are whole lines, in the order that writer appended them.
    order = [
        json.loads(text)["id"] for text in ledger_path.read_text(encoding="utf-8").splitlines()
    ]
    for n, output in enumerate(outputs):
        reported = [e["id"] for e in events(output) if e["event"] == "committed"]
        assert reported == [f"w{n}-{i}" for i in range(count)]
        assert [i for i in order if i.startswith(f"w{n}-")] == reported
    # The writers ran at the same time: the file is not just one block per writer.
    switches = sum(a.split("-")[0] != b.split("-")[0] for a, b in itertools.pairwise(order))
    assert switches > writers


# --- Git ----------------------------------------------------------------------------------


@pytest.fixture
def git(tmp_path: Path) -> Callable[..., str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    identity = ["-c", "user.name=Ledger Test", "-c", "user.email=ledger@example.invalid"]
    options = [*identity, "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}

    def run(*args: str) -> str:
        done = subprocess.run(
            ["git", *options, *args], cwd=repo, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    run("init", "--quiet")
    return run


def test_git_union_merge_of_two_branches(git: Callable[..., str], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo / ".gitattributes", "evals/ledger.jsonl merge=union\n")
    write(repo / ".gitignore", "*.lock\n")
    ledger = LineStore(repo / "evals" / "ledger.jsonl")
    ledger.append({"kind": "release", "id": "base", "time": "2024-01-01T00:00:00Z"})
    git("add", "--all")
    git("commit", "--quiet", "-m", "base")
    git("checkout", "--quiet", "-b", "a")
    ledger.append(
        [{"kind": "run", "id": f"a{n}", "time": f"2024-02-0{n}T00:00:00Z"} for n in (1, 2)]
    )
    git("commit", "--quiet", "--all", "-m", "a")
    git("checkout", "--quiet", "-b", "b", "main")
    ledger.append(
        [{"kind": "run", "id": f"b{n}", "time": f"2024-02-0{n + 2}T00:00:00Z"} for n in (1, 2)]
    )
    git("commit", "--quiet", "--all", "-m", "b")
    git("merge", "--no-edit", "a")
    assert git("status", "--porcelain") == ""
    assert "<<<<<<<" not in ledger.path.read_text(encoding="utf-8")
    report = ledger.verify(bodies=False)
    assert report.ok, report.problems
    assert (report.lines, report.records) == (5, 5)
    assert ids(ledger.read().records) == ["base", "a1", "a2", "b1", "b2"]
    # Appending after the merge goes on working.
    ledger.append({"kind": "run", "id": "after"})
    assert len(ledger.read().records) == 6
