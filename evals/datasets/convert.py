"""Convert the upstream evaluation datasets into deterministic JSON Lines files.

Usage (from the repository root)::

    python evals/datasets/convert.py --source <folder holding the upstream dataset folders> \
        [--out evals/datasets]

``--source`` is the folder that holds the unchanged upstream dataset folders
(``banking77/``, ``clinc150/``, ``hint3/``, ``bitext-customer-support/``, ``scitldr/``,
``qmsum-product/``), each with the README that names its upstream repository and commit.
``--out`` defaults to the folder holding this script.

Contract:

* Standard library only. The output is a pure function of the input bytes: running the
  script twice, on any machine, gives byte-identical files. Nothing is random, nothing
  depends on the clock, the locale, the platform or the path of the source folder.
* Every value comes from the upstream files. Derived fields are documented, deterministic
  functions of upstream fields (see each dataset's ``README.md``). Some upstream columns
  and whole splits are left out (each README says which and why), but no row of a converted
  upstream file is dropped, and values are never edited, with one exception: ``"\\r\\n"``
  inside a CSV value is normalised to ``"\\n"`` (only Bitext's ``response`` column has
  such values). Leading and trailing whitespace, inner newlines and ASR markers such as
  ``{vocalsound}`` are kept.
* Ids are stable: they are derived from the row's position in the fixed upstream file
  (1-based, zero-padded to 4 digits, or more when a file has 10,000 rows or more).
* JSONL: one object per line, keys in the fixed order documented per dataset,
  ``json.dumps(row, ensure_ascii=False, separators=(",", ":"))``, ``"\\n"`` line endings,
  UTF-8, trailing newline. Other JSON outputs are indented by 2 spaces, end with a newline.
* Each output folder holds the JSONL files, the upstream license file (same name, bytes
  unchanged), ``README.md`` (the upstream folder README unchanged, followed by a generated
  ``## Conversion`` section) and ``SOURCES.json`` (sha256 and size of every upstream file
  read; sha256, size and row count of every output file).
* The upstream files are validated (headers, column counts, label sets, span bounds); any
  surprise raises ``ConversionError`` instead of guessing. No output file may exceed
  5 MiB: the script fails rather than cutting rows.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

Row = dict[str, Any]

MAX_FILE_BYTES = 5 * 1024 * 1024
COMMAND = 'python evals/datasets/convert.py --source "$PROMPTLIB_DATA_SOURCE" --out evals/datasets'
JSONL_FORMAT = (
    "one JSON object per line, keys in the order listed below, written with `json.dumps(row, "
    'ensure_ascii=False, separators=(",", ":"))`, UTF-8, `"\\n"` line endings, trailing newline'
)
HINT3_BOTS = ("sofmattress", "curekart", "powerplay11")
BITEXT_CSV = "Bitext_Sample_Customer_Support_Training_Dataset.csv"
BITEXT_COLUMNS = [
    "context",
    "role",
    "instruction",
    "intent",
    "entity_type",
    "entity_value",
    "start_offset",
    "end_offset",
    "category",
    "tags",
    "response",
]


class ConversionError(Exception):
    """The upstream files do not look the way this script expects."""


# --------------------------------------------------------------------------- helpers


def sha256_hex(data: bytes) -> str:
    """Plain hex SHA-256 of ``data`` (the format ``sha256sum`` prints)."""
    return hashlib.sha256(data).hexdigest()


def jsonl_bytes(rows: list[Row]) -> bytes:
    """Serialise ``rows`` as JSON Lines in the fixed format of the contract."""
    lines = [json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows]
    return "".join(lines).encode("utf-8")


def json_bytes(value: Any) -> bytes:
    """Serialise a non-row JSON document (labels, SOURCES.json): indented, trailing newline."""
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def position_id(prefix: str, position: int, total: int) -> str:
    """``{prefix}-{position}`` zero-padded to 4 digits, or to the width of ``total``."""
    width = max(4, len(str(total)))
    return f"{prefix}-{position:0{width}d}"


def parse_csv(data: bytes, name: str, header: list[str]) -> tuple[list[list[str]], int]:
    """Parse CSV bytes (UTF-8, ``newline=""``) and check the header and column counts.

    Returns the data rows with ``"\\r\\n"`` inside values normalised to ``"\\n"``, and the
    number of values that normalisation changed.
    """
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    rows = list(reader)
    if not rows or rows[0] != header:
        raise ConversionError(f"{name}: header {rows[:1]!r}, expected {header!r}")
    body: list[list[str]] = []
    changed = 0
    for number, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise ConversionError(f"{name}: row {number} has {len(row)} columns")
        fixed = [value.replace("\r\n", "\n") for value in row]
        changed += sum(1 for old, new in zip(row, fixed, strict=True) if old != new)
        body.append(fixed)
    return body, changed


def norm_text(text: str) -> str:
    """The comparison key of the leakage check: stripped and lowercased."""
    return text.strip().lower()


def overlap(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> tuple[int, str]:
    """Test/train text overlap of ``(text, label)`` pairs, and a sentence describing it.

    Counts the test rows whose stripped, lowercased text equals that of some train row:
    the leakage check of ``tests/test_datasets.py``, measured on the upstream data.
    """
    labels: dict[str, set[str]] = {}
    raw = {text for text, _ in train}
    for text, label in train:
        labels.setdefault(norm_text(text), set()).add(label)
    hits = [(text, label) for text, label in test if norm_text(text) in labels]
    exact = sum(1 for text, _ in hits if text in raw)
    conflicts = [
        f"{json.dumps(text, ensure_ascii=False)} is `{label}` in test but "
        + ", ".join(f"`{other}`" for other in sorted(labels[norm_text(text)]))
        + " in train"
        for text, label in hits
        if labels[norm_text(text)] != {label}
    ]
    if not hits:
        return 0, "No test text equals a train text after stripping and lowercasing."
    if exact == len(hits):
        how = "all byte-identical"
    elif exact == 0:
        how = "none byte-identical: they differ only in case or surrounding whitespace"
    else:
        how = f"{exact} byte-identical, the others differ only in case or surrounding whitespace"
    sentence = (
        f"{len(hits)} test texts equal a train text after stripping and lowercasing ({how}). "
        "This is a fact about the upstream data, not fixed here. "
    )
    if conflicts:
        sentence += (
            f"{len(conflicts)} of them carry a different label: " + "; ".join(conflicts) + "."
        )
    else:
        sentence += "All of them carry the same label in train and test."
    return len(hits), sentence


def untrimmed(texts: list[str]) -> int:
    """Number of texts with leading or trailing whitespace."""
    return sum(1 for text in texts if text != text.strip())


def ceil_fifth(count: int) -> int:
    """``ceil(count * 20 / 100)`` in exact integer arithmetic."""
    return (count + 4) // 5


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class Folder:
    """One output dataset folder: records every upstream file read and every file written."""

    def __init__(self, source: Path, out: Path, upstream: str, name: str) -> None:
        self.source = source
        self.upstream = upstream
        self.name = name
        self.path = out / name
        self.path.mkdir(parents=True, exist_ok=True)
        self.inputs: dict[str, Row] = {}
        self.outputs: dict[str, Row] = {}

    def read(self, relative: str) -> bytes:
        """Read ``<source>/<upstream>/<relative>`` and record its hash and size."""
        rel = f"{self.upstream}/{relative}"
        data = (self.source / rel).read_bytes()
        self.inputs[rel] = {"path": rel, "sha256": sha256_hex(data), "bytes": len(data)}
        return data

    def write(self, name: str, data: bytes, rows: int | None = None) -> None:
        """Write ``data`` to ``name`` in this folder (bytes, no newline translation)."""
        if len(data) > MAX_FILE_BYTES:
            raise ConversionError(
                f"{self.name}/{name} would be {len(data)} bytes, over the {MAX_FILE_BYTES} "
                "byte limit; not cutting rows"
            )
        (self.path / name).write_bytes(data)
        self.outputs[name] = {
            "name": name,
            "sha256": sha256_hex(data),
            "bytes": len(data),
            "rows": rows,
        }

    def write_jsonl(self, name: str, rows: list[Row]) -> None:
        self.write(name, jsonl_bytes(rows), len(rows))

    def copy(self, relative: str, name: str | None = None) -> None:
        """Copy an upstream file unchanged."""
        target = name or Path(relative).name
        self.write(target, self.read(relative))

    def file_table(self, notes: dict[str, str]) -> str:
        """Markdown table of the files written so far, with a note per file."""
        rows = []
        for name, note in notes.items():
            out = self.outputs[name]
            count = "" if out["rows"] is None else f"{out['rows']:,}"
            rows.append([f"`{name}`", count, f"{out['bytes']:,}", note])
        return table(["file", "rows", "bytes", "content"], rows)

    def finish(self, conversion: str) -> None:
        """Write README.md (upstream README + conversion section), then SOURCES.json."""
        upstream_readme = self.read("README.md").decode("utf-8")
        if not upstream_readme.endswith("\n"):
            upstream_readme += "\n"
        preamble = f"""## Conversion

