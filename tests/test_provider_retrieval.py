"""The retrieval provider: the offline, deterministic BM25 baseline (docs/retrieval.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import promptlib
from promptlib.errors import ConfigError, ProviderError
from promptlib.library.messages import Message
from promptlib.library.model import OutputSpec
from promptlib.providers import create_provider
from promptlib.providers import retrieval as retrieval_module
from promptlib.providers.contract import Request, Response
from promptlib.providers.retrieval import RetrievalProvider, tokenize

Turn = tuple[str, str]


def request(
    turns: Sequence[Turn],
    *,
    labels: Sequence[str] | None = None,
    fmt: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Request:
    output = (
        OutputSpec(format="label", labels=list(labels))
        if labels
        else OutputSpec.model_validate({"format": fmt or "text"})
    )
    return Request(
        messages=tuple(Message(role, content) for role, content in turns),
        params=dict(params or {}),
        output=output,
    )


def ask(req: Request, provider: RetrievalProvider | None = None) -> str:
    response = asyncio.run((provider or RetrievalProvider()).complete(req))
    return response.text


def user(text: str, tag: str = "message") -> Turn:
    return ("user", f"<{tag}>\n{text}\n</{tag}>\n\nReply with the label only.")


# -- tokens ----------------------------------------------------------------------------------

TOKENS = [
    ("How do I locate my card?", ["locate", "card"]),
    ("NO_NODES_DETECTED", ["nodes", "detected"]),
    ("card-arrival  Top up", ["card", "arrival", "top"]),
    ("Don't stop! It's 2x.", ["stop", "2x"]),
    ("Café MÜNCHEN", ["café", "münchen"]),
    ("the of and", []),
]


@pytest.mark.parametrize(("text", "tokens"), TOKENS)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


# -- label outputs ---------------------------------------------------------------------------

BANK = (
    "system",
    "You classify bank customer messages.\n\n"
    "Intents:\n"
    "- card_arrival: a card that was ordered has not arrived yet or needs tracking\n"
    "- change_pin: how or where to change the card PIN\n"
    "- exchange_rate: what the currency exchange rates are\n"
    "- Refund_not_showing_up: a refund from a merchant is not in the statement yet\n"
    "- reverted_card_payment?: a card payment came back to the account\n"
    "Answer with the label only.",
)
BANK_LABELS = [
    "card_arrival",
    "change_pin",
    "exchange_rate",
    "Refund_not_showing_up",
    "reverted_card_payment?",
]

LABEL_CASES = [
    (
        "description",
        [BANK, user("My card has still not arrived, can I track it?")],
        BANK_LABELS,
        "card_arrival",
    ),
    ("description-2", [BANK, user("where can I change my PIN")], BANK_LABELS, "change_pin"),
    ("own-words", [BANK, user("exchange rate please")], BANK_LABELS, "exchange_rate"),
    (
        "mixed-case-label",
        [BANK, user("the merchant refund is not in my statement")],
        BANK_LABELS,
        "Refund_not_showing_up",
    ),
    (
        "punctuated-label",
        [BANK, user("a payment came back to my account")],
        BANK_LABELS,
        "reverted_card_payment?",
    ),
    (
        "inline-tag",
        [BANK, ("user", "<message>what are the currency rates today</message>")],
        BANK_LABELS,
        "exchange_rate",
    ),
    (
        "untagged-message",
        [BANK, ("user", "what are the currency rates today")],
        BANK_LABELS,
        "exchange_rate",
    ),
    (
        "several-sections",
        [BANK, ("user", "<subject>PIN</subject>\n<message>\nhow do I change it\n</message>")],
        BANK_LABELS,
        "change_pin",
    ),
    (
        "few-shot-turns",
        [
            ("system", "Labels: ORDER_TAKING, CHECK_PINCODE, NO_NODES_DETECTED."),
            user("I want to buy protein powder"),
            ("assistant", "ORDER_TAKING"),
            user("do you deliver to pin code 560001"),
            ("assistant", " CHECK_PINCODE\n"),
            user("do you deliver to my area 110011"),
        ],
        ["ORDER_TAKING", "CHECK_PINCODE", "NO_NODES_DETECTED"],
        "CHECK_PINCODE",
    ),
    (
        "upper-case-label-line",
        [
            (
                "system",
                "- ORDER_TAKING: placing an order\n- NO_NODES_DETECTED: greetings, chit-chat or anything unrelated",
            ),
            user("hello there, just chit-chat"),
        ],
        ["ORDER_TAKING", "NO_NODES_DETECTED"],
        "NO_NODES_DETECTED",
    ),
    (
        "whole-token-not-substring",
        [
            (
                "system",
                "- not_offensive: polite or merely angry wording\n- offensive: swear words or insults",
            ),
            user("you used swear words"),
        ],
        ["not_offensive", "offensive"],
        "offensive",
    ),
    (
        "final-message-outside-the-query",
        [
            ("system", "Labels: weather, music."),
            (
                "user",
                "<message>\nwill it rain tomorrow\n</message>\nAnswer weather for rain, sun or snow.",
            ),
        ],
        ["music", "weather"],
        "weather",
    ),
    ("zero-score-first-label", [BANK, user("xylophone zebra")], BANK_LABELS, "card_arrival"),
    ("empty-query-first-label", [BANK, user("the of and")], BANK_LABELS, "card_arrival"),
    (
        "tie-first-listed",
        [("system", "Both alpha and beta are about refunds."), user("refunds")],
        ["beta", "alpha"],
        "beta",
    ),
    (
        "tie-first-listed-reversed",
        [("system", "Both alpha and beta are about refunds."), user("refunds")],
        ["alpha", "beta"],
        "alpha",
    ),
]


@pytest.mark.parametrize(
    ("turns", "labels", "expected"), [c[1:] for c in LABEL_CASES], ids=[c[0] for c in LABEL_CASES]
)
def test_label(turns: list[Turn], labels: list[str], expected: str) -> None:
    assert ask(request(turns, labels=labels)) == expected


def test_label_answers_reuse_the_cached_index(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    original = retrieval_module._Index

    class Counting(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(retrieval_module, "_Index", Counting)
    provider = RetrievalProvider()
    answers = [
        ask(request([BANK, user(text)], labels=BANK_LABELS), provider)
        for text in ("change my PIN", "card not arrived", "exchange rates")
    ]
    assert answers == ["change_pin", "card_arrival", "exchange_rate"]
    assert len(built) == 1
    ask(request([BANK, user("change my PIN")], labels=BANK_LABELS[:3]), provider)
    assert len(built) == 2, "a different label set is a different context"


def test_the_index_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval_module, "_CACHE_SIZE", 2)
    provider = RetrievalProvider()
    for text in ("One cat. Two dogs.", "Three birds. Four fish.", "Five cows. Six pigs."):
        assert ask(request([("user", f"<doc>{text}</doc>")]), provider) == text.split(". ")[0] + "."
    assert len(provider._cache) == 2


# -- few-shot answers ------------------------------------------------------------------------

REPLIES = [
    ("system", "You answer customers."),
    ("user", "<request>\nhow do I cancel order 123\n</request>"),
    ("assistant", "To cancel an order:\n1. Sign in.\n2. Open {{Order History}}.  "),
    ("user", "<request>\nI forgot my password\n</request>"),
    ("assistant", "  Use the {{Forgot Password}} link.\n"),
]

FEW_SHOT_CASES = [
    (
        "best-pair-verbatim",
        [*REPLIES, ("user", "<request>\npassword forgotten, help\n</request>")],
        "text",
        "  Use the {{Forgot Password}} link.\n",
    ),
    (
        "first-pair",
        [*REPLIES, ("user", "<request>cancel my order 555</request>")],
        "text",
        "To cancel an order:\n1. Sign in.\n2. Open {{Order History}}.  ",
    ),
    (
        "tie-earliest-pair",
        [*REPLIES, ("user", "<request>\nsomething unrelated\n</request>")],
        "text",
        "To cancel an order:\n1. Sign in.\n2. Open {{Order History}}.  ",
    ),
    (
        "json",
        [
            ("user", "<request>cancel order 00123842</request>"),
            ("assistant", '{"entity_type": "order_id", "entity_value": "123842"}'),
            ("user", "<request>deliver to Valencia?</request>"),
            ("assistant", '{"entity_type": "delivery_city", "entity_value": "Valencia"}'),
            ("user", "<request>can you deliver to Valencia</request>"),
        ],
        "json",
        '{"entity_type": "delivery_city", "entity_value": "Valencia"}',
    ),
]


@pytest.mark.parametrize(
    ("turns", "fmt", "expected"),
    [c[1:] for c in FEW_SHOT_CASES],
    ids=[c[0] for c in FEW_SHOT_CASES],
)
def test_few_shot(turns: list[Turn], fmt: str, expected: str) -> None:
    assert ask(request(turns, fmt=fmt)) == expected


# -- extractive answers ----------------------------------------------------------------------

ABSTRACT = (
    "Neural networks forget old classes. "
    "We propose FearNet, a brain-inspired model for incremental learning! "
    "Is memory needed? "
    "FearNet uses a generative memory and reaches state of the art results on CIFAR-100."
)
PAPER = ("user", f"Title: FearNet incremental learning\n\n<abstract>\n{ABSTRACT}\n</abstract>")

TRANSCRIPT = "\n".join(
    [
        "Project Manager: Welcome everybody to the kick off meeting .",
        "Marketing: Hi , I am the marketing expert .",
        "",
        "Industrial Designer: The battery should last for years .",
        "Project Manager: Okay .",
        "User Interface: I think a big battery costs too much .",
    ]
)


def meeting(outside: str) -> Turn:
    return ("user", f"<transcript>\n{TRANSCRIPT}\n</transcript>\n\n{outside}")


EXTRACT_CASES = [
    # One unit when max_tokens is not set: the best-matching sentence for the title.
    (
        "sentence-best",
        [PAPER],
        {},
        "We propose FearNet, a brain-inspired model for incremental learning!",
    ),
    # Budget floor(0.75 * 32) = 24 words: the two FearNet sentences (9 + 14 words) fit, and
    # come out in document order.
    (
        "sentence-budget",
        [PAPER],
        {"max_tokens": 32},
        "We propose FearNet, a brain-inspired model for incremental learning! "
        "FearNet uses a generative memory and reaches state of the art results on CIFAR-100.",
    ),
    # Budget floor(0.75 * 30) = 22 words: the second-best sentence does not fit, and the
    # selection stops there rather than skipping ahead to a short, worse-scoring one.
    (
        "sentence-budget-stops",
        [PAPER],
        {"max_tokens": 30},
        "We propose FearNet, a brain-inspired model for incremental learning!",
    ),
    ("sentence-budget-large", [PAPER], {"max_tokens": 100}, ABSTRACT),
    # Always at least one unit, even when it alone is over the budget.
    (
        "sentence-at-least-one",
        [PAPER],
        {"max_tokens": 1},
        "We propose FearNet, a brain-inspired model for incremental learning!",
    ),
    (
        "sentence-other-section-is-query",
        [
            (
                "user",
                f"<question>Which generative memory?</question>\n<abstract>\n{ABSTRACT}\n</abstract>",
            )
        ],
        {},
        "FearNet uses a generative memory and reaches state of the art results on CIFAR-100.",
    ),
    (
        "lines-question",
        [meeting("Question: What did the group say about the battery?")],
        {},
        "Industrial Designer: The battery should last for years .",
    ),
    (
        "lines-budget",
        [meeting("Question: What did the group say about the battery?")],
        {"max_tokens": 28},
        "Industrial Designer: The battery should last for years .\nUser Interface: I think a big battery costs too much .",
    ),
    (
        "degenerate-query-lead-line",
        [meeting("Summarize the whole meeting.")],
        {},
        "Project Manager: Welcome everybody to the kick off meeting .",
    ),
    (
        "degenerate-query-lead-budget",
        [meeting("Summarize the whole meeting.")],
        {"max_tokens": 30},
        "Project Manager: Welcome everybody to the kick off meeting .\nMarketing: Hi , I am the marketing expert .",
    ),
    (
        "degenerate-query-lead-sentence",
        [("user", f"<abstract>{ABSTRACT}</abstract>")],
        {},
        "Neural networks forget old classes.",
    ),
    (
        "template-instructions-are-not-query",
        [
            (
                "user",
                f"Rewrite the abstract below about memory.\n- Keep it short: one sentence.\n<abstract>\n{ABSTRACT}\n</abstract>\nReply with the sentence only.",
            )
        ],
        {},
        "Neural networks forget old classes.",
    ),
    (
        "largest-section-is-the-document",
        [("user", f"<note>memory generative</note>\n<abstract>\n{ABSTRACT}\n</abstract>")],
        {},
        "FearNet uses a generative memory and reaches state of the art results on CIFAR-100.",
    ),
    (
        "few-colon-lines-are-sentences",
        [
            (
                "user",
                "<text>\nNote: the plan is ready. Budget is low. The battery is fine.\nThe end.\n</text>\nTopic: battery",
            )
        ],
        {},
        "The battery is fine.",
    ),
]


@pytest.mark.parametrize(
    ("turns", "params", "expected"),
    [c[1:] for c in EXTRACT_CASES],
    ids=[c[0] for c in EXTRACT_CASES],
)
def test_extractive(turns: list[Turn], params: dict[str, Any], expected: str) -> None:
    assert ask(request(turns, fmt="text", params=params)) == expected


# -- what it cannot answer -------------------------------------------------------------------

ERROR_CASES = [
    ("no-messages", [], "text", "has no messages"),
    (
        "last-is-assistant",
        [("user", "<m>hi</m>"), ("assistant", "hello")],
        "text",
        "last message is a 'assistant' message",
    ),
    ("last-is-system", [("system", "be brief")], "label", "last message is a 'system' message"),
    (
        "json-without-examples",
        [("system", "Return JSON."), ("user", "<request>cancel order 1</request>")],
        "json",
        "needs few-shot examples",
    ),
    ("text-without-section", [("user", "Summarize: the cat sat on the mat.")], "text", "has none"),
    (
        "empty-section",
        [("user", "<abstract>\n  \n</abstract>")],
        "text",
        "section of the final user message is empty",
    ),
]


@pytest.mark.parametrize(
    ("turns", "fmt", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_cannot_answer(turns: list[Turn], fmt: str, message: str) -> None:
    req = request(turns, labels=["a", "b"] if fmt == "label" else None, fmt=fmt)
    with pytest.raises(ProviderError, match="retrieval baseline cannot answer") as caught:
        ask(req)
    assert message in str(caught.value)
    assert caught.value.retryable is False


# -- determinism -----------------------------------------------------------------------------

DETERMINISM_REQUESTS: list[dict[str, Any]] = (
    [{"turns": [list(t) for t in c[1]], "labels": c[2]} for c in LABEL_CASES]
    + [{"turns": [list(t) for t in c[1]], "fmt": c[2]} for c in FEW_SHOT_CASES]
    + [{"turns": [list(t) for t in c[1]], "fmt": "text", "params": c[2]} for c in EXTRACT_CASES]
)

_PROBE = """
import json, sys
from promptlib.library.model import OutputSpec
from promptlib.library.messages import Message
from promptlib.providers.contract import Request
from promptlib.providers.retrieval import RetrievalProvider
provider = RetrievalProvider()
answers = []
for item in json.load(sys.stdin):
    labels = item.get("labels")
    output = OutputSpec(format="label", labels=labels) if labels else OutputSpec(format=item.get("fmt", "text"))
    messages = tuple(Message(role, content) for role, content in item["turns"])
    answers.append(provider.answer(Request(messages=messages, params=item.get("params", {}), output=output)))
