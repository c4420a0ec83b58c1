"""The ``openai`` provider: any OpenAI-compatible chat-completions endpoint.

Works with OpenAI and with servers that speak its API (vLLM, Ollama, llama.cpp). It uses
the official SDK's ``AsyncOpenAI`` over the aiohttp transport, which stays close to the
ideal time at high concurrency where the SDK's default pool does not. The SDK is imported
with this module, and the registry imports this module only when an ``openai`` provider
is created, so ``import promptlib`` never loads it.

Options (``[tool.promptlib.providers.NAME]`` with ``type = "openai"``):

    model         the model name sent to the endpoint (required)
    base_url      the endpoint, e.g. ``http://127.0.0.1:8000/v1`` (default: OpenAI's API);
                  credentials in it are refused: the key belongs in an environment variable
    api_key_env   the environment variable holding the key (default ``OPENAI_API_KEY``);
                  ``""`` means the endpoint needs no key (a placeholder is sent)
    timeout       seconds allowed for one request, start to finish (default 60)
    concurrency   requests in flight (default 8); ``rate_limit``: requests started per second
    params        generation parameters used when the request does not set them (a request
                  parameter that is None counts as not set)

The provider makes exactly one HTTP attempt per ``complete()`` call: the SDK's own retries
are off (``max_retries=0``) because the harness owns the retry policy. Failures become
``ProviderError``:

    =========================================  =========  ==========================
    what happened                              retryable  retry_after / status
    =========================================  =========  ==========================
    HTTP 408, 409, 429, 5xx                    yes        Retry-After / the status
    other HTTP 4xx (400, 401, 403, 404, ...)   no         None / the status
    connection refused, reset, closed early    yes        None / None
    timeout (no complete answer in time)       yes        None / None
    200 whose body is not JSON, not a chat     yes        None / 200
    completion, or has no choices
    a request parameter this provider cannot   no         None / None
    send
    =========================================  =========  ==========================

A malformed 200 is usually a broken proxy or an overloaded server cut off mid-body, so it
is worth another attempt; the harness bounds the attempts. ``retry_after`` comes from
``retry-after-ms``, else ``Retry-After`` as delta-seconds or an HTTP date (seconds from now,
never negative).

The API key is read once, when the provider is created, from the environment mapping it
is given. It never appears in an error message (a server that echoes it has it redacted),
in ``repr()``, in the fingerprint, or on an exception reachable from the ``ProviderError``
(the SDK's exceptions hold the request and its headers, so they are not chained).

The base URL and the key are always passed to the SDK explicitly, so its own environment
defaults (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``) never apply. It still reads
``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID`` and ``OPENAI_CUSTOM_HEADERS`` from the process
environment; those add request headers for billing and routing, not for answers.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import importlib.util
import json
import math
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, MissingDependencyError, ProviderError
from ..library.model import ModelParams
from .contract import Provider, Request, Response, Usage, parse_options

try:
    import openai
    from openai.types.chat import ChatCompletion
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "the openai provider needs the openai SDK with its aiohttp transport: "
        "install the extra with pip install 'promptlib[openai]'"
    ) from _exc
if importlib.util.find_spec("aiohttp") is None:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "the openai provider needs aiohttp for its HTTP transport: "
        "install the extra with pip install 'promptlib[openai]'"
    )

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["OpenAIProvider", "parse_retry_after"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Sent as the key to endpoints that need none; the SDK refuses to run without a key.
NO_KEY = "no-key"
# Bumped when the mapping from a request to the API call changes, so cached answers from
# the old mapping are not reused.
ADAPTER_VERSION = 1

_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)
_WRONG_LOOP = (
    "an openai provider was used from a second event loop: await provider.aclose() in the "
    "loop that used it first (one loop at a time)"
)
_RETRYABLE_STATUS = frozenset({408, 409, 429})
# ``asyncio.timeout`` (Python 3.11+) bounds the call in the caller's task; ``wait_for``
# runs it in a task of its own, a cost paid on every request. Python 3.10 has only
# ``wait_for``.
_TIMEOUT: Any = getattr(asyncio, "timeout", None)
_HINTS = {
    401: "check the key in the variable named by api_key_env",
    403: "check that the key may use this model",
    404: "check the provider's model and base_url",
}


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = Field(60.0, gt=0)
    concurrency: int = Field(8, ge=1)
    rate_limit: float | None = Field(None, gt=0)
    params: ModelParams = Field(default_factory=ModelParams)


def _normalise_base_url(url: str, name: str) -> str:
    """Lowercase scheme and host, no default port, no trailing slash; refuse credentials."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"provider {name!r}: base_url must be an http(s) URL such as "
            f"http://127.0.0.1:8000/v1, not {url!r}"
        )
    if parts.username is not None or parts.password is not None:
        # Do not echo the URL: it holds a secret.
        raise ConfigError(
            f"provider {name!r}: base_url must not contain credentials; put the key in an "
            "environment variable and name it with api_key_env"
        )
    netloc = parts.netloc.lower()
    default_port = {"http": 80, "https": 443}[scheme]
    if parts.port == default_port:
        netloc = netloc.rsplit(":", 1)[0]
    return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait that ``headers`` ask for, or None when they do not say.

    ``retry-after-ms`` (milliseconds) wins over ``Retry-After``, which is delta-seconds
    (fractions accepted, as some servers send them) or an HTTP date. A date in the past
    means no wait (0.0); negative, infinite or unparsable values are ignored.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = lowered.get(header)
        if raw is None:
            continue
        try:
            seconds = float(raw.strip()) * scale
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no local offset known.
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _server_message(body: object) -> str:
    """What an error body says: OpenAI's ``error.message``, vLLM's ``message``, Ollama's
    ``error`` string, or the text of a body that is not JSON."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, Mapping) else error
        return message if isinstance(message, str) else ""
    return body.strip() if isinstance(body, str) else ""


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost cause: the transport's own exception says what really happened."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


class OpenAIProvider(Provider):
    """An OpenAI-compatible chat-completions endpoint; see the module docstring."""

    type = "openai"
    bounds_its_time = True

    def __init__(self, name: str, options: _Options, *, base_url: str, api_key: str) -> None:
        super().__init__(name)
        self._options = options
        self._api_key = api_key
        self._base_url = base_url
        self._params = options.params.model_dump(exclude_none=True)
        self.concurrency = options.concurrency
        self.rate_limit = options.rate_limit
        self.timeout = options.timeout
        self._client: openai.AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> OpenAIProvider:
        parsed = parse_options(_Options, name, cls.type, options)
        base_url = _normalise_base_url(parsed.base_url or DEFAULT_BASE_URL, name)
        variable = parsed.api_key_env
        key = environ.get(variable, "") if variable else NO_KEY
        if not key:
            raise ConfigError(
                f"provider {name!r}: the environment variable {variable} is not set; "
                f'set it to the API key, or set api_key_env = "" for a server that needs no key'
            )
        return cls(name, parsed, base_url=base_url, api_key=key)

    def __repr__(self) -> str:
        return (
            f"OpenAIProvider(name={self.name!r}, model={self._options.model!r}, "
            f"base_url={self._base_url!r})"
        )

    def fingerprint_data(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "adapter": ADAPTER_VERSION,
            "model": self._options.model,
            "base_url": self._base_url,
            "params": self._params,
        }

    # -- the call --------------------------------------------------------------------

    def _client_for_this_loop(self) -> openai.AsyncOpenAI:
        """The SDK client, created in the running loop the first time it is needed.

        Its aiohttp session belongs to that loop and can only be closed there, so using the
        provider from another loop before ``aclose()`` is a programming error, reported
        at once rather than as leaked connections later.
        """
        loop = asyncio.get_running_loop()
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                # Always explicit: left out, the SDK would read OPENAI_BASE_URL and send
                # requests somewhere the fingerprint does not say.
                base_url=self._base_url,
                max_retries=0,
                timeout=self.timeout,
                http_client=openai.DefaultAioHttpClient(),
            )
            self._client_loop = loop
        elif self._client_loop is not loop:
            raise RuntimeError(_WRONG_LOOP)
        return self._client

    def _arguments(self, request: Request) -> dict[str, Any]:
        params = {**self._params, **{k: v for k, v in request.params.items() if v is not None}}
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise ProviderError(
                f"{self._where()}: cannot send parameter(s) {', '.join(unknown)}; "
                f"supported: {', '.join(_PARAMS)}",
                retryable=False,
            )
        arguments: dict[str, Any] = {
            key: list(value) if key == "stop" and not isinstance(value, str) else value
            for key, value in params.items()
        }
        if request.output.format == "json":
            arguments["response_format"] = {"type": "json_object"}
        return arguments

    async def complete(self, request: Request) -> Response:
        arguments = self._arguments(request)
        messages = cast("list[ChatCompletionMessageParam]", [m.to_dict() for m in request.messages])
        client = self._client_for_this_loop()
        error: ProviderError
        # The error is raised after the except blocks so that it carries no reference to
        # the SDK's exception, whose request holds the Authorization header.
        try:
            call = client.chat.completions.create(
                model=self._options.model, messages=messages, **arguments
            )
            if _TIMEOUT is None:  # pragma: no cover - Python 3.10
                completion = await asyncio.wait_for(call, self.timeout)
            else:
                async with _TIMEOUT(self.timeout):
                    completion = await call
        except openai.APIStatusError as exc:
            error = self._status_error(exc.status_code, exc.response.headers, exc.body)
        except openai.APIConnectionError as exc:  # APITimeoutError included
            error = self._connection_error(exc)
        except asyncio.TimeoutError:
            error = ProviderError(
                f"{self._where()}: no complete answer within {self.timeout:g} s; "
                "raise the provider's timeout if the model is slow",
                retryable=True,
            )
        except openai.APIResponseValidationError as exc:
            error = self._malformed(f"the response does not match the API ({exc.message})")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            # The SDK lets the decoder's error through for a body that is not JSON.
            error = self._malformed(f"the body is not valid JSON ({exc})")
        except openai.OpenAIError as exc:
            error = ProviderError(f"{self._where()}: {self._redact(str(exc))}", retryable=False)
        else:
            return self._response(completion)
        raise error

    def _response(self, completion: object) -> Response:
        if not isinstance(completion, ChatCompletion):
            # A non-JSON content type: the SDK hands back the body as text.
            raise self._malformed("the body is not a chat completion")
        choices = getattr(completion, "choices", None)
        if not choices:
            raise self._malformed("the completion has no choices")
        message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None)
        if content is None:
            # No text: a refusal, or a model that spent its token budget before answering.
            # Both are answers to score, not failures to retry.
            refusal = getattr(message, "refusal", None)
            content = refusal if isinstance(refusal, str) else ""
        if not isinstance(content, str):
            raise self._malformed("the first choice has no text content")
        usage = getattr(completion, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        model = getattr(completion, "model", None)
        return Response(
            text=content,
            usage=Usage(prompt_tokens, completion_tokens)
            if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int)
            else None,
            model=model if isinstance(model, str) else None,
            cost=None,
        )

    # -- errors ----------------------------------------------------------------------

    def _where(self) -> str:
        return f"provider {self.name!r} ({self._base_url}, model {self._options.model})"

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != NO_KEY:
            text = text.replace(self._api_key, "[redacted]")
        return text

    def _status_error(self, status: int, headers: Mapping[str, str], body: object) -> ProviderError:
        retryable = status in _RETRYABLE_STATUS or status >= 500
        detail = self._redact(_server_message(body))
        if len(detail) > 500:
            detail = detail[:500] + "..."
        hint = _HINTS.get(status, "")
        return ProviderError(
            f"{self._where()}: HTTP {status}"
            + (f": {detail}" if detail else "")
            + (f"; {hint}" if hint else ""),
            retryable=retryable,
            retry_after=parse_retry_after(headers) if retryable else None,
            status=status,
        )

    def _connection_error(self, exc: openai.APIConnectionError) -> ProviderError:
        # The aiohttp transport reports a dropped connection as a connect *timeout*, so the
        # SDK's class is not trusted for the wording: the root cause says what happened.
        cause = _root_cause(exc)
        described = f"{type(cause).__name__}: {cause}" if cause is not exc else str(exc)
        timed_out = (
            isinstance(cause, asyncio.TimeoutError) or "timeout" in type(cause).__name__.lower()
        )
        if isinstance(exc, openai.APITimeoutError) and timed_out:
            what = f"timed out after {self.timeout:g} s ({described})"
            hint = "raise the provider's timeout if the model is slow"
        else:
            what = f"connection failed ({described})"
            hint = "check that the server is running and base_url is right"
        return ProviderError(f"{self._where()}: {self._redact(what)}; {hint}", retryable=True)

    def _malformed(self, what: str) -> ProviderError:
        return ProviderError(
            f"{self._where()}: HTTP 200 but {self._redact(what)} "
            "(often a proxy or an overloaded server; retrying may help)",
            retryable=True,
            status=200,
        )

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is not asyncio.get_running_loop():
            raise RuntimeError(_WRONG_LOOP)
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.close()
