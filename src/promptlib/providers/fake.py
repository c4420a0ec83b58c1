"""``fake``: a deterministic provider for tests, shipped so that users' tests need no model.

It never touches the network. By default it answers every request with the content of the
last ``user`` message (an echo); ``answers`` maps example ids to fixed answers, ``default``
replaces the echo for the others, and ``fail`` lists example ids whose request fails with a
non-retryable ``ProviderError`` (to test error budgets and reports). Every request it
receives is kept in ``requests``, in arrival order.

In Python::

    from promptlib.providers import FakeProvider
    fake = FakeProvider(answers={"row-1": "refund"}, default="other")

In a project's configuration::

    [tool.promptlib.providers.fake]
    type = "fake"
    default = "other"
    answers = {row-1 = "refund"}
    fail = ["row-7"]

Its fingerprint holds its answers, default and failures (and ``model``, a label), so runs
of differently configured fakes never mix in the ledger.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .._canonical import sha256_of
from ..errors import ProviderError
from .contract import Provider, Request, Response, parse_options

__all__ = ["FakeProvider"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    answers: dict[str, str] = Field(default_factory=dict)
    default: str | None = None
    fail: list[str] = Field(default_factory=list)
    model: str | None = None
    concurrency: int = Field(8, ge=1)


class FakeProvider(Provider):
    """A provider that answers from a table, echoes, or fails on purpose; see the module."""

    type = "fake"
    # Answers cost nothing to recompute, and tests want to count every request.
    cacheable = False

    def __init__(
        self,
        name: str = "fake",
        *,
        answers: Mapping[str, str] | None = None,
        default: str | None = None,
        fail: Collection[str] = (),
        model: str | None = None,
        concurrency: int = 8,
    ) -> None:
        super().__init__(name)
        self.answers = dict(answers or {})
        self.default = default
        self.fail = frozenset(fail)
        self.label = model
        self.concurrency = concurrency
        self.requests: list[Request] = []

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> FakeProvider:
        parsed = parse_options(_Options, name, cls.type, options)
        return cls(
            name,
            answers=parsed.answers,
            default=parsed.default,
            fail=parsed.fail,
            model=parsed.model,
            concurrency=parsed.concurrency,
        )

    def fingerprint_data(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "model": self.label,
            "answers": sha256_of(self.answers),
            "default": self.default,
            "fail": sorted(self.fail),
        }

    async def complete(self, request: Request) -> Response:
        self.requests.append(request)
        if request.example_id in self.fail:
            raise ProviderError(f"fake failure for example {request.example_id!r}", retryable=False)
        if request.example_id in self.answers:
            return Response(text=self.answers[request.example_id], model=self.label)
        if self.default is not None:
            return Response(text=self.default, model=self.label)
        users = [m.content for m in request.messages if m.role == "user"]
        return Response(text=users[-1] if users else "", model=self.label)
