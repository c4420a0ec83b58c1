"""promptlib.evals.dataset: JSONL and CSV rows with a stable id, identified by the file's sha256.

Every error row of the table gives the file's bytes and the exact ``DatasetError``
message, which names the file (relative to the project) and the 1-based physical line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from promptlib.errors import DatasetError
from promptlib.evals.dataset import Dataset, load_dataset

ROWS = [
    {"id": "bitext-0001", "instruction": "cancel order 42", "intent": "cancel_order", "entity_type": "order_number", "entity_value": "42"},
    {"id": "bitext-0002", "instruction": "naïve question — 日本語?", "intent": "contact_human_agent", "entity_type": None, "entity_value": None},
    {"id": "scitldr-7", "title": "A paper", "tldrs": ["one", "two"], "n": 3, "ok": True},
]  # fmt: skip


def jsonl(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def put(root: Path, relative: str, data: bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------- loading


def test_jsonl_rows_in_file_order(tmp_path: Path) -> None:
    data = jsonl(ROWS[:2]) + b"\n   \n" + jsonl(ROWS[2:])
    path = put(tmp_path, "evals/datasets/bitext/test.jsonl", data)
    dataset = load_dataset(path, tmp_path)
    assert isinstance(dataset, Dataset)
    assert [dict(row) for row in dataset] == ROWS
    assert len(dataset) == 3
    assert dataset.relative == "evals/datasets/bitext/test.jsonl"
    assert dataset.sha256 == sha256(data)
    assert dataset.dvc_md5 is None
    assert dataset.identity() == {
        "path": "evals/datasets/bitext/test.jsonl",
        "sha256": sha256(data),
        "rows": 3,
    }


def test_jsonl_with_windows_line_endings(tmp_path: Path) -> None:
    data = jsonl(ROWS).replace(b"\n", b"\r\n")
    dataset = load_dataset(put(tmp_path, "d.jsonl", data), tmp_path)
    assert [dict(row) for row in dataset] == ROWS
    assert dataset.sha256 == sha256(data)


EMPTY = (
    "the dataset has no rows; add rows (one JSON object per line, each with an 'id') or "
    "point the suite at another file"
)


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\r\n"])
def test_an_empty_jsonl_file_is_an_input_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(DatasetError) as raised:
        load_dataset(put(tmp_path, "d.jsonl", data), tmp_path)
    assert str(raised.value) == f"d.jsonl: {EMPTY}"


def test_csv_rows_are_strings_with_quoting_and_embedded_newlines(tmp_path: Path) -> None:
    data = (
        b"id,text,label\r\n"
        b'hint3-0001,"hi, I need a mattress",MATTRESS_COST\r\n'
        b'hint3-0002,"two\nlines ""quoted""",NO_NODES_DETECTED\r\n'
        b"hint3-0003,,\r\n"
    )
    path = put(tmp_path, "evals/datasets/hint3.csv", data)
    dataset = load_dataset(path, tmp_path)
    assert [dict(row) for row in dataset] == [
        {"id": "hint3-0001", "text": "hi, I need a mattress", "label": "MATTRESS_COST"},
        {"id": "hint3-0002", "text": 'two\nlines "quoted"', "label": "NO_NODES_DETECTED"},
        {"id": "hint3-0003", "text": "", "label": ""},
    ]
    assert dataset.identity() == {
        "path": "evals/datasets/hint3.csv",
        "sha256": sha256(data),
        "rows": 3,
    }


def test_a_header_only_csv_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as raised:
        load_dataset(put(tmp_path, "d.csv", b"id,text\n"), tmp_path)
    assert str(raised.value) == f"d.csv: {EMPTY}"


def test_a_csv_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = put(tmp_path, "d.csv", b"\xef\xbb\xbfid,text\nr1,hello\n")
    assert [dict(row) for row in load_dataset(path, tmp_path)] == [{"id": "r1", "text": "hello"}]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"], ids=["LS", "PS", "NEL"])
