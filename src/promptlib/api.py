"""The documented entry points: ``load``, ``evaluate`` and ``evaluate_against``.

``load`` reads a prompt library (by default the one bundled with the installed package),
optionally pinned by a consumer's manifest. ``evaluate`` and ``evaluate_against`` do what
``promptlib eval`` and ``promptlib eval --against`` do, on a project folder, and return the
result objects the CLI renders (``promptlib.reports`` turns them into JSON, Markdown or
JUnit). They resolve the project's settings the way the CLI does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .consumers.manifest import pinned_library
from .library.collection import Library
from .library.collection import load as load_library

if TYPE_CHECKING:
    from .compare.against import AgainstReport
    from .evals.run import EvalReport

__all__ = ["evaluate", "evaluate_against", "load"]


def load(path: str | Path | None = None, *, manifest: str | Path | None = None) -> Library:
    """Load a prompt library; with no path, the one bundled with the installed package.

    ``manifest`` names a consumer's ``prompt_manifest.yaml``: only its prompts are returned,
    after checking the installed library against the manifest and its sealed lock. Any
    drift raises ``DriftError`` listing every one: a missing prompt, a version outside its
    range, a library version outside the requirement, a missing or stale lock, a lock made
    against another promptlib version, a pinned prompt the lock lacks, a locked version or
    fingerprint different from the installed prompt, a lock edited by hand. It fails closed,
    never returning a silently different prompt. A manifest or lock that cannot be read
    raises ``ConfigError`` naming the file.
    """
    library = load_library(path)
    if manifest is None:
        return library
    return pinned_library(Path(manifest), library)


def evaluate(
    project: str | Path | None = None,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    repeats: int = 1,
    error_budget: float = 0.1,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Evaluate a project's prompts with its suites, as ``promptlib eval`` does.

    ``project`` is the project folder (default: found from the current directory).
    Runs already in the ledger are reused; new runs are appended to it. Check
    ``report.provider_failures`` and ``report.gate_failures`` for what the CLI turns into
    exit codes 3 and 1.
    """
    from .evals.run import evaluate as run_evaluate
    from .evals.runner import EvalOptions
    from .settings import Settings

    settings = Settings.resolve(Path(project) if project is not None else None)
    return run_evaluate(
        settings,
        suites=suites,
        prompts=prompts,
        provider=provider,
        options=EvalOptions(repeats=repeats, error_budget=error_budget),
        on_progress=on_progress,
    )


def evaluate_against(
    against: str | None = None,
    project: str | Path | None = None,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    repeats: int = 1,
    error_budget: float = 0.1,
    on_progress: Callable[[int, int], None] | None = None,
) -> AgainstReport:
    """Compare the working tree with a release, as ``promptlib eval --against`` does.

    ``against`` is a release (``v2.0.0``, ``2.0.0``, ``latest``; default: the latest) or a
    git ref. ``report.passed`` is False exactly when the CLI would exit non-zero.
    """
    from .compare.against import compare_against
    from .evals.runner import EvalOptions
    from .settings import Settings

    settings = Settings.resolve(Path(project) if project is not None else None)
    return compare_against(
        settings,
        against,
        suites=suites,
        prompts=prompts,
        provider=provider,
        options=EvalOptions(repeats=repeats, error_budget=error_budget),
        on_progress=on_progress,
    )
