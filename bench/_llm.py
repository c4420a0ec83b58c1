"""The pieces the benchmarks share: tests/_llm_server.py in its own process, the echo
prompt they evaluate against it, and the bare clients they compare promptlib with."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SERVER_CODE = """
import sys
sys.path.insert(0, {tests!r})
from _llm_server import LLMServer
with LLMServer(delay={delay!r}) as server:
    print(server.base_url, flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""

SYSTEM = (
    "You are the support assistant of an online store. "
    "Answer the customer's message in one short paragraph."
)
PROMPT = f"""id: bench.echo
version: 1.0.0
description: "Answers a customer message (benchmark prompt)."
inputs:
  text:
    type: string
    description: "The customer's message."
messages:
  - role: system
    content: "{SYSTEM}"
  - role: user
    content: "{{{{ text }}}}"
model:
  temperature: 0
  max_tokens: 64
output:
  format: text
examples:
  - inputs:
      text: "Where is my order?"
"""


class Server:
    """An LLM server in its own process, serving until stopped (or the ``with`` block ends):
    tests/_llm_server.py answering after ``delay`` seconds, or the server ``argv`` starts.
    The process prints its base URL on its first line and serves until its stdin closes."""

    def __init__(self, delay: float, argv: list[str] | None = None) -> None:
        if argv is None:
            code = SERVER_CODE.format(tests=str(ROOT / "tests"), delay=delay)
            argv = [sys.executable, "-c", code]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            self.stop()
            raise SystemExit("the LLM server did not start")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _answered(who: str, text: object, detail: object) -> None:
    if not text:
        raise SystemExit(f"{who}: unexpected result: {str(detail)[:2000]}")


async def send_aiohttp(base_url: str, bodies: list[dict[str, Any]], concurrency: int) -> None:
    """POST ``bodies`` to ``base_url``'s chat completions with ``concurrency`` workers on one
    aiohttp session: the least a client can do per request."""
    import aiohttp

    queue = list(reversed(bodies))
    headers = {"Authorization": "Bearer no-key"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(
                    f"{base_url}/chat/completions", json=body, headers=headers
                ) as response:
                    data = await response.json()
                    _answered("aiohttp", data["choices"][0]["message"]["content"], data)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def send_sdk(base_url: str, bodies: list[dict[str, Any]], concurrency: int) -> None:
    """Send ``bodies`` through the openai SDK with ``concurrency`` workers, on the transport
    promptlib uses (``DefaultAioHttpClient``, no SDK retries)."""
    import openai

    client = openai.AsyncOpenAI(
        api_key="no-key",
        base_url=base_url,
        max_retries=0,
        http_client=openai.DefaultAioHttpClient(),
    )
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            completion = await client.chat.completions.create(**queue.pop())
            _answered("openai SDK", completion.choices[0].message.content, completion)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
