"""Fast ROUGE scores that are bit-for-bit identical to the ``rouge-score`` package.

Contract
--------
For every ``rouge_types`` drawn from ``rouge1`` ... ``rouge9``, ``rougeL`` and ``rougeLsum``,
every ``use_stemmer`` and every pair of strings::

    RougeScorer(types, use_stemmer=s).score(target, prediction)[t]
    == rouge_score.rouge_scorer.RougeScorer(types, use_stemmer=s).score(target, prediction)[t]

holds with exact float equality of precision, recall and fmeasure (the figures are the
same integer ratios, and the F-measure is evaluated with the same expression in the same
order). ``score_multi`` picks, for each type, the first target with the highest fmeasure,
as ``rouge-score``'s ``np.argmax`` does. The only differences are outside the scores:

* Every field of every :class:`Score` is a ``float``; ``rouge-score`` returns the ints
  ``0`` (which compare equal to ``0.0``) when rougeL or rougeLsum has nothing to compare.
* An unknown rouge type raises :class:`ValueError` when the scorer is built, not on the
  first call to ``score``.

How it gets its speed
---------------------
* Tokenisation follows ``rouge_score.tokenize.tokenize`` (lower-case, keep maximal runs of
  ``[a-z0-9]``, Porter-stem tokens longer than three characters with the same NLTK
  ``PorterStemmer`` in its default mode, drop stems that are not ``^[a-z0-9]+$``), but
  every text's tokens and every token's stem are cached, and so are the per-text
  structures built from them (n-gram counts, bit masks). Scoring one reference against many
  predictions analyses the reference once.
* rougeL uses the bit-parallel LCS-length recurrence of Allison and Dix in Hyyrö's form,
  with a Python ``int`` as the bit vector: one step per token of the shorter text.
* rougeLsum needs more than LCS lengths: ``rouge-score`` takes, for each reference line,
  the union over prediction lines of the token positions on *the* LCS that its backtrack
  reads out of the DP table (it steps diagonally on a match, else left only when the cell
  to the left is strictly greater than the one above, else up). Here all reference lines
  are packed side by side into one bit vector, separated by guard bits, so a single
  bit-parallel pass per prediction line fills the DP columns of every (reference line,
  prediction line) pair at once. The backtrack is then replayed for every reference line
  at once, one prediction token at a time, with a handful of integer operations that find
  in each line the first row at which the path stops going up (see ``_summary_lcs``).
  Hits are then counted against the token multisets exactly as ``rouge-score`` does. When
  both texts have a single line with tokens, rougeLsum equals the LCS length and is
  computed as for rougeL.

Not supported: ``rouge-score``'s ``split_summaries`` (NLTK sentence splitting for
rougeLsum) and custom tokenizers. Caches are bounded (LRU for texts, a size cap for
stems) and shared by every scorer with the same ``use_stemmer``; cached structures are
built whole before they are stored and only read afterwards, so scorers may be used from
several threads. This module imports nothing else from promptlib; NLTK is imported only
when a scorer with ``use_stemmer=True`` is built.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from typing import NamedTuple, TypeVar

__all__ = ["RougeScorer", "Score", "clear_caches"]

# rouge-score lower-cases, replaces every run of characters outside [a-z0-9] by a space and
# splits on whitespace. What survives is exactly the maximal runs of [a-z0-9] (plus empty
# strings at the ends, which its final validity check drops), so one findall is equivalent.
_TOKEN_RE = re.compile(r"[a-z0-9]+")
# rouge-score's final check, applied to stems; kept as the same pattern (with its `$`) on
# purpose.
_VALID_TOKEN_RE = re.compile(r"^[a-z0-9]+$")
_NGRAM_TYPE_RE = re.compile(r"rouge([1-9])")

_TOKEN_CACHE_SIZE = 1 << 15
_DOC_CACHE_SIZE = 1 << 13
_STEM_CACHE_LIMIT = 1 << 20

# _BIT_REVERSE[b] is the byte b with its eight bits in reverse order.
_BIT_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))

Tokens = tuple[str, ...]
_Gram = TypeVar("_Gram", str, Tokens)


class Score(NamedTuple):
    """Precision, recall and F-measure of one rouge type for one (target, prediction)."""

    precision: float
    recall: float
    fmeasure: float


_ZERO = Score(0.0, 0.0, 0.0)


def _fmeasure(precision: float, recall: float) -> float:
    # The same expression, evaluated in the same order, as rouge_score.scoring.fmeasure.
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _ratio_score(hits: int, target_len: int, prediction_len: int) -> Score:
    precision = hits / prediction_len
    recall = hits / target_len
    return Score(precision, recall, _fmeasure(precision, recall))


# --------------------------------------------------------------------------- tokenising


def _load_stemmer() -> Callable[[str], str]:
    try:
        from nltk.stem import porter  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ROUGE with use_stemmer=True needs NLTK's Porter stemmer: install the 'nltk' "
            "package (pip install nltk), or score with use_stemmer=False."
        ) from exc
    # The same class in its default (NLTK_EXTENSIONS) mode, as rouge-score builds it.
    stem: Callable[[str], str] = porter.PorterStemmer().stem
    return stem


class _Doc:
    """One text as the scorer sees it, with the structures built from it on demand.

    Instances are shared through a cache, so nothing here may depend on the other side of
    a comparison; everything is computed once per text and then only read.
    """

    __slots__ = ("_lines", "_lsum_ref", "_masks", "_ngrams", "_unigrams", "tokens")

    def __init__(self, tokens: Tokens, lines: tuple[Tokens, ...] | None) -> None:
        """Build from the text's tokens and, if it has several lines, those of each line."""
        self.tokens = tokens
        self._lines = lines
        self._unigrams: Counter[str] | None = None
        self._ngrams: dict[int, Counter[Tokens]] = {}
        self._masks: dict[str, int] | None = None
        self._lsum_ref: _LsumRef | None = None

    def lines(self) -> tuple[Tokens, ...]:
        """Tokens of each line that has any, as rougeLsum splits the text.

        rouge-score also keeps the non-empty lines without tokens; they add nothing to any
        count, so they are left out here.
        """
        lines = self._lines
        if lines is None:
            lines = self._lines = (self.tokens,) if self.tokens else ()
        return lines

    def unigrams(self) -> Counter[str]:
        """Counts of the tokens."""
        counts = self._unigrams
        if counts is None:
            counts = self._unigrams = Counter(self.tokens)
        return counts

    def ngrams(self, n: int) -> Counter[Tokens]:
        """Counts of the n-grams (n >= 2) of the text."""
        counts = self._ngrams.get(n)
        if counts is None:
            tokens = self.tokens
            counts = Counter(zip(*(tokens[i:] for i in range(n)), strict=False))
            self._ngrams[n] = counts
        return counts

    def masks(self) -> dict[str, int]:
        """Token -> bit mask of the positions where it occurs (bit i is token i)."""
        masks = self._masks
        if masks is None:
            masks = {}
            bit = 1
            for token in self.tokens:
                masks[token] = masks.get(token, 0) | bit
                bit <<= 1
            self._masks = masks
        return masks

    def lsum_ref(self) -> _LsumRef:
        """The packed bit layout of the lines, for use as the rougeLsum reference."""
        ref = self._lsum_ref
        if ref is None:
            ref = self._lsum_ref = _LsumRef(self.lines())
        return ref


