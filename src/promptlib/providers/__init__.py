"""Providers: a small contract (``base``) and a lazily loaded registry of implementations.

Built-in types: ``retrieval`` (the offline default baseline), ``openai`` (any
OpenAI-compatible endpoint), ``python`` (a callable) and ``command`` (a subprocess speaking
JSON). Other packages add types through the ``promptlib.providers`` entry-point group
(name = type, value = ``module:Class``). An implementation's module, and its SDK, is
imported only when a provider of that type is created.

Named providers are configured in ``[tool.promptlib.providers.NAME]`` (or the
``[providers.NAME]`` table of ``promptlib.toml``) with a ``type`` key and the type's
options. The name ``retrieval`` works without configuration.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from ..errors import ConfigError
from .base import Provider, Request, Response, Usage

__all__ = ["Provider", "Request", "Response", "Usage", "create_provider", "provider_types"]

_BUILTIN = {
    "retrieval": "promptlib.providers.retrieval:RetrievalProvider",
    "openai": "promptlib.providers.openai:OpenAIProvider",
    "python": "promptlib.providers.python:PythonProvider",
    "command": "promptlib.providers.command:CommandProvider",
}


def provider_types() -> dict[str, str]:
    """Provider type -> ``module:Class``, built-ins first, then entry points."""
    types = dict(_BUILTIN)
    for entry in metadata.entry_points(group="promptlib.providers"):
        types.setdefault(entry.name, entry.value)
    return types


def _load(target: str) -> type[Provider]:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, attribute)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"{target} is not a promptlib Provider class")
    return cls


def create_provider(
    name: str,
    configured: Mapping[str, Mapping[str, Any]],
    *,
    environ: Mapping[str, str] | None = None,
) -> Provider:
    """Create the provider called ``name`` from the project's provider tables.

    ``environ`` is where providers read the secrets their configuration names (an API key
    variable); it is passed in, not read here, so that settings resolve in one place.
    """
    table = dict(configured.get(name, {}))
    if not table and name not in _BUILTIN:
        known = ", ".join(sorted({"retrieval", *configured})) or "retrieval"
        raise ConfigError(
            f"unknown provider {name!r}; configured providers: {known} "
            "(add one under [tool.promptlib.providers.NAME] with a 'type')"
        )
    kind = str(table.pop("type", name))
    types = provider_types()
    if kind not in types:
        raise ConfigError(
            f"provider {name!r}: unknown type {kind!r}; known types: {', '.join(sorted(types))}"
        )
    cls = _load(types[kind])
    return cls.from_config(name, table, environ or {})
