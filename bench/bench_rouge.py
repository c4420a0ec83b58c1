"""Benchmark promptlib.evals._rouge against rouge-score on real text pairs.

Pairs come from the Bitext customer-support responses in ``evals/datasets/bitext`` (test
then train split, for enough pairs of each size):

* ~60 words: two responses of 50-70 words from different rows of the same intent (most
  are a single line);
* ~60 words, multi-line: the leading lines (50-70 words, at least two lines) of two
  responses from different rows of the same intent;
* ~300 words: two texts, each built by joining consecutive responses of one intent with
  newlines until it reaches 280 words, kept if it has at most 340 (so rougeLsum sees many
  lines).

Both scorers run in the same process on the same pairs, with stemming on, for rougeL,
rougeLsum and all four types together. Each configuration is timed over several repeats
(the scorers interleaved within each repeat) and the median time per pair is reported.
Our scorer caches tokenisations, stems and per-text structures, so it is timed three ways:

* "fresh run": every cache is cleared before each repeat, then the pairs are scored once
  (each text is analysed once; stems found earlier in the same run are reused): the cost
  of scoring a new data set of that many pairs. Much of it is the first call of NLTK's
  stemmer on each distinct word, so it falls per pair as the data set grows;
* "warm": every text is already cached (scoring the same texts again);
* "no cache": every cache is cleared before every single pair: the worst case.

Speed-ups are computed from the "fresh run" column. Every score of every run is checked for
exact equality with rouge-score, and the script fails if one differs.

Run: ``python bench/bench_rouge.py`` (``--datasets DIR`` to read the data elsewhere,
``--repeats N``, ``--no-write`` to print without updating docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _report import write_section  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402

from promptlib.evals._rouge import RougeScorer, clear_caches  # noqa: E402

Pair = tuple[str, str]
SPLITS = ("test", "train")
TYPE_SETS: list[tuple[str, list[str]]] = [
    ("rougeL", ["rougeL"]),
    ("rougeLsum", ["rougeLsum"]),
    ("all four", ["rouge1", "rouge2", "rougeL", "rougeLsum"]),
]
SHORT, SHORT_MULTILINE, LONG = "~60 words", "~60 words, multi-line", "~300 words"
TARGETS = {SHORT: 8.0, SHORT_MULTILINE: 8.0, LONG: 20.0}


def _words(text: str) -> int:
    return len(text.split())


def _lines(text: str) -> int:
    """Lines with at least one word: what rougeLsum compares."""
    return sum(1 for line in text.split("\n") if line.strip())


def load_responses(datasets: Path) -> dict[str, list[str]]:
    """Bitext responses (test split, then train split) grouped by intent, in file order."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for split in SPLITS:
        with (datasets / "bitext" / f"{split}.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    by_intent[row["intent"]].append(row["response"])
    return dict(sorted(by_intent.items()))


def short_pairs(by_intent: dict[str, list[str]], limit: int) -> list[Pair]:
    """Pairs of 50-70-word responses of the same intent, taken round-robin over intents."""
    per_intent: list[list[Pair]] = []
    for responses in by_intent.values():
        fitting = [r for r in responses if 50 <= _words(r) <= 70]
        per_intent.append(list(zip(fitting[0::2], fitting[1::2], strict=False)))
    return _round_robin(per_intent, limit)


def multiline_short_pairs(by_intent: dict[str, list[str]], limit: int) -> list[Pair]:
    """Pairs of 50-70-word multi-line texts: the leading lines of same-intent responses."""
    per_intent: list[list[Pair]] = []
    for responses in by_intent.values():
        texts: list[str] = []
        for response in responses:
            lines: list[str] = []
            count = 0
            for line in response.split("\n"):
                lines.append(line)
                count += _words(line)
                if count >= 50:
                    break
            if 50 <= count <= 70 and sum(1 for line in lines if line.strip()) >= 2:
                texts.append("\n".join(lines))
        per_intent.append(list(zip(texts[0::2], texts[1::2], strict=False)))
    return _round_robin(per_intent, limit)


def long_pairs(by_intent: dict[str, list[str]], limit: int) -> list[Pair]:
    """Pairs of ~300-word texts made of consecutive same-intent responses joined by newlines."""
    per_intent: list[list[Pair]] = []
    for responses in by_intent.values():
        texts: list[str] = []
        current: list[str] = []
        count = 0
        for response in responses:
            current.append(response)
            count += _words(response)
            if count >= 280:
                if count <= 340:
                    texts.append("\n".join(current))
                current, count = [], 0
        per_intent.append(list(zip(texts[0::2], texts[1::2], strict=False)))
    return _round_robin(per_intent, limit)


def _round_robin(groups: list[list[Pair]], limit: int) -> list[Pair]:
    out: list[Pair] = []
    depth = 0
    while len(out) < limit and any(depth < len(g) for g in groups):
        out.extend(g[depth] for g in groups if depth < len(g))
        depth += 1
    return out[:limit]


Scores = list[dict[str, Any]]


def _timed(run: Callable[[], Scores]) -> tuple[float, Scores]:
    gc.collect()
    start = time.perf_counter()
    scores = run()
    return time.perf_counter() - start, scores


def _check(expected: Scores, got: Scores, types: Sequence[str]) -> None:
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        for rouge_type in types:
            if tuple(want[rouge_type]) != tuple(have[rouge_type]):
                raise SystemExit(
                    f"score mismatch on pair {index}, {rouge_type}: "
                    f"rouge-score {want[rouge_type]} vs ours {have[rouge_type]}"
                )


def bench_one(pairs: list[Pair], types: list[str], repeats: int) -> dict[str, float]:
    """Median seconds per pair for rouge-score and for ours in each cache state."""
    reference = rouge_scorer.RougeScorer(types, use_stemmer=True)
    ours = RougeScorer(types, use_stemmer=True)

    def run_reference() -> Scores:
        return [reference.score(t, p) for t, p in pairs]

    def run_fresh() -> Scores:
        clear_caches()
        return [ours.score(t, p) for t, p in pairs]

    def run_warm() -> Scores:
        return [ours.score(t, p) for t, p in pairs]

    def run_no_cache() -> Scores:
        scores: Scores = []
        for target, prediction in pairs:
            clear_caches()
            scores.append(ours.score(target, prediction))
        return scores

    runs = {
        "reference": run_reference,
        "fresh": run_fresh,
        "warm": run_warm,
        "no_cache": run_no_cache,
    }
    times: dict[str, list[float]] = {key: [] for key in runs}
    expected: Scores | None = None
    # Interleave the scorers within each repeat, so that a slow spell of a shared machine
    # hits all of them rather than one.
    for _ in range(repeats):
        for key, run in runs.items():
            seconds, scores = _timed(run)
            times[key].append(seconds / len(pairs))
            if expected is None:
                expected = scores
            _check(expected, scores, types)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--datasets", type=Path, default=ROOT / "evals" / "datasets")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--short-pairs", type=int, default=200)
    parser.add_argument("--long-pairs", type=int, default=60)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    by_intent = load_responses(args.datasets)
    sizes = {
        SHORT: short_pairs(by_intent, args.short_pairs),
        SHORT_MULTILINE: multiline_short_pairs(by_intent, args.short_pairs),
        LONG: long_pairs(by_intent, args.long_pairs),
    }
    header = (
        "| texts | pairs | mean words | mean lines | types | rouge-score ms/pair "
        "| ours, fresh run ms/pair | speed-up | ours, warm ms/pair | ours, no cache ms/pair |\n"
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n"
    )
    rows = []
    verdicts = []
    checked = 0
    for size, pairs in sizes.items():
        if not pairs:
            raise SystemExit(f"no {size} pairs could be built from {args.datasets}")
        mean_words = statistics.mean(_words(t) + _words(p) for t, p in pairs) / 2
        mean_lines = statistics.mean(_lines(t) + _lines(p) for t, p in pairs) / 2
        for label, types in TYPE_SETS:
            r = bench_one(pairs, types, args.repeats)
            checked += len(pairs) * len(types)
            speedup = r["reference"] / r["fresh"]
            rows.append(
                f"| {size} | {len(pairs)} | {mean_words:.0f} | {mean_lines:.1f} | {label} "
                f"| {1000 * r['reference']:.3f} | {1000 * r['fresh']:.3f} | {speedup:.1f}x "
                f"| {1000 * r['warm']:.3f} | {1000 * r['no_cache']:.3f} |"
            )
            target = TARGETS[size]
            verdict = "met" if speedup >= target else "MISSED"
            verdicts.append(f"{size}, {label}: {speedup:.1f}x (target {target:.0f}x) {verdict}")
            sys.stderr.write(rows[-1] + "\n")
    body = (
        "`promptlib.evals._rouge.RougeScorer` vs `rouge_score.rouge_scorer.RougeScorer` "
        "(rouge-score 0.1.2), `use_stemmer=True`, the same pairs in the same process, the "
        f"scorers interleaved within each of {args.repeats} repeats; median time per pair.\n\n"
        "Pairs: Bitext customer-support responses (test then train split) of the same intent "
        "from different rows. *~60 words*: whole responses of 50-70 words (mostly one line); "
        "*~60 words, multi-line*: the leading lines (50-70 words, at least two lines) of "
        "responses; *~300 words*: consecutive responses joined by newlines until 280-340 "
        "words.\n\n"
        "*Fresh run*: all our caches cleared before each repeat, so every text is tokenised "
        "and every distinct word stemmed (by NLTK, as rouge-score does) once per run: the cost "
        "of scoring a new data set of that many pairs. *Warm*: every text already cached "
        "(the same references and predictions scored again). *No cache*: caches cleared "
        "before every pair (worst case). Speed-up = rouge-score / fresh run. Every score of "
        f"every run was checked equal to rouge-score's (exact floats): {checked:,} scores "
        "per repeat and scorer.\n\n"
        + header
        + "\n".join(rows)
        + "\n\nTargets (fresh run): "
        + "; ".join(verdicts)
        + ".\n"
    )
    if args.no_write:
        sys.stdout.write(body)
    else:
        write_section("rouge", "python bench/bench_rouge.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
