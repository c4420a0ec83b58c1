"""The top-level ``promptlib.load``: a library, optionally pinned by a consumer manifest."""

from __future__ import annotations

from pathlib import Path

from .library import Library
from .library import load as load_library
from .manifest import pinned_library

__all__ = ["load"]


def load(path: str | Path | None = None, *, manifest: str | Path | None = None) -> Library:
    """Load a prompt library; with no path, the one bundled with the installed package.

    ``manifest`` names a consumer's ``prompt_manifest.yaml``: only its prompts are returned,
    after checking the installed library against the manifest and its lock. Any drift (a
    missing prompt, a version outside its range, a fingerprint different from the lock, a
    library version outside the requirement, a stale lock) raises ``DriftError``: it fails
    closed, never returning a silently different prompt.
    """
    library = load_library(path)
    if manifest is None:
        return library
    return pinned_library(Path(manifest), library)