Everything above this section is the README of the upstream folder `{self.upstream}/`,
unchanged. It describes the upstream data files, which are not in this folder. This
section describes the files here. They were written by `evals/datasets/convert.py` (standard
library only, deterministic: the same upstream bytes always give the same output bytes).
Run from the repository root, with `$PROMPTLIB_DATA_SOURCE` set to the folder that holds
the upstream dataset folders:

```sh
{COMMAND}
```

`SOURCES.json` lists the sha256 and size of every upstream file read, and the sha256,
size and row count (`null` for non-JSONL files) of every file written here except
itself. `tests/test_datasets.py` regenerates all folders and checks that they are
byte-identical.

"""
        readme = upstream_readme + "\n" + preamble + conversion.strip("\n") + "\n"
        self.write("README.md", readme.encode("utf-8"))
        sources = {
            "dataset": self.name,
            "upstream_folder": self.upstream,
            "command": COMMAND,
            "inputs": [self.inputs[key] for key in sorted(self.inputs)],
            "outputs": [self.outputs[key] for key in sorted(self.outputs)],
        }
        data = json_bytes(sources)
        if len(data) > MAX_FILE_BYTES:  # pragma: no cover - a handful of entries
            raise ConversionError(f"{self.name}/SOURCES.json too large")
        (self.path / "SOURCES.json").write_bytes(data)


def text_note(texts: list[str], changed: int) -> str:
    """The paragraph on how text values were (not) changed."""
    return (
        "Text values are the upstream values unchanged: "
        f"{untrimmed(texts):,} of them have leading or trailing whitespace (some contain "
        "newlines), kept as upstream has them; strip them in the harness if the prompt needs "
        'it. The only edit the converter makes to CSV values is `"\\r\\n"` → `"\\n"`; it '
        f"changed {changed:,} values in this dataset."
    )


# --------------------------------------------------------------------------- banking77


def convert_banking77(source: Path, out: Path) -> None:
    folder = Folder(source, out, "banking77", "banking77")
    categories_raw = folder.read("categories.json")
    categories = json.loads(categories_raw.decode("utf-8"))
    if not isinstance(categories, list) or len(set(categories)) != len(categories):
        raise ConversionError("banking77/categories.json: expected a list of unique names")
    splits: dict[str, list[Row]] = {}
    changed = 0
    texts: list[str] = []
    for split in ("train", "test"):
        body, count = parse_csv(folder.read(f"{split}.csv"), f"{split}.csv", ["text", "category"])
        changed += count
        rows = []
        for position, (text, label) in enumerate(body, start=1):
            if label not in categories:
                raise ConversionError(f"banking77/{split}.csv row {position}: label {label!r}")
            row_id = position_id(f"banking77-{split}", position, len(body))
            rows.append({"id": row_id, "text": text, "label": label})
            texts.append(text)
        splits[split] = rows
        folder.write_jsonl(f"{split}.jsonl", rows)
    folder.write("labels.json", categories_raw)
    folder.copy("LICENSE")
    _, leaks = overlap(
        [(r["text"], r["label"]) for r in splits["train"]],
        [(r["text"], r["label"]) for r in splits["test"]],
    )
    files = folder.file_table(
        {
            "train.jsonl": "upstream `train.csv`, all rows, upstream order (few-shot pool)",
            "test.jsonl": "upstream `test.csv`, all rows, upstream order (fixed eval set)",
            "labels.json": "upstream `categories.json`, byte-for-byte copy (77 intents, "
            "upstream order)",
            "LICENSE": "upstream `LICENSE`, unchanged",
        }
    )
    fields = table(
        ["field", "rule"],
        [
            [
                "`id`",
                "`banking77-train-NNNNN` (5 digits) / `banking77-test-NNNN` (4 digits): "
                "1-based position of the row in the upstream CSV, header not counted",
            ],
            ["`text`", "upstream `text`"],
            ["`label`", "upstream `category` (always one of `labels.json`)"],
        ],
    )
    folder.finish(
        f"""
