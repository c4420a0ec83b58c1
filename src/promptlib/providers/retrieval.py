"""``retrieval``: the offline default provider, a deterministic non-LLM baseline.

It answers only from the rendered prompt's own content, with BM25 (the ``bm25s`` library,
Lucene variant), so ``promptlib eval`` runs on any machine without a key or a network, and
the same request gets the same answer everywhere. Its scores are a floor that a real
model should beat, and its fingerprint (``type: retrieval``, no model) keeps them apart
from any LLM's. docs/retrieval.md is the user-facing description; this is the contract.

Query (every mode)
    The last message must be a ``user`` message. Its *tagged sections* are the
    ``<name>...</name>`` spans in it (name: a letter, then letters, digits, ``_ . -``;
    the tags may sit on their own lines or inline; nested tags belong to the outer
    section). With one section the query is its inner text; with several, the inner
    texts of all of them (in order); with none, the whole message. The same rule gives the
    *tagged text* of a few-shot user turn. A *few-shot pair* is a ``user`` message
    immediately followed by an ``assistant`` message, before the last message.

``label`` output
    Each label gets a document: the label's own words, every line (of every message
    before the last, and of the last message outside its sections) that contains the
    label as a whole token (case-sensitive, not part of a longer ``\\w`` run, so
    ``card`` does not match ``card_arrival``), and the tagged text of every few-shot user
    turn whose assistant answer is exactly the label (after stripping whitespace). The
    answer is the label whose document scores highest against the query; ties, and a
    query that matches nothing, give the label listed first.

``text`` or ``json`` output with few-shot pairs
    The answer is the assistant message (verbatim) of the pair whose user turn's tagged
    text best matches the query; ties give the earliest pair.

``text`` output without few-shot pairs (extractive)
    The document is the largest tagged section of the last message (by characters, the
    first on a tie). The query is the rest of that message: the inner text of its other
    sections, and the values of the *field lines* outside the tags (``Title: ...``,
    ``Question: ...``: a name of one to three words, a colon, a value). Other text outside
    the tags is instructions ("Summarize the whole meeting.", a template prompt's rules)
    and is not part of the query. The document is cut into units: its non-empty lines
    when more than half of them look like transcript turns (``Speaker: text``), else its
    sentences (split after ``.``, ``!`` or ``?`` followed by whitespace; the text is
    otherwise kept as it is). Units are ranked by score (ties: the earlier unit) and taken
    in rank order until the next one would take the answer past
    ``floor(0.75 * max_tokens)`` words (one unit when ``max_tokens`` is not set; always at
    least one, however long), then joined in document order with a space (sentences) or
    a newline (lines). A query without tokens scores every unit 0, which selects the lead.

Anything else (``json`` without few-shot pairs, a last message that is not ``user``, an
extractive prompt with no tagged section) is a non-retryable ``ProviderError``.

Tokens: lower-cased maximal runs of Unicode letters and digits (``_`` and punctuation
split), minus the English stop words that ``bm25s`` uses for ``stopwords="en"``
(``bm25s.stopwords.STOPWORDS_EN_PLUS``); no stemming. BM25 runs with ``method="lucene"``,
the configured ``k1`` and ``b``, float64 scores and a vocabulary numbered in sorted token
order, so nothing depends on hash seeds or set order.

Speed: an index is built on first use from everything but the query (for labels and
few-shot pairs, the prompt's fixed part, shared by every row; for extraction, the row's
document) and kept in a small LRU keyed by a sha256 of it. A call with a cached index only
parses the last message, hashes the context, tokenises the query and sums BM25 weights.

``ALGORITHM`` is in the fingerprint: bump it whenever any rule above, the tokeniser, the
stop words, the unit splitting or the selection changes, so old ledger results are not reused.
The installed bm25s version is not in it (it is recorded with each run as provenance):
tests pin the answers, so an upgrade that changed them would fail there, not silently
invalidate every recorded run.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar, cast

from .._canonical import sha256_of
from ..errors import ConfigError, MissingDependencyError, ProviderError
from ..library.messages import Message
from .contract import Provider, Request, Response

try:
    import bm25s  # type: ignore[import-untyped]
    import numpy as np
    from bm25s.stopwords import STOPWORDS_EN_PLUS  # type: ignore[import-untyped]
    from numpy.typing import NDArray
except ImportError as exc:  # pragma: no cover - bm25s is a core dependency
    raise MissingDependencyError(
        "the retrieval provider needs the 'bm25s' package (with numpy); "
        "reinstall promptlib, or `pip install bm25s`"
    ) from exc

__all__ = ["ALGORITHM", "RetrievalProvider", "tokenize"]

ALGORITHM = "bm25-lucene/1"
_DEFAULTS = {"k1": 1.5, "b": 0.75}
_CACHE_SIZE = 64
_BUDGET_RATIO = 0.75

_BM25S_VERSION = metadata.version("bm25s")
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)
_WORD = re.compile(r"[^\W_]+")
_SECTION = re.compile(r"<([A-Za-z][\w.-]*)>(.*?)</\1>", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A transcript turn: a short speaker name that starts with a letter, a colon, then speech.
_TURN = re.compile(r"^\s*[^\W\d_][^:\n]{0,40}:\s+\S")
# A labelled field outside the tags, such as "Title: ..." or "Question: ...": a name of one
# to three words, a colon, then the value. Instructions ("Summarize the whole meeting.")
# are not fields, so they never become part of an extractive query.
_FIELD = re.compile(r"^\s*[^\W\d_][\w'-]*(?:[ \t]+[\w'-]+){0,2}:[ \t]+(\S.*)$")


def tokenize(text: str) -> list[str]:
    """The tokens BM25 sees: lower-cased letter/digit runs without English stop words."""
    return [token for token in _WORD.findall(text.lower()) if token not in _STOPWORDS]


def _fail(reason: str) -> ProviderError:
    return ProviderError(
        f"the retrieval baseline cannot answer this prompt: {reason} "
        "(see docs/retrieval.md for the conventions it needs, or evaluate this prompt "
        "with an LLM provider)",
        retryable=False,
    )


@dataclass(frozen=True)
class _Parsed:
    """A message split into its tagged sections and the text outside them."""

    sections: tuple[str, ...]
    outside: str

    @property
    def query(self) -> str:
        """Rule 1: the inner text of the sections, or the whole message without any."""
        if not self.sections:
            return self.outside
        return "\n".join(section.strip() for section in self.sections)


def _parse(content: str) -> _Parsed:
    sections: list[str] = []
    outside: list[str] = []
    position = 0
    for match in _SECTION.finditer(content):
        outside.append(content[position : match.start()])
        sections.append(match.group(2))
        position = match.end()
    outside.append(content[position:])
    return _Parsed(tuple(sections), "\n".join(outside) if sections else content)


class _Index:
    """BM25 over a fixed list of token lists, with a deterministic vocabulary."""

    __slots__ = ("_retriever", "size")

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float, b: float) -> None:
        self.size = len(documents)
        vocabulary = {token: i for i, token in enumerate(sorted({t for d in documents for t in d}))}
        self._retriever: Any = None
        if vocabulary:
            retriever = bm25s.BM25(k1=k1, b=b, method="lucene", dtype="float64")
            ids = [[vocabulary[token] for token in document] for document in documents]
            retriever.index((ids, vocabulary), create_empty_token=False, show_progress=False)
            self._retriever = retriever

    def scores(self, query: Sequence[str]) -> NDArray[np.float64]:
        """One float64 score per document; zeros when no query token is in the index."""
        ids = self._retriever.get_tokens_ids(list(query)) if self._retriever is not None else []
        if not ids:
            return np.zeros(self.size, dtype=np.float64)
        return np.asarray(self._retriever.get_scores_from_ids(ids), dtype=np.float64)

    def best(self, query: Sequence[str]) -> int:
        """The index of the highest-scoring document, the first one on a tie."""
        return int(np.argmax(self.scores(query)))

    def ranking(self, query: Sequence[str]) -> list[int]:
        """Documents from best to worst; a stable sort keeps ties in document order."""
        return [int(i) for i in np.argsort(-self.scores(query), kind="stable")]


@dataclass(frozen=True)
class _Choices:
    """An index over candidates and the answer each candidate gives (labels, replies)."""

    index: _Index
    answers: tuple[str, ...]


@dataclass(frozen=True)
class _Units:
    """An index over a document's units, with their word counts and how to join them."""

    index: _Index
    units: tuple[str, ...]
    words: tuple[int, ...]
    joiner: str


