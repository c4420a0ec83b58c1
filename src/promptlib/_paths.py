"""Path containment: promptlib reads no file outside the project it works on.

Prompts, partials, suites and datasets are named by paths inside a project folder, and
any of them may be a symlink or, for a suite's ``dataset:``, a path with ``..`` in it.
``escape(root, path)`` follows every symlink (and applies every ``..``) and, when the
result leaves ``root``, returns an ``Escape`` naming the link that leads out and where it
goes: never anything the target holds. ``inside`` raises that as a ``ConfigError``, and
``links_outside`` lists every symlink under a folder that leads out, following only the
links that stay inside (a wheel build follows them all and would copy the targets).

A symlink that stays inside the project is fine, wherever inside it points. The check is
made just before a file is read; a process that rewrites the project while promptlib
runs is outside this model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, Problem

__all__ = ["Escape", "escape", "inside", "links_outside"]

_LINK_HINT = (
    "promptlib reads no file outside the project: copy the file into the project, "
    "or remove the link"
)
_PATH_HINT = "promptlib reads no file outside the project: name a path inside it"


@dataclass(frozen=True)
class Escape:
    """A path that leaves the project.

    ``path`` is the symlink that leads out (or, when no symlink does, the path itself,
    with every ``..`` applied), ``shown`` the same relative to the project when it is below
    it, ``target`` where it resolves, and ``kind`` what the target is: ``"file"``,
    ``"folder"``, or ``"path"`` when nothing is there. ``points_to`` is what messages show:
    the link's own text when it is an absolute path (``/proc/self/environ``, as written,
    not ``/proc/4711/environ``), else ``target``.
    """

    path: Path
    shown: str
    target: Path
    kind: str
    link: bool
    points_to: str = ""

    @property
    def reason(self) -> str:
        """What is wrong, without the path itself: for a ``Problem`` located at it."""
        where = self.points_to or str(self.target)
        if self.link:
            return f"is a symlink to a {self.kind} outside the project ({where}); {_LINK_HINT}"
        return f"is outside the project ({where}); {_PATH_HINT}"

    def problem(self, shown: str | None = None) -> Problem:
        """A ``Problem`` located at the link, as ``shown`` (default: relative to the project)."""
        return Problem(self.shown if shown is None else shown, 0, "", self.reason)

    def __str__(self) -> str:
        return f"{self.shown} {self.reason}"


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _kind(target: Path) -> str:
    if target.is_dir():
        return "folder"
    return "file" if target.exists() else "path"


def escape(root: Path, path: Path) -> Escape | None:
    """How ``path`` (absolute, or relative to ``root``) leaves ``root``; None if it does not.

    Every symlink is followed, ``root``'s own included, so a project reached through a
    symlink is fine. The link named is the first component below ``root`` that is a
    symlink resolving outside it.
    """
    base = Path(os.path.abspath(root))
    real_base = base.resolve()
    full = base / path
    target = full.resolve()
    if _within(target, real_base):
        return None
    lexical = Path(os.path.abspath(full))
    if _within(lexical, base):
        current = base
        for part in lexical.relative_to(base).parts:
            current = current / part
            if current.is_symlink():
                leads_to = current.resolve()
                if not _within(leads_to, real_base):
                    shown = current.relative_to(base).as_posix()
                    written = os.readlink(current)
                    points_to = written if os.path.isabs(written) else str(leads_to)
                    return Escape(current, shown, leads_to, _kind(leads_to), True, points_to)
        shown = lexical.relative_to(base).as_posix()
    else:
        shown = path.as_posix()
    return Escape(lexical, shown, target, _kind(target), link=False)


def inside(root: Path, path: Path) -> Path:
    """``path`` (absolute, or relative to ``root``) resolved, when it stays inside ``root``.

    Raises ``ConfigError`` naming the link that leads out and where it goes.
    """
    left = escape(root, path)
    if left is not None:
        raise ConfigError(problems=[left.problem()])
    return (Path(os.path.abspath(root)) / path).resolve()


def links_outside(root: Path, top: Path) -> list[Escape]:
    """Every symlink under ``top`` that leads outside ``root``, sorted by path.

    Symlinked folders that stay inside ``root`` are walked too, since whatever copies
    ``top`` by following links would copy what they hold; each real folder is walked once,
    by its own path when it has one under ``top`` (folders are walked before links).
    """
    found: dict[str, Escape] = {}
    seen: set[Path] = set()
    pending = [Path(os.path.abspath(top))]
    linked: list[Path] = []
    while pending or linked:
        folder = pending.pop() if pending else linked.pop(0)
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                left = escape(root, path)
                if left is not None:
                    found.setdefault(left.shown, left)
                elif path.is_dir():
                    linked.append(path)
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)
    return [found[shown] for shown in sorted(found)]