class _Analyzer:
    """Cached tokeniser (and stemmer) for one ``use_stemmer`` setting.

    A text with newlines is tokenised line by line (each line through the same cache, so
    lines repeated across texts are tokenised once), and its tokens are those of its lines
    one after the other. rouge-score tokenises the whole text for rouge-N and rougeL and
    each line for rougeLsum; the two agree because tokens never span a newline and
    ``str.lower`` never looks across one (its only context rule, for a final Greek sigma,
    stops at a newline).
    """

    def __init__(self, use_stemmer: bool) -> None:
        self._stem: Callable[[str], str] | None = _load_stemmer() if use_stemmer else None
        # word -> what rouge-score turns it into: its stem, the word itself when it is too
        # short to stem, or "" when the stem fails rouge-score's validity check.
        self._stems: dict[str, str] = {}
        self.tokens: Callable[[str], Tokens] = lru_cache(maxsize=_TOKEN_CACHE_SIZE)(self._tokenize)
        self.doc: Callable[[str], _Doc] = lru_cache(maxsize=_DOC_CACHE_SIZE)(self._make_doc)

    def _make_doc(self, text: str) -> _Doc:
        if "\n" not in text:
            return _Doc(self.tokens(text), None)
        tokenize = self.tokens
        lines = tuple(tokens for tokens in map(tokenize, text.split("\n")) if tokens)
        return _Doc(tuple(chain.from_iterable(lines)), lines)

    def _tokenize(self, text: str) -> Tokens:
        """rouge-score's tokens of ``text``."""
        words: list[str] = _TOKEN_RE.findall(text.lower())
        if self._stem is None:
            return tuple(words)
        stems = self._stems
        out: list[str | None] = list(map(stems.get, words))
        if None in out:
            for i, stemmed in enumerate(out):
                if stemmed is None:
                    out[i] = self._stem_new(words[i])
        if "" in out:
            out = [token for token in out if token]
        return tuple(out)  # type: ignore[arg-type]

    def _stem_new(self, word: str) -> str:
        stems = self._stems
        stemmed = stems.get(word)
        if stemmed is None:
            assert self._stem is not None
            # rouge-score stems only words longer than three characters, then drops any
            # result that is not a plain [a-z0-9] token.
            if len(word) > 3:
                stemmed = self._stem(word)
                if not _VALID_TOKEN_RE.match(stemmed):
                    stemmed = ""
            else:
                stemmed = word
            if len(stems) >= _STEM_CACHE_LIMIT:
                stems.clear()
            stems[word] = stemmed
        return stemmed

    def clear(self) -> None:
        self._stems.clear()
        self.tokens.cache_clear()  # type: ignore[attr-defined]
        self.doc.cache_clear()  # type: ignore[attr-defined]


