"""The prompt library: prompt files, their validation, sandboxed rendering and fingerprints.

Modules, lowest first: ``messages`` (the rendered ``Message``: a leaf, no Jinja), ``model``
(the file format as pydantic models), ``render`` (the Jinja sandbox), ``prompt`` (one
loaded prompt), ``loader`` (reading a folder, every problem located), ``schema`` (the JSON
Schema of prompt files) and ``collection`` (``Library`` and ``load``).

Names are imported on first use, so that importing ``promptlib.library.messages`` (as the
providers do) does not load Jinja.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collection import Library as Library
    from .collection import load as load
    from .messages import Message as Message
    from .prompt import Prompt as Prompt

__all__ = ["Library", "Message", "Prompt", "load"]

_WHERE = {"Library": "collection", "load": "collection", "Message": "messages", "Prompt": "prompt"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
