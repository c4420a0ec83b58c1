"""The one exception tree of promptlib.

Every error promptlib raises on purpose is a ``PromptlibError``. Each class also subclasses
the builtin a caller would naturally catch, and carries its facts as fields so that tools
can act on them without parsing messages::

    PromptlibError
    ├── LoadError(ValueError)            a prompt library has problems (all of them, located)
    ├── RenderError(ValueError)          a prompt could not be rendered
    │   ├── InputError                   render arguments do not match the declared inputs
    │   └── UnsafeTemplateError          the sandbox stopped a template (unsafe access, limits)
    ├── NotFoundError(LookupError)       an unknown prompt id, release, suite or dataset
    ├── ConfigError(ValueError)          settings, suite, manifest or other input files
    │   └── VersionError                 a version, bump, range or requirement that does not parse
    ├── DatasetError(ValueError)         a dataset file is missing or malformed
    ├── LedgerError(ValueError)          the ledger is corrupt, torn, or from a newer schema
    ├── ProviderError(RuntimeError)      a model provider failed (``retryable``: worth a retry)
    ├── DriftError(ValueError)           installed prompts differ from a consumer's manifest lock
    ├── GitError(RuntimeError)           a git command failed
    └── MissingDependencyError(ImportError)  an optional dependency is not installed

Messages say what to do next. Third-party exceptions are translated where they enter the
code base, with ``raise ... from``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "ConfigError",
    "DatasetError",
    "DriftError",
    "GitError",
    "InputError",
    "LedgerError",
    "LoadError",
    "MissingDependencyError",
    "NotFoundError",
    "Problem",
    "PromptlibError",
    "ProviderError",
    "RenderError",
    "UnsafeTemplateError",
    "VersionError",
]


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in an input file.

    ``path`` is the file as the user named it, ``line`` is 1-based (0 when the problem is
    about the file as a whole), ``key`` is the dotted key path inside the document
    (``messages[1].content``), and ``severity`` is ``"error"`` or ``"warning"``.
    """

    path: str
    line: int
    key: str
    message: str
    severity: str = field(default="error", compare=False)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        key = f" {self.key}:" if self.key else ""
        label = "" if self.severity == "error" else f" {self.severity}:"
        return f"{where}:{label}{key} {self.message}"


class PromptlibError(Exception):
    """Base class of every error promptlib raises on purpose."""


class LoadError(PromptlibError, ValueError):
    """A prompt library (or one prompt file) has problems; ``problems`` lists them all."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the prompt library"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class RenderError(PromptlibError, ValueError):
    """A prompt could not be rendered."""

    def __init__(self, message: str, *, prompt_id: str | None = None) -> None:
        self.prompt_id = prompt_id
        super().__init__(f"{prompt_id}: {message}" if prompt_id else message)


class InputError(RenderError):
    """Render arguments do not match the prompt's declared inputs; one line per problem."""

    def __init__(self, problems: Sequence[str], *, prompt_id: str | None = None) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems), prompt_id=prompt_id)


class UnsafeTemplateError(RenderError):
    """The sandbox refused an operation, or a render went past its size or time limit."""


class NotFoundError(PromptlibError, LookupError):
    """Something named by the caller does not exist; ``known`` lists what does."""

    def __init__(self, message: str, *, known: Sequence[str] = ()) -> None:
        self.known = tuple(known)
        super().__init__(message)

    def __str__(self) -> str:
        # LookupError's str() would quote the message; we want it as written.
        return str(self.args[0])


class ConfigError(PromptlibError, ValueError):
    """A settings, suite or manifest file (or a command-line value) is invalid.

    ``problems`` holds the located problems when there are several (a suite file with
    three mistakes); the message then lists them, one per line.
    """

    def __init__(self, message: str = "", *, problems: Sequence[Problem] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message or "\n".join(str(p) for p in self.problems))


class VersionError(ConfigError):
    """A version, bump, version range or package requirement that does not parse."""


class DatasetError(PromptlibError, ValueError):
    """A dataset file is missing or malformed."""


class LedgerError(PromptlibError, ValueError):
    """The ledger cannot be read or written safely."""


class ProviderError(PromptlibError, RuntimeError):
    """A model provider call failed.

    ``retryable`` tells the harness whether another attempt may succeed; ``retry_after``
    is the delay in seconds the server asked for, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        super().__init__(message)


class DriftError(PromptlibError, ValueError):
    """Installed prompts differ from what a consumer locked; ``drifts`` lists each one."""

    def __init__(self, drifts: Sequence[str]) -> None:
        self.drifts = tuple(drifts)
        super().__init__("\n".join(["prompt manifest drift:", *(f"  {d}" for d in drifts)]))


class GitError(PromptlibError, RuntimeError):
    """A git command failed or git is not available."""


class MissingDependencyError(PromptlibError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""
