"""Versions: the one module that parses, compares and bumps them.

A version is an immutable ``semver.Version`` (Semantic Versioning 2.0.0, parsed by the
``semver`` package). Bumps are ordered ``none < patch < minor < major``.
"""

from __future__ import annotations

import enum
from functools import lru_cache

import semver

__all__ = ["Bump", "Version", "apply_bump", "parse_version"]

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
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown bump {text!r}; use major, minor or patch") from None


@lru_cache(maxsize=4096)
def parse_version(text: str) -> Version:
    """Parse a semantic version such as ``1.4.0`` or ``2.0.0-rc.1``; a leading ``v`` is allowed.

    Raises ``ValueError`` with a message that shows the expected form.
    """
    raw = text[1:] if text[:1] in ("v", "V") else text
    try:
        return Version.parse(raw)
    except (ValueError, TypeError):
        raise ValueError(
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
