"""Providers: one small contract and a lazily loaded registry of implementations.

Built-in types: ``retrieval`` (the offline default baseline), ``openai`` (any
OpenAI-compatible endpoint), ``python`` (a callable), ``command`` (a subprocess speaking
JSON) and ``fake`` (a deterministic stand-in for tests). Other packages add types through
the ``promptlib.providers`` entry-point group (name = type, value = ``module:Class``). An
implementation's module, and its SDK, is imported only when a provider of that type is
created.

Named providers are configured in ``[tool.promptlib.providers.NAME]`` (or the
``[providers.NAME]`` table of ``promptlib.toml``) with a ``type`` key and the type's
options. The name ``retrieval`` works without configuration.

The public surface: ``Provider`` (subclass it to add a type), ``Request``, ``Response``,
``Usage``, ``FakeProvider``, ``create_provider`` and ``provider_types``.
"""

from __future__ import annotations

from .contract import Provider, Request, Response, Usage
from .fake import FakeProvider
from .registry import create_provider, provider_types

__all__ = [
    "FakeProvider",
    "Provider",
    "Request",
    "Response",
    "Usage",
    "create_provider",
    "provider_types",
]
