"""The registry of provider types: built-ins first, then ``promptlib.providers`` entry points.

A type's module (and its SDK) is imported only when a provider of that type is created.
Failures to import an entry point's class are configuration errors that name the entry
point, never a traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from ..errors import ConfigError
from .contract import Provider

__all__ = ["create_provider", "provider_types"]

_BUILTIN = {
    "retrieval": "promptlib.providers.retrieval:RetrievalProvider",
    "openai": "promptlib.providers.openai:OpenAIProvider",
    "python": "promptlib.providers.python:PythonProvider",
    "command": "promptlib.providers.command:CommandProvider",
    "fake": "promptlib.providers.fake:FakeProvider",
}


def provider_types() -> dict[str, str]:
    """Provider type -> ``module:Class``, built-ins first, then entry points."""
    types = dict(_BUILTIN)
    for entry in metadata.entry_points(group="promptlib.providers"):
        types.setdefault(entry.name, entry.value)
    return types


def _load(kind: str, target: str) -> type[Provider]:
    """The class ``target`` (``module:Class``) names; ``ConfigError`` when it cannot be used.

    Importing a plug-in runs its code: any exception there is the plug-in's (or its
    installation's) problem, reported with the entry point, not a promptlib bug.
    """
    where = f"provider type {kind!r} ({target})"
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{where}: an entry point must be written module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot import {module_name}: {type(exc).__name__}: {exc}; reinstall the "
            "package that provides it, or remove the provider from your configuration"
        ) from exc
    cls = getattr(module, attribute, None)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"{where}: {attribute} is not a promptlib Provider class")
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
    raw = configured.get(name, {})
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"[tool.promptlib.providers.{name}] must be a table of options, not "
            f"{type(raw).__name__}"
        )
    table = dict(raw)
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
    cls = _load(kind, types[kind])
    return cls.from_config(name, table, environ or {})
