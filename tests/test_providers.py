"""The openai, python and command providers.

The openai provider is tested against ``LLMServer``, a real OpenAI-compatible HTTP server on
127.0.0.1 (tests/_llm_server.py); the command provider runs a small Python script. Nothing
leaves the machine.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from _llm_server import LLMServer
from promptlib.errors import ConfigError, ProviderError
from promptlib.library.messages import Message
from promptlib.library.model import OutputSpec
from promptlib.providers import Provider, Request, Response, Usage, create_provider

SENTINEL = "sk-SENTINEL-7f3c9a0e5b1d4e26"
KEY_ENV = {"PROMPTLIB_TEST_KEY": SENTINEL}


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> Iterator[None]:
    """Every LLMServer stops its thread; every provider call finishes in its own loop."""
    before = set(threading.enumerate())
    yield
    left = [t.name for t in set(threading.enumerate()) - before if t.name == "LLMServer"]
    assert left == []


# -- helpers -------------------------------------------------------------------------------


def make(kind: str, environ: Mapping[str, str] | None = None, **options: Any) -> Provider:
    return create_provider(
        "p", {"p": {"type": kind, **options}}, environ=KEY_ENV if environ is None else environ
    )


def llm(server: LLMServer, **options: Any) -> Provider:
    settings = {
        "model": "test-model",
        "base_url": server.base_url,
        "api_key_env": "PROMPTLIB_TEST_KEY",
    }
    return make("openai", **{**settings, **options})


def ask(key: str, output: OutputSpec | None = None, **params: Any) -> Request:
    return Request(
        messages=(Message("system", "Answer briefly."), Message("user", key)),
        params=params,
        output=output or OutputSpec(),
    )


def call(provider: Provider, *requests: Request) -> list[Response | ProviderError]:
    """Each request's response or ProviderError, in one event loop that closes the provider."""

    async def run() -> list[Response | ProviderError]:
        results: list[Response | ProviderError] = []
        try:
            for request in requests:
                try:
                    results.append(await provider.complete(request))
                except ProviderError as exc:
                    results.append(exc)
        finally:
            await provider.aclose()
        return results

    return asyncio.run(run())


def response(result: Response | ProviderError) -> Response:
    assert isinstance(result, Response), result
    return result


def failure(result: Response | ProviderError) -> ProviderError:
    assert isinstance(result, ProviderError), result
    return result


def everything_shown(error: BaseException) -> str:
    """All a log or traceback could show of an error, its causes and their fields."""
    parts = [str(error), repr(error), *traceback.format_exception(error)]
    parts += [repr(vars(error)), repr(error.__cause__), repr(error.__context__)]
    return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- openai: answers and requests -------------------------------------------------------


def test_openai_answers_with_text_usage_and_model() -> None:
    with LLMServer() as server:
        [result] = call(llm(server), ask("ex-1"))
        assert response(result) == Response(
            text="echo: ex-1", usage=Usage(prompt_tokens=3, completion_tokens=2), model="test-model"
        )
        assert server.total == 1
        assert server.authorizations == [f"Bearer {SENTINEL}"]
        [body] = server.bodies("ex-1")
        assert body["model"] == "test-model"
        assert body["messages"] == [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "ex-1"},
        ]


def test_openai_maps_parameters_request_over_provider_defaults() -> None:
    with LLMServer() as server:
        provider = llm(server, params={"temperature": 0.1, "max_tokens": 5, "seed": 1})
        request = ask(
            "ex-1",
            temperature=0.7,
            top_p=0.9,
            stop=("\n\n",),
            seed=3,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            max_tokens=None,
        )
        call(provider, request)
        [body] = server.bodies("ex-1")
        sent = {k: v for k, v in body.items() if k not in ("model", "messages")}
        assert sent == {
            "temperature": 0.7,
            "top_p": 0.9,
            "max_tokens": 5,
            "stop": ["\n\n"],
            "seed": 3,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
        }


def test_openai_json_output_asks_for_json_mode() -> None:
    with LLMServer() as server:
        call(llm(server), ask("ex-json", OutputSpec(format="json")), ask("ex-text"))
        assert server.bodies("ex-json")[0]["response_format"] == {"type": "json_object"}
        assert "response_format" not in server.bodies("ex-text")[0]


