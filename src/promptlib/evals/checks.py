"""Project-wide checks that join prompts, suites and datasets (``validate`` and ``check``).

A prompt file can be valid on its own and still fail every example at run time: a suite
may not map one of its required inputs, a mapped column may be missing from the dataset,
a suite's row selection may leave a prompt with no row. ``suite_problems`` finds all of
these, with the suite file, line and key, before any model call.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError, Problem
from ..library.collection import Library
from ..library.loader import scan
from ..library.prompt import Prompt
from .suite import check_suites, load_suites

__all__ = ["suite_problems"]


def suite_problems(root: Path, prompts: Iterable[Prompt] | None = None) -> list[Problem]:
    """Every problem of the project's suites, alone and against ``prompts``.

    ``prompts`` defaults to the prompts of ``root/prompts`` that load. A suite file that
    does not load contributes its own problems.
    """
    try:
        suites = load_suites(root)
    except ConfigError as exc:
        if exc.problems:
            return list(exc.problems)
        return [Problem(str(Path("evals") / "suites"), 0, "", str(exc))]
    if not suites:
        return []
    if prompts is None:
        result = scan(root / "prompts")
        prompts = Library(result.prompts).values()
    return check_suites(suites, prompts)
