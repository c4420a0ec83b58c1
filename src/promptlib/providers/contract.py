"""The provider contract: one request in, one response out, declared identity.

A provider turns rendered chat messages into model output. It does not retry, sleep or
cache: the harness owns that policy (bounded attempts, jittered backoff, Retry-After,
concurrency, rate limits, the response cache). A provider only translates failures into
``ProviderError`` with ``retryable`` (and ``retry_after`` when the server said) set.

Identity: ``fingerprint_data()`` lists everything that determines a provider's answers
(type, model, endpoint, implementation version, fixed parameters) and never a secret. Its
``sha256:`` digest, ``fingerprint``, keys the response cache and the ledger, so the
results of different providers never mix.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._canonical import sha256_of
from ..errors import ConfigError, ProviderError
from ..library.messages import Message
from ..library.model import OutputSpec

__all__ = ["Provider", "Request", "Response", "Usage", "parse_options", "response_from_data"]


@dataclass(frozen=True)
class Request:
    """What the harness asks a provider for.

    ``params`` are the generation parameters (the prompt's ``model`` section, with a
    suite's or provider's overrides applied). ``output`` is the prompt's output spec, for
    providers that can constrain decoding (JSON mode, label lists) or, like the retrieval
    baseline, need the label set.
    """

    messages: tuple[Message, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    output: OutputSpec = field(default_factory=OutputSpec)
    prompt_id: str = ""
    example_id: str = ""
    repeat: int = 0

    def cache_material(self, provider_fingerprint: str) -> dict[str, Any]:
        """Everything the response depends on, as plain data: the response-cache key."""
        return {
            "provider": provider_fingerprint,
            "messages": [m.to_dict() for m in self.messages],
            "params": dict(self.params),
            "output": self.output.model_dump(exclude_none=True, by_alias=True),
            "repeat": self.repeat,
        }


@dataclass(frozen=True)
class Usage:
    """Token counts, when the provider reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Response:
    """A provider's answer. ``cost`` is in US dollars when the provider can tell."""

    text: str
    usage: Usage | None = None
    cost: float | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "usage": None
            if self.usage is None
            else {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
            "cost": self.cost,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Response:
        usage = data.get("usage")
        return cls(
            text=str(data["text"]),
            usage=Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"]))
            if usage
            else None,
            cost=data.get("cost"),
            model=data.get("model"),
        )


class Provider(abc.ABC):
    """Base class of every provider.

    ``concurrency`` caps requests in flight to this provider and ``rate_limit`` caps
    requests started per second (None: no cap); the harness enforces both.
    """

    type: str = ""
    #: Whether answers go through the response cache; False for local, deterministic
    #: providers whose answers cost less to recompute than to look up.
    cacheable: bool = True
    concurrency: int = 8
    rate_limit: float | None = None
    timeout: float = 60.0
    #: Whether ``complete`` itself gives up after ``timeout`` seconds (with an error that
    #: says so); the harness then sets no deadline of its own around the call.
    bounds_its_time: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    @abc.abstractmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Provider:
        """Create the provider from its configuration table (without ``type``).

        Unknown options are a ``ConfigError`` naming the allowed ones. ``environ`` holds
        the environment, for options that name a variable to read a secret from.
        """

    @abc.abstractmethod
    def fingerprint_data(self) -> dict[str, Any]:
        """What determines this provider's answers; never a secret."""

    @property
    def fingerprint(self) -> str:
        return sha256_of(self.fingerprint_data())

    @property
    def legacy_fingerprint(self) -> str:
        """The fingerprint schema-1 ledgers recorded (for migration); the same by default."""
        return self.fingerprint

    @property
    def model(self) -> str | None:
        """The model name for reports, when there is one."""
        value = self.fingerprint_data().get("model")
        return str(value) if value is not None else None

    @abc.abstractmethod
    async def complete(self, request: Request) -> Response:
        """Answer one request or raise ``ProviderError``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release connections and subprocesses."""


class _UsageData(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)


class _ResultData(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str
    usage: _UsageData | None = None
    cost: float | None = Field(None, ge=0)
    model: str | None = None


_M = TypeVar("_M", bound=BaseModel)


def parse_options(model: type[_M], name: str, kind: str, options: Mapping[str, Any]) -> _M:
    """Validate a provider's options; every problem in one ``ConfigError``.

    Shared by the built-in providers.
    """
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        allowed = ", ".join(sorted(f.alias or key for key, f in model.model_fields.items()))
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown option {where!r}")
            else:
                problems.append(f"{where}: {error['msg']}")
        raise ConfigError(
            f"provider {name!r} (type {kind}): {'; '.join(problems)}; allowed options: {allowed}"
        ) from exc


def response_from_data(data: object, model: str | None, where: str) -> Response:
    """A ``Response`` from plain data (a string, or a dict with ``text`` and extras)."""
    if isinstance(data, str):
        return Response(text=data, model=model)
    try:
        result = _ResultData.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'result'}: {e['msg']}" for e in exc.errors()
        )
        raise ProviderError(
            f"{where} returned an invalid result ({problems}); return a string or "
            '{"text": str, "usage": {"prompt_tokens": int, "completion_tokens": int}}',
            retryable=False,
        ) from None
    usage = result.usage
    return Response(
        text=result.text,
        usage=None if usage is None else Usage(usage.prompt_tokens, usage.completion_tokens),
        cost=result.cost,
        model=result.model or model,
    )
