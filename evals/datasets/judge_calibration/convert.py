"""Build the judge-calibration dataset from HINT3's human intent labels.

Usage (from the repository root)::

    python evals/datasets/judge_calibration/convert.py --source <folder holding hint3/> \\
        [--out evals/datasets/judge_calibration]

``--source`` holds the unchanged upstream folder ``hint3/`` (the same folder
``evals/datasets/convert.py`` reads). Standard library only; the output is a pure function
of the input bytes.

Every row of HINT3's SOFMattress test file (``hint3/test/sofmattress_test.csv``, 397 real
user queries, each labelled by Haptik's annotators with one of 20 intents or
``NO_NODES_DETECTED``) becomes one judgement "is ``intent`` the right intent for
``question``?", whose human answer ``label`` follows from the annotators' label:

* ``h = int(sha256(id)[:8], 16)``, with ``id`` the row's id (``judgecal-sofmattress-NNNN``,
  its 1-based position in the upstream file);
* an in-scope row with ``h`` even is paired with its own annotated intent: ``label`` 1;
* an in-scope row with ``h`` odd is paired with another intent, the
  ``(h // 2) % 19``-th of the other 19 in-scope intents in sorted order: ``label`` 0;
* an out-of-scope row (``NO_NODES_DETECTED``) is paired with the ``(h // 2) % 20``-th
  in-scope intent: ``label`` 0 (the annotators said no intent of the bot applies).

``examples`` lists the first five training queries of the paired intent
(``hint3/train/sofmattress_train.csv``, upstream order, stripped), one per line.
``annotated`` keeps the annotators' own label. No label is written by hand.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

OUT = Path(__file__).resolve().parent
TEST = "hint3/test/sofmattress_test.csv"
TRAIN = "hint3/train/sofmattress_train.csv"
LICENSE = "hint3/LICENSE.md"
OUT_OF_SCOPE = "NO_NODES_DETECTED"
EXAMPLES = 5
DATA = "hint3-sofmattress.jsonl"


class ConversionError(Exception):
    pass


def _read_csv(path: Path) -> list[tuple[str, str]]:
    text = path.read_bytes().decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    if header[:2] != ["sentence", "label"]:
        raise ConversionError(f"{path}: unexpected header {header}")
    return [(row[0].replace("\r\n", "\n"), row[1]) for row in reader]


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def build(source: Path) -> list[dict[str, object]]:
    test = _read_csv(source / TEST)
    train = _read_csv(source / TRAIN)
    examples: dict[str, list[str]] = {}
    for sentence, label in train:
        examples.setdefault(label, []).append(sentence.strip())
    intents = sorted(examples)
    if OUT_OF_SCOPE in intents:
        raise ConversionError("the training file has out-of-scope rows")
    rows: list[dict[str, object]] = []
    for position, (sentence, annotated) in enumerate(test, start=1):
        row_id = f"judgecal-sofmattress-{position:04d}"
        h = _hash(row_id)
        if annotated == OUT_OF_SCOPE:
            intent = intents[(h // 2) % len(intents)]
        elif annotated not in examples:
            raise ConversionError(f"{TEST} row {position}: intent {annotated!r} not in train")
        elif h % 2 == 0:
            intent = annotated
        else:
            others = [i for i in intents if i != annotated]
            intent = others[(h // 2) % len(others)]
        rows.append(
            {
                "id": row_id,
                "question": sentence,
                "intent": intent,
                "examples": "\n".join(examples[intent][:EXAMPLES]),
                "label": int(intent == annotated),
                "annotated": annotated,
            }
        )
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = build(args.source)
    data = "".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows
    )
    (out / DATA).write_bytes(data.encode("utf-8"))
    shutil.copyfile(args.source / LICENSE, out / "LICENSE.md")
    sources = {
        "dataset": "judge_calibration",
        "upstream_folder": "hint3",
        "command": (
            'python evals/datasets/judge_calibration/convert.py --source "$PROMPTLIB_DATA_SOURCE"'
        ),
        "inputs": [
            {
                "path": name,
                "sha256": _sha256(args.source / name),
                "bytes": (args.source / name).stat().st_size,
            }
            for name in (LICENSE, TEST, TRAIN)
        ],
        "outputs": [
            {
                "name": name,
                "sha256": _sha256(out / name),
                "bytes": (out / name).stat().st_size,
                "rows": len(rows) if name.endswith(".jsonl") else None,
            }
            for name in (DATA, "LICENSE.md")
        ],
    }
    (out / "SOURCES.json").write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