### Files

{files}

### Fields

JSONL format: {JSONL_FORMAT}.

{fields}

{text_note(texts, changed)}

### Split

The official upstream split, unchanged: `train.jsonl` = `train.csv`, `test.jsonl` =
`test.csv`. Draw few-shot examples from `train.jsonl` only.

Upstream overlap: {leaks}
"""
    )


# --------------------------------------------------------------------------- clinc150


def convert_clinc150(source: Path, out: Path) -> None:
    folder = Folder(source, out, "clinc150", "clinc150")
    domains_raw = folder.read("domains.json")
    domains = json.loads(domains_raw.decode("utf-8"))
    domain_of: dict[str, str] = {}
    for domain, intents in domains.items():
        for intent in intents:
            if intent in domain_of or intent == "oos":
                raise ConversionError(f"clinc150/domains.json: intent {intent!r} repeated")
            domain_of[intent] = domain
    data = json.loads(folder.read("data_full.json").decode("utf-8"))
    parts = {"train": ("train", "oos_train"), "test": ("test", "oos_test")}
    out_rows: dict[str, list[Row]] = {}
    for split, keys in parts.items():
        pairs = [pair for key in keys for pair in data[key]]
        rows = []
        for position, pair in enumerate(pairs, start=1):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ConversionError(f"clinc150 {split} item {position}: {pair!r}")
            text, intent = pair
            if intent == "oos":
                domain, scope = "oos", "out_of_scope"
            elif intent in domain_of:
                domain, scope = domain_of[intent], "in_scope"
            else:
                raise ConversionError(f"clinc150 {split} item {position}: intent {intent!r}")
            rows.append(
                {
                    "id": position_id(f"clinc150-{split}", position, len(pairs)),
                    "text": text,
                    "intent": intent,
                    "domain": domain,
                    "scope": scope,
                }
            )
        for key in keys:
            expected_oos = key.startswith("oos_")
            if any((intent == "oos") != expected_oos for _, intent in data[key]):
                raise ConversionError(f"clinc150 {key}: mixes in-scope and oos rows")
        out_rows[split] = rows
        folder.write_jsonl(f"{split}.jsonl", rows)
    folder.write("domains.json", domains_raw)
    folder.copy("LICENSE")
    n = {key: len(value) for key, value in data.items()}
    texts = [r["text"] for rows in out_rows.values() for r in rows]
    _, leaks = overlap(
        [(r["text"], r["intent"]) for r in out_rows["train"]],
        [(r["text"], r["intent"]) for r in out_rows["test"]],
    )
    files = folder.file_table(
        {
            "train.jsonl": f"upstream `train` ({n['train']:,}) then `oos_train` "
            f"({n['oos_train']:,}), upstream order",
            "test.jsonl": f"upstream `test` ({n['test']:,}) then `oos_test` "
            f"({n['oos_test']:,}), upstream order (fixed eval set)",
            "domains.json": "upstream `domains.json`, byte-for-byte copy",
            "LICENSE": "upstream `LICENSE`, unchanged",
        }
    )
    fields = table(
        ["field", "rule"],
        [
            [
                "`id`",
                "`clinc150-train-NNNNN` (5 digits) / `clinc150-test-NNNN` (4 digits): 1-based "
                "position in the concatenation named above (train: 1-15,000 = upstream "
                "`train[0..14999]`, 15,001-15,100 = `oos_train`; test: 1-4,500 = `test`, "
                "4,501-5,500 = `oos_test`)",
            ],
            ["`text`", "upstream text (first element of the `[text, intent]` pair)"],
            ["`intent`", "upstream intent (second element); `oos` for out-of-scope"],
            [
                "`domain`",
                "derived: the `domains.json` key whose list contains `intent` (each intent "
                "is in exactly one list); `oos` when `intent` is `oos`",
            ],
            [
                "`scope`",
                'derived: `"out_of_scope"` when `intent` is `oos`, else `"in_scope"`',
            ],
        ],
    )
    folder.finish(
        f"""
