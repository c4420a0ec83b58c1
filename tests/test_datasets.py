"""The converted evaluation datasets under ``evals/datasets/``.

Hermetic: every test reads only files in the repository, except the regeneration test,
which also reads the upstream dataset folders (``$PROMPTLIB_DATA_SOURCE``, else
``<repo>/../shared/data``) and is skipped when neither exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "evals" / "datasets"
CONVERT = DATASETS / "convert.py"
FOLDERS = ("banking77", "bitext", "clinc150", "hint3", "qmsum", "scitldr")
MAX_FILE_BYTES = 5 * 1024 * 1024
HINT3_BOTS = ("sofmattress", "curekart", "powerplay11")

Row = dict[str, Any]


class DataFile(NamedTuple):
    path: str  # relative to evals/datasets
    id_pattern: str
    rows: int  # from the upstream READMEs (bitext: measured split, total checked separately)
    keys: tuple[str, ...]
    positional: bool  # ids number the rows 1..n in file order


INTENT_KEYS = ("id", "text", "label")
CLINC_KEYS = ("id", "text", "intent", "domain", "scope")
BITEXT_KEYS = (
    "id",
    "instruction",
    "intent",
    "category",
    "entity_type",
    "entity_value",
    "tags",
    "offensive",
    "polite",
    "response",
)
HINT3_ROWS = {
    ("sofmattress", "train"): 328,
    ("sofmattress", "test"): 397,
    ("curekart", "train"): 599,
    ("curekart", "test"): 991,
    ("powerplay11", "train"): 471,
    ("powerplay11", "test"): 983,
}
BITEXT_TRAIN, BITEXT_TEST, BITEXT_TOTAL = 3_599, 915, 4_514

FILES = [
    DataFile("banking77/train.jsonl", r"banking77-train-\d{5}", 10_003, INTENT_KEYS, True),
    DataFile("banking77/test.jsonl", r"banking77-test-\d{4}", 3_080, INTENT_KEYS, True),
    DataFile("clinc150/train.jsonl", r"clinc150-train-\d{5}", 15_100, CLINC_KEYS, True),
    DataFile("clinc150/test.jsonl", r"clinc150-test-\d{4}", 5_500, CLINC_KEYS, True),
    *(
        DataFile(
            f"hint3/{bot}-{split}.jsonl", rf"hint3-{bot}-{split}-\d{{4}}", n, INTENT_KEYS, True
        )
        for (bot, split), n in HINT3_ROWS.items()
    ),
    DataFile("bitext/train.jsonl", r"bitext-\d{4}", BITEXT_TRAIN, BITEXT_KEYS, False),
    DataFile("bitext/test.jsonl", r"bitext-\d{4}", BITEXT_TEST, BITEXT_KEYS, False),
    DataFile(
        "scitldr/test.jsonl", r"[A-Za-z0-9_-]+", 618, ("id", "title", "abstract", "tldrs"), False
    ),
    DataFile(
        "qmsum/test.jsonl",
        r"qmsum-product-m\d{2}-(general-\d|specific-\d{2})",
        151,
        ("id", "meeting", "kind", "query", "transcript", "answer"),
        False,
    ),
]


class Leak(NamedTuple):
    name: str
    train: str
    test: str
    field: str
    expected: int  # measured on the upstream data; see each folder's README


# Test rows whose stripped, lowercased text equals that of a train row of the same dataset.
# These duplicates are in the upstream data (bitext: one case-only near-duplicate pair that
# straddles the 20% cut of its intent); the counts pin them, so any new leak fails the test.
LEAKS = [
    Leak("banking77", "banking77/train.jsonl", "banking77/test.jsonl", "text", 6),
    Leak("clinc150", "clinc150/train.jsonl", "clinc150/test.jsonl", "text", 2),
    Leak(
        "hint3-sofmattress",
        "hint3/sofmattress-train.jsonl",
        "hint3/sofmattress-test.jsonl",
        "text",
        0,
    ),
    Leak("hint3-curekart", "hint3/curekart-train.jsonl", "hint3/curekart-test.jsonl", "text", 8),
    Leak(
        "hint3-powerplay11",
        "hint3/powerplay11-train.jsonl",
        "hint3/powerplay11-test.jsonl",
        "text",
        0,
    ),
    Leak("bitext", "bitext/train.jsonl", "bitext/test.jsonl", "instruction", 1),
]


@cache
def rows_of(relative: str) -> tuple[Row, ...]:
    """The rows of a committed JSONL file (split on "\\n" only, as the format defines)."""
    text = (DATASETS / relative).read_bytes().decode("utf-8")
    assert text.endswith("\n"), f"{relative}: no trailing newline"
    return tuple(json.loads(line) for line in text[:-1].split("\n"))


def json_of(relative: str) -> Any:
    return json.loads((DATASETS / relative).read_bytes().decode("utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_in(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def upstream_source() -> Path | None:
    env = os.environ.get("PROMPTLIB_DATA_SOURCE")
    for candidate in (Path(env) if env else None, ROOT.parent / "shared" / "data"):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


# --------------------------------------------------------------------------- regeneration


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    source = upstream_source()
    if source is None:
        pytest.skip(
            "upstream dataset folders not found: set PROMPTLIB_DATA_SOURCE to the folder "
            "holding banking77/, clinc150/, ... (default <repo>/../shared/data is missing)"
        )
    result = subprocess.run(
        [sys.executable, str(CONVERT), "--source", str(source), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FOLDERS)
    for folder in FOLDERS:
        fresh, committed = files_in(tmp_path / folder), files_in(DATASETS / folder)
        assert sorted(fresh) == sorted(committed), folder
        for name, data in fresh.items():
            assert data == committed[name], f"{folder}/{name} differs from a fresh conversion"


# --------------------------------------------------------------------------- provenance


@pytest.mark.parametrize("folder", FOLDERS)
def test_sources_json_matches_committed_files(folder: str) -> None:
    sources = json_of(f"{folder}/SOURCES.json")
    assert sources["dataset"] == folder
    listed = {entry["name"]: entry for entry in sources["outputs"]}
    present = set(files_in(DATASETS / folder)) - {"SOURCES.json"}
    assert set(listed) == present
    for name, entry in listed.items():
        path = DATASETS / folder / name
        assert entry["sha256"] == sha256(path), f"{folder}/{name}"
        assert entry["bytes"] == path.stat().st_size, f"{folder}/{name}"
        if name.endswith(".jsonl"):
            assert entry["rows"] == len(rows_of(f"{folder}/{name}"))
        else:
            assert entry["rows"] is None
    for entry in sources["inputs"]:
        assert entry["path"].startswith(sources["upstream_folder"] + "/")
        assert ".." not in entry["path"].split("/")
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])


@pytest.mark.parametrize("folder", FOLDERS)
def test_license_copied_unchanged_and_readme_documents_conversion(folder: str) -> None:
    sources = json_of(f"{folder}/SOURCES.json")
    inputs = {entry["path"].rsplit("/", 1)[1]: entry["sha256"] for entry in sources["inputs"]}
    licenses = [name for name in files_in(DATASETS / folder) if name.startswith("LICENSE")]
    assert len(licenses) == 1
    assert sha256(DATASETS / folder / licenses[0]) == inputs[licenses[0]]
    readme = (DATASETS / folder / "README.md").read_text(encoding="utf-8")
    assert readme.count("\n## Conversion\n") == 1
    assert "python evals/datasets/convert.py --source" in readme


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_file_is_under_5_mib(folder: str) -> None:
    for path in (DATASETS / folder).iterdir():
        assert path.stat().st_size <= MAX_FILE_BYTES, path.name


# --------------------------------------------------------------------------- rows and ids


@pytest.mark.parametrize("spec", FILES, ids=[spec.path for spec in FILES])
def test_rows_ids_and_keys(spec: DataFile) -> None:
    rows = rows_of(spec.path)
    assert len(rows) == spec.rows
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids), "duplicate ids"
    bad = [row_id for row_id in ids if not re.fullmatch(spec.id_pattern, row_id)]
    assert not bad, bad[:5]
    assert all(tuple(row) == spec.keys for row in rows), "unexpected keys or key order"
    if spec.positional:
        assert [int(row_id.rsplit("-", 1)[1]) for row_id in ids] == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("spec", FILES, ids=[spec.path for spec in FILES])
def test_jsonl_lines_use_the_fixed_serialisation(spec: DataFile) -> None:
    text = (DATASETS / spec.path).read_bytes().decode("utf-8")
    for line in text[:-1].split("\n"):
        assert json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")) == line


def test_bitext_split_covers_every_upstream_row_once() -> None:
    train, test = rows_of("bitext/train.jsonl"), rows_of("bitext/test.jsonl")
    ids = [row["id"] for row in train] + [row["id"] for row in test]
    assert len(ids) == BITEXT_TOTAL
    assert sorted(ids) == [f"bitext-{n:04d}" for n in range(1, BITEXT_TOTAL + 1)]
    for rows in (train, test):
        assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)


# --------------------------------------------------------------------------- leakage


@pytest.mark.parametrize("leak", LEAKS, ids=[leak.name for leak in LEAKS])
def test_test_train_text_overlap_is_only_the_known_upstream_duplicates(leak: Leak) -> None:
    seen = {row[leak.field].strip().lower() for row in rows_of(leak.train)}
    hits = [row["id"] for row in rows_of(leak.test) if row[leak.field].strip().lower() in seen]
    assert len(hits) == leak.expected, hits


# --------------------------------------------------------------------------- bitext split


def test_bitext_test_is_ceil_20_percent_of_each_intent() -> None:
    train, test = rows_of("bitext/train.jsonl"), rows_of("bitext/test.jsonl")
    total = Counter(row["intent"] for row in train + test)
    in_test = Counter(row["intent"] for row in test)
    assert len(total) == 27
    for intent, n in total.items():
        assert in_test[intent] == -(-n * 20 // 100), intent  # exact ceil(20% of n)


def test_bitext_test_rows_are_the_first_by_instruction_hash() -> None:
    train, test = rows_of("bitext/train.jsonl"), rows_of("bitext/test.jsonl")
    by_intent: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in train + test:
        digest = hashlib.sha256(row["instruction"].strip().lower().encode("utf-8")).hexdigest()
        by_intent[row["intent"]].append((digest, row["id"]))
    expected: set[str] = set()
    for group in by_intent.values():
        group.sort()
        expected.update(row_id for _, row_id in group[: -(-len(group) * 20 // 100)])
    assert {row["id"] for row in test} == expected


# --------------------------------------------------------------------------- derived fields


def test_bitext_derived_fields_and_labels() -> None:
    rows = rows_of("bitext/train.jsonl") + rows_of("bitext/test.jsonl")
    for row in rows:
        assert row["offensive"] == ("offensive" if "W" in row["tags"] else "not_offensive")
        assert row["polite"] == ("polite" if "P" in row["tags"] else "not_polite")
        assert (row["entity_type"] is None) == (row["entity_value"] is None)
        assert row["entity_type"] != ""
        assert row["entity_value"] != ""
        assert "\r" not in row["response"]
    labels = json_of("bitext/labels.json")
    assert list(labels) == ["intents", "categories"]
    assert labels["categories"] == sorted({row["category"] for row in rows})
    assert len(labels["categories"]) == 11
    expected: defaultdict[str, set[str]] = defaultdict(set)
    for row in rows:
        expected[row["category"]].add(row["intent"])
    assert labels["intents"] == {cat: sorted(expected[cat]) for cat in sorted(expected)}


def test_clinc150_domain_and_scope_follow_domains_json() -> None:
    domains = json_of("clinc150/domains.json")
    domain_of = {intent: domain for domain, intents in domains.items() for intent in intents}
    assert len(domain_of) == 150
    for split, oos in (("train", 100), ("test", 1_000)):
        rows = rows_of(f"clinc150/{split}.jsonl")
        for row in rows:
            if row["intent"] == "oos":
                assert (row["domain"], row["scope"]) == ("oos", "out_of_scope")
            else:
                assert (row["domain"], row["scope"]) == (domain_of[row["intent"]], "in_scope")
        assert sum(row["intent"] == "oos" for row in rows) == oos
        assert all(row["intent"] == "oos" for row in rows[-oos:])


def test_hint3_labels_json_lists_each_bots_labels() -> None:
    labels = json_of("hint3/labels.json")
    assert list(labels) == sorted(HINT3_BOTS)
    for bot in HINT3_BOTS:
        seen = {
            row["label"]
            for split in ("train", "test")
            for row in rows_of(f"hint3/{bot}-{split}.jsonl")
        }
        assert labels[bot] == sorted(seen)
        train = {row["label"] for row in rows_of(f"hint3/{bot}-train.jsonl")}
        assert seen - train == {"NO_NODES_DETECTED"}


def test_banking77_labels_json_holds_every_label() -> None:
    labels = json_of("banking77/labels.json")
    assert len(labels) == len(set(labels)) == 77
    for split in ("train", "test"):
        assert {row["label"] for row in rows_of(f"banking77/{split}.jsonl")} == set(labels)
    assert set(Counter(row["label"] for row in rows_of("banking77/test.jsonl")).values()) == {40}


def test_scitldr_rows_have_references() -> None:
    rows = rows_of("scitldr/test.jsonl")
    assert sum(len(row["tldrs"]) for row in rows) == 1_967
    for row in rows:
        assert 2 <= len(row["tldrs"]) <= 4
        assert all(isinstance(tldr, str) and tldr.strip() for tldr in row["tldrs"])
        assert row["abstract"]
        assert row["title"]


def test_qmsum_transcripts_are_meeting_turns() -> None:
    rows = rows_of("qmsum/test.jsonl")
    kinds = Counter(row["kind"] for row in rows)
    assert kinds == {"general": 22, "specific": 129}
    whole: dict[str, list[str]] = {}
    for row in rows:
        assert row["id"].startswith(f"qmsum-product-{row['meeting']}-{row['kind']}-")
        if row["kind"] == "general":
            lines = row["transcript"].split("\n")
            assert whole.setdefault(row["meeting"], lines) == lines
    assert len(whole) == 20
    speakers = ("Project Manager: ", "Marketing: ", "Industrial Designer: ", "User Interface: ")
    for row in rows:
        lines = row["transcript"].split("\n")
        assert all(line.startswith(speakers) for line in lines)
        if row["kind"] == "specific":
            # every gold-span turn is a turn of its meeting, in meeting order
            turns = iter(whole[row["meeting"]])
            assert all(any(line == turn for turn in turns) for line in lines), row["id"]
            assert len(lines) < len(whole[row["meeting"]])
    assert any("{vocalsound}" in row["transcript"] for row in rows)