_ANALYZERS: dict[bool, _Analyzer] = {}


def _analyzer(use_stemmer: bool) -> _Analyzer:
    analyzer = _ANALYZERS.get(use_stemmer)
    if analyzer is None:
        analyzer = _ANALYZERS[use_stemmer] = _Analyzer(use_stemmer)
    return analyzer


def clear_caches() -> None:
    """Forget every cached tokenisation, stem and per-text structure (for benchmarks)."""
    for analyzer in _ANALYZERS.values():
        analyzer.clear()


# ------------------------------------------------------------------------------ rouge-N


def _overlap(a: Counter[_Gram], b: Counter[_Gram]) -> int:
    """Size of the multiset intersection of two counters."""
    if len(a) > len(b):
        a, b = b, a
    get = b.get
    overlap = 0
    for gram, count in a.items():
        other = get(gram, 0)
        overlap += count if count < other else other
    return overlap


def _score_ngrams(target: _Doc, prediction: _Doc, n: int) -> Score:
    if n == 1:
        overlap = _overlap(target.unigrams(), prediction.unigrams())
    else:
        overlap = _overlap(target.ngrams(n), prediction.ngrams(n))
    # Like rouge-score: zero n-grams on a side divide by one, not by zero.
    precision = overlap / max(len(prediction.tokens) - n + 1, 1)
    recall = overlap / max(len(target.tokens) - n + 1, 1)
    return Score(precision, recall, _fmeasure(precision, recall))


# ------------------------------------------------------------------------------- rougeL


def _lcs_length(masks: dict[str, int], length: int, other: Tokens) -> int:
    """Length of the LCS of a sequence (given by its position masks) and ``other``.

    Allison-Dix / Hyyrö: bit i of ``v`` is 0 exactly where the DP column steps up between
    rows i and i + 1, so the LCS length is the number of zero bits among the low
    ``length`` bits after the last column.
    """
    full = (1 << length) - 1
    v = full
    get = masks.get
    for token in other:
        mask = get(token)
        if mask:
            u = v & mask
            v = ((v + u) | (v - u)) & full
    return length - v.bit_count()


def _lcs(target: _Doc, prediction: _Doc) -> int:
    m = len(target.tokens)
    n = len(prediction.tokens)
    # LCS length is symmetric: put the longer text in the bit vector and loop over the
    # shorter one.
    if m >= n:
        return _lcs_length(target.masks(), m, prediction.tokens)
    return _lcs_length(prediction.masks(), n, target.tokens)


def _score_lcs(target: _Doc, prediction: _Doc) -> Score:
    m = len(target.tokens)
    n = len(prediction.tokens)
    if not m or not n:
        return _ZERO
    return _ratio_score(_lcs(target, prediction), m, n)


# ---------------------------------------------------------------------------- rougeLsum


