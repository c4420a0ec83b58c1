"""``promptlib check``: the pull-request gate.

It validates the library, diffs it against a release (default: the latest in the ledger)
and verifies that every changed prompt's declared version, and the package version, are at
least what the change requires, and that CHANGELOG.md describes the pending version (a
``## [X.Y.Z]`` section, or an ``## [Unreleased]`` section naming every changed prompt).
Each problem says which version would satisfy it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, Problem
from ..evals.checks import suite_problems
from ..ledger import open_project
from ..library.collection import Library
from ..library.loader import scan
from ..settings import Settings
from ..versions import Bump, Version, apply_bump, parse_version
from .diff import LibraryDiff, PromptDiff, diff_snapshots
from .history import latest_release, resolve, worktree_snapshot
from .snapshot import Snapshot

__all__ = ["CheckReport", "changelog_sections", "check", "reasons", "required_version"]

SECTION = re.compile(r"(?m)^## \[([^\]]+)\]")


@dataclass
class CheckReport:
    problems: list[str]
    diff: LibraryDiff | None
    base: Snapshot | None
    validation: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.validation


def changelog_sections(text: str) -> dict[str, str]:
    """``## [name]`` section bodies by name."""
    matches = list(SECTION.finditer(text))
    sections = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[match.group(1)] = text[match.end() : end]
    return sections


def required_version(change: PromptDiff) -> Version | None:
    if change.old is None or change.bump is Bump.NONE:
        return None
    return apply_bump(parse_version(change.old.version), change.bump)


def reasons(change: PromptDiff, limit: int = 3) -> str:
    worst = [c.what for c in change.changes if c.bump is change.bump]
    text = "; ".join(worst[:limit])
    return text + (f"; and {len(worst) - limit} more" if len(worst) > limit else "")


def check(settings: Settings, against: str | None = None) -> CheckReport:
    """The pull-request gate (see the module docstring)."""
    root = settings.require_root()
    result = scan(root / "prompts")
    if result.problems:
        return CheckReport([], None, None, validation=list(result.problems))
    library = Library(result.prompts, root=root / "prompts", partials=result.partials)
    suites = suite_problems(root, library.values())
    if suites:
        return CheckReport([], None, None, validation=suites)
    view = open_project(settings, write=False).read()
    view.refuse_corrupt()
    base = latest_release(view) if against in (None, "latest") else resolve(root, against, view)
    if base is None:
        if against == "latest":
            raise ConfigError("no release in the ledger yet; `promptlib release` makes the first")
        return CheckReport([], None, None)
    head = worktree_snapshot(root, library)
    diff = diff_snapshots(base, head)
    problems: list[str] = []
    for change in diff.changed():
        required = required_version(change)
        if required is None or change.new is None:
            continue
        declared = parse_version(change.new.version)
        if declared < required:
            problems.append(
                f"{change.id}: declares {declared} but the {change.bump} change needs at least "
                f"{required} (from {change.old.version if change.old else '-'}): {reasons(change)}"
            )
    if diff.bump is not Bump.NONE and base.version:
        needed = apply_bump(parse_version(base.version), diff.bump)
        declared_package = parse_version(head.version or "0.0.0")
        if declared_package < needed:
            problems.append(
                f"package version {declared_package} in pyproject.toml must be at least {needed} "
                f"(a {diff.bump} release after {base.version})"
            )
        pending = str(max(declared_package, needed))
        problems.extend(_changelog_problems(root, pending, base.version, diff))
    return CheckReport(problems, diff, base)


def _changelog_problems(root: Path, pending: str, released: str, diff: LibraryDiff) -> list[str]:
    path = root / "CHANGELOG.md"
    if not path.is_file():
        return ["CHANGELOG.md is missing; add one with an [Unreleased] section naming the changes"]
    sections = changelog_sections(path.read_text(encoding="utf-8"))
    if pending != released and pending in sections:
        return []
    unreleased = sections.get("Unreleased")
    if unreleased is None:
        return [
            f"CHANGELOG.md has no section for {pending} and no [Unreleased] section; add "
            "'## [Unreleased]' naming the changed prompts (or run `promptlib release`)"
        ]
    missing = [c.id for c in diff.changed() if c.id not in unreleased]
    if missing:
        return [
            "CHANGELOG.md: the [Unreleased] section does not mention "
            + ", ".join(missing)
            + f" (or add a section for {pending})"
        ]
    return []