### Files

{files}

### Fields

JSONL format: {JSONL_FORMAT}.

{fields}

Text values are the upstream strings unchanged ({untrimmed(texts):,} have leading or
trailing whitespace).

### Split

The official upstream split. `val` ({n["val"]:,} rows) and `oos_val`
({n["oos_val"]:,}) are deliberately **not converted**: the fixed eval set is `test` +
`oos_test`, `train` + `oos_train` is the few-shot pool, and leaving `val` out keeps the
folder small and avoids a third pool that nobody scores. Regenerate from upstream if a
validation split is ever needed.

Upstream overlap: {leaks}
"""
    )


# --------------------------------------------------------------------------- hint3


def convert_hint3(source: Path, out: Path) -> None:
    folder = Folder(source, out, "hint3", "hint3")
    labels: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    stats: list[list[str]] = []
    changed = 0
    texts: list[str] = []
    ignored_notes = 0
    leak_notes: list[str] = []
    for bot in HINT3_BOTS:
        split_rows: dict[str, list[Row]] = {}
        for split in ("train", "test"):
            relative = f"{split}/{bot}_{split}.csv"
            header = ["sentence", "label"]
            if bot == "powerplay11" and split == "train":
                header = ["sentence", "label", ""]
            body, count = parse_csv(folder.read(relative), relative, header)
            changed += count
            if len(header) == 3:
                ignored_notes = sum(1 for row in body if row[2])
            rows = []
            for position, row in enumerate(body, start=1):
                if not row[1]:
                    raise ConversionError(f"hint3/{relative} row {position}: empty label")
                rows.append(
                    {
                        "id": position_id(f"hint3-{bot}-{split}", position, len(body)),
                        "text": row[0],
                        "label": row[1],
                    }
                )
                texts.append(row[0])
            split_rows[split] = rows
            name = f"{bot}-{split}.jsonl"
            folder.write_jsonl(name, rows)
            notes[name] = f"upstream `{relative}`, all rows, upstream order"
        train_labels = {r["label"] for r in split_rows["train"]}
        test_labels = {r["label"] for r in split_rows["test"]}
        missing = test_labels - train_labels - {"NO_NODES_DETECTED"}
        if missing:
            raise ConversionError(f"hint3 {bot}: test labels missing from train: {missing}")
        labels[bot] = sorted(train_labels | test_labels)
        leaks, leak_note = overlap(
            [(r["text"], r["label"]) for r in split_rows["train"]],
            [(r["text"], r["label"]) for r in split_rows["test"]],
        )
        leak_notes.append(f"- {bot}: {leak_note}")
        oos = sum(1 for r in split_rows["test"] if r["label"] == "NO_NODES_DETECTED")
        stats.append([bot, str(len(labels[bot])), str(oos), str(leaks)])
    folder.write("labels.json", json_bytes({bot: labels[bot] for bot in sorted(labels)}))
    notes["labels.json"] = (
        "derived: `{bot: sorted list of the labels seen in that bot's train + test}` "
        "(bots in alphabetical order; includes `NO_NODES_DETECTED`)"
    )
    folder.copy("LICENSE.md")
    notes["LICENSE.md"] = "upstream `LICENSE.md`, unchanged"
    files = folder.file_table(notes)
    fields = table(
        ["field", "rule"],
        [
            [
                "`id`",
                "`hint3-{bot}-{split}-NNNN`: 1-based position of the row in the upstream "
                "CSV, header not counted, 4 digits",
            ],
            ["`text`", "upstream `sentence`"],
            [
                "`label`",
                "upstream `label`; `NO_NODES_DETECTED` marks out-of-scope queries (test only)",
            ],
        ],
    )
    per_bot = table(
        ["bot", "labels in `labels.json`", "`NO_NODES_DETECTED` test rows", "test/train overlap"],
        stats,
    )
    folder.finish(
        f"""