class _LsumRef:
    """Reference lines packed into one bit vector for the summary-level LCS.

    Natural layout, lowest bit first: a guard bit, then for each reference line with
    tokens its tokens (token k of the line at bit start + k), then a guard bit. Guard bits
    are never set in a DP column, so the carries of the bit-parallel LCS stop at them and
    every line gets its own independent column. The backtrack works on the bit-reversed
    image of the layout (``8 * nbytes`` bits wide), where a line's first token is its
    highest bit, its last token its lowest, and a guard sits just above each line.
    """

    __slots__ = (
        "guards",
        "length",
        "masks",
        "nbytes",
        "rev_lasts",
        "rev_masks",
        "rev_rows",
        "rows",
    )

    def __init__(self, lines: Sequence[Tokens]) -> None:
        lines = [line for line in lines if line]
        self.length = sum(map(len, lines))
        width = self.length + len(lines) + 1
        self.nbytes = nbytes = (width + 7) // 8
        top = 8 * nbytes - 1
        masks: dict[str, int] = {}
        rev_masks: dict[str, int] = {}
        masks_get = masks.get
        rev_masks_get = rev_masks.get
        guards = 1
        bit = 2
        rev_bit = 1 << (top - 1)
        for line in lines:
            for token in line:
                masks[token] = masks_get(token, 0) | bit
                rev_masks[token] = rev_masks_get(token, 0) | rev_bit
                bit <<= 1
                rev_bit >>= 1
            guards |= bit
            bit <<= 1
            rev_bit >>= 1
        self.masks = masks
        self.rev_masks = rev_masks
        self.guards = guards
        self.rows = ((1 << width) - 1) ^ guards
        rev_guards = self.reverse(guards)
        self.rev_rows = self.reverse(self.rows)
        # In the reversed image, the bit just above each guard but the top one: the last
        # token of each line.
        self.rev_lasts = (rev_guards << 1) & self.rev_rows

    def reverse(self, value: int) -> int:
        """Bit-reverse ``value`` within ``8 * nbytes`` bits."""
        nbytes = self.nbytes
        return int.from_bytes(value.to_bytes(nbytes, "little").translate(_BIT_REVERSE), "big")


def _summary_lcs(ref: _LsumRef, candidate_lines: Sequence[Tokens]) -> int:
    """Union-LCS hit positions of rouge-score's summary-level LCS, as a reversed bit set.

    For each candidate line, a forward bit-parallel pass fills column j of the DP table of
    every reference line at once. The backtrack then replays rouge-score's walk for every
    reference line at once, from the last column to the first. In column j a line whose
    path is at row i moves up to the first row r < i where either the tokens match (the
    walk records r and steps diagonally to row r) or, with no match, the cell to the left
    is strictly greater than the cell above, which is exactly "bit r of the column is 0"
    (the walk steps left, staying at row r + 1). Call those rows the stops of the column.

    In the reversed image the rows still open in a line are a run of bits that ends just
    below the line's guard, so only the run's lowest bit needs keeping (``lowest``), and
    the first stop is the lowest stop bit at or above it: subtracting ``lowest`` from the
    stops (with every guard bit set) borrows exactly up to that bit, or through the whole
    run into the guard when the line has no stop left, which ends the line's walk.
    """
    masks_get = ref.masks.get
    rev_masks = ref.rev_masks
    rows = ref.rows
    # Every bit of the layout: rows and guards.
    full = rows | ref.guards
    rev_rows = ref.rev_rows
    rev_lasts = ref.rev_lasts
    nbytes = ref.nbytes
    from_bytes = int.from_bytes
    hits = 0
    for line in candidate_lines:
        # stops[k]: for column k (as kept), the matches of its token, the zero bits of the
        # column and the guards; takes[k]: the matches, reversed.
        stops: list[int] = []
        takes: list[int] = []
        v = rows
        unmatched = False
        for token in line:
            mask = masks_get(token)
            if mask:
                u = v & mask
                v = ((v + u) | (v - u)) & rows
                stops.append(mask | (full ^ v))
                takes.append(rev_masks[token])
                unmatched = False
            elif not unmatched:
                # A run of tokens that occur nowhere in the reference leaves the column
                # unchanged, and the walk through such columns stops in the first one it
                # meets at the rows it then stops at in all the others: keep one column.
                stops.append(full ^ v)
                takes.append(0)
                unmatched = True
        if v == rows:
            # No token of the line occurs in the reference: no LCS, no hits.
            continue
        # Bit-reverse every column at once: little-endian bytes, the bits of each byte
        # flipped, then each column's bytes read back big-endian.
        flipped = b"".join([x.to_bytes(nbytes, "little") for x in stops]).translate(_BIT_REVERSE)
        lowest = rev_lasts
        end = len(flipped)
        for take in reversed(takes):
            start = end - nbytes
            stop = from_bytes(flipped[start:end], "big")
            end = start
            first = stop & ~(stop - lowest)
            taken = first & take
            if taken:
                hits |= taken
                lowest = ((taken << 1) | (first ^ taken)) & rev_rows
            else:
                lowest = first & rev_rows
            if not lowest:
                break
    return hits


