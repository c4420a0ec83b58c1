"""The offline judge: a deterministic, lexical stand-in for an LLM judge.

It is a ``python`` provider callable (``promptlib.evals.offline_judge:judge``), configured
in the bundled project as the provider ``offline-judge``, so that judge metrics run with
no model and no network. It reads the judge prompt's rendered user message, its tagged
sections ``<question>``, ``<answer>``, ``<reference>`` and ``<examples>``, and the
``Scale: binary`` or ``Scale: 1-5`` line of the system message, and answers a verdict
``{"score": ..., "reason": ...}``.

What it cannot see: meaning. It measures word overlap only (lowercased words of letters
and digits, with ``{{placeholders}}`` and a short stop-word list removed):

* with a ``<reference>``: the F1 of the answer's words against the reference's;
* else with ``<examples>`` (one per line): the best F1 of the question against an example
  line, or against the answer itself (an intent label's words);
* else: the share of the question's words the answer repeats.

A pairwise judge prompt (sections ``<answer_a>`` and ``<answer_b>``) gets
``{"winner": "A"|"B"|"tie", "reason": ...}``: the answer with the higher similarity (to the
reference, else to the question) wins, a tie when they are within 0.02. It looks at both
answers the same way, so it has no position bias.

The similarity ``s`` in [0, 1] becomes ``1`` when ``s >= 0.3`` on the binary scale (else
``0``), and ``1 + min(4, floor(5 * s))`` on the 1-5 scale. It never checks facts, tone,
policy or instructions; a paraphrase with other words scores low, and a fluent wrong answer
that reuses the reference's words scores high.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["judge", "similarity"]

_WORD = re.compile(r"[a-z0-9]+")
_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
_SCALE = re.compile(r"^Scale:\s*(binary|1-5)\s*$", re.M)
_STOP = frozenset(
    {
        *("a", "an", "and", "are", "be", "can", "do", "for", "from", "have", "how", "i"),
        *("in", "is", "it", "me", "my", "of", "on", "or", "our", "please", "the", "this"),
        *("to", "we", "what", "when", "where", "with", "you", "your"),
    }
)
BINARY_THRESHOLD = 0.3
TIE_MARGIN = 0.02


def _section(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.S)
    return match.group(1).strip() if match else None


def _words(text: str) -> Counter[str]:
    text = _PLACEHOLDER.sub(" ", text.lower().replace("_", " "))
    return Counter(w for w in _WORD.findall(text) if w not in _STOP)


def _f1(left: Counter[str], right: Counter[str]) -> float:
    common = sum((left & right).values())
    if not common:
        return 0.0
    precision = common / sum(left.values())
    recall = common / sum(right.values())
    return 2 * precision * recall / (precision + recall)


def similarity(question: str, answer: str, reference: str | None, examples: str | None) -> float:
    """The word-overlap similarity the verdict is made of (see the module docstring)."""
    if reference is not None:
        return _f1(_words(answer), _words(reference))
    asked = _words(question)
    if examples is not None:
        candidates = [line for line in examples.splitlines() if line.strip()] + [answer]
        return max(_f1(asked, _words(line)) for line in candidates)
    if not asked:
        return 0.0
    return sum((asked & _words(answer)).values()) / sum(asked.values())


def judge(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """The verdict, as the judge prompt asks for it: one JSON object on a line."""
    system = "\n".join(str(m["content"]) for m in messages if m["role"] == "system")
    user = str(next((m["content"] for m in reversed(messages) if m["role"] == "user"), ""))
    first, second = _section(user, "answer_a"), _section(user, "answer_b")
    if first is not None and second is not None:
        question, reference = _section(user, "question") or "", _section(user, "reference")
        a = similarity(question, first, reference, None)
        b = similarity(question, second, reference, None)
        winner = "tie" if abs(a - b) < TIE_MARGIN else ("A" if a > b else "B")
        reason = f"word overlap A {a:.2f}, B {b:.2f} (offline lexical judge)"
        return json.dumps({"winner": winner, "reason": reason})
    scale_match = _SCALE.search(system)
    scale = scale_match.group(1) if scale_match else "binary"
    answer = _section(user, "answer") or ""
    s = similarity(
        _section(user, "question") or "",
        answer,
        _section(user, "reference"),
        _section(user, "examples"),
    )
    score = int(s >= BINARY_THRESHOLD) if scale == "binary" else 1 + min(4, int(5 * s))
    reason = f"word overlap {s:.2f} ({scale} scale, offline lexical judge)"
    return json.dumps({"score": score, "reason": reason})
