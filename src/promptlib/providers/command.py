"""The ``command`` provider: a subprocess that speaks JSON answers each request.

Options (``[tool.promptlib.providers.NAME]`` with ``type = "command"``):

    argv          the command and its arguments, e.g. ``["python", "answer.py"]``; no shell
    timeout       seconds one request may take (default 60); then the process is killed
    concurrency   processes running at once (default 4)
    model         a label for reports (optional)
    env           extra environment variables for the process, ``{NAME = "value"}``; they are
                  part of the configuration and the fingerprint, so never put secrets here:
                  the process inherits the environment promptlib runs in

Protocol: one process per request. promptlib writes one JSON object to its stdin and
closes it::

    {"messages": [{"role": "user", "content": "..."}], "params": {...}, "output": {...}}

and reads one JSON object from its stdout after it exits::

    {"text": "...", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}   # usage optional

(a bare JSON string is accepted as the text). Failures become ``ProviderError`` with the
last lines of stderr: a timeout (the process group is killed) and exit status 75
(``EX_TEMPFAIL``, "try again later") are retryable; any other non-zero exit, output that is
not JSON, or JSON of the wrong shape is not.

Identity: the fingerprint holds ``argv``, ``env`` and the model label. A script named in
``argv`` is not hashed; change the label (or the argv) when the script's behaviour changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ProviderError
from .contract import Provider, Request, Response, parse_options, response_from_data

__all__ = ["CommandProvider"]

EX_TEMPFAIL = 75
_STDERR_LINES = 10
_STDERR_CHARS = 2000
# After a kill, how long to wait for the pipes to reach end-of-file.
_DRAIN_SECONDS = 2.0


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    argv: list[str] = Field(min_length=1)
    timeout: float = Field(60.0, gt=0)
    concurrency: int = Field(4, ge=1)
    model: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


def _tail(stderr: bytes) -> str:
    """The last lines of stderr, for an error message."""
    text = stderr.decode("utf-8", errors="replace").rstrip()
    if not text:
        return "(stderr was empty)"
    lines = text.splitlines()[-_STDERR_LINES:]
    tail = "\n".join(lines)
    if len(tail) > _STDERR_CHARS:
        tail = "..." + tail[-_STDERR_CHARS:]
    return "stderr:\n" + tail


class CommandProvider(Provider):
    """A subprocess per request, JSON in and out; see the module docstring."""

    type = "command"

    def __init__(self, name: str, options: _Options) -> None:
        super().__init__(name)
        self._options = options
        self.concurrency = options.concurrency
        self.timeout = options.timeout

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> CommandProvider:
        return cls(name, parse_options(_Options, name, cls.type, options))

    def __repr__(self) -> str:
        return f"CommandProvider(name={self.name!r}, argv={self._options.argv!r})"

    def fingerprint_data(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "argv": list(self._options.argv),
            "env": dict(self._options.env),
            "model": self._options.model,
        }

    def _where(self) -> str:
        return f"provider {self.name!r} ({self._options.argv[0]})"

    async def complete(self, request: Request) -> Response:
        payload = json.dumps(
            {
                "messages": [m.to_dict() for m in request.messages],
                "params": dict(request.params),
                "output": request.output.model_dump(exclude_none=True, by_alias=True),
            },
            ensure_ascii=False,
        ).encode("utf-8")
        env = {**os.environ, **self._options.env} if self._options.env else None
        try:
            process = await asyncio.create_subprocess_exec(
                *self._options.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                # Its own process group, so a timeout kills whatever it started too.
                start_new_session=os.name == "posix",
            )
        except OSError as exc:
            raise ProviderError(
                f"{self._where()}: cannot start the command: {exc}; check argv",
                retryable=False,
            ) from exc
        stdout, stderr, timed_out = await self._run(process, payload)
        if timed_out:
            raise ProviderError(
                f"{self._where()}: no answer within {self.timeout:g} s, the process was "
                f"killed; raise the provider's timeout if it is slow\n{_tail(stderr)}",
                retryable=True,
            )
        code = process.returncode
        if code != 0:
            ended = (
                f"was killed by signal {-code}"
                if code is not None and code < 0
                else f"exited with status {code}"
            )
            raise ProviderError(
                f"{self._where()}: the command {ended}\n{_tail(stderr)}",
                retryable=code == EX_TEMPFAIL,
            )
        try:
            data = json.loads(stdout)
        except ValueError as exc:
            start = stdout[:200].decode("utf-8", errors="replace")
            raise ProviderError(
                f"{self._where()}: stdout is not JSON ({exc}); it began {start!r}; print one "
                f'JSON object such as {{"text": "..."}}\n{_tail(stderr)}',
                retryable=False,
            ) from None
        return response_from_data(data, self._options.model, self._where())

    async def _run(
        self, process: asyncio.subprocess.Process, payload: bytes
    ) -> tuple[bytes, bytes, bool]:
        """Feed stdin, collect stdout and stderr; kill the process group on timeout."""
        assert process.stdout is not None
        assert process.stderr is not None
        out = asyncio.ensure_future(process.stdout.read())
        err = asyncio.ensure_future(process.stderr.read())

        async def feed() -> None:
            assert process.stdin is not None
            try:
                process.stdin.write(payload)
                await process.stdin.drain()
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass  # It exited without reading its input; its status and stderr say why.

        feeder = asyncio.ensure_future(feed())
        exited = asyncio.ensure_future(process.wait())
        tasks = (out, err, feeder, exited)
        try:
            _, pending = await asyncio.wait(tasks, timeout=self.timeout)
            timed_out = bool(pending)
            if timed_out:
                self._kill(process)
                # The pipes end once the process group is dead; keep what stderr said.
                await asyncio.wait(tasks, timeout=_DRAIN_SECONDS)
        finally:
            # On timeout, and when the harness cancels the call, no process outlives it.
            if not all(task.done() for task in tasks):
                self._kill(process)
            for task in (out, err, feeder):
                task.cancel()  # A no-op for the ones that finished.
            # Reap the process: a killed one exits at once.
            await asyncio.gather(*tasks, return_exceptions=True)
        stderr = err.result() if not err.cancelled() else b""
        if timed_out:
            return b"", stderr, True
        return out.result(), stderr, False

    @staticmethod
    def _kill(process: asyncio.subprocess.Process) -> None:
        try:
            if os.name == "posix":
                os.killpg(process.pid, signal.SIGKILL)
            else:  # pragma: no cover - Windows
                process.kill()
        except ProcessLookupError:
            pass