def _score_lsum(target: _Doc, prediction: _Doc) -> Score:
    # A text's tokens are those of its lines, one after the other (see _Analyzer).
    m = len(target.tokens)
    n = len(prediction.tokens)
    if not m or not n:
        return _ZERO
    if len(target.lines()) == 1 and len(prediction.lines()) == 1:
        # One line with tokens on each side: the union is one LCS of the two texts, and
        # every token on it also occurs on the candidate side at least as often as on the
        # LCS, so the hits are exactly the LCS length, whichever LCS the backtrack picks.
        return _ratio_score(_lcs(target, prediction), m, n)
    ref = target.lsum_ref()
    candidate_lines = prediction.lines()
    hit_bits = _summary_lcs(ref, candidate_lines)
    hits = 0
    if hit_bits:
        # rouge-score walks the union tokens and counts one hit while both the reference
        # and the candidate still have an unused occurrence of the token. The union never
        # holds more occurrences of a token than the reference, so per token that is
        # min(occurrences in the union, occurrences in the candidate).
        # The candidate's tokens are those of its lines, one after the other.
        candidate_counts = prediction.unigrams()
        rev_masks = ref.rev_masks
        for token, count in candidate_counts.items():
            mask = rev_masks.get(token)
            if mask is not None:
                union = (hit_bits & mask).bit_count()
                hits += union if union < count else count
    return _ratio_score(hits, m, n)


# ------------------------------------------------------------------------------- scorer


class RougeScorer:
    """Drop-in, faster ``rouge_score.rouge_scorer.RougeScorer`` with identical scores.

    ``rouge_types`` may contain ``rouge1`` ... ``rouge9``, ``rougeL`` (LCS over the whole
    text) and ``rougeLsum`` (summary-level LCS over newline-separated lines). With
    ``use_stemmer=True`` tokens longer than three characters are Porter-stemmed (NLTK),
    as in ``rouge-score``. Caches are shared by all scorers with the same ``use_stemmer``.
    """

    def __init__(self, rouge_types: Sequence[str], use_stemmer: bool = False) -> None:
        """Check the rouge types and set up the (shared) tokeniser.

        Raises:
            ValueError: a rouge type is not one of rouge1-rouge9, rougeL, rougeLsum.
        """
        if isinstance(rouge_types, str):
            raise TypeError("rouge_types must be a sequence of type names, not a string")
        for rouge_type in rouge_types:
            if rouge_type not in ("rougeL", "rougeLsum") and not _NGRAM_TYPE_RE.fullmatch(
                rouge_type
            ):
                raise ValueError(
                    f"invalid rouge type {rouge_type!r}: use rouge1 ... rouge9, rougeL or rougeLsum"
                )
        self.rouge_types: tuple[str, ...] = tuple(rouge_types)
        self.use_stemmer = use_stemmer
        self._analyzer = _analyzer(use_stemmer)

    def score(self, target: str, prediction: str) -> dict[str, Score]:
        """Score ``prediction`` against ``target`` for every configured rouge type.

        Returns a dict keyed by rouge type, equal (exact floats) to what
        ``rouge_score``'s ``RougeScorer.score(target, prediction)`` returns.
        """
        doc = self._analyzer.doc
        target_doc = doc(target)
        prediction_doc = doc(prediction)
        result: dict[str, Score] = {}
        for rouge_type in self.rouge_types:
            if rouge_type == "rougeL":
                result[rouge_type] = _score_lcs(target_doc, prediction_doc)
            elif rouge_type == "rougeLsum":
                result[rouge_type] = _score_lsum(target_doc, prediction_doc)
            else:
                result[rouge_type] = _score_ngrams(target_doc, prediction_doc, int(rouge_type[5:]))
        return result

    def score_multi(self, targets: Sequence[str], prediction: str) -> dict[str, Score]:
        """For each rouge type, the Score against the target with the highest fmeasure.

        Ties go to the earliest target, as with ``np.argmax`` in ``rouge-score``.

        Raises:
            ValueError: ``targets`` is empty (and there is at least one rouge type).
        """
        if isinstance(targets, str):
            raise TypeError("targets must be a sequence of strings, not a string")
        if not targets and self.rouge_types:
            raise ValueError("score_multi needs at least one target")
        scores = [self.score(target, prediction) for target in targets]
        best: dict[str, Score] = {}
        for rouge_type in self.rouge_types:
            top = scores[0][rouge_type]
            for candidate in scores[1:]:
                score = candidate[rouge_type]
                if score.fmeasure > top.fmeasure:
                    top = score
            best[rouge_type] = top
        return best