def test_unicode_line_separators_inside_json_strings(tmp_path: Path, separator: str) -> None:
    row = {"id": "r1", "text": f"first{separator}second"}
    path = put(tmp_path, "d.jsonl", (json.dumps(row, ensure_ascii=False) + "\n").encode())
    assert [dict(r) for r in load_dataset(path, tmp_path)] == [row]


def test_relative_path_without_a_root_or_outside_it(tmp_path: Path) -> None:
    path = put(tmp_path, "data/d.jsonl", jsonl(ROWS))
    assert load_dataset(path).relative == path.as_posix()
    elsewhere = tmp_path / "project"
    elsewhere.mkdir()
    assert load_dataset(path, elsewhere).relative == path.as_posix()
    assert load_dataset(path, tmp_path).relative == "data/d.jsonl"


# ------------------------------------------------------------------------------------ DVC

DVC3 = """\
outs:
- md5: {md5}
  size: {size}
  hash: md5
  path: test.jsonl
"""
DVC2 = """\
md5: 3f0e3cfa1d0a4c8bd4c8f1b5a3a4b2c1
outs:
- md5: {md5}
  size: {size}
  path: test.jsonl
  cache: true
"""


@pytest.mark.parametrize("template", [DVC3, DVC2], ids=["dvc3", "dvc2"])
def test_dvc_md5_is_recorded_when_a_dvc_file_exists(tmp_path: Path, template: str) -> None:
    data = jsonl(ROWS)
    path = put(tmp_path, "evals/datasets/scitldr/test.jsonl", data)
    md5 = hashlib.md5(data).hexdigest()
    put(
        tmp_path,
        "evals/datasets/scitldr/test.jsonl.dvc",
        template.format(md5=md5, size=len(data)).encode(),
    )
    dataset = load_dataset(path, tmp_path)
    assert dataset.dvc_md5 == md5
    assert dataset.identity() == {
        "path": "evals/datasets/scitldr/test.jsonl",
        "sha256": sha256(data),
        "rows": 3,
        "dvc_md5": md5,
    }


def test_a_dvc_file_of_another_name_is_ignored(tmp_path: Path) -> None:
    data = jsonl(ROWS)
    path = put(tmp_path, "test.jsonl", data)
    put(tmp_path, "test.dvc", DVC3.format(md5="0" * 32, size=1).encode())
    put(tmp_path, "dvc.lock", b"schema: '2.0'\nstages: {}\n")
    assert load_dataset(path, tmp_path).dvc_md5 is None
    assert "dvc_md5" not in load_dataset(path, tmp_path).identity()


def test_an_unreadable_dvc_file_is_an_error(tmp_path: Path) -> None:
    path = put(tmp_path, "test.jsonl", jsonl(ROWS))
    put(tmp_path, "test.jsonl.dvc", b"outs:\n- md5: [unclosed\n")
    with pytest.raises(DatasetError, match=r"test\.jsonl\.dvc: cannot read the DVC file: "):
        load_dataset(path, tmp_path)


# --------------------------------------------------------------------------------- errors