def test_openai_refuses_a_parameter_it_cannot_send_without_a_request() -> None:
    with LLMServer() as server:
        [result] = call(llm(server), ask("ex-1", top_k=40))
        error = failure(result)
        assert not error.retryable
        assert "top_k" in str(error)
        assert "supported: temperature" in str(error)
        assert server.total == 0


def test_openai_without_a_key_sends_a_placeholder_and_keeps_its_identity() -> None:
    with LLMServer() as server:
        keyless = make(
            "openai", environ={}, model="test-model", base_url=server.base_url, api_key_env=""
        )
        [result] = call(keyless, ask("ex-1"))
        assert response(result).text == "echo: ex-1"
        assert server.authorizations == ["Bearer no-key"]
        assert keyless.fingerprint == llm(server).fingerprint


def test_openai_runs_requests_concurrently_on_one_client() -> None:
    with LLMServer(delay=0.05) as server:
        provider = llm(server)

        async def run() -> list[Response]:
            try:
                return await asyncio.gather(*(provider.complete(ask(f"ex-{i}")) for i in range(32)))
            finally:
                await provider.aclose()

        started = time.perf_counter()
        results = asyncio.run(run())
        elapsed = time.perf_counter() - started
        assert [r.text for r in results] == [f"echo: ex-{i}" for i in range(32)]
        assert server.total == 32
        # 32 requests one after another would take 1.6 s.
        assert elapsed < 0.8


# -- openai: every failure is one attempt and the right ProviderError -------------------


@pytest.mark.parametrize(
    ("step", "retryable", "status", "retry_after", "says"),
    [
        ("429:1", True, 429, 1.0, "HTTP 429: scripted error 429"),
        ("429:2.5", True, 429, 2.5, "HTTP 429"),
        ("429:ms=1500", True, 429, 1.5, "HTTP 429"),
        ("429", True, 429, None, "HTTP 429"),
        ("429:Wed, 21 Oct 2015 07:28:00 GMT", True, 429, 0.0, "HTTP 429"),
        ("429:soon", True, 429, None, "HTTP 429"),
        ("408", True, 408, None, "HTTP 408"),
        ("409", True, 409, None, "HTTP 409"),
        ("500", True, 500, None, "HTTP 500: scripted error 500"),
        ("502", True, 502, None, "HTTP 502"),
        ("503:7", True, 503, 7.0, "HTTP 503"),
        ("400", False, 400, None, "HTTP 400: scripted error 400"),
        ("401", False, 401, None, "check the key in the variable named by api_key_env"),
        ("403", False, 403, None, "HTTP 403"),
        ("404", False, 404, None, "check the provider's model and base_url"),
        ("422", False, 422, None, "HTTP 422"),
        ("400:5", False, 400, None, "HTTP 400"),
        ("reset", True, None, None, "connection failed (ServerDisconnectedError"),
        ("slow:5", True, None, None, "0.3 s"),
        ("malformed", True, 200, None, "HTTP 200 but the body is not valid JSON"),
        ("nochoices", True, 200, None, "HTTP 200 but the completion has no choices"),
        ("html", True, 200, None, "HTTP 200 but the body is not a chat completion"),
    ],
)
def test_openai_failure_is_one_attempt_and_a_provider_error(
    step: str, retryable: bool, status: int | None, retry_after: float | None, says: str
) -> None:
    with LLMServer(script={"ex-1": [step]}) as server:
        [result] = call(llm(server, timeout=0.3), ask("ex-1"))
        error = failure(result)
        assert (error.retryable, error.status, error.retry_after) == (
            retryable,
            status,
            retry_after,
        )
        assert says in str(error)
        assert str(error).startswith(f"provider 'p' ({server.base_url}, model test-model): ")
        # The SDK's own retries are off: the harness decides about another attempt.
        assert server.counts["ex-1"] == 1
        assert SENTINEL not in everything_shown(error)
        # No SDK exception (its request holds the Authorization header) is reachable.
        assert error.__cause__ is None
        assert error.__context__ is None