### Files

{files}

### Fields

JSONL format: {JSONL_FORMAT}.

{fields}

{text_note(texts, changed)}

`train/powerplay11_train.csv` has a third, unnamed column (annotator notes, filled on
{ignored_notes} rows): it is ignored, as the upstream README says. Every in-scope test
label of each bot occurs in that bot's train file (checked by the converter).

### Split

The official upstream v2 split, unchanged, per bot. `*-train.jsonl` is the label inventory
and few-shot pool; `*-test.jsonl` is the fixed eval set.

{per_bot}

"test/train overlap" counts test texts equal to a train text of the same bot after
stripping and lowercasing:

{chr(10).join(leak_notes)}

### License of this folder

These JSONL files are a converted (changed) copy of the HINT3 database: they stay under
ODbL 1.0 / DbCL 1.0 (`LICENSE.md`), with attribution to Haptik (Arora et al., 2020).
"""
    )


# --------------------------------------------------------------------------- bitext


def convert_bitext(source: Path, out: Path) -> None:
    folder = Folder(source, out, "bitext-customer-support", "bitext")
    body, changed = parse_csv(folder.read(BITEXT_CSV), BITEXT_CSV, BITEXT_COLUMNS)
    rows: list[Row] = []
    category_of: dict[str, str] = {}
    off_span = 0
    for position, values in enumerate(body, start=1):
        value = dict(zip(BITEXT_COLUMNS, values, strict=True))
        intent, category, tags = value["intent"], value["category"], value["tags"]
        if category_of.setdefault(intent, category) != category:
            raise ConversionError(f"bitext row {position}: intent {intent!r} in two categories")
        if bool(value["entity_type"]) != bool(value["entity_value"]):
            raise ConversionError(f"bitext row {position}: entity type/value mismatch")
        if value["entity_value"]:
            start, end = int(value["start_offset"]), int(value["end_offset"])
            off_span += value["instruction"][start:end] != value["entity_value"]
        rows.append(
            {
                "id": position_id("bitext", position, len(body)),
                "instruction": value["instruction"],
                "intent": intent,
                "category": category,
                "entity_type": value["entity_type"] or None,
                "entity_value": value["entity_value"] or None,
                "tags": tags,
                "offensive": "offensive" if "W" in tags else "not_offensive",
                "polite": "polite" if "P" in tags else "not_polite",
                "response": value["response"],
            }
        )
    by_intent: dict[str, list[Row]] = {}
    for row in rows:
        by_intent.setdefault(row["intent"], []).append(row)
    test_ids: set[str] = set()
    split_stats: list[list[str]] = []
    for intent in sorted(by_intent):
        group = sorted(
            by_intent[intent],
            key=lambda r: (sha256_hex(norm_text(r["instruction"]).encode("utf-8")), r["id"]),
        )
        take = ceil_fifth(len(group))
        test_ids.update(r["id"] for r in group[:take])
        split_stats.append(
            [f"`{intent}`", category_of[intent], str(len(group)), str(len(group) - take), str(take)]
        )
    train = [r for r in rows if r["id"] not in test_ids]
    test = [r for r in rows if r["id"] in test_ids]
    folder.write_jsonl("train.jsonl", train)
    folder.write_jsonl("test.jsonl", test)
    categories = sorted(set(category_of.values()))
    intents = {
        category: sorted(i for i, c in category_of.items() if c == category)
        for category in categories
    }
    folder.write("labels.json", json_bytes({"intents": intents, "categories": categories}))
    folder.copy("LICENSE.txt")
    _, leaks = overlap(
        [(r["instruction"], r["intent"]) for r in train],
        [(r["instruction"], r["intent"]) for r in test],
    )
    distinct = len({r["instruction"] for r in rows})
    intents_of: dict[str, set[str]] = {}
    for r in rows:
        intents_of.setdefault(norm_text(r["instruction"]), set()).add(r["intent"])
    case_dups = len(rows) - len(intents_of)
    cross_intent = sum(1 for found in intents_of.values() if len(found) > 1)
    offensive = sum(1 for r in rows if r["offensive"] == "offensive")
    polite = sum(1 for r in rows if r["polite"] == "polite")
    entity_rows = [r for r in rows if r["entity_value"] is not None]
    files = folder.file_table(
        {
            "train.jsonl": "rows not chosen for test (see Split), upstream order",
            "test.jsonl": "stratified 20% per intent (see Split), upstream order",
            "labels.json": '`{"intents": {category: sorted intents}, "categories": sorted '
            "categories}` (categories in alphabetical order)",
            "LICENSE.txt": "upstream `LICENSE.txt` (CDLA-Sharing-1.0), unchanged",
        }
    )
    fields = table(
        ["field", "rule"],
        [
            [
                "`id`",
                "`bitext-NNNN`: 1-based position of the row in the upstream CSV (header not "
                "counted), 4 digits; the same id whether the row is in train or test",
            ],
            ["`instruction`", "upstream `instruction`"],
            ["`intent`", "upstream `intent` (27 values)"],
            ["`category`", "upstream `category` (11 values; each intent has one category)"],
            ["`entity_type`", "upstream `entity_type`; `null` when empty"],
            [
                "`entity_value`",
                "upstream `entity_value`; `null` when empty (empty exactly when `entity_type` is)",
            ],
            [
                "`tags`",
                "upstream `tags`: the tag-letter string, e.g. `BILQ` (letters: see the `tags` row "
                "above and upstream `TAGS.md`)",
            ],
            [
                "`offensive`",
                'derived: `"offensive"` if the letter `W` is in `tags`, else `"not_offensive"` '
                f"({offensive:,} offensive rows)",
            ],
            [
                "`polite`",
                'derived: `"polite"` if the letter `P` is in `tags`, else `"not_polite"` '
                f"({polite:,} polite rows)",
            ],
            [
                "`response`",
                'upstream `response`, with `"\\r\\n"` normalised to `"\\n"` (the only edit)',
            ],
        ],
    )
    folder.finish(
        f"""