ERRORS = [
    ("d.jsonl", b'{"id": "a"}\n{"id": "b",}\n', "d.jsonl:2: not valid JSON: Expecting property name enclosed in double quotes"),
    ("d.jsonl", b'{"id": "a"}\n{"id": "b"\n', "d.jsonl:2: not valid JSON: Expecting ',' delimiter"),
    ("d.jsonl", b'{"id": "a"}\n\n[1, 2]\n', "d.jsonl:3: each line must be a JSON object"),
    ("d.jsonl", b'"just text"\n', "d.jsonl:1: each line must be a JSON object"),
    ("d.jsonl", b'{"text": "no id"}\n', "d.jsonl:1: every row needs a non-empty string 'id'"),
    ("d.jsonl", b'{"id": "a"}\n{"id": ""}\n', "d.jsonl:2: every row needs a non-empty string 'id'"),
    ("d.jsonl", b'{"id": null}\n', "d.jsonl:1: every row needs a non-empty string 'id'"),
    ("d.jsonl", b'{"id": 7}\n', "d.jsonl:1: every row needs a non-empty string 'id'"),
    ("d.jsonl", b'{"id": "a"}\n\n{"id": "b"}\n{"id": "a"}\n', "d.jsonl:4: duplicate id 'a' (first on line 1)"),
    ("d.jsonl", b'{"id": "a"}\n{"id": "b"}\n{"id": "b"}\n{"id": "a"}\n', "d.jsonl:3: duplicate id 'b' (first on line 2)"),
    ("d.jsonl", b'{"id": "a"}\n{"id": "b"}\n{"id": "caf\xe9"}\n', "d.jsonl:3: not UTF-8 text (invalid continuation byte)"),
    ("d.jsonl", b'{"id": "\xff"}\n', "d.jsonl:1: not UTF-8 text (invalid start byte)"),
    ("d.json", b'[{"id": "a"}]', "d.json: datasets are .jsonl or .csv files"),
    ("d.parquet", b"PAR1", "d.parquet: datasets are .jsonl or .csv files"),
    ("d.csv", b"text,label\nhello,x\n", "d.csv:2: every row needs a non-empty string 'id'"),
    ("d.csv", b"id,text\na,x\n,y\n", "d.csv:3: every row needs a non-empty string 'id'"),
    ("d.csv", b'id,text\na,x\nb,"one\ntwo"\na,y\n', "d.csv:5: duplicate id 'a' (first on line 2)"),
    ("d.csv", b"", "d.csv: empty CSV file (a header row with an 'id' column is needed)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "message"), ERRORS)
def test_errors_name_the_file_and_line(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = put(tmp_path, name, data)
    with pytest.raises(DatasetError) as raised:
        load_dataset(path, tmp_path)
    assert str(raised.value) == message


def test_a_csv_row_is_located_by_its_first_line(tmp_path: Path) -> None:
    path = put(tmp_path, "d.csv", b'id,text\na,"one\ntwo"\na,x\n')
    with pytest.raises(DatasetError) as raised:
        load_dataset(path, tmp_path)
    assert str(raised.value) == "d.csv:4: duplicate id 'a' (first on line 2)"


def test_the_project_relative_path_is_named(tmp_path: Path) -> None:
    path = put(tmp_path, "evals/datasets/x/test.jsonl", b'{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(DatasetError) as raised:
        load_dataset(path, tmp_path)
    assert str(raised.value) == "evals/datasets/x/test.jsonl:2: duplicate id 'a' (first on line 1)"


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "evals" / "datasets" / "missing.jsonl"
    with pytest.raises(DatasetError) as raised:
        load_dataset(path, tmp_path)
    assert str(raised.value) == f"{path}: dataset file not found"


# ---------------------------------------------------------------------------- memoisation


def test_an_unchanged_file_is_loaded_once(tmp_path: Path) -> None:
    path = put(tmp_path, "d.jsonl", jsonl(ROWS))
    assert load_dataset(path, tmp_path) is load_dataset(path, tmp_path)


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    first = jsonl(ROWS)
    path = put(tmp_path, "d.jsonl", first)
    before = load_dataset(path, tmp_path)
    assert before.sha256 == sha256(first)
    # A row added: another size.
    second = first + jsonl([{"id": "extra"}])
    path.write_bytes(second)
    after = load_dataset(path, tmp_path)
    assert after.sha256 == sha256(second)
    assert [row["id"] for row in after][-1] == "extra"
    # A label fixed in place: the same size, a later modification time.
    third = second.replace(b'"cancel_order"', b'"cancel_ordxr"')
    assert len(third) == len(second)
    path.write_bytes(third)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    fixed = load_dataset(path, tmp_path)
    assert fixed.sha256 == sha256(third)
    assert fixed.rows[0]["intent"] == "cancel_ordxr"


def test_a_file_that_became_invalid_is_reported(tmp_path: Path) -> None:
    path = put(tmp_path, "d.jsonl", jsonl(ROWS))
    load_dataset(path, tmp_path)
    path.write_bytes(jsonl(ROWS) + b'{"id": "bitext-0001"}\n')
    with pytest.raises(
        DatasetError, match=r"^d\.jsonl:4: duplicate id 'bitext-0001' \(first on line 1\)$"
    ):
        load_dataset(path, tmp_path)