def test_openai_retry_after_as_a_future_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    with LLMServer(script={"ex-1": [f"429:{when}"]}) as server:
        error = failure(call(llm(server), ask("ex-1"))[0])
        assert error.retry_after is not None
        assert 25 < error.retry_after <= 30


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": email.utils.formatdate(NOW + 12, usegmt=True)}, 12.0),
        ({"Retry-After": email.utils.formatdate(NOW - 60, usegmt=True)}, 0.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:32 -0000"}, 12.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    from promptlib.providers.openai import parse_retry_after

    assert parse_retry_after(headers, now=NOW) == expected


def test_openai_sends_a_single_stop_string_as_is() -> None:
    with LLMServer() as server:
        call(llm(server), ask("ex-1", stop="END"))
        assert server.bodies("ex-1")[0]["stop"] == "END"


def test_openai_follows_the_script_attempt_by_attempt() -> None:
    with LLMServer(script={"ex-3": ["429:1", "503", "ok"]}) as server:
        results = call(llm(server), ask("ex-3"), ask("ex-3"), ask("ex-3"), ask("ex-4"))
        assert [getattr(r, "status", "ok") for r in results] == [429, 503, "ok", "ok"]
        assert dict(server.counts) == {"ex-3": 3, "ex-4": 1}
        assert server.total == 4


def test_openai_redacts_a_key_the_server_echoes() -> None:
    with LLMServer(script={"ex-1": ["401"]}) as server:
        error = failure(call(llm(server), ask("ex-1"))[0])
        assert "Incorrect API key provided: Bearer [redacted]" in str(error)
        assert SENTINEL not in everything_shown(error)


def test_openai_connection_refused_is_retryable() -> None:
    provider = make(
        "openai",
        model="m",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key_env="PROMPTLIB_TEST_KEY",
    )
    error = failure(call(provider, ask("ex-1"))[0])
    assert (error.retryable, error.status, error.retry_after) == (True, None, None)
    assert "connection failed" in str(error)
    assert "check that the server is running" in str(error)
    assert SENTINEL not in everything_shown(error)


# -- openai: identity, secrets, configuration -------------------------------------------


def test_openai_identity_holds_no_secret() -> None:
    with LLMServer() as server:
        provider = llm(server, params={"temperature": 0.0})
        assert provider.fingerprint_data() == {
            "type": "openai",
            "adapter": 1,
            "model": "test-model",
            "base_url": server.base_url,
            "params": {"temperature": 0.0},
        }
        assert provider.model == "test-model"
        shown = repr(provider) + json.dumps(provider.fingerprint_data()) + provider.fingerprint
        assert SENTINEL not in shown


def test_openai_settings_become_attributes() -> None:
    provider = make(
        "openai",
        model="m",
        api_key_env="PROMPTLIB_TEST_KEY",
        timeout=5,
        concurrency=2,
        rate_limit=1.5,
    )
    assert (provider.timeout, provider.concurrency, provider.rate_limit) == (5, 2, 1.5)
    default = make("openai", model="m", api_key_env="PROMPTLIB_TEST_KEY")
    assert (default.timeout, default.concurrency, default.rate_limit) == (60.0, 8, None)


@pytest.mark.parametrize(
    ("base_url", "normalised"),
    [
        (None, "https://api.openai.com/v1"),
        ("HTTP://LocalHost:80/v1/", "http://localhost/v1"),
        ("https://Example.com:443/v1", "https://example.com/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        (
            "https://host/openai/v1?api-version=2024-06-01",
            "https://host/openai/v1?api-version=2024-06-01",
        ),
    ],
)
def test_openai_base_url_is_normalised_in_the_fingerprint(
    base_url: str | None, normalised: str
) -> None:
    options: dict[str, Any] = {"base_url": base_url} if base_url else {}
    provider = make("openai", model="m", api_key_env="PROMPTLIB_TEST_KEY", **options)
    assert provider.fingerprint_data()["base_url"] == normalised


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        (
            {"model": "m", "modle": "x"},
            KEY_ENV,
            "unknown option 'modle'; allowed options: api_key_env, base_url, concurrency, model, params, rate_limit, timeout",
        ),
        ({}, KEY_ENV, "model: Field required"),
        ({"model": "m", "timeout": 0}, KEY_ENV, "timeout: Input should be greater than 0"),
        (
            {"model": "m", "params": {"temprature": 1}},
            KEY_ENV,
            "unknown option 'params.temprature'",
        ),
        ({"model": "m"}, {}, "the environment variable OPENAI_API_KEY is not set"),
        (
            {"model": "m", "api_key_env": "MY_KEY"},
            {"OPENAI_API_KEY": SENTINEL},
            "the environment variable MY_KEY is not set",
        ),
        (
            {"model": "m", "api_key_env": "MY_KEY"},
            {"MY_KEY": ""},
            "the environment variable MY_KEY is not set",
        ),
        ({"model": "m", "base_url": "ftp://host/v1"}, KEY_ENV, "base_url must be an http(s) URL"),
        (
            {"model": "m", "base_url": "http://user:hunter2@host/v1"},
            KEY_ENV,
            "base_url must not contain credentials",
        ),
    ],
)
def test_openai_configuration_errors(
    options: dict[str, Any], environ: Mapping[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make("openai", environ=environ, **options)
    assert message in str(caught.value)
    assert SENTINEL not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_openai_provider_serves_one_event_loop_at_a_time() -> None:
    with LLMServer() as server:
        provider = llm(server)
        first = asyncio.new_event_loop()
        try:
            assert first.run_until_complete(provider.complete(ask("ex-1"))).text == "echo: ex-1"
            with pytest.raises(RuntimeError, match="second event loop"):
                asyncio.run(provider.complete(ask("ex-2")))
            with pytest.raises(RuntimeError, match=r"await provider.aclose\(\) in the loop"):
                asyncio.run(provider.aclose())
            first.run_until_complete(provider.aclose())
        finally:
            first.close()
        # Closed in the loop that used it, the provider works again from a new one.
        assert response(call(provider, ask("ex-3"))[0]).text == "echo: ex-3"
        assert server.total == 2


def test_openai_is_imported_only_when_an_openai_provider_is_created() -> None:
    probe = textwrap.dedent(
        """
        import sys
        import promptlib, promptlib.providers
        from promptlib.providers import create_provider
        create_provider("py", {"py": {"type": "python", "callable": "json:dumps"}})
        create_provider("cmd", {"cmd": {"type": "command", "argv": ["true"]}})
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("openai", "aiohttp", "httpx2"))
        assert heavy == [], heavy
        create_provider("llm", {"llm": {"type": "openai", "model": "m", "api_key_env": ""}})
        assert "openai" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)


# -- python ------------------------------------------------------------------------------

ANSWERS = """
import asyncio
import threading

from promptlib.errors import ProviderError


def sync_echo(messages, params):
    return f"sync: {messages[-1]['content']} t={params.get('temperature')} on {threading.current_thread().name}"


async def async_echo(messages, params):
    await asyncio.sleep(0)
    return {"text": "async: " + messages[-1]["content"], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def boom(messages, params):
    raise ValueError("kaput")


def busy(messages, params):
    raise ProviderError("overloaded", retryable=True, retry_after=2.0)


def wrong_key(messages, params):
    return {"txt": "x"}


def number(messages, params):
    return 42


def mutate(messages, params):
    messages.clear()
    params.clear()
    return "mutated"


def seeded(messages, params, repeat):
    return f"repeat {repeat}"


async def seeded_async(messages, params, *, repeat=0):
    return f"async repeat {repeat}"


def any_keywords(messages, params, **extra):
    return f"extra {sorted(extra)}"


class Model:
    @staticmethod
    def answer(messages, params):
        return {"text": "static", "model": "model-v2", "cost": 0.5}


not_callable = 3
"""


@pytest.fixture
def answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh importable module of callables; returns its name."""
    name = f"answers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(ANSWERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_python_sync_callable_runs_in_a_worker_thread(answers: str) -> None:
    provider = make("python", callable=f"{answers}:sync_echo", model="label")
    result = response(call(provider, ask("ex-1", temperature=0.2))[0])
    assert result.text.startswith("sync: ex-1 t=0.2 on ")
    assert not result.text.endswith("MainThread")
    assert (result.model, result.usage) == ("label", None)


def test_python_async_callable_and_dict_result_with_usage(answers: str) -> None:
    provider = make("python", callable=f"{answers}:async_echo")
    result = response(call(provider, ask("ex-1"))[0])
    assert result == Response(text="async: ex-1", usage=Usage(3, 1))


def test_python_attribute_path_and_result_extras(answers: str) -> None:
    provider = make("python", callable=f"{answers}:Model.answer", model="label")
    assert response(call(provider, ask("ex-1"))[0]) == Response(
        text="static", cost=0.5, model="model-v2"
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("seeded", ["repeat 0", "repeat 1", "repeat 2"]),
        ("seeded_async", ["async repeat 0", "async repeat 1", "async repeat 2"]),
        # Only a parameter named ``repeat`` asks for it: **kwargs gets nothing new.
        ("any_keywords", ["extra []"] * 3),
        ("sync_echo", None),
    ],
)
def test_python_callable_that_declares_repeat_gets_the_repeat_index(
    answers: str, target: str, expected: list[str] | None
) -> None:
    provider = make("python", callable=f"{answers}:{target}")
    requests = [replace(ask("ex-1"), repeat=r) for r in range(3)]
    texts = [response(r).text for r in call(provider, *requests)]
    if expected is None:  # a callable of (messages, params) is called as it always was
        assert all(t.startswith("sync: ex-1") for t in texts)
    else:
        assert texts == expected


def test_python_callable_gets_copies(answers: str) -> None:
    provider = make("python", callable=f"{answers}:mutate")
    request = ask("ex-1", temperature=0.5)
    assert response(call(provider, request)[0]).text == "mutated"
    assert len(request.messages) == 2
    assert dict(request.params) == {"temperature": 0.5}


@pytest.mark.parametrize(
    ("target", "retryable", "says"),
    [
        ("boom", False, "raised ValueError: kaput"),
        ("busy", True, "overloaded"),
        (
            "wrong_key",
            False,
            "returned an invalid result (text: Field required; txt: Extra inputs are not permitted)",
        ),
        ("number", False, "returned an invalid result"),
        ("not_callable", False, "not_callable is not callable"),
        ("missing", False, "has no attribute 'missing'"),
        ("Model.missing", False, "has no attribute 'Model.missing'"),
    ],
)
def test_python_failures(answers: str, target: str, retryable: bool, says: str) -> None:
    provider = make("python", callable=f"{answers}:{target}")
    error = failure(call(provider, ask("ex-1"))[0])
    assert error.retryable is retryable
    assert says in str(error)


def test_python_bad_import_path() -> None:
    provider = make("python", callable="no_such_module_promptlib_test:f")
    error = failure(call(provider, ask("ex-1"))[0])
    assert not error.retryable
    assert "cannot import no_such_module_promptlib_test: ModuleNotFoundError" in str(error)
    assert isinstance(error.__cause__, ModuleNotFoundError)


def test_python_fingerprint_follows_the_source_file(answers: str, tmp_path: Path) -> None:
    first = make("python", callable=f"{answers}:sync_echo", model="label").fingerprint_data()
    assert first["type"] == "python"
    assert first["callable"] == f"{answers}:sync_echo"
    assert first["model"] == "label"
    assert str(first["source"]).startswith("sha256:")
    again = make("python", callable=f"{answers}:sync_echo", model="label").fingerprint_data()
    assert again == first
    with (tmp_path / f"{answers}.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# edited\n")
    edited = make("python", callable=f"{answers}:sync_echo", model="label").fingerprint_data()
    assert edited["source"] != first["source"]
    missing = make("python", callable="no_such_module_promptlib_test:f").fingerprint_data()
    assert missing["source"] is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "callable: Field required"),
        ({"callable": "no_colon"}, "callable: String should match pattern"),
        (
            {"callable": "mod:f", "timeout": 3},
            "unknown option 'timeout'; allowed options: callable, concurrency, model",
        ),
        (
            {"callable": "mod:f", "concurrency": 0},
            "concurrency: Input should be greater than or equal to 1",
        ),
    ],
)
def test_python_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="provider 'p' \\(type python\\)") as caught:
        make("python", **options)
    assert message in str(caught.value)