### Files

{files}

### Fields

JSONL format: {JSONL_FORMAT}.

{fields}

Not converted: `context` (always `customer support`), `role` (always `virtual
assistant`), `start_offset` and `end_offset`. The offsets are not reliable: on
{off_span:,} of the {len(entity_rows):,} rows with an entity, `instruction[start:end]`
differs from `entity_value` (e.g. `entity_value` lost the leading zeros of an order
number, or differs in case). `entity_value` is kept exactly as upstream has it.

Text: the upstream CSV has CRLF line breaks inside quoted `response` values; the
converter reads it with `newline=""` and replaces `"\\r\\n"` by `"\\n"` inside values
({changed:,} `response` values changed; no other column contains a line break, and no
lone `"\\r"` occurs). Nothing else is changed: `{{{{placeholders}}}}` such as
`{{{{Website Name}}}}` are kept.

### Split

Upstream has no official split; this one is deterministic and stratified by intent:

1. Group the rows by `intent`.
2. Within each intent, order the rows by the SHA-256 hex digest of the UTF-8 bytes of
   `instruction` stripped of surrounding whitespace and lowercased; ties (instructions
   that differ only in case) are broken by `id`, which keeps such near-duplicates next to
   each other. {distinct:,} of the {len(rows):,} instructions are distinct as written.
3. The first `ceil(20% * n)` rows of an intent of `n` rows (computed as `(n + 4) // 5`,
   exact integer arithmetic) go to `test`, the rest to `train`.
4. Both files list their rows in upstream order (ascending `id`).

Result: {len(train):,} train rows, {len(test):,} test rows (total {len(rows):,}).
Use `test.jsonl` for scoring; few-shot examples come from `train.jsonl` only.

{table(["intent", "category", "rows", "train", "test"], split_stats)}

Near-duplicates (a fact about the upstream data): {case_dups} instructions repeat
another one after stripping and lowercasing ({cross_intent} of these groups span more than
one intent). The split hashes the normalised text, so that such a pair lands on one side,
except where a near-duplicate group straddles the 20% cut of its intent.
{leaks}

### License of this folder

