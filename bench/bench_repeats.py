"""What ``--repeats K`` adds to the ledger: index-line and object bytes per run.

With repeats a run record carries a ``consistency`` object (per metric: n, disagreement,
mean variance, pass@k and pass^k for 0/1 metrics) and its scores object carries every
repeat's score per example (``repeats``), besides the per-example variance it already had.

1. Real runs. On a copy of this project with a fresh ledger, ``promptlib eval --suite S
   --repeats K`` for K = 1, 3, 5 with the offline retrieval provider, on
   ``banking_intent`` (3,080 rows, accuracy, 0/1) and ``support_answers`` (27 Bitext
   intents, 4 ROUGE metrics, continuous): bytes of the index (per run line) and of the
   scores objects, as committed (gzip files, index text). The retrieval baseline is
   deterministic: its repeats agree, the best case for compression.
2. A noisy model. The same K = 3 and 5 scores objects of ``banking_intent`` with every
   repeat's 0/1 score replaced by a coin flip (seeded; means and variances recomputed),
   gzip-compressed as the store writes them: the worst case, repeats that share nothing.

Run: python bench/bench_repeats.py
"""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _report import write_section  # noqa: E402

from promptlib.ledger import Ledger  # noqa: E402
from promptlib.ledger.objects import encode  # noqa: E402

SUITES = ("banking_intent", "support_answers")
REPEATS = (1, 3, 5)


def copy_project(target: Path) -> Path:
    target.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    shutil.copytree(ROOT / "prompts", target / "prompts")
    shutil.copytree(ROOT / "evals" / "datasets", target / "evals" / "datasets")
    shutil.copytree(ROOT / "evals" / "suites", target / "evals" / "suites")
    return target


def evaluate(project: Path, suite: str, repeats: int) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from promptlib.cli import main; sys.argv[0] = 'promptlib'; main()",
            "--project",
            str(project),
            "eval",
            "--suite",
            suite,
            "--repeats",
            str(repeats),
            "--provider",
            "retrieval",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"eval --suite {suite} --repeats {repeats}: {done.stderr}")


def gz_size(value: Any) -> int:
    """The bytes of ``value`` as the object store writes it (gzip, no header time)."""
    return len(gzip.compress(encode(value)[1], mtime=0))


def measure(folder: Path, suite: str, repeats: int) -> dict[str, Any]:
    project = copy_project(folder)
    evaluate(project, suite, repeats)
    ledger = Ledger(project / "evals" / "ledger")
    view = ledger.read()
    index = (project / "evals" / "ledger" / "index.jsonl").read_bytes().splitlines()
    scores = [view.object(r.scores) for r in view.runs]
    added = [gz_size(s) - gz_size({k: v for k, v in s.items() if k != "repeats"}) for s in scores]
    return {
        "repeats_field": sum(added) / len(added),
        "runs": len(view.runs),
        "line": sum(len(line) + 1 for line in index) / len(index),
        "scores": sum(ledger.objects.path_of(r.scores).stat().st_size for r in view.runs)
        / len(view.runs),
        "objects": scores,
    }


def noisy(scores: dict[str, Any], seed: int) -> dict[str, Any]:
    """``scores`` with every repeat's 0/1 score a coin flip; means and variances to match."""
    rng = random.Random(seed)
    out = json.loads(json.dumps(scores))
    for metric, per_example in out["repeats"].items():
        for index, values in enumerate(per_example):
            if values is None:
                continue
            flips = [rng.randint(0, 1) for _ in values]
            per_example[index] = flips
            mean = sum(flips) / len(flips)
            out["scores"][metric][index] = round(mean, 6)
            spread = math.fsum((v - mean) ** 2 for v in flips) / len(flips)
            out["variance"][metric][index] = round(spread, 6)
    return out


def main() -> None:
    found: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for suite in SUITES:
            for repeats in REPEATS:
                found[suite, repeats] = measure(
                    Path(scratch) / f"{suite}-{repeats}", suite, repeats
                )
    lines = [
        "| suite | runs | repeats | index line (bytes, mean) | scores object (bytes, mean) "
        "| of which `repeats` | vs 1 repeat |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for suite in SUITES:
        base = found[suite, 1]
        for repeats in REPEATS:
            row = found[suite, repeats]
            growth = (
                ""
                if repeats == 1
                else f"line +{row['line'] - base['line']:,.0f} B, "
                f"scores x{row['scores'] / base['scores']:.2f}"
            )
            lines.append(
                f"| {suite} | {row['runs']} | {repeats} | {row['line']:,.0f} | "
                f"{row['scores']:,.0f} | {row['repeats_field']:,.0f} | {growth} |"
            )
    noise = [
        "",
        "A noisy model (every repeat's score a coin flip), `banking_intent` (3,080 rows):",
        "",
        "| repeats | scores object (bytes) | of which `repeats` | retrieval's (agreeing) |",
        "|---:|---:|---:|---:|",
    ]
    base_scores = found["banking_intent", 1]["objects"][0]
    noise.append(f"| 1 | {gz_size(base_scores):,} | 0 | {gz_size(base_scores):,} |")
    for repeats in REPEATS[1:]:
        real = found["banking_intent", repeats]["objects"][0]
        flipped = noisy(real, seed=repeats)
        without = {k: v for k, v in flipped.items() if k != "repeats"}
        noise.append(
            f"| {repeats} | {gz_size(flipped):,} | {gz_size(flipped) - gz_size(without):,} | "
            f"{gz_size(real):,} |"
        )
    body = "\n".join(
        [
            "What `--repeats K` adds per run: the index line gains a `consistency` object "
            "(one entry per metric); the scores object gains every repeat's score per "
            "example (`repeats`), beside the per-example variance it already held. Runs "
            "with the retrieval provider (deterministic: its repeats agree), on a fresh "
            "ledger; bytes as committed (index text, gzip objects).",
            "",
            *lines,
            *noise,
        ]
    )
    print(body)
    write_section("repeats", "python bench/bench_repeats.py", body)


if __name__ == "__main__":
    main()
