"""The prompt collection: ``load()`` and the read-only ``Library`` mapping.

``load()`` with no argument loads the bundled library: the ``prompts/`` folder shipped
inside the installed wheel (``promptlib/_bundled/prompts``), or, in a source checkout,
the repository's ``prompts/`` folder. ``load(path)`` loads a project folder (one that holds
``prompts/``) or a prompts folder itself. Loading fails with ``LoadError`` listing every
problem; warnings are kept on ``Library.warnings``. A path that leaves the project (a
symlinked partial, prompt or folder resolving outside it) fails every load, strict or not,
with a ``ConfigError`` naming the link and where it leads: skipping it as one broken file
would hide it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError, LoadError, NotFoundError, Problem
from ..settings import Settings
from .loader import display_path, find_prompt_files, id_for_path, scan
from .prompt import Prompt

__all__ = ["Library", "bundled_prompts_dir", "library_root", "load", "prompts_dir_for"]


def bundled_prompts_dir() -> Path:
    """The bundled library's folder, from an installed wheel or a source checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "_bundled" / "prompts"
    if installed.is_dir():
        return installed
    checkout = package.parent.parent / "prompts"
    if checkout.is_dir() and (checkout.parent / "pyproject.toml").is_file():
        return checkout
    raise NotFoundError(  # pragma: no cover - only a broken installation gets here
        "the bundled prompt library is missing from this installation; reinstall promptlib"
    )


def library_root(path: Path) -> Path:
    """The prompts folder for ``path``: ``path/prompts`` when it exists, else ``path``."""
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        raise NotFoundError(f"{path}: expected a folder holding prompts/, not a file")
    return path / "prompts" if (path / "prompts").is_dir() else path


def prompts_dir_for(settings: Settings) -> Path:
    """The project's prompts folder, or the bundled library's outside any project."""
    return settings.prompts_dir or bundled_prompts_dir()


class Library(Mapping[str, Prompt]):
    """A read-only mapping of prompt id -> ``Prompt``, sorted by id."""

    def __init__(
        self,
        prompts: Mapping[str, Prompt],
        *,
        root: Path | None = None,
        partials: Mapping[str, str] | None = None,
        warnings: tuple[Problem, ...] = (),
        broken: Mapping[str, tuple[Problem, ...]] | None = None,
    ) -> None:
        self._prompts = MappingProxyType(dict(sorted(prompts.items())))
        self.root = root
        self.partials: Mapping[str, str] = MappingProxyType(dict(partials or {}))
        self.warnings = warnings
        #: Files that did not load (``load(strict=False)`` only): the id each file's path
        #: gives, with its problems. Problems not tied to one file are under "".
        self.broken: Mapping[str, tuple[Problem, ...]] = MappingProxyType(dict(broken or {}))

    @property
    def problems(self) -> tuple[Problem, ...]:
        """Every problem of the files that did not load (empty for a strict load)."""
        return tuple(sorted(p for problems in self.broken.values() for p in problems))

    def __getitem__(self, prompt_id: str) -> Prompt:
        try:
            return self._prompts[prompt_id]
        except KeyError:
            if prompt_id in self.broken:
                raise LoadError(self.broken[prompt_id]) from None
            close = difflib.get_close_matches(prompt_id, self._prompts, n=3)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else "; `promptlib list` shows them all"
            )
            raise NotFoundError(
                f"no prompt {prompt_id!r} in the library{hint}", known=list(self._prompts)
            ) from None

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._prompts

    def get(self, prompt_id: str, default: Any = None) -> Any:
        """The prompt, or ``default`` (``Mapping.get`` would only catch ``KeyError``)."""
        return self._prompts.get(prompt_id, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._prompts)

    def __len__(self) -> int:
        return len(self._prompts)

    def __repr__(self) -> str:
        return f"<Library {len(self)} prompts from {self.root}>"

    @property
    def tags(self) -> list[str]:
        """Every tag used in the library, sorted."""
        return sorted({tag for prompt in self._prompts.values() for tag in prompt.tags})

    def filter(self, *, tag: str | None = None, prefix: str | None = None) -> Library:
        """The prompts that carry ``tag`` and/or whose id starts with ``prefix``."""
        chosen = {
            pid: p
            for pid, p in self._prompts.items()
            if (tag is None or tag in p.tags) and (prefix is None or pid.startswith(prefix))
        }
        return Library(
            chosen,
            root=self.root,
            partials=self.partials,
            warnings=self.warnings,
            broken=self.broken,
        )


def load(path: str | Path | None = None, *, strict: bool = True) -> Library:
    """Load a prompt library; with no path, the bundled one.

    Strict (the default), any problem in any file raises ``LoadError`` listing them all.
    With ``strict=False`` the prompts that load are returned and the files that do not are
    kept in ``Library.broken`` (asking for one of them raises its ``LoadError``): enough for
    read-only commands to work on the other prompts while one file is being fixed.

    Either way, a path under the library that leaves the project raises ``ConfigError``.
    """
    root = bundled_prompts_dir() if path is None else library_root(Path(path))
    result = scan(root)
    if result.outside:
        raise ConfigError(problems=result.outside)
    if result.problems and strict:
        raise LoadError(result.problems)
    return Library(
        result.prompts,
        root=root,
        partials=result.partials,
        warnings=tuple(result.warnings),
        broken=_broken(root, result.problems),
    )


def _broken(root: Path, problems: list[Problem]) -> dict[str, tuple[Problem, ...]]:
    """Problems grouped by the prompt id of their file's path ("" when there is none)."""
    ids = {
        display_path(f): id_for_path(root.resolve(), f) for f in find_prompt_files(root.resolve())
    }
    grouped: dict[str, list[Problem]] = {}
    for problem in problems:
        grouped.setdefault(ids.get(problem.path) or "", []).append(problem)
    return {pid: tuple(items) for pid, items in grouped.items()}