print(json.dumps({"answers": answers, "fingerprint": provider.fingerprint}))
"""


def _answers_here(provider: RetrievalProvider) -> list[str]:
    answers = []
    for item in DETERMINISM_REQUESTS:
        turns = [(role, content) for role, content in item["turns"]]
        req = request(
            turns, labels=item.get("labels"), fmt=item.get("fmt"), params=item.get("params")
        )
        answers.append(ask(req, provider))
    return answers


def test_same_answers_from_two_instances() -> None:
    assert _answers_here(RetrievalProvider()) == _answers_here(RetrievalProvider())


def test_same_answers_across_processes_and_hash_seeds() -> None:
    expected = {
        "answers": _answers_here(RetrievalProvider()),
        "fingerprint": RetrievalProvider().fingerprint,
    }
    payload = json.dumps(DETERMINISM_REQUESTS)
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _PROBE],
            input=payload,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(out.stdout) == expected, f"PYTHONHASHSEED={seed}"


# -- identity and configuration --------------------------------------------------------------


def test_fingerprint_data_names_the_algorithm_and_no_model() -> None:
    provider = RetrievalProvider()
    data = provider.fingerprint_data()
    assert data["type"] == "retrieval"
    assert data["algorithm"] == retrieval_module.ALGORITHM
    assert (data["k1"], data["b"]) == (1.5, 0.75)
    # The installed bm25s version is provenance, not identity (schema-1 fingerprints held
    # it; they are still computed for migration).
    assert "bm25s" not in data
    assert provider.legacy_fingerprint != provider.fingerprint
    assert "model" not in data
    assert provider.model is None
    assert provider.fingerprint.startswith("sha256:")


@pytest.mark.parametrize(
    ("options", "same"),
    [
        ({}, True),
        ({"k1": 1.5, "b": 0.75}, True),
        ({"k1": 1.2}, False),
        ({"b": 0.5}, False),
        ({"k1": 1}, False),
    ],
)
def test_fingerprint_follows_k1_and_b(options: dict[str, float], same: bool) -> None:
    default = RetrievalProvider.from_config("retrieval", {}, {}).fingerprint
    assert (RetrievalProvider.from_config("retrieval", options, {}).fingerprint == default) is same


def test_integer_and_float_parameters_have_one_fingerprint() -> None:
    assert RetrievalProvider(k1=1).fingerprint == RetrievalProvider(k1=1.0).fingerprint


CONFIG_ERRORS = [
    ({"model": "gpt"}, r"unknown option\(s\) 'model'; allowed options: b, k1"),
    (
        {"k1": 1.2, "delta": 0.5, "api_key_env": "X"},
        r"'api_key_env', 'delta'; allowed options: b, k1",
    ),
    ({"k1": "1.2"}, "option 'k1' must be a number"),
    ({"b": True}, "option 'b' must be a number"),
    ({"b": 1.5}, "option 'b' must be between 0 and 1"),
    ({"k1": -1}, "option 'k1' must be >= 0"),
    ({"k1": float("nan")}, "option 'k1' must be a number"),
]


@pytest.mark.parametrize(("options", "message"), CONFIG_ERRORS)
def test_from_config_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetrievalProvider.from_config("baseline", options, {})


def test_registry_creates_it_without_configuration() -> None:
    provider = create_provider("retrieval", {})
    assert isinstance(provider, RetrievalProvider)
    assert provider.name == "retrieval"
    configured = create_provider("bm25", {"bm25": {"type": "retrieval", "k1": 0.9}})
    assert isinstance(configured, RetrievalProvider)
    assert (configured.name, configured.k1, configured.b) == ("bm25", 0.9, 0.75)


def test_complete_returns_a_response_without_model_usage_or_cost() -> None:
    response = asyncio.run(
        RetrievalProvider().complete(request([BANK, user("change PIN")], labels=BANK_LABELS))
    )
    assert response == Response(text="change_pin", usage=None, cost=None, model=None)


# -- the bundled library ---------------------------------------------------------------------


def test_answers_the_first_example_of_every_bundled_prompt() -> None:
    library = promptlib.load()
    provider = RetrievalProvider()
    problems: list[str] = []
    answered = 0
    for prompt_id, prompt in library.items():
        if not prompt.examples:
            continue
        messages = tuple(prompt.render(**prompt.examples[0].inputs))
        req = Request(
            messages=messages,
            params=prompt.model.model_dump(exclude_none=True),
            output=prompt.output,
            prompt_id=prompt_id,
        )
        try:
            answer = provider.answer(req)
        except ProviderError as exc:
            problems.append(f"{prompt_id}: {exc}")
            continue
        answered += 1
        if prompt.output.format == "label" and answer not in (prompt.output.labels or []):
            problems.append(f"{prompt_id}: {answer!r} is not one of its labels")
        if not answer.strip():
            problems.append(f"{prompt_id}: empty answer")
    assert problems == []
    assert answered > 0 or not library, "no bundled prompt has an example"
