"""Jinja filters and tests that installed packages register through entry points.

Contract:

* A package registers a filter under the entry point group ``promptlib.filters`` and a
  test under ``promptlib.tests``; the entry point's name is the name templates use, its
  value is ``module:function``. Jinja's built-in filters and tests always win: a plugin
  with a built-in name is never used.
* Discovery is lazy: the entry points are read (package metadata only) the first time a
  template names a filter or test that is not built in, once per process; a plugin's module
  is imported only when a template uses it, and once.
* A plugin must be a plain function (``def`` or a builtin function) that takes values
  only: no class or callable object, and no ``pass_context``/``pass_environment``/
  ``pass_eval_context`` (it could read every render variable or the environment, which the
  prompt's fingerprint does not cover). The renderer calls it with the sandbox's limits and
  refuses a filter's result that is not plain data (``check_data``; a value the template
  gave it, given back, is let through), so a plugin cannot hand a template a module,
  class, function or other object to walk; of a test's result only its truth is used.
* Identity: entry point name, ``module:attr`` and the sha256 of the module's source file
  (and of the file that defines the function, when that is another file). The identity of
  every plugin a prompt uses is part of the prompt's fingerprint, so editing a plugin's
  source changes the fingerprint of exactly the prompts that use it.
* A plugin that cannot be imported or used is reported as a ``ConfigError`` naming the
  distribution and the entry point, never with a traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from markupsafe import Markup

from ..errors import ConfigError, UnsafeTemplateError

__all__ = [
    "GROUPS",
    "Plugin",
    "available",
    "check_data",
    "clear_cache",
    "load",
    "registration_hint",
    "state",
]

Kind = Literal["filter", "test"]

#: The entry point group of each kind of plugin.
GROUPS: Mapping[str, str] = {"filter": "promptlib.filters", "test": "promptlib.tests"}

# Values a plugin may return: data, nothing a template could walk to code. Types are
# compared exactly: a subclass of ``str`` could carry methods of its own.
_SCALARS = frozenset({str, int, float, bool, type(None), bytes, Markup})
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})

_lock = threading.Lock()
_entry_points: dict[str, dict[str, metadata.EntryPoint]] = {}
_loaded: dict[tuple[str, str], Plugin] = {}


@dataclass(frozen=True)
class Plugin:
    """A loaded filter or test: its identity and the function itself."""

    kind: Kind
    name: str
    target: str
    distribution: str
    sha256: str
    function: Callable[..., Any]

    def identity(self) -> dict[str, str]:
        """What the fingerprint of a prompt that uses this plugin covers."""
        return {"entry_point": self.target, "sha256": self.sha256}


def clear_cache() -> None:
    """Forget the entry points read and the plugins loaded (after installing a package)."""
    with _lock:
        _entry_points.clear()
        _loaded.clear()


def _registered(kind: Kind) -> dict[str, metadata.EntryPoint]:
    with _lock:
        found = _entry_points.get(kind)
        if found is None:
            found = {}
            for entry in metadata.entry_points(group=GROUPS[kind]):
                # The first distribution on the path wins, as for imports.
                found.setdefault(entry.name, entry)
            _entry_points[kind] = found
        return found


def available(kind: Kind) -> frozenset[str]:
    """The names of the installed plugins of ``kind`` (no plugin module is imported)."""
    return frozenset(_registered(kind))


def registration_hint(kind: Kind) -> str:
    """How to make a missing plugin of ``kind`` available, for error messages."""
    return (
        f"install the package that provides it, or register a function under the "
        f"{GROUPS[kind]!r} entry point (see docs/filters.md)"
    )


def _distribution(entry: metadata.EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return str(name) if name else "an unknown distribution"


def _file_digest(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            digest.update(file.read())
    return "sha256:" + digest.hexdigest()


def load(kind: Kind, name: str) -> Plugin | None:
    """The plugin ``name`` of ``kind``, imported on first use; None if none is registered.

    Raises ``ConfigError`` when the entry point is registered but cannot be used.
    """
    key = (kind, name)
    plugin = _loaded.get(key)
    if plugin is not None:
        return plugin
    entry = _registered(kind).get(name)
    if entry is None:
        return None
    plugin = _import(kind, entry)
    with _lock:
        return _loaded.setdefault(key, plugin)


def state(kind: Kind, name: str) -> str | None:
    """What validating a template that names plugin ``name`` depends on: its entry point and
    source digest, the problem that keeps it from loading, or None when none is installed.
    A validation result stays true while this stays the same."""
    try:
        plugin = load(kind, name)
    except ConfigError as exc:
        return f"error: {exc}"
    return None if plugin is None else f"{plugin.target} {plugin.sha256}"


def _import(kind: Kind, entry: metadata.EntryPoint) -> Plugin:
    dist = _distribution(entry)
    where = f"{kind} {entry.name!r} (entry point {entry.value!r} in {GROUPS[kind]} of {dist})"
    module_name, _, attribute = entry.value.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not module_name or not attribute or "[" in attribute:
        raise ConfigError(f"{where}: an entry point must be written module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot import {module_name}: {type(exc).__name__}: {exc}; reinstall "
            f"{dist} or fix the module"
        ) from None
    function: Any = module
    try:
        for part in attribute.split("."):
            function = getattr(function, part)
    except AttributeError:
        raise ConfigError(f"{where}: {module_name} has no attribute {attribute!r}") from None
    if not (inspect.isfunction(function) or inspect.isbuiltin(function)):
        raise ConfigError(
            f"{where}: {attribute} is a {type(function).__name__}, not a plain function; "
            "register a function defined with def"
        )
    if getattr(function, "jinja_pass_arg", None) is not None:
        raise ConfigError(
            f"{where}: {attribute} asks Jinja for its context or environment "
            "(pass_context, pass_environment, pass_eval_context); a plugin takes values only"
        )
    if getattr(function, "unsafe_callable", False) or getattr(function, "alters_data", False):
        raise ConfigError(f"{where}: {attribute} is marked unsafe to call from templates")
    files: list[str] = []
    for owner in (module, function):
        try:
            path = inspect.getsourcefile(owner)
        except TypeError:
            path = None
        if path is None and owner is module:
            path = getattr(module, "__file__", None)
        if path is not None and path not in files:
            files.append(path)
    try:
        if not files:
            raise OSError("no source file")
        sha256 = _file_digest(files)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot read the source of {module_name} ({exc}), which its identity "
            "in prompt fingerprints is made of"
        ) from None
    return Plugin(kind, entry.name, f"{module_name}:{attribute}", dist, sha256, function)


def check_data(value: Any, what: str, limit: int) -> Any:
    """``value`` when it is plain data (text, numbers, booleans, None, and lists, tuples,
    dicts and sets of them); else ``UnsafeTemplateError``. At most ``limit`` values are
    looked at: a larger value is refused by the renderer's size checks anyway."""
    pending = [value]
    seen: set[int] = set()
    count = 0
    while pending:
        item = pending.pop()
        count += 1
        if count > limit:
            raise UnsafeTemplateError(f"{what} returned over {limit:,} values; return less data")
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind in _CONTAINERS:
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            else:
                pending.extend(item)
            continue
        raise UnsafeTemplateError(
            f"{what} returned a {type(item).__name__}; a plugin may give templates only "
            "text, numbers, booleans, None, and lists, tuples, dicts and sets of them"
        )
    return value
