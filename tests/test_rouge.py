"""promptlib.evals._rouge must give exactly the scores of rouge-score (0.1.2).

rouge-score is the oracle: every comparison is exact float equality of precision, recall
and fmeasure, for rouge1, rouge2, rougeL and rougeLsum, with and without stemming. The
real pairs come from the converted datasets in evals/datasets (Bitext responses of one
intent; SciTLDR abstracts and TL;DRs), sampled deterministically to keep the file fast.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from rouge_score import rouge_scorer, tokenizers

from promptlib.evals import _rouge
from promptlib.evals._rouge import RougeScorer, Score

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "evals" / "datasets"
TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
STEMMING = pytest.mark.parametrize("stem", [False, True], ids=["plain", "stemmed"])

# How many real pairs each source contributes (per stemming setting).
BITEXT_PAIRS = 600
ABSTRACT_TLDR_PAIRS = 400
TLDR_TLDR_PAIRS = 400

Pair = tuple[str, str]


@cache
def reference(stem: bool, types: tuple[str, ...] = TYPES) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(types), use_stemmer=stem)


@cache
def ours(stem: bool, types: tuple[str, ...] = TYPES) -> RougeScorer:
    return RougeScorer(types, use_stemmer=stem)


def mismatches(
    pairs: Sequence[Pair], stem: bool, types: tuple[str, ...] = TYPES
) -> list[tuple[int, str, Any, Score]]:
    """Every (pair index, type, rouge-score's Score, ours) that is not exactly equal."""
    expected_scorer, scorer = reference(stem, types), ours(stem, types)
    bad = []
    for index, (target, prediction) in enumerate(pairs):
        expected = expected_scorer.score(target, prediction)
        got = scorer.score(target, prediction)
        assert set(got) == set(expected)
        for rouge_type in types:
            if tuple(got[rouge_type]) != tuple(expected[rouge_type]):
                bad.append((index, rouge_type, expected[rouge_type], got[rouge_type]))
    return bad


# ----------------------------------------------------------------------------- edge cases

EDGE_CASES: list[tuple[str, str, str]] = [
    ("both empty", "", ""),
    ("empty target", "", "the cat sat"),
    ("empty prediction", "the cat sat", ""),
    ("no tokens in target", "!!! ... ???", "the cat"),
    ("no tokens in prediction", "the cat", "-- , ; :"),
    ("no tokens either side", "¿¡", "…"),
    ("single token, equal", "cat", "cat"),
    ("single token, different", "cat", "dog"),
    ("single token vs many", "cat", "the cat sat on the cat"),
    ("identical", "the quick brown fox", "the quick brown fox"),
    ("repeated tokens", "a a a a a", "a a"),
    ("repeated pattern", "a b a b a b a", "b a b a b a b"),
    ("reversed", "one two three four five", "five four three two one"),
    ("swap ties", "a b", "b a"),
    ("non-ascii dropped", "Café naïve résumé", "cafe naive resume"),
    ("cjk only", "日本語のテキスト", "日本語"),
    ("dotted capital I lowers to i", "İstanbul İzmir", "i stanbul"),
    ("kelvin sign lowers to k", "5 \u212a", "5 k"),
    ("greek final sigma across lines", "ΟΔΟΣ\nΟΔΟΣ a", "οδος a"),  # noqa: RUF001
    ("numbers", "3.14 is pi, 1,000 > 999; 2nd place", "pi 3 14 1 000 2nd"),
    ("alphanumeric", "abc123 x86_64 ipv6", "abc123 x86 64 ipv6"),
    ("uppercase", "THE CAT SAT", "the cat sat"),
    ("stemming words", "running runs runner ran", "run running ran runs"),
    ("short words not stemmed", "was has its bus", "wa ha it bu"),
    ("suffixes", "generalization generalize general", "generalizations generalized"),
    ("newlines", "a b\nc d\ne f", "c d\na b"),
    ("blank lines", "a b\n\n\nc d\n", "\n\na b c d\n\n"),
    ("only newlines", "\n\n\n", "\n"),
    ("whitespace-only lines", " \n \t \n", "a\n \nb"),
    ("punctuation-only line", "a b\n!!!\nc", "a\n...\nb c"),
    ("crlf", "line one\r\nline two\r\n", "line two\r\nline one"),
    ("unicode line separator is not a newline", "a b\u2028c d", "c d\na b"),
    ("tabs and form feeds", "a\tb\x0bc\x0cd", "a b c d"),
    ("one line vs many", "a b c d e f", "a b\nc d\ne f"),
    ("many vs one line", "a b\nc d\ne f", "a b c d e f"),
    ("same token in every line", "x a\nx b\nx c", "x\nx\nx x"),
    ("union over candidate lines", "a b c d", "a b\nc d\nb c"),
    ("double counting capped", "a a\na a", "a\na"),
    (
        "long repetitive",
        " ".join(["the cat the dog"] * 30),
        " ".join(["dog the cat"] * 35),
    ),
    (
        "long lines over 64 tokens",
        "\n".join(" ".join(f"w{(i * j) % 7}" for i in range(90)) for j in range(1, 4)),
        "\n".join(" ".join(f"w{(i + j) % 5}" for i in range(80)) for j in range(3)),
    ),
]


@STEMMING
@pytest.mark.parametrize(
    ("target", "prediction"),
    [case[1:] for case in EDGE_CASES],
    ids=[case[0] for case in EDGE_CASES],
)
def test_edge_cases_match_rouge_score(target: str, prediction: str, stem: bool) -> None:
    assert mismatches([(target, prediction), (prediction, target)], stem) == []
    scores = ours(stem).score(target, prediction)
    assert all(isinstance(value, float) for score in scores.values() for value in score)


@pytest.mark.parametrize(
    ("target", "prediction", "rouge_type", "expected"),
    [
        ("", "", "rouge1", Score(0.0, 0.0, 0.0)),
        ("", "", "rougeL", Score(0.0, 0.0, 0.0)),
        ("", "", "rougeLsum", Score(0.0, 0.0, 0.0)),
        ("a", "a", "rouge2", Score(0.0, 0.0, 0.0)),
        ("a", "a", "rougeLsum", Score(1.0, 1.0, 1.0)),
        ("a b", "b a", "rougeL", Score(0.5, 0.5, 0.5)),
        ("a b c d", "a b\nc d\nb c", "rougeLsum", Score(4 / 6, 1.0, 0.8)),
        ("a a\na a", "a\na", "rougeLsum", Score(1.0, 0.5, 2 / 3)),
    ],
)
def test_known_values(target: str, prediction: str, rouge_type: str, expected: Score) -> None:
    assert ours(False).score(target, prediction)[rouge_type] == pytest.approx(expected)


# ------------------------------------------------------------------------------ the API


@pytest.mark.parametrize(
    ("types", "error"),
    [
        (["rouge1", "rougeL"], None),
        (["rouge9", "rougeLsum", "rouge2"], None),
        ([], None),
        (["rouge0"], ValueError),
        (["rouge10"], ValueError),
        (["rougel"], ValueError),
        (["Rouge1"], ValueError),
        (["rouge1\n"], ValueError),
        (["rougeLSum"], ValueError),
        ("rouge1", TypeError),
    ],
)
def test_rouge_types(types: Sequence[str], error: type[Exception] | None) -> None:
    if error is None:
        scorer = RougeScorer(types)
        assert tuple(scorer.score("a b", "a c")) == tuple(types)
    else:
        with pytest.raises(error):
            RougeScorer(types)


def test_only_requested_types_in_given_order() -> None:
    scores = RougeScorer(["rougeLsum", "rouge3", "rouge1"]).score("a b c d", "a b c")
    assert list(scores) == ["rougeLsum", "rouge3", "rouge1"]
    assert scores["rouge3"] == Score(1.0, 0.5, 2 / 3)


@STEMMING
@pytest.mark.parametrize(
    ("targets", "prediction"),
    [
        (["the cat sat", "a dog ran"], "the cat ran"),
        (["same text", "same text"], "same text"),
        (["x y", "y x", "x"], "x y"),
        (["", "b"], "a"),
        ([""], ""),
        (["a b\nc d", "c d a b", "a\nb\nc\nd"], "b a\nd c"),
    ],
)
def test_score_multi_matches_rouge_score(targets: list[str], prediction: str, stem: bool) -> None:
    expected = reference(stem).score_multi(targets, prediction)
    got = ours(stem).score_multi(targets, prediction)
    assert {k: tuple(v) for k, v in got.items()} == {k: tuple(v) for k, v in expected.items()}


def test_score_multi_picks_the_first_best_target() -> None:
    scorer = RougeScorer(["rouge1"])
    # Both targets give the same fmeasure, with precision and recall swapped.
    first, second = scorer.score("a", "a d")["rouge1"], scorer.score("a d x y", "a d")["rouge1"]
    assert first.fmeasure == second.fmeasure
    assert first != second
    assert scorer.score_multi(["a", "a d x y"], "a d")["rouge1"] == first
    assert scorer.score_multi(["a d x y", "a"], "a d")["rouge1"] == second


def test_score_multi_needs_a_target() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        RougeScorer(["rouge1"]).score_multi([], "a")
    assert RougeScorer([]).score_multi([], "a") == {}
    with pytest.raises(TypeError):
        RougeScorer(["rouge1"]).score_multi("a b", "a")


def test_reference_is_tokenised_once() -> None:
    _rouge.clear_caches()
    analyzer = _rouge._analyzer(True)
    stemmed: list[str] = []
    real_stem = analyzer._stem
    assert real_stem is not None

    def counting_stem(word: str) -> str:
        stemmed.append(word)
        return real_stem(word)

    analyzer._stem = counting_stem
    try:
        scorer = RougeScorer(TYPES, use_stemmer=True)
        reference_text = "Running the numbers again\nrunning quickly"
        for i in range(5):
            scorer.score(reference_text, f"prediction number {i} is running")
        info = analyzer.doc.cache_info()  # type: ignore[attr-defined]
        assert (info.misses, info.hits) == (6, 4)
        # Each distinct long word went through the stemmer exactly once.
        assert sorted(stemmed) == sorted(set(stemmed))
        assert stemmed.count("running") == 1
    finally:
        analyzer._stem = real_stem
        _rouge.clear_caches()


# --------------------------------------------------------------------------- tokenising


def _random_unicode_text(rng: random.Random) -> str:
    alphabet = "aAbBzZ09 \n\t\r.,-'’éÉßİıΣσςΟΔ\u212a\u2028日本\u0307"  # noqa: RUF001
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


@STEMMING
def test_tokens_and_lines_match_rouge_score_tokenizer(stem: bool) -> None:
    tokenizer = tokenizers.DefaultTokenizer(use_stemmer=stem)
    rng = random.Random(20240601)
    texts = [case[1] for case in EDGE_CASES] + [case[2] for case in EDGE_CASES]
    texts += [_random_unicode_text(rng) for _ in range(500)]
    analyzer = _rouge._analyzer(stem)
    for text in texts:
        doc = analyzer.doc(text)
        assert doc.tokens == tuple(tokenizer.tokenize(text)), text
        lines = [tuple(tokenizer.tokenize(line)) for line in text.split("\n") if line]
        assert doc.lines() == tuple(line for line in lines if line), text


# ------------------------------------------------------------------------------ random


def _random_text(rng: random.Random, vocabulary: Sequence[str], max_tokens: int) -> str:
    parts = []
    for _ in range(rng.randint(0, max_tokens)):
        roll = rng.random()
        if roll < 0.1:
            parts.append("\n")
        elif roll < 0.13:
            parts.append(rng.choice(["!", "--", "\n\n", "É"]))
        else:
            parts.append(rng.choice(vocabulary))
    return " ".join(parts)


VOCABULARY = ["a", "b", "c", "d", "x1", "running", "runs", "run", "generously", "the"]


@STEMMING
@pytest.mark.parametrize("seed", range(4))
def test_random_small_vocabulary_matches_rouge_score(seed: int, stem: bool) -> None:
    rng = random.Random(seed)
    pairs = []
    for _ in range(400):
        vocabulary = VOCABULARY[: rng.randint(1, len(VOCABULARY))]
        pairs.append((_random_text(rng, vocabulary, 40), _random_text(rng, vocabulary, 40)))
    types = (*TYPES, "rouge3")
    assert mismatches(pairs, stem, types) == []


def _union_positions(
    ref: _rouge._LsumRef, lines: Sequence[tuple[str, ...]], hits: int
) -> list[set[int]]:
    """Decode the reversed hit bits of _summary_lcs into per-line token positions."""
    width = 8 * ref.nbytes
    positions: list[set[int]] = []
    bit = 1
    for line in lines:
        found = set()
        for k in range(len(line)):
            if hits >> (width - 1 - bit) & 1:
                found.add(k)
            bit += 1
        bit += 1
        positions.append(found)
    return positions


@pytest.mark.parametrize("seed", range(3))
def test_union_lcs_positions_match_rouge_score_backtrack(seed: int) -> None:
    """The exact positions, not just the counts, of rouge-score's union LCS."""
    rng = random.Random(1000 + seed)
    for _ in range(700):
        size = rng.randint(1, 5)
        longest = rng.choice([4, 12, 80])
        ref_lines = [
            tuple(str(rng.randrange(size)) for _ in range(rng.randint(1, longest)))
            for _ in range(rng.randint(1, 5))
        ]
        # Candidates also use tokens that the reference lacks, in runs.
        candidate_lines = [
            tuple(str(rng.randrange(size + 2)) for _ in range(rng.randint(1, longest)))
            for _ in range(rng.randint(1, 4))
        ]
        ref = _rouge._LsumRef(ref_lines)
        got = _union_positions(ref, ref_lines, _rouge._summary_lcs(ref, candidate_lines))
        expected = [
            set(rouge_scorer._find_union([rouge_scorer.lcs_ind(r, c) for c in candidate_lines]))
            for r in ref_lines
        ]
        assert got == expected, (ref_lines, candidate_lines)


@pytest.mark.parametrize("seed", range(3))
def test_lcs_length_matches_rouge_score_table(seed: int) -> None:
    rng = random.Random(2000 + seed)
    analyzer = _rouge._analyzer(False)
    for _ in range(60):
        size = rng.randint(1, 4)
        a = " ".join(str(rng.randrange(size)) for _ in range(rng.randint(1, 200)))
        b = " ".join(str(rng.randrange(size)) for _ in range(rng.randint(1, 200)))
        expected = rouge_scorer._lcs_table(a.split(), b.split())[-1][-1]
        assert _rouge._lcs(analyzer.doc(a), analyzer.doc(b)) == expected


# ---------------------------------------------------------------------------- real data


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _spread(items: Sequence[Pair], count: int) -> list[Pair]:
    """``count`` items evenly spread over ``items`` (all of them if there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


@cache
def bitext_pairs() -> list[Pair]:
    """Responses of different rows of the same intent (they contain newlines)."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in _read_jsonl(DATASETS / "bitext" / "test.jsonl"):
        by_intent[row["intent"]].append(row["response"])
    pairs = [
        (responses[i], responses[i + offset])
        for _, responses in sorted(by_intent.items())
        for offset in (1, 2)
        for i in range(len(responses) - offset)
    ]
    return _spread(pairs, BITEXT_PAIRS)


@cache
def scitldr_pairs() -> tuple[list[Pair], list[Pair]]:
    """(abstract, TL;DR) for each TL;DR, and (TL;DR, other TL;DR) of the same paper."""
    abstract_pairs: list[Pair] = []
    tldr_pairs: list[Pair] = []
    for row in _read_jsonl(DATASETS / "scitldr" / "test.jsonl"):
        tldrs = row["tldrs"]
        abstract_pairs.extend((row["abstract"], tldr) for tldr in tldrs)
        tldr_pairs.extend(
            (tldrs[i], tldrs[j]) for i in range(len(tldrs)) for j in range(len(tldrs)) if i != j
        )
    return (
        _spread(abstract_pairs, ABSTRACT_TLDR_PAIRS),
        _spread(tldr_pairs, TLDR_TLDR_PAIRS),
    )


def real_pairs(source: str) -> list[Pair]:
    if source == "bitext":
        return bitext_pairs()
    abstract_pairs, tldr_pairs = scitldr_pairs()
    return abstract_pairs if source == "scitldr abstract-tldr" else tldr_pairs


def test_at_least_a_thousand_real_pairs() -> None:
    sources = ("bitext", "scitldr abstract-tldr", "scitldr tldr-tldr")
    counts = {source: len(real_pairs(source)) for source in sources}
    assert counts == {
        "bitext": BITEXT_PAIRS,
        "scitldr abstract-tldr": ABSTRACT_TLDR_PAIRS,
        "scitldr tldr-tldr": TLDR_TLDR_PAIRS,
    }
    assert sum(counts.values()) >= 1000
    # rougeLsum is only exercised if the texts really have several lines.
    assert sum("\n" in target for target, _ in bitext_pairs()) > BITEXT_PAIRS // 2


@STEMMING
@pytest.mark.parametrize("source", ["bitext", "scitldr abstract-tldr", "scitldr tldr-tldr"])
def test_real_pairs_match_rouge_score(source: str, stem: bool) -> None:
    pairs = real_pairs(source)
    assert mismatches(pairs, stem) == []


@STEMMING
def test_real_score_multi_matches_rouge_score(stem: bool) -> None:
    rows = list(_read_jsonl(DATASETS / "scitldr" / "test.jsonl"))[::6]
    for row in rows:
        expected = reference(stem).score_multi(row["tldrs"], row["title"])
        got = ours(stem).score_multi(row["tldrs"], row["title"])
        assert {k: tuple(v) for k, v in got.items()} == {k: tuple(v) for k, v in expected.items()}