_Built = TypeVar("_Built", _Choices, _Units)


def _pairs(messages: Sequence[Message]) -> list[tuple[Message, Message]]:
    return [
        (first, second)
        for first, second in itertools.pairwise(messages)
        if first.role == "user" and second.role == "assistant"
    ]


def _label_lines(labels: Sequence[str], lines: Sequence[str]) -> list[list[int]]:
    """For each label, the indices of the lines that contain it as a whole token."""
    text = "\n".join(lines)
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    found: list[list[int]] = []
    for label in labels:
        pattern = re.compile(rf"(?<!\w){re.escape(label)}(?!\w)")
        hits: dict[int, None] = {}
        for match in pattern.finditer(text):
            hits[bisect.bisect_right(starts, match.start()) - 1] = None
        found.append(list(hits))
    return found


def _split_units(document: str) -> tuple[list[str], str]:
    lines = [line.strip() for line in document.splitlines() if line.strip()]
    turns = sum(1 for line in lines if _TURN.match(line))
    if lines and 2 * turns > len(lines):
        return lines, "\n"
    sentences = [piece.strip() for piece in _SENTENCE_END.split(document)]
    return [sentence for sentence in sentences if sentence], " "


def _word_budget(params: Mapping[str, Any]) -> int | None:
    value = params.get("max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return math.floor(_BUDGET_RATIO * value)


def _key(kind: str, *groups: Sequence[str]) -> bytes:
    """A digest of the context an index is built from.

    A length-prefixed header lists every string's length, group by group, so two
    different contexts never hash the same bytes; the strings themselves are hashed as one
    concatenation, which is much faster than one update per string.
    """
    header = "|".join([kind, *(",".join([str(len(part)) for part in group]) for group in groups)])
    digest = hashlib.sha256(f"{len(header)}:{header}".encode())
    digest.update(
        "".join([part for group in groups for part in group]).encode("utf-8", "surrogatepass")
    )
    return digest.digest()


def _number(name: str, provider: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"provider {provider!r}: option {name!r} must be a number, got {value!r}")
    return float(value)


class RetrievalProvider(Provider):
    """The deterministic BM25 baseline; see the module docstring for its rules."""

    type = "retrieval"
    # Answers are computed locally in microseconds and never change for the same request:
    # caching them would cost more than recomputing, and running them concurrently gains
    # nothing (the work is CPU-bound in one thread).
    cacheable = False
    concurrency = 1

    def __init__(self, name: str = "retrieval", *, k1: float = 1.5, b: float = 0.75) -> None:
        super().__init__(name)
        if not k1 >= 0:
            raise ConfigError(f"provider {name!r}: option 'k1' must be >= 0, got {k1!r}")
        if not 0 <= b <= 1:
            raise ConfigError(f"provider {name!r}: option 'b' must be between 0 and 1, got {b!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self._cache: OrderedDict[bytes, _Choices | _Units] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> RetrievalProvider:
        unknown = sorted(set(options) - set(_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"provider {name!r} (type 'retrieval'): unknown option(s) "
                f"{', '.join(map(repr, unknown))}; allowed options: {', '.join(sorted(_DEFAULTS))}"
            )
        values = {
            key: _number(key, name, options.get(key, default)) for key, default in _DEFAULTS.items()
        }
        return cls(name, k1=values["k1"], b=values["b"])

    def fingerprint_data(self) -> dict[str, Any]:
        # The algorithm id, not bm25s's version, is the identity: tests pin the answers, and
        # the installed version is recorded with every run as provenance.
        return {"type": self.type, "algorithm": ALGORITHM, "k1": self.k1, "b": self.b}

    @property
    def legacy_fingerprint(self) -> str:
        """The schema-1 fingerprint, which also held the installed bm25s version."""
        return sha256_of({**self.fingerprint_data(), "bm25s": _BM25S_VERSION})

    async def complete(self, request: Request) -> Response:
        return Response(text=self.answer(request))

    def answer(self, request: Request) -> str:
        """The answer to ``request``, computed synchronously (``complete`` wraps it)."""
        messages = request.messages
        if not messages:
            raise _fail("the request has no messages")
        final = messages[-1]
        if final.role != "user":
            raise _fail(
                f"the last message is a {final.role!r} message; the baseline answers the "
                "final 'user' message"
            )
        before = messages[:-1]
        parsed = _parse(final.content)
        output = request.output
        if output.format == "label":
            return self._label(output.labels or [], before, parsed)
        pairs = _pairs(before)
        if pairs:
            return self._few_shot(pairs, parsed)
        if output.format == "text":
            return self._extract(parsed, _word_budget(request.params))
        raise _fail(
            f"output format {output.format!r} needs few-shot examples (a 'user' message "
            "followed by an 'assistant' message) to copy an answer from, and it has none"
        )

    def _cached(self, key: bytes, build: Callable[[], _Built]) -> _Built:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                # The mode is hashed into the key, so a hit has the type this mode builds.
                return cast(_Built, hit)
        # Built outside the lock: a duplicate build under contention is harmless.
        value = build()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    def _label(self, labels: Sequence[str], before: Sequence[Message], parsed: _Parsed) -> str:
        def build() -> _Choices:
            lines = [line for message in before for line in message.content.splitlines()]
            if parsed.sections:
                lines.extend(parsed.outside.splitlines())
            line_tokens = [tokenize(line) for line in lines]
            shots: dict[str, list[str]] = {}
            for user, assistant in _pairs(before):
                shots.setdefault(assistant.content.strip(), []).extend(
                    tokenize(_parse(user.content).query)
                )
            documents = []
            for label, hits in zip(labels, _label_lines(labels, lines), strict=True):
                document = tokenize(label)
                for line in hits:
                    document.extend(line_tokens[line])
                document.extend(shots.get(label, []))
                documents.append(document)
            return _Choices(_Index(documents, k1=self.k1, b=self.b), tuple(labels))

        key = _key(
            "label",
            labels,
            [m.role for m in before],
            [m.content for m in before],
            [parsed.outside] if parsed.sections else [],
        )
        choices = self._cached(key, build)
        return choices.answers[choices.index.best(tokenize(parsed.query))]

    def _few_shot(self, pairs: Sequence[tuple[Message, Message]], parsed: _Parsed) -> str:
        def build() -> _Choices:
            documents = [tokenize(_parse(user.content).query) for user, _ in pairs]
            answers = tuple(assistant.content for _, assistant in pairs)
            return _Choices(_Index(documents, k1=self.k1, b=self.b), answers)

        key = _key("few-shot", [u.content for u, _ in pairs], [a.content for _, a in pairs])
        choices = self._cached(key, build)
        return choices.answers[choices.index.best(tokenize(parsed.query))]

    def _extract(self, parsed: _Parsed, budget: int | None) -> str:
        if not parsed.sections:
            raise _fail(
                "a 'text' answer without few-shot examples is extracted from the largest "
                "tagged section (<name>...</name>) of the final user message, and it has none"
            )
        largest = max(range(len(parsed.sections)), key=lambda i: len(parsed.sections[i]))
        document = parsed.sections[largest]
        fields = [m.group(1) for m in map(_FIELD.match, parsed.outside.splitlines()) if m]
        rest = [*fields, *(s for i, s in enumerate(parsed.sections) if i != largest)]

        def build() -> _Units:
            units, joiner = _split_units(document)
            if not units:
                raise _fail("the largest tagged section of the final user message is empty")
            index = _Index([tokenize(unit) for unit in units], k1=self.k1, b=self.b)
            return _Units(index, tuple(units), tuple(len(u.split()) for u in units), joiner)

        found = self._cached(_key("extract", [document]), build)
        ranking = found.index.ranking(tokenize("\n".join(rest)))
        chosen = [ranking[0]]
        words = found.words[ranking[0]]
        if budget is not None:
            for unit in ranking[1:]:
                if words + found.words[unit] > budget:
                    break
                chosen.append(unit)
                words += found.words[unit]
        return found.joiner.join(found.units[i] for i in sorted(chosen))
