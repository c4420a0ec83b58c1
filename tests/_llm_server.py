"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

``LLMServer`` runs an aiohttp application in a background thread, on a port the OS assigns,
and serves ``POST /v1/chat/completions``::

    with LLMServer(script={"ex-3": ["429:1", "ok"]}, delay=0.05) as server:
        provider = make_provider(base_url=server.base_url)
        ...
        assert server.counts["ex-3"] == 2

Each request belongs to an *example key*: the content of the last user message. The n-th
request for a key (its *attempt*, 1-based) follows ``script[key][n - 1]``; when the script
is missing or used up the server answers normally. A step is one of:

    ok              200 with a completion; its text is ``answer(messages)`` (default
                    ``"echo: <key>"``), after the server-wide ``delay``
    STATUS          that HTTP status (e.g. 400, 401, 500, 503) with an OpenAI-style error body;
                    a 401's message quotes the Authorization header it received, as the worst
                    server would, so tests can check that clients redact the key
    STATUS:VALUE    the same, with ``Retry-After: VALUE`` sent verbatim (seconds or an HTTP date)
    STATUS:ms=N     the same, with ``retry-after-ms: N``
    slow:SECONDS    wait that long, then answer as ``ok`` (for client timeouts)
    reset           close the connection without sending a response
    malformed       200, ``Content-Type: application/json``, a body that is not JSON
    nochoices       200 with a well-formed completion whose ``choices`` is empty
    html            200 with an HTML page, as a misconfigured proxy would send

The server records every request it receives (``requests``: key, attempt, JSON body,
Authorization header) and counts them (``total``, ``counts`` per key). Leaving the ``with``
block stops the server, closes its connections and joins its thread; requests still
waiting in ``slow`` steps are abandoned at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["LLMServer", "Seen"]

Answer = Callable[[list[dict[str, Any]]], str]


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    key: str
    attempt: int
    body: dict[str, Any]
    authorization: str | None


def _example_key(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _echo(messages: list[dict[str, Any]]) -> str:
    return f"echo: {_example_key(messages)}"


def _words(text: str) -> int:
    return len(text.split())


class LLMServer:
    """An OpenAI-compatible server in a background thread; see the module docstring."""

    def __init__(
        self,
        script: Mapping[str, Sequence[str]] | None = None,
        *,
        answer: Answer = _echo,
        delay: float = 0.0,
    ) -> None:
        self.script = {key: list(steps) for key, steps in (script or {}).items()}
        self.answer = answer
        self.delay = delay
        self.requests: list[Seen] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._port = 0

    # -- what tests read -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL to give a client as its base URL (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def total(self) -> int:
        """How many requests arrived, over all keys."""
        with self._lock:
            return len(self.requests)

    @property
    def authorizations(self) -> list[str | None]:
        """The Authorization header of each request, in arrival order."""
        with self._lock:
            return [seen.authorization for seen in self.requests]

    def bodies(self, key: str) -> list[dict[str, Any]]:
        """The JSON bodies received for ``key``, in arrival order."""
        with self._lock:
            return [seen.body for seen in self.requests if seen.key == key]

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LLMServer:
        self._thread = threading.Thread(target=self._run, name="LLMServer", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._failure is not None or not self._ready.is_set():
            self._join()
            raise RuntimeError("LLMServer did not start") from self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            # The loop may finish between the check and the call; nothing left to stop then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._join()
        if self._failure is not None:
            raise RuntimeError("LLMServer failed") from self._failure

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # pragma: no cover - a bug in this module
                raise RuntimeError("LLMServer thread did not stop")
            self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread by __enter__/__exit__
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        # No access log: tests would print a line per request.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            self._port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            sock.close()

    # -- the endpoint ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages", [])
        key = _example_key(messages)
        with self._lock:
            self.counts[key] += 1
            attempt = self.counts[key]
            self.requests.append(Seen(key, attempt, body, request.headers.get("Authorization")))
        steps = self.script.get(key, [])
        step = steps[attempt - 1] if attempt <= len(steps) else "ok"
        return await self._respond(request, step, body)

    async def _respond(
        self, request: web.Request, step: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        kind, _, value = step.partition(":")
        if kind == "ok":
            await self._sleep(self.delay)
            return self._completion(body)
        if kind == "slow":
            await self._sleep(float(value))
            return self._completion(body)
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            # Nothing can be sent now; ending the handler this way makes aiohttp drop the
            # request quietly instead of logging a failed write.
            raise asyncio.CancelledError
        if kind == "malformed":
            return web.Response(
                body=b'{"id": "chatcmpl-1", "choices": [', content_type="application/json"
            )
        if kind == "nochoices":
            return self._completion(body, choices=False)
        if kind == "html":
            return web.Response(
                text="<html><body>Bad gateway</body></html>", content_type="text/html"
            )
        if kind.isdigit():
            return self._error(int(kind), value, request.headers.get("Authorization"))
        raise ValueError(f"LLMServer: unknown script step {step!r}")

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            assert self._stop is not None
            # Wake up early when the server stops, so shutdown never waits for a slow step.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)

    def _completion(self, body: dict[str, Any], *, choices: bool = True) -> web.Response:
        messages = body.get("messages", [])
        text = self.answer(messages)
        prompt_tokens = sum(_words(str(m.get("content", ""))) for m in messages)
        payload: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", "unknown"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ]
            if choices
            else [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": _words(text),
                "total_tokens": prompt_tokens + _words(text),
            },
        }
        return web.json_response(payload)

    @staticmethod
    def _error(status: int, retry_after: str, authorization: str | None) -> web.Response:
        headers: dict[str, str] = {}
        if retry_after.startswith("ms="):
            headers["retry-after-ms"] = retry_after[3:]
        elif retry_after:
            headers["Retry-After"] = retry_after
        message = f"scripted error {status}"
        if status == 401:
            message = f"Incorrect API key provided: {authorization}"
        payload = {"error": {"message": message, "type": "test_error", "code": str(status)}}
        return web.Response(
            status=status,
            text=json.dumps(payload),
            content_type="application/json",
            headers=headers,
        )
