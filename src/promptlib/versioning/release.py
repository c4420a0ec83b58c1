"""``promptlib release``: bump versions, evaluate, write the CHANGELOG, record the release.

It computes the bump (or checks a requested one is enough), writes the new prompt and
package versions, evaluates what the ledger lacks (reusing every run it has), writes the
CHANGELOG section with score deltas against the previous release, appends the release
record, and, with ``commit=True``, commits and tags ``vX.Y.Z``. It never pushes.
``dry_run`` computes and returns the plan and changes no file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .. import _git
from .._paths import inside
from ..errors import ConfigError, LoadError
from ..evals.run import EvalReport, evaluate
from ..evals.runner import EvalOptions
from ..ledger import AnyLedger, LedgerView, open_project
from ..ledger.records import RunRecord
from ..library.collection import Library, load
from ..library.loader import scan
from ..settings import Settings
from ..versions import Bump, apply_bump, parse_version, write_project_version
from .diff import LibraryDiff, PromptDiff, diff_snapshots
from .gate import SECTION, reasons, required_version
from .history import latest_release, release_record, worktree_snapshot

__all__ = ["ReleasePlan", "plan_release", "release"]

CHANGELOG_HEADER = """# Changelog

All notable changes to this project are documented in this file. The format is based on
[Keep a Changelog](https://keepachangelog.com/en/1.1.0/), and this project adheres to
[Semantic Versioning](https://semver.org/spec/v2.0.0.html). Release sections are written by
`promptlib release`; notes under `Unreleased` are moved into the next release.

## [Unreleased]
"""

_PROMPT_VERSION = re.compile(r"(?m)^(version:\s*)(\S+)(\s*(?:#.*)?)$")


@dataclass
class ReleasePlan:
    """What ``release`` will do (and, after it ran, what it did)."""

    version: str
    previous: str | None
    bump: Bump | None
    diff: LibraryDiff | None
    prompt_versions: dict[str, tuple[str, str]]  # id -> (declared now, released as)
    changelog: str
    files: list[str] = field(default_factory=list)
    evaluation: EvalReport | None = None
    tagged: str | None = None
    committed: str | None = None
    # A release recorded by an interrupted run, only committed and tagged now.
    resumed: bool = False


def plan_release(
    settings: Settings,
    bump: str = "auto",
    *,
    library: Library | None = None,
    ledger: AnyLedger | None = None,
) -> ReleasePlan:
    """Compute the release without changing anything."""
    root = settings.require_root()
    library = library if library is not None else load(root)
    view = (ledger if ledger is not None else open_project(settings, write=False)).read()
    view.refuse_corrupt()
    base = latest_release(view)
    head = worktree_snapshot(root, library)
    declared_package = parse_version(head.version or "0.0.0")
    if base is None:
        if bump not in ("auto",):
            raise ConfigError("the first release takes the version in pyproject.toml; drop --bump")
        first = {pid: (str(p.version), str(p.version)) for pid, p in library.items()}
        version = str(declared_package)
        changelog = _section(version, None, [], {}, {})
        return ReleasePlan(version, None, None, None, first, changelog)
    diff = diff_snapshots(base, head)
    required = diff.bump
    if required is Bump.NONE:
        raise ConfigError(
            f"nothing to release: no prompt changed since v{base.version}"
            + (
                f" (v{base.version} is recorded in the ledger; `promptlib release --commit` "
                "commits and tags it if an interrupted release did not)"
                if str(declared_package) == base.version
                else ""
            )
        )
    try:
        chosen = required if bump == "auto" else Bump.parse(bump)
    except ConfigError as exc:
        raise ConfigError(f"--bump: {exc} (or auto)") from None
    if chosen < required:
        worst = next(c for c in diff.changed() if c.bump is required)
        raise ConfigError(
            f"--bump {chosen} is too small: the changes need a {required} release "
            f"({worst.id}: {reasons(worst, 1)})"
        )
    computed = apply_bump(parse_version(base.version or "0.0.0"), chosen)
    version = str(max(computed, declared_package))
    versions: dict[str, tuple[str, str]] = {}
    for change in diff.prompts:
        if change.new is None:
            continue
        declared = parse_version(change.new.version)
        needed = required_version(change)
        final = max(declared, needed) if needed is not None else declared
        versions[change.id] = (str(declared), str(final))
    deltas = _score_deltas(view, diff)
    changelog = _section(version, base.version, diff.changed(), versions, deltas)
    return ReleasePlan(version, base.version, chosen, diff, versions, changelog)


def _score_deltas(view: LedgerView, diff: LibraryDiff) -> dict[str, list[str]]:
    """For changed prompts: "suite metric old -> new (+d)" from the ledger, where both exist."""
    wanted = {
        state.fingerprint
        for change in diff.changed()
        for state in (change.old, change.new)
        if state is not None
    }
    by_fingerprint: dict[tuple[str, str, str], RunRecord] = {}
    for record in view.select(lambda entry: entry.prompt_fingerprint in wanted):
        key = (record.prompt.fingerprint, record.suite, record.provider.fingerprint)
        current = by_fingerprint.get(key)
        if current is None or record.time > current.time:
            by_fingerprint[key] = record
    out: dict[str, list[str]] = {}
    for change in diff.changed():
        if change.old is None or change.new is None or change.status == "metadata":
            continue
        lines = []
        for (fingerprint, suite, provider), new in sorted(by_fingerprint.items()):
            if fingerprint != change.new.fingerprint:
                continue
            old = by_fingerprint.get((change.old.fingerprint, suite, provider))
            if old is None:
                continue
            for metric, result in new.results.items():
                before = old.results.get(metric)
                if before is None:
                    continue
                delta = result.mean - before.mean
                lines.append(
                    f"{suite} {metric} {before.mean:.3f} -> {result.mean:.3f} "
                    f"({delta:+.3f}, {new.provider.name})"
                )
        out[change.id] = lines
    return out


def _section(
    version: str,
    previous: str | None,
    changes: Sequence[PromptDiff],
    versions: Mapping[str, tuple[str, str]],
    deltas: Mapping[str, list[str]],
) -> str:
    lines = [f"## [{version}] - {date.today().isoformat()}", ""]
    if previous is None:
        lines += ["First release of the prompt library.", ""]
        return "\n".join(lines)
    groups: dict[str, list[str]] = {"Breaking": [], "Added": [], "Changed": [], "Removed": []}
    for change in changes:
        old = change.old.version if change.old else None
        new = versions.get(change.id, (None, None))[1]
        scores = deltas.get(change.id, [])
        score_text = f" Scores: {'; '.join(scores)}." if scores else ""
        if change.status == "added":
            groups["Added"].append(f"- `{change.id}` {new}: new prompt.")
        elif change.status == "removed":
            groups["Removed"].append(f"- `{change.id}` (was {old}).")
        else:
            what = "; ".join(c.what for c in change.changes)
            entry = f"- `{change.id}` {old} -> {new}: {what}.{score_text}"
            groups["Breaking" if change.bump is Bump.MAJOR else "Changed"].append(entry)
    for title, entries in groups.items():
        if entries:
            lines += [f"### {title}", "", *entries, ""]
    return "\n".join(lines)


def _write_changelog(root: Path, section: str) -> None:
    path = root / "CHANGELOG.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else CHANGELOG_HEADER
    sections = list(SECTION.finditer(text))
    heading = section.partition("\n")[0]
    version = next((m for m in sections if heading.startswith(f"## [{m.group(1)}]")), None)
    if version is not None and version.group(1) != "Unreleased":
        # An interrupted release of this version already wrote its section (the notes under
        # Unreleased moved into it): write it once, never twice.
        return
    unreleased = next((m for m in sections if m.group(1) == "Unreleased"), None)
    if unreleased is None:
        first = sections[0].start() if sections else len(text)
        text = text[:first].rstrip("\n") + "\n\n## [Unreleased]\n\n" + text[first:].lstrip("\n")
        sections = list(SECTION.finditer(text))
        unreleased = next(m for m in sections if m.group(1) == "Unreleased")
    after = [m for m in sections if m.start() > unreleased.start()]
    end = after[0].start() if after else len(text)
    notes = text[unreleased.end() : end].strip("\n")
    heading, _, generated = section.partition("\n")
    body = _merge_notes(notes, generated)
    new_block = f"## [Unreleased]\n\n{heading}\n\n{body}\n\n"
    text = text[: unreleased.start()] + new_block + text[end:].lstrip("\n")
    _atomic_write(path, text.rstrip("\n") + "\n")


_SUBSECTION = re.compile(r"(?m)^### (.+)$")


def _subsections(text: str) -> tuple[str, dict[str, str]]:
    """Text before the first ``### heading``, and each heading's body, in order."""
    matches = list(_SUBSECTION.finditer(text))
    preamble = text[: matches[0].start()] if matches else text
    bodies: dict[str, str] = {}
    for i, match in enumerate(matches):
        stop = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        title = match.group(1).strip()
        chunk = text[match.end() : stop].strip("\n")
        bodies[title] = f"{bodies[title]}\n{chunk}" if title in bodies else chunk
    return preamble.strip("\n"), bodies


def _merge_notes(notes: str, generated: str) -> str:
    """The maintainers' notes with the generated entries added under the same headings."""
    preamble, mine = _subsections(notes)
    generated_preamble, theirs = _subsections(generated)
    for title, body in theirs.items():
        body = body.strip("\n")
        mine[title] = f"{mine[title]}\n{body}" if title in mine else body
    order = ["Breaking", "Added", "Changed", "Removed", "Fixed", "Security"]
    titles = sorted(mine, key=lambda t: order.index(t) if t in order else len(order))
    parts = [p for p in (preamble, generated_preamble) if p]
    parts += [f"### {title}\n\n{mine[title]}" for title in titles]
    return "\n\n".join(parts)


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def _set_version(path: Path, pattern: re.Pattern[str], version: str, what: str) -> bool:
    """Rewrite the one line ``pattern`` finds to carry ``version``; True if it changed."""
    text = path.read_text(encoding="utf-8")
    new, count = pattern.subn(lambda m: f"{m.group(1)}{version}{m.group(3)}", text, count=1)
    if count != 1:
        raise ConfigError(f"{path}: no {what} line to update")
    if new == text:
        return False
    _atomic_write(path, new)
    return True


def _shown(where: str, root: Path) -> str:
    try:
        return Path(where).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return where


def release(
    settings: Settings,
    bump: str = "auto",
    *,
    dry_run: bool = False,
    commit: bool = False,
    provider: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReleasePlan:
    """Release the library (see the module docstring)."""
    root = settings.require_root()
    library = load(root)
    ledger = open_project(settings, write=not dry_run)
    if commit and not dry_run:
        finished = _finish_interrupted(settings, root, library, ledger)
        if finished is not None:
            return finished
    plan = plan_release(settings, bump, library=library, ledger=ledger)
    if dry_run:
        return plan
    for written in ("CHANGELOG.md", "pyproject.toml"):
        inside(root, root / written)  # never read or write a file outside the project
    if commit and _git.is_repository(root):
        tag = f"v{plan.version}"
        if _git.commit_of(root, f"refs/tags/{tag}"):
            raise ConfigError(f"git tag {tag} already exists")
    for prompt_id, (declared, final) in plan.prompt_versions.items():
        prompt = library[prompt_id]
        if declared != final and prompt.path is not None:
            _set_version(prompt.path, _PROMPT_VERSION, final, "top-level 'version:'")
            plan.files.append(str(prompt.path.relative_to(root)))
    if write_project_version(root / "pyproject.toml", plan.version):
        plan.files.append("pyproject.toml")
    library = load(root)
    problems = [p for p in scan(root / "prompts").problems]
    if problems:
        raise LoadError(problems)
    plan.evaluation = evaluate(
        settings,
        provider=provider,
        options=EvalOptions(),
        on_progress=on_progress,
        library=library,
        ledger=ledger,
    )
    if plan.evaluation.provider_failures:
        failed = plan.evaluation.provider_failures[0]
        raise ConfigError(
            f"release stopped: evaluating {failed.prompt} failed ({failed.failure}); the new "
            "versions are written but no release record was appended; fix and re-run"
        )
    if plan.diff is not None:
        plan.changelog = _section(
            plan.version,
            plan.previous,
            plan.diff.changed(),
            plan.prompt_versions,
            _score_deltas(ledger.read(), plan.diff),
        )
    _write_changelog(root, plan.changelog)
    plan.files.append("CHANGELOG.md")
    built = release_record(
        library, plan.version, commit=_git.commit_of(root), previous=plan.previous, bump=plan.bump
    )
    ledger.append(built.record, built.objects)
    plan.files.append(_shown(ledger.where, root))
    if commit and _git.is_repository(root):
        _commit_and_tag(root, plan)
    return plan


def _commit_and_tag(root: Path, plan: ReleasePlan) -> None:
    paths = [
        p for p in ("prompts", "pyproject.toml", "CHANGELOG.md", "evals") if (root / p).exists()
    ]
    _git.git(root, "add", "--", *paths)
    # Nothing staged: an interrupted run committed the release and was stopped before
    # tagging it; tag that commit.
    if _git.git(root, "diff", "--cached", "--name-only", "--", *paths).strip():
        _git.git(root, "commit", "-m", f"Release {plan.version}")
    _git.git(root, "tag", "-a", f"v{plan.version}", "-m", f"Release {plan.version}")
    plan.committed = _git.commit_of(root)
    plan.tagged = f"v{plan.version}"


def _finish_interrupted(
    settings: Settings, root: Path, library: Library, ledger: AnyLedger
) -> ReleasePlan | None:
    """Commit and tag a release that was recorded but not committed (the commit failed, or
    the process was killed after the ledger append): the latest release is the package's
    version, the working tree is what it released, and its tag does not exist. None when
    there is no such release."""
    if not _git.is_repository(root):
        return None
    view = ledger.read()
    view.refuse_corrupt()
    base = latest_release(view)
    if base is None or _git.commit_of(root, f"refs/tags/v{base.version}"):
        return None
    head = worktree_snapshot(root, library)
    if head.version != base.version or diff_snapshots(base, head).bump is not Bump.NONE:
        return None
    plan = ReleasePlan(str(base.version), None, None, None, {}, "", resumed=True)
    _commit_and_tag(root, plan)
    return plan
