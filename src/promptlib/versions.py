"""Versions: the one module that parses, compares, bumps and matches them.

* A **version** is an immutable ``semver.Version`` (Semantic Versioning 2.0.0, parsed by
  the ``semver`` package); a leading ``v`` is accepted. Bumps are ordered
  ``none < patch < minor < major``.
* A **range** (what a consumer's manifest pins a prompt to) uses npm's semantics, as
  implemented by the ``semantic_version`` package (``NpmSpec``): an exact version
  (``2.0.0`` or ``=2.0.0``, pre-releases included), comparators joined by spaces or commas
  (``>=2.0.0, <3.0.0``), caret ``^2.1``, tilde ``~2.1.0``, ``2.1.x`` and ``||``.
* A **requirement** on the installed package (``promptlib>=2.1,<3``) is PEP 440, parsed by
  ``packaging``, because that is what pip installs by.
* The **package version** is ``[project].version`` of ``pyproject.toml``, read with
  ``tomllib``; ``write_project_version`` rewrites that one value and nothing else.

Every failure is a ``VersionError`` (a ``ConfigError``, so a ``ValueError``) whose message
shows the expected form.
"""

from __future__ import annotations

import enum
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import semver

from .errors import ConfigError, VersionError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from packaging.requirements import Requirement

__all__ = [
    "Bump",
    "Version",
    "VersionError",
    "VersionRange",
    "apply_bump",
    "in_range",
    "parse_requirement",
    "parse_version",
    "read_project_version",
    "requirement_allows",
    "version_range",
    "write_project_version",
]

Version = semver.Version


class Bump(enum.IntEnum):
    """How much a version must grow; comparable, so ``max()`` gives the combined bump."""

    NONE = 0
    PATCH = 1
    MINOR = 2
    MAJOR = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Bump:
        try:
            return cls[str(text).upper()]
        except KeyError:
            raise VersionError(f"unknown bump {text!r}; use major, minor or patch") from None


@lru_cache(maxsize=4096)
def parse_version(text: str) -> Version:
    """Parse a semantic version such as ``1.4.0`` or ``2.0.0-rc.1``; a leading ``v`` is allowed."""
    raw = text[1:] if text[:1] in ("v", "V") else text
    try:
        return Version.parse(raw)
    except (ValueError, TypeError):
        raise VersionError(
            f"{text!r} is not a semantic version; write MAJOR.MINOR.PATCH, e.g. 1.0.0"
        ) from None


def apply_bump(version: Version, bump: Bump) -> Version:
    """The smallest version that is ``bump`` above ``version`` (pre-release tags dropped)."""
    if bump is Bump.MAJOR:
        return version.bump_major()
    if bump is Bump.MINOR:
        return version.bump_minor()
    if bump is Bump.PATCH:
        return version.bump_patch()
    return version


# --- Ranges ---------------------------------------------------------------------------


class VersionRange(Protocol):
    """A parsed range: ``version in range`` with a ``semantic_version.Version``."""

    def __contains__(self, version: Any) -> bool: ...


@dataclass(frozen=True)
class _Exact:
    """An exact version range (``2.1.0``, ``=2.1.0``, ``v2.1.0``), pre-releases included."""

    version: Any

    def __contains__(self, version: Any) -> bool:
        return bool(version == self.version)


def version_range(text: str) -> VersionRange:
    """Parse an npm-style version range (commas allowed between comparators)."""
    import semantic_version

    normalised = " ".join(text.replace(",", " ").split())
    bare = normalised.lstrip("=v").strip()
    if normalised and " " not in normalised:
        try:
            # npm reads a lone version as "exactly this version"; semantic_version's NpmSpec
            # lets 2.1.0 satisfy "2.1.0-rc.1", so exact versions are compared here.
            return _Exact(semantic_version.Version(bare))
        except ValueError:
            pass
    try:
        if not normalised:
            raise ValueError("empty")
        spec: VersionRange = semantic_version.NpmSpec(normalised)
        return spec
    except ValueError:
        raise VersionError(
            f"{text!r} is not a version range; use e.g. 2.1.0, ^2.1, ~2.1.0 or >=2.0.0, <3.0.0"
        ) from None


def in_range(version: str, spec: VersionRange) -> bool:
    """Whether ``version`` (text) is in ``spec``; a version that does not parse is not."""
    import semantic_version

    try:
        return semantic_version.Version(version) in spec
    except ValueError:
        return False


# --- Requirements on the installed package -----------------------------------------------


def parse_requirement(text: str, *, name: str = "promptlib") -> Requirement:
    """A PEP 440 requirement on the package ``name``, e.g. ``promptlib>=2.1,<3``."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise VersionError(f"{text!r} is not a requirement: {exc}") from None
    if requirement.name.lower() != name:
        raise VersionError(f"must be a requirement on {name}, not {requirement.name!r}")
    return requirement


def requirement_allows(requirement: Requirement, version: str) -> bool:
    """Whether ``version`` satisfies ``requirement`` (pre-releases allowed)."""
    return bool(requirement.specifier.contains(version, prereleases=True))


# --- The package version in pyproject.toml -------------------------------------------------

_TABLE = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]\s*(#.*)?$")
_VERSION_KEY = re.compile(r"""^(\s*version\s*=\s*)(["'])([^"']*)(\2)""")


def _load_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return data


def read_project_version(pyproject: Path) -> str | None:
    """``[project].version`` of ``pyproject`` (None when the file or the key is missing)."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    project = _load_toml(pyproject, text).get("project")
    if not isinstance(project, dict):
        return None
    value = project.get("version")
    if value is None:
        return None
    if not isinstance(value, str):
        raise VersionError(f"{pyproject}: [project].version must be a string, not {value!r}")
    try:
        parse_version(value)
    except VersionError as exc:
        raise VersionError(f"{pyproject}: [project].version: {exc}") from None
    return value


def write_project_version(pyproject: Path, version: str) -> bool:
    """Set ``[project].version`` to ``version``, changing no other byte; True if it changed.

    The value must be written as a one-line string under a ``[project]`` header (as every
    build backend's template writes it); the result is re-read with ``tomllib`` to check
    that only that value changed.
    """
    parse_version(version)
    text = pyproject.read_text(encoding="utf-8")
    before = _load_toml(pyproject, text)
    lines = text.splitlines(keepends=True)
    table = ""
    for index, line in enumerate(lines):
        header = _TABLE.match(line)
        if header:
            table = header.group(1)
            continue
        match = _VERSION_KEY.match(line) if table == "project" else None
        if match is None:
            continue
        if match.group(3) == version:
            return False
        lines[index] = (
            f"{match.group(1)}{match.group(2)}{version}{match.group(4)}" + line[match.end() :]
        )
        new = "".join(lines)
        after = _load_toml(pyproject, new)
        expected = {**before, "project": {**before.get("project", {}), "version": version}}
        if after != expected:  # pragma: no cover - the patterns above rule this out
            break
        temporary = pyproject.with_name(f".{pyproject.name}.tmp")
        temporary.write_text(new, encoding="utf-8")
        temporary.replace(pyproject)
        return True
    raise VersionError(
        f'{pyproject}: no `version = "..."` line in the [project] table to update; '
        "write the version there as a one-line string"
    )
