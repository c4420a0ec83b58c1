"""promptlib: a prompt library that behaves like software.

Prompts are typed YAML files rendered in a Jinja sandbox; each has a semantic version and a
content fingerprint. The public surface is listed in ``__all__``; everything else is
internal. Submodules are imported on first use, so ``import promptlib`` stays cheap and
pulls in no command-line or provider dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import evaluate as evaluate
    from .api import evaluate_against as evaluate_against
    from .api import load as load
    from .errors import ConfigError as ConfigError
    from .errors import DatasetError as DatasetError
    from .errors import DriftError as DriftError
    from .errors import GitError as GitError
    from .errors import InputError as InputError
    from .errors import LedgerError as LedgerError
    from .errors import LoadError as LoadError
    from .errors import MissingDependencyError as MissingDependencyError
    from .errors import NotFoundError as NotFoundError
    from .errors import Problem as Problem
    from .errors import PromptlibError as PromptlibError
    from .errors import ProviderError as ProviderError
    from .errors import RenderError as RenderError
    from .errors import UnsafeTemplateError as UnsafeTemplateError
    from .errors import VersionError as VersionError
    from .library.collection import Library as Library
    from .library.messages import Message as Message
    from .library.prompt import Prompt as Prompt

__all__ = [
    "ConfigError",
    "DatasetError",
    "DriftError",
    "GitError",
    "InputError",
    "LedgerError",
    "Library",
    "LoadError",
    "Message",
    "MissingDependencyError",
    "NotFoundError",
    "Problem",
    "Prompt",
    "PromptlibError",
    "ProviderError",
    "RenderError",
    "UnsafeTemplateError",
    "VersionError",
    "__version__",
    "evaluate",
    "evaluate_against",
    "load",
]

_WHERE = {
    "ConfigError": "errors",
    "DatasetError": "errors",
    "DriftError": "errors",
    "GitError": "errors",
    "InputError": "errors",
    "LedgerError": "errors",
    "LoadError": "errors",
    "MissingDependencyError": "errors",
    "NotFoundError": "errors",
    "Problem": "errors",
    "PromptlibError": "errors",
    "ProviderError": "errors",
    "RenderError": "errors",
    "UnsafeTemplateError": "errors",
    "VersionError": "errors",
    "Library": "library.collection",
    "evaluate_against": "api",
    "evaluate": "api",
    "load": "api",
    "Message": "library.messages",
    "Prompt": "library.prompt",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("promptlib")
        except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'promptlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