These JSONL files are a changed copy of Bitext's data (converted from CSV, split, fields
derived as documented above). They stay under CDLA-Sharing-1.0 (`LICENSE.txt`), with
attribution to Bitext ("(c) Bitext Innovations, 2023"). Do not relicense them with the code.
"""
    )


# --------------------------------------------------------------------------- scitldr


def convert_scitldr(source: Path, out: Path) -> None:
    folder = Folder(source, out, "scitldr", "scitldr")
    lines = folder.read("SciTLDR-A/test.jsonl").decode("utf-8").splitlines()
    rows: list[Row] = []
    for number, line in enumerate(lines, start=1):
        item = json.loads(line)
        source_sentences, target = item["source"], item["target"]
        if not (
            isinstance(source_sentences, list) and all(isinstance(s, str) for s in source_sentences)
        ):
            raise ConversionError(f"scitldr line {number}: bad source")
        if not (isinstance(target, list) and target and all(isinstance(t, str) for t in target)):
            raise ConversionError(f"scitldr line {number}: bad target")
        rows.append(
            {
                "id": item["paper_id"],
                "title": item["title"],
                "abstract": " ".join(source_sentences),
                "tldrs": target,
            }
        )
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ConversionError("scitldr: duplicate paper_id")
    folder.write_jsonl("test.jsonl", rows)
    folder.copy("LICENSE")
    refs = sum(len(r["tldrs"]) for r in rows)
    double = sum(1 for r in rows if "  " in r["abstract"])
    newline = sum(1 for r in rows if "\n" in r["abstract"])
    files = folder.file_table(
        {
            "test.jsonl": "upstream `SciTLDR-A/test.jsonl`, one row per paper, upstream order",
            "LICENSE": "upstream `LICENSE` (Apache-2.0), unchanged",
        }
    )
    fields = table(
        ["field", "rule"],
        [
            ["`id`", "upstream `paper_id` (OpenReview id; unique)"],
            ["`title`", "upstream `title`"],
            [
                "`abstract`",
                'derived: `" ".join(source)` — the upstream sentence list joined with one '
                "space; sentences are not stripped, so some abstracts contain double spaces "
                f"({double:,}) or newlines ({newline:,}), as upstream has them",
            ],
            [
                "`tldrs`",
                f"upstream `target`, the list of reference TL;DRs, order unchanged "
                f"({refs:,} in total; the first is the author-written one)",
            ],
        ],
    )
    folder.finish(
        f"""
### Files

{files}

### Fields

JSONL format: {JSONL_FORMAT}.

{fields}

Not converted: `source_labels` and `rouge_scores` (oracle extraction helpers).

### Split

Only the official SciTLDR-A **test** split exists in this repository
({len(rows):,} rows). There is **no train split here**, so SciTLDR prompts must be
**zero-shot**: any few-shot material for them must be absent, never taken from
`test.jsonl`.
"""
    )


# --------------------------------------------------------------------------- qmsum


def render_turns(turns: list[Row]) -> str:
    """Turns rendered as ``"{speaker}: {content}"`` joined by ``"\\n"``."""
    return "\n".join(f"{turn['speaker']}: {turn['content']}" for turn in turns)


def span_turns(turns: list[Row], spans: list[list[str]], where: str) -> list[Row]:
    """The turns of all ``[start, end]`` spans, in order, both ends inclusive."""
    picked: list[Row] = []
    previous_end = -1
    for span in spans:
        if len(span) != 2:
            raise ConversionError(f"{where}: span {span!r}")
        start, end = int(span[0]), int(span[1])
        if not (previous_end < start <= end < len(turns)):
            raise ConversionError(f"{where}: span {span!r} out of order or out of range")
        picked.extend(turns[start : end + 1])
        previous_end = end
    return picked


def convert_qmsum(source: Path, out: Path) -> None:
    folder = Folder(source, out, "qmsum-product", "qmsum")
    lines = folder.read("Product/test.jsonl").decode("utf-8").splitlines()
    rows: list[Row] = []
    words = {"general": [0, 0], "specific": [0, 0]}
    other_general: list[str] = []
    at_last = 0
    for index, line in enumerate(lines, start=1):
        meeting = json.loads(line)
        code = f"m{index:02d}"
        turns = meeting["meeting_transcripts"]
        general, specific = meeting["general_query_list"], meeting["specific_query_list"]
        if index > 99 or len(general) > 9 or len(specific) > 99:
            raise ConversionError("qmsum: more items than the id widths allow")
        whole = render_turns(turns)
        for number, query in enumerate(general, start=1):
            if query["query"] != "Summarize the whole meeting.":
                other_general.append(query["query"])
            rows.append(
                {
                    "id": f"qmsum-product-{code}-general-{number}",
                    "meeting": code,
                    "kind": "general",
                    "query": query["query"],
                    "transcript": whole,
                    "answer": query["answer"],
                }
            )
            words["general"][0] += 1
            words["general"][1] += len(whole.split())
        for number, query in enumerate(specific, start=1):
            where = f"qmsum meeting {index} specific query {number}"
            spans = query["relevant_text_span"]
            at_last += sum(1 for span in spans if int(span[1]) == len(turns) - 1)
            text = render_turns(span_turns(turns, spans, where))
            rows.append(
                {
                    "id": f"qmsum-product-{code}-specific-{number:02d}",
                    "meeting": code,
                    "kind": "specific",
                    "query": query["query"],
                    "transcript": text,
                    "answer": query["answer"],
                }
            )
            words["specific"][0] += 1
            words["specific"][1] += len(text.split())
    folder.write_jsonl("test.jsonl", rows)
    folder.copy("LICENSE")
    mean = {kind: round(total / count) for kind, (count, total) in words.items()}
    counts = {kind: count for kind, (count, _) in words.items()}
    others = "; ".join(f'"{query}"' for query in other_general)
    files = folder.file_table(
        {
            "test.jsonl": "one row per query of upstream `Product/test.jsonl` (per meeting, in "
            "file order: the general queries, then the specific queries, each in upstream "
            "order)",
            "LICENSE": "upstream `LICENSE` (MIT), unchanged",
        }
    )
    fields = table(
        ["field", "rule"],
        [
            [
                "`id`",
                "`qmsum-product-mMM-general-N` / `qmsum-product-mMM-specific-NN`: `mMM` is the "
                "meeting's 1-based line number in the upstream file (2 digits), `N`/`NN` the "
                "1-based position of the query in that meeting's `general_query_list` "
                "(1 digit) / `specific_query_list` (2 digits)",
            ],
            ["`meeting`", "`mMM`, as in the id"],
            ["`kind`", '`"general"` or `"specific"`: the upstream list the query comes from'],
            ["`query`", "upstream `query`"],
            [
                "`transcript`",
                'derived: turns rendered as `"{speaker}: {content}"` and joined with `"\\n"`; '
                "general: every turn of the meeting; specific: the turns of the query's "
                "`relevant_text_span`s (see below)",
            ],
            ["`answer`", "upstream `answer` (the reference summary)"],
        ],
    )
    folder.finish(
        f"""
