"""Route a customer message to an intent, then answer it with that intent's prompt.

The prompts come from the installed promptlib package, restricted to (and checked
against) this project's ``prompt_manifest.yaml`` and its lock: if the installed library
drifted from what was locked, ``Responder`` refuses to start (``promptlib.DriftError``).

The model is any ``complete(messages, request) -> str`` function. The default is
promptlib's offline ``retrieval`` baseline, which needs no key or network; production code
passes a function that calls its LLM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import promptlib
from promptlib.providers import Request, create_provider

Complete = Callable[[Request], str]

MANIFEST = Path(__file__).resolve().parents[2] / "prompt_manifest.yaml"
ROUTER = "support.classify.intent_fewshot"
FALLBACK = "support.answer.general"


def offline_complete() -> Complete:
    """Answers from promptlib's deterministic retrieval baseline."""
    provider = create_provider("retrieval", {})

    def complete(request: Request) -> str:
        return asyncio.run(provider.complete(request)).text

    return complete


@dataclass(frozen=True)
class Reply:
    intent: str
    prompt: str
    prompt_version: str
    text: str


class Responder:
    def __init__(self, manifest: Path = MANIFEST, complete: Complete | None = None) -> None:
        self.library = promptlib.load(manifest=manifest)
        self.complete = complete or offline_complete()
        self.router = self.library[ROUTER]
        self.intents = list(self.router.output.labels or [])

    def route(self, message: str) -> str:
        """The intent label, or "" when the model answered something that is not a label."""
        messages = tuple(self.router.render(message=message))
        label = self.complete(Request(messages, {}, self.router.output)).strip()
        return label if label in self.intents else ""

    def answer(self, message: str) -> Reply:
        intent = self.route(message)
        prompt_id = f"support.answer.{intent}"
        prompt = self.library.get(prompt_id) or self.library[FALLBACK]
        messages = tuple(prompt.render(message=message))
        text = self.complete(
            Request(messages, prompt.model.model_dump(exclude_none=True), prompt.output)
        )
        return Reply(intent, prompt.id, str(prompt.version), text)
