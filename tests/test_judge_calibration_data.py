"""The judge-calibration dataset (``evals/datasets/judge_calibration/``): rebuilt from the
upstream HINT3 files, byte for byte, and every label follows from the annotators' label.

Rebuilding reads the upstream folder ``hint3/`` (``$PROMPTLIB_DATA_SOURCE``, else
``<repo>/../shared/data``) and is skipped when neither exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "evals" / "datasets" / "judge_calibration"
DATA = FOLDER / "hint3-sofmattress.jsonl"


def rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]


def test_labels_follow_from_the_annotators_labels() -> None:
    data = rows()
    assert len(data) == 397
    assert all(
        list(row) == ["id", "question", "intent", "examples", "label", "annotated"] for row in data
    )
    assert all(row["label"] == int(row["intent"] == row["annotated"]) for row in data)
    assert Counter(row["label"] for row in data) == {1: 115, 0: 282}
    assert sum(1 for row in data if row["annotated"] == "NO_NODES_DETECTED") == 144
    hint3 = [
        json.loads(line)
        for line in (ROOT / "evals" / "datasets" / "hint3" / "sofmattress-test.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    assert [row["question"] for row in data] == [row["text"] for row in hint3]
    assert [row["annotated"] for row in data] == [row["label"] for row in hint3]


def test_rebuilding_from_upstream_gives_the_committed_files(tmp_path: Path) -> None:
    env = os.environ.get("PROMPTLIB_DATA_SOURCE")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data")
    source = next((c for c in candidates if (c / "hint3").is_dir()), None)
    if source is None:
        pytest.skip("upstream hint3/ not found: set PROMPTLIB_DATA_SOURCE")
    result = subprocess.run(
        [
            sys.executable,
            str(FOLDER / "convert.py"),
            "--source",
            str(source),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in ("hint3-sofmattress.jsonl", "LICENSE.md", "SOURCES.json"):
        assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes(), name