# -- command -----------------------------------------------------------------------------

SCRIPT = r"""
import json, os, subprocess, sys, time

request = json.load(sys.stdin)
key = request["messages"][-1]["content"]
if key == "fail":
    print("line 1\nsomething broke", file=sys.stderr)
    sys.exit(3)
if key == "tempfail":
    print("busy, try later", file=sys.stderr)
    sys.exit(75)
if key == "garbage":
    print("this is not json")
    sys.exit(0)
if key == "wrong-shape":
    print(json.dumps({"answer": 1}))
    sys.exit(0)
if key.startswith("hang:"):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(key[5:], "w") as handle:
        handle.write(f"{os.getpid()} {child.pid}")
    print("started, now hanging", file=sys.stderr, flush=True)
    time.sleep(60)
print(json.dumps({
    "text": f"cmd: {key} {request['params']} {request['output']['format']} {os.environ.get('EXTRA')}",
    "usage": {"prompt_tokens": 7, "completion_tokens": 2},
}))
"""


@pytest.fixture
def script(tmp_path: Path) -> list[str]:
    path = tmp_path / "answer.py"
    path.write_text(SCRIPT, encoding="utf-8")
    return [sys.executable, str(path)]


def test_command_answers_over_json(script: list[str]) -> None:
    provider = make("command", argv=script, env={"EXTRA": "extra-value"}, model="label")
    request = ask("ex-1", OutputSpec(format="json"), temperature=0.5)
    assert response(call(provider, request)[0]) == Response(
        text="cmd: ex-1 {'temperature': 0.5} json extra-value", usage=Usage(7, 2), model="label"
    )