### Files

{files}

### Fields

JSONL format: {JSONL_FORMAT}.

{fields}

Rows: {counts["general"]} general + {counts["specific"]} specific = {len(rows)}. The
general list holds "Summarize the whole meeting." for every meeting plus
{len(other_general)} other whole-meeting queries ({others}); all general rows get the
whole meeting.

### Transcript rule (gold spans)

Whole meetings are long: the upstream README gives ~6,000 words per meeting; the general
rows here average {mean["general"]:,} whitespace-separated tokens (speaker labels and the
spaced-out punctuation count as tokens). That is too long for cheap, frequent eval runs
on small-context models. Specific queries therefore use the QMSum paper's **gold span**
setting: only the turns inside the query's `relevant_text_span` (mean
{mean["specific"]:,} tokens). General queries have no span upstream, so they get the
whole meeting.

- Each span `[start, end]` is a pair of 0-based turn indices (strings upstream) into
  `meeting_transcripts`, **both ends inclusive**: turns `start, start+1, …, end`. This is
  the convention of QMSum's own preprocessing (`data_process.ipynb` in
  `Yale-LILY/QMSum`, gold-span cell: `for k in range(st, ed + 1)`), and the data agree:
  {at_last} spans end at the last turn index (`len(turns) - 1`), none at `len(turns)`
  (the converter rejects out-of-range spans); and in `m01` the first two specific
  queries have spans `[10, 97]` and `[98, 138]`, which abut exactly under this reading.
- A query with several spans gets the turns of all of them, in upstream span order
  (always ascending and non-overlapping; the converter checks this), concatenated with
  `"\\n"` like any other turns; span boundaries are not marked.
- Nothing else is removed or changed: the ASR markers `{{disfmarker}}`,
  `{{vocalsound}}` and `{{gap}}` and the spaced-out punctuation (`everybody .`, `Um ,`) are
  kept exactly as upstream has them (QMSum's notebook strips some markers before training;
  we do not — strip them in the harness on both sides if a metric needs it).
- Not converted: `topic_list`.

### Split

Only the official Product-domain **test** split exists in this repository
(20 meetings, {len(rows)} queries). There is no train split here, so QMSum prompts must be
zero-shot (no few-shot material from these rows).
"""
    )


# --------------------------------------------------------------------------- main

CONVERTERS = (
    convert_banking77,
    convert_clinc150,
    convert_hint3,
    convert_bitext,
    convert_scitldr,
    convert_qmsum,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        required=True,
        type=Path,
        help="folder holding the upstream dataset folders (banking77/, clinc150/, ...)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: the folder holding this script)",
    )
    args = parser.parse_args(argv)
    for convert in CONVERTERS:
        convert(args.source, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
