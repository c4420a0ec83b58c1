"""A thin, typed wrapper over the git command line (provenance, refs, files at a ref).

Every function takes the folder to run in. Failures raise ``GitError`` with git's own
message; "not a repository" and "git not installed" are ordinary answers where a caller
can do without git (``commit_of`` returns None).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import GitError

__all__ = ["commit_of", "git", "git_bytes", "is_dirty", "is_repository"]


def _run(root: Path, args: tuple[str, ...], check: bool) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("git") is None:
        raise GitError("git is not installed or not on PATH")
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    if check and result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args)}: {stderr or f'exit {result.returncode}'}")
    return result


def git(root: Path, *args: str, check: bool = True) -> str:
    """Run ``git args`` in ``root`` and return its stdout as text."""
    return _run(root, args, check).stdout.decode("utf-8", "replace")


def git_bytes(root: Path, *args: str) -> bytes:
    """Run ``git args`` in ``root`` and return its stdout as bytes (e.g. an archive)."""
    return _run(root, args, True).stdout


def is_repository(root: Path) -> bool:
    try:
        return git(root, "rev-parse", "--is-inside-work-tree", check=False).strip() == "true"
    except GitError:
        return False


def commit_of(root: Path, ref: str = "HEAD") -> str | None:
    """The full commit id of ``ref``, or None outside a repository or for an unknown ref."""
    if not is_repository(root):
        return None
    out = git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).strip()
    return out or None


def is_dirty(root: Path, paths: tuple[str, ...] = ()) -> bool:
    """Whether tracked files (under ``paths``, if given) differ from HEAD."""
    if not is_repository(root):
        return False
    out = git(root, "status", "--porcelain", "--untracked-files=no", "--", *paths, check=False)
    return bool(out.strip())
