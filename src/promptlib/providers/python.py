"""The ``python`` provider: a Python callable answers each request.

Options (``[tool.promptlib.providers.NAME]`` with ``type = "python"``):

    callable      ``package.module:function`` (an attribute path after the colon is allowed:
                  ``module:Class.method``); required
    model         a label for reports (optional)
    concurrency   requests in flight (default 8)

The callable is called as ``function(messages, params)`` with ``messages`` a list of
``{"role": ..., "content": ...}`` dicts and ``params`` a dict of generation parameters
(fresh copies for every call); a callable with a parameter named ``repeat`` also gets the
repeat index (0 to K - 1 with ``eval --repeats K``) as ``repeat=``, so that a
deterministic callable can answer differently across repeats (a sampling seed). It may be
sync (run in a worker thread, so it does not block
the event loop) or async. It returns the answer text, or a dict::

    {"text": "...", "usage": {"prompt_tokens": 12, "completion_tokens": 3},
     "cost": 0.0001, "model": "..."}          # everything but "text" optional

Failures become ``ProviderError``: a module that cannot be imported, a missing attribute, a
result of the wrong shape, or an exception from the callable are not retryable (the same
code would fail the same way); a callable that raises ``ProviderError`` itself decides.

Identity: the fingerprint holds the callable's path, the model label and the ``sha256`` of
the source file of the module named in the path, read once when the fingerprint is first
needed. Editing that file therefore invalidates cached answers; editing other modules it
imports does not (name a new ``model`` label, or a new function, to force a re-run).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .._canonical import file_sha256
from ..errors import ProviderError
from .contract import Provider, Request, Response, parse_options, response_from_data

__all__ = ["PythonProvider"]

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_PATH = rf"^{_DOTTED}:{_DOTTED}$"


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    target: str = Field(alias="callable", pattern=_PATH)
    model: str | None = None
    concurrency: int = Field(8, ge=1)


class PythonProvider(Provider):
    """A Python callable as a provider; see the module docstring."""

    type = "python"

    def __init__(self, name: str, options: _Options) -> None:
        super().__init__(name)
        self._options = options
        self.concurrency = options.concurrency
        self._function: Callable[..., Any] | None = None
        self._takes_repeat = False

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> PythonProvider:
        return cls(name, parse_options(_Options, name, cls.type, options))

    def __repr__(self) -> str:
        return f"PythonProvider(name={self.name!r}, callable={self._options.target!r})"

    @cached_property
    def _source_hash(self) -> str | None:
        """The sha256 of the named module's source file, when it can be found."""
        module_name = self._options.target.partition(":")[0]
        try:
            module = sys.modules.get(module_name)
            spec = module.__spec__ if module is not None else importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            return None
        origin = getattr(spec, "origin", None)
        if not origin or not origin.endswith(".py"):
            return None
        try:
            return file_sha256(origin)
        except OSError:
            return None

    def fingerprint_data(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "callable": self._options.target,
            "model": self._options.model,
            "source": self._source_hash,
        }

    def _where(self) -> str:
        return f"provider {self.name!r} ({self._options.target})"

    def _resolve(self) -> Callable[..., Any]:
        if self._function is not None:
            return self._function
        module_name, _, attribute_path = self._options.target.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as exc:
            raise ProviderError(
                f"{self._where()}: cannot import {module_name}: {type(exc).__name__}: {exc}; "
                "check the module path and that its folder is on sys.path",
                retryable=False,
            ) from exc
        for part in attribute_path.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise ProviderError(
                    f"{self._where()}: {module_name} has no attribute {attribute_path!r}",
                    retryable=False,
                ) from None
        if not callable(target):
            raise ProviderError(
                f"{self._where()}: {attribute_path} is not callable", retryable=False
            )
        function: Callable[..., Any] = target
        self._takes_repeat = _takes_repeat(function)
        self._function = function
        return function

    async def complete(self, request: Request) -> Response:
        function = self._resolve()
        messages = [m.to_dict() for m in request.messages]
        params = dict(request.params)
        extra = {"repeat": request.repeat} if self._takes_repeat else {}
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(messages, params, **extra)
            else:
                result = await asyncio.to_thread(function, messages, params, **extra)
                if inspect.isawaitable(result):
                    result = await result
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"{self._where()} raised {type(exc).__name__}: {exc}", retryable=False
            ) from exc
        return response_from_data(result, self._options.model, self._where())


def _takes_repeat(function: Callable[..., Any]) -> bool:
    """Whether ``function`` declares a parameter named ``repeat`` (passed by keyword)."""
    try:
        parameter = inspect.signature(function).parameters.get("repeat")
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