@pytest.mark.parametrize(
    ("key", "retryable", "says"),
    [
        ("fail", False, "exited with status 3\nstderr:\nline 1\nsomething broke"),
        ("tempfail", True, "exited with status 75\nstderr:\nbusy, try later"),
        ("garbage", False, "stdout is not JSON"),
        (
            "wrong-shape",
            False,
            "returned an invalid result (text: Field required; answer: Extra inputs are not permitted)",
        ),
    ],
)
def test_command_failures(script: list[str], key: str, retryable: bool, says: str) -> None:
    error = failure(call(make("command", argv=script), ask(key))[0])
    assert error.retryable is retryable
    assert says in str(error)


def test_command_that_cannot_start() -> None:
    error = failure(call(make("command", argv=["/nonexistent/promptlib-test"]), ask("ex-1"))[0])
    assert not error.retryable
    assert "cannot start the command" in str(error)


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")
def test_command_timeout_kills_the_process_and_its_children(
    script: list[str], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    provider = make("command", argv=script, timeout=1.0)
    started = time.monotonic()
    error = failure(call(provider, ask(f"hang:{pids}"))[0])
    assert time.monotonic() - started < 5
    assert error.retryable
    assert "no answer within 1 s, the process was killed" in str(error)
    assert "started, now hanging" in str(error)
    parent, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while not (_gone(parent) and _gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(parent)
    assert _gone(child)


@pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")
def test_command_cancelled_by_the_caller_kills_the_process(
    script: list[str], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    provider = make("command", argv=script, timeout=30)

    async def impatient() -> None:
        await asyncio.wait_for(provider.complete(ask(f"hang:{pids}")), 1.0)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(impatient())
    parent, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while not (_gone(parent) and _gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(parent)
    assert _gone(child)


def test_command_identity_and_settings(script: list[str]) -> None:
    provider = make(
        "command", argv=script, env={"EXTRA": "1"}, model="label", timeout=2, concurrency=3
    )
    assert provider.fingerprint_data() == {
        "type": "command",
        "argv": script,
        "env": {"EXTRA": "1"},
        "model": "label",
    }
    assert (provider.timeout, provider.concurrency, provider.model) == (2, 3, "label")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "argv: Field required"),
        ({"argv": []}, "argv: List should have at least 1 item"),
        ({"argv": "python answer.py"}, "argv: Input should be a valid list"),
        (
            {"argv": ["x"], "shell": True},
            "unknown option 'shell'; allowed options: argv, concurrency, env, model, timeout",
        ),
        ({"argv": ["x"], "env": {"A": 1}}, "env.A: Input should be a valid string"),
    ],
)
def test_command_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="provider 'p' \\(type command\\)") as caught:
        make("command", **options)
    assert message in str(caught.value)
