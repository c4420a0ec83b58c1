"""``promptlib check`` and ``promptlib release`` on a small project in a real git repository.

The project has three prompts (two label prompts, each scored by its own suite on an
eight-row JSONL dataset, and one template prompt no suite scores), the offline
``retrieval`` provider (no network) and a CHANGELOG.md. Git runs for real in temporary
folders, with the identity conftest.py puts in the environment.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import run_checked, write
from promptlib.cli import app
from promptlib.ledger import Ledger
from promptlib.versioning.history import releases
from promptlib.versioning.release import CHANGELOG_HEADER

PYPROJECT = """\
[project]
name = "demo-prompts"
version = "1.0.0"

[tool.promptlib]
default-provider = "retrieval"
"""

SENTIMENT = """\
id: demo.sentiment
version: 1.0.0  # the prompt's own version
description: The sentiment of a product review.
inputs:
  text: {type: string, description: The review.}
messages:
  - role: system
    content: |-
      Answer with one label.
      positive: love, great, excellent, happy, perfect
      negative: hate, awful, broken, terrible, refund
  - role: user
    content: "<review>{{ text }}</review>"
output: {format: label, labels: [positive, negative]}
examples:
  - inputs: {text: I love it}
"""

TOPIC = """\
id: demo.topic
version: 1.0.0
description: The topic of a support message.
inputs:
  text: {type: string, description: The message.}
messages:
  - role: system
    content: |-
      Answer with one label.
      billing: charge, invoice, refund, price, card
      shipping: delivery, arrived, package, late, courier
  - role: user
    content: "<message>{{ text }}</message>"
output: {format: label, labels: [billing, shipping]}
examples:
  - inputs: {text: Where is my package?}
"""

GREET = """\
id: demo.greet
version: 1.0.0
description: A greeting that no suite scores.
inputs:
  name: {type: string}
template: "Say hello to {{ name }}."
examples:
  - inputs: {name: Ada}
"""

FAREWELL = GREET.replace("demo.greet", "demo.farewell").replace("hello", "goodbye")

ROWS = [
    ("I love this phone, the screen is excellent", "positive", "billing"),
    ("Awful product, it arrived broken", "negative", "shipping"),
    ("The package was late and the courier rude", "negative", "shipping"),
    ("Great price and a happy experience", "positive", "billing"),
    ("I hate the invoice charge on my card", "negative", "billing"),
    ("Perfect delivery, arrived early", "positive", "shipping"),
    ("Terrible, I want a refund", "negative", "billing"),
    ("Happy with the package", "positive", "shipping"),
]

SUITE = """\
dataset: evals/datasets/reviews.jsonl
prompts: [demo.{name}]
inputs: {{text: text}}
references: {name}
metrics: [accuracy]
"""

FIELDS = {"sentiment": 1, "topic": 2}


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def git(root: Path, *args: str) -> str:
    return run_checked(["git", "-C", root, *args]).stdout.strip()


def make_project(root: Path) -> Path:
    write(root / "pyproject.toml", PYPROJECT)
    write(root / "prompts" / "demo" / "sentiment.yaml", SENTIMENT)
    write(root / "prompts" / "demo" / "topic.yaml", TOPIC)
    write(root / "prompts" / "demo" / "greet.yaml", GREET)
    lines = [
        json.dumps({"id": f"r{i}", "text": text, "sentiment": sentiment, "topic": topic})
        for i, (text, sentiment, topic) in enumerate(ROWS, 1)
    ]
    write(root / "evals" / "datasets" / "reviews.jsonl", "\n".join(lines) + "\n")
    for name in FIELDS:
        write(root / "evals" / "suites" / f"{name}.yaml", SUITE.format(name=name))
    write(root / "CHANGELOG.md", CHANGELOG_HEADER)
    write(root / ".gitignore", ".promptlib/\n*.lock\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Initial prompts")
    return root


def ledger_releases(root: Path) -> list[dict[str, Any]]:
    """The release records, oldest first, with their prompts listed by id."""
    out = []
    for record in releases(Ledger(root / "evals" / "ledger").read()):
        data = record.model_dump(by_alias=True)
        data["prompts"] = [
            {"id": pid, **item.model_dump()} for pid, item in sorted(record.prompts.items())
        ]
        out.append(data)
    return out


def run_records(root: Path) -> list[dict[str, Any]]:
    return [r.to_json() for r in Ledger(root / "evals" / "ledger").read().runs]


def files_of(root: Path) -> dict[str, bytes]:
    """Every file of the project (git's own folder aside) and its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture
def released(project: Path) -> Path:
    """The project after its first release, committed and tagged v1.0.0."""
    code, _out, err = cli(project, "release", "--commit")
    assert code == 0, err
    return project


# -- editing the project ---------------------------------------------------------------------

Edit = Callable[[Path], None]


def replace(relative: str, old: str, new: str) -> Edit:
    def edit(root: Path) -> None:
        path = root / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return edit


def prompt_version(name: str, version: str) -> Edit:
    def edit(root: Path) -> None:
        path = root / "prompts" / "demo" / f"{name}.yaml"
        text = re.sub(r"(?m)^version: \S+", f"version: {version}", path.read_text("utf-8"))
        path.write_text(text, encoding="utf-8")

    return edit


def package(version: str) -> Edit:
    def edit(root: Path) -> None:
        path = root / "pyproject.toml"
        text = re.sub(r'(?m)^version = "[^"]+"', f'version = "{version}"', path.read_text("utf-8"))
        path.write_text(text, encoding="utf-8")

    return edit


def unreleased(note: str) -> Edit:
    return replace("CHANGELOG.md", "## [Unreleased]\n", f"## [Unreleased]\n\n{note}\n")


def changelog(text: str | None) -> Edit:
    def edit(root: Path) -> None:
        if text is None:
            (root / "CHANGELOG.md").unlink()
        else:
            (root / "CHANGELOG.md").write_text(text, encoding="utf-8")

    return edit


def remove(name: str) -> Edit:
    return lambda root: (root / "prompts" / "demo" / f"{name}.yaml").unlink()


def add_farewell(root: Path) -> None:
    write(root / "prompts" / "demo" / "farewell.yaml", FAREWELL)


SENTIMENT_TEXT = replace(
    "prompts/demo/sentiment.yaml", "excellent, happy, perfect", "excellent, happy, perfect, early"
)
TOPIC_TEXT = replace("prompts/demo/topic.yaml", "late, courier", "late, courier, early")
SENTIMENT_LABEL = replace(
    "prompts/demo/sentiment.yaml",
    "labels: [positive, negative]",
    "labels: [positive, negative, neutral]",
)
SENTIMENT_NEUTRAL_LINE = replace(
    "prompts/demo/sentiment.yaml", "terrible, refund", "terrible, refund\n      neutral: okay, fine"
)
TOPIC_DESCRIPTION = replace(
    "prompts/demo/topic.yaml", "The topic of a support message.", "The topic of a message."
)
NAMES_SENTIMENT = unreleased("- demo.sentiment: knows more positive words.")
SECTION_1_1_0 = replace(
    "CHANGELOG.md", "## [Unreleased]\n", "## [Unreleased]\n\n## [1.1.0] - 2030-01-01\n\n- Tweaks.\n"
)
NO_UNRELEASED = changelog("# Changelog\n\n## [1.0.0] - 2030-01-01\n\nFirst release.\n")

MINOR_OK = [SENTIMENT_TEXT, prompt_version("sentiment", "1.1.0"), package("1.1.0"), NAMES_SENTIMENT]
MAJOR_OK = [
    SENTIMENT_LABEL,
    prompt_version("sentiment", "2.0.0"),
    package("2.0.0"),
    NAMES_SENTIMENT,
]

CHANGELOG_NOT_NAMING = "CHANGELOG.md: the [Unreleased] section does not mention demo.sentiment"

# (case, edits, the problems `check` prints, each given by its start)
CHECKS: list[tuple[str, list[Edit], list[str]]] = [
    ("nothing changed", [], []),
    (
        "minor change, nothing bumped",
        [SENTIMENT_TEXT],
        [
            "demo.sentiment: declares 1.0.0 but the minor change needs at least 1.1.0 (from 1.0.0): messages[0] changed",
            "package version 1.0.0 in pyproject.toml must be at least 1.1.0 (a minor release after 1.0.0)",
            CHANGELOG_NOT_NAMING,
        ],
    ),
    (
        "minor change, prompt bumped only to a patch",
        [*MINOR_OK, prompt_version("sentiment", "1.0.1")],
        [
            "demo.sentiment: declares 1.0.1 but the minor change needs at least 1.1.0 (from 1.0.0): messages[0] changed"
        ],
    ),
    (
        "minor change, package bumped only to a patch",
        [*MINOR_OK, package("1.0.1")],
        [
            "package version 1.0.1 in pyproject.toml must be at least 1.1.0 (a minor release after 1.0.0)"
        ],
    ),
    ("minor change, fixed", MINOR_OK, []),
    (
        "minor change, bumped more than needed",
        [*MINOR_OK, prompt_version("sentiment", "2.0.0")],
        [],
    ),
    (
        "major change, prompt bumped only to a minor",
        [*MAJOR_OK, prompt_version("sentiment", "1.1.0")],
        [
            "demo.sentiment: declares 1.1.0 but the major change needs at least 2.0.0 (from 1.0.0): output labels added ['neutral']"
        ],
    ),
    (
        "major change, package bumped only to a minor",
        [*MAJOR_OK, package("1.1.0")],
        [
            "package version 1.1.0 in pyproject.toml must be at least 2.0.0 (a major release after 1.0.0)"
        ],
    ),
    ("major change, fixed", MAJOR_OK, []),
    (
        "breaking change in one prompt, minor in another",
        [*MAJOR_OK, TOPIC_TEXT, package("1.1.0"), prompt_version("topic", "1.1.0")],
        [
            "package version 1.1.0 in pyproject.toml must be at least 2.0.0 (a major release after 1.0.0)",
            "CHANGELOG.md: the [Unreleased] section does not mention demo.topic",
        ],
    ),
    (
        "removed prompt, package bumped only to a minor",
        [remove("greet"), package("1.1.0"), unreleased("- demo.greet: removed.")],
        [
            "package version 1.1.0 in pyproject.toml must be at least 2.0.0 (a major release after 1.0.0)"
        ],
    ),
    ("removed prompt, fixed", [remove("greet"), package("2.0.0"), unreleased("- demo.greet")], []),
    (
        "new prompt, package not bumped",
        [add_farewell, unreleased("- demo.farewell: new.")],
        [
            "package version 1.0.0 in pyproject.toml must be at least 1.1.0 (a minor release after 1.0.0)"
        ],
    ),
    ("new prompt, fixed", [add_farewell, package("1.1.0"), unreleased("- demo.farewell")], []),
    (
        "metadata only, prompt not bumped",
        [TOPIC_DESCRIPTION, package("1.0.1"), unreleased("- demo.topic: wording.")],
        [
            "demo.topic: declares 1.0.0 but the patch change needs at least 1.0.1 (from 1.0.0): description changed"
        ],
    ),
    (
        "metadata only, fixed",
        [
            TOPIC_DESCRIPTION,
            prompt_version("topic", "1.0.1"),
            package("1.0.1"),
            unreleased("- demo.topic"),
        ],
        [],
    ),
    (
        "CHANGELOG.md missing",
        [*MINOR_OK, changelog(None)],
        ["CHANGELOG.md is missing; add one with an [Unreleased] section naming the changes"],
    ),
    (
        "CHANGELOG.md without [Unreleased] or a pending section",
        [*MINOR_OK, NO_UNRELEASED],
        [
            "CHANGELOG.md has no section for 1.1.0 and no [Unreleased] section; add '## [Unreleased]' naming the changed prompts (or run `promptlib release`)"
        ],
    ),
    (
        "[Unreleased] does not name the changed prompt",
        [*MINOR_OK[:-1], unreleased("- Better words.")],
        [
            "CHANGELOG.md: the [Unreleased] section does not mention demo.sentiment (or add a section for 1.1.0)"
        ],
    ),
    ("a section for the pending version instead", [*MINOR_OK[:-1], SECTION_1_1_0], []),
]


@pytest.mark.parametrize(("case", "edits", "problems"), CHECKS, ids=[c[0] for c in CHECKS])
def test_check(released: Path, case: str, edits: list[Edit], problems: list[str]) -> None:
    for edit in edits:
        edit(released)
    code, out, err = cli(released, "check")
    printed = out.splitlines()
    assert len(printed) == len(problems), out
    for line, expected in zip(printed, problems, strict=True):
        assert line.startswith(f"check: {expected}"), line
    if problems:
        assert code == 1
        assert f"check failed: {len(problems)} problem(s)" in err
    else:
        assert code == 0, out + err
        assert "check passed against v1.0.0 (ledger release record)" in err


def test_check_before_the_first_release_only_validates(project: Path) -> None:
    code, out, err = cli(project, "check")
    assert (code, out) == (0, "")
    assert "check passed: the library is valid (no release in the ledger yet)" in err
    replace("prompts/demo/topic.yaml", "{{ text }}", "{{ txt }}")(project)
    code, out, err = cli(project, "check")
    assert code == 1
    assert "txt" in out
    assert "check failed: 1 problem(s)" in err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (NO_UNRELEASED, "CHANGELOG.md has no section for 1.1.0 and no [Unreleased] section"),
        (unreleased("- Better words."), f"{CHANGELOG_NOT_NAMING} (or add a section for 1.1.0)"),
    ],
    ids=["no [Unreleased]", "[Unreleased] not naming the prompt"],
)
def test_the_changelog_problem_names_the_version_that_would_satisfy_it(
    released: Path, edit: Edit, expected: str
) -> None:
    # The package version is still the released 1.0.0: the pending release is 1.1.0.
    SENTIMENT_TEXT(released)
    edit(released)
    _code, out, _err = cli(released, "check")
    assert f"check: {expected}" in out.splitlines()[-1]


def test_check_against_latest(released: Path) -> None:
    code, _out, err = cli(released, "check", "--against", "latest")
    assert code == 0, err


# -- release -----------------------------------------------------------------------------------


def test_first_release(project: Path) -> None:
    before = files_of(project)
    code, out, err = cli(project, "release", "--bump", "minor")
    assert code == 2
    assert "the first release takes the version in pyproject.toml; drop --bump" in err
    assert files_of(project) == before

    code, out, err = cli(project, "release")
    assert code == 0, err
    assert out.startswith("release 1.0.0 (first release)\n")
    assert "wrote: CHANGELOG.md, evals/ledger" in err
    [record] = ledger_releases(project)
    assert (record["version"], record["previous"], record["bump"]) == ("1.0.0", None, None)
    assert record["git_commit"] == git(project, "rev-parse", "HEAD")
    assert [(p["id"], p["version"]) for p in record["prompts"]] == [
        ("demo.greet", "1.0.0"),
        ("demo.sentiment", "1.0.0"),
        ("demo.topic", "1.0.0"),
    ]
    # The release evaluated every prompt a suite scores, and recorded the runs.
    fingerprints = {p["id"]: p["fingerprint"] for p in record["prompts"]}
    runs = {(r["suite"], r["prompt"]["id"]): r for r in run_records(project)}
    assert sorted(runs) == [("sentiment", "demo.sentiment"), ("topic", "demo.topic")]
    for (_suite, pid), run in runs.items():
        assert run["prompt"]["fingerprint"] == fingerprints[pid]
        assert run["results"]["accuracy"]["n"] == len(ROWS)
    changelog_text = (project / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog_text.startswith(CHANGELOG_HEADER.rstrip("\n"))
    assert (
        f"## [Unreleased]\n\n## [1.0.0] - {date.today().isoformat()}\n\n"
        "First release of the prompt library.\n"
    ) in changelog_text
    for name in ("pyproject.toml", "prompts/demo/sentiment.yaml"):
        assert (project / name).read_bytes() == before[name]  # versions as declared

    code, out, err = cli(project, "check")
    assert code == 0, out
    assert (
        "check passed against v1.0.0 (ledger release record): 0 prompt(s) changed, "
        "required bump none"
    ) in err
    code, _out, err = cli(project, "release")
    assert code == 2
    assert "nothing to release: no prompt changed since v1.0.0" in err


def test_dry_run_changes_no_file(released: Path) -> None:
    SENTIMENT_TEXT(released)
    before = files_of(released)
    status = git(released, "status", "--porcelain")
    code, out, err = cli(released, "release", "--dry-run")
    assert code == 0, err
    assert out.startswith(
        "dry run: release 1.1.0 (minor after 1.0.0)\n  demo.sentiment: 1.0.0 -> 1.1.0\n"
    )
    assert "### Changed\n\n- `demo.sentiment` 1.0.0 -> 1.1.0: messages[0] changed." in out
    assert "(dry run: no file changed)" in err
    assert files_of(released) == before  # the ledger and the cache included
    assert git(released, "status", "--porcelain") == status
    assert [r["version"] for r in ledger_releases(released)] == ["1.0.0"]


@pytest.mark.parametrize(
    ("edits", "bump", "message"),
    [
        (
            [SENTIMENT_TEXT],
            "patch",
            "--bump patch is too small: the changes need a minor release (demo.sentiment: messages[0] changed)",
        ),
        (
            [SENTIMENT_LABEL, TOPIC_TEXT],
            "minor",
            "--bump minor is too small: the changes need a major release (demo.sentiment: output labels added ['neutral'])",
        ),
        (
            [remove("greet")],
            "patch",
            "the changes need a major release (demo.greet: prompt removed)",
        ),
    ],
    ids=["patch for a minor", "minor for a major", "patch for a removal"],
)
def test_a_requested_bump_too_small_fails(
    released: Path, edits: list[Edit], bump: str, message: str
) -> None:
    for edit in edits:
        edit(released)
    before = files_of(released)
    code, _out, err = cli(released, "release", "--bump", bump)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert files_of(released) == before


def test_an_unknown_bump_is_a_usage_error(released: Path) -> None:
    SENTIMENT_TEXT(released)
    code, _out, err = cli(released, "release", "--bump", "huge")
    assert code == 2
    assert "unknown bump 'huge'; use major, minor or patch" in err


def test_a_larger_bump_than_needed_is_allowed(released: Path) -> None:
    SENTIMENT_TEXT(released)
    code, out, err = cli(released, "release", "--bump", "major")
    assert code == 0, err
    assert out.startswith("release 2.0.0 (major after 1.0.0)")
    assert 'version = "2.0.0"' in (released / "pyproject.toml").read_text("utf-8")
    # The prompt gets the version its own change needs.
    assert "version: 1.1.0  # the prompt's own version\n" in (
        released / "prompts" / "demo" / "sentiment.yaml"
    ).read_text("utf-8")


def _score_line(root: Path, suite: str, old_fp: str, new_fp: str) -> str:
    runs = {r["prompt"]["fingerprint"]: r for r in run_records(root) if r["suite"] == suite}
    before = runs[old_fp]["results"]["accuracy"]["mean"]
    after = runs[new_fp]["results"]["accuracy"]["mean"]
    return (
        f"Scores: {suite} accuracy {before:.3f} -> {after:.3f} ({after - before:+.3f}, retrieval)."
    )


def test_release_bumps_versions_writes_the_changelog_and_records_the_release(
    released: Path,
) -> None:
    SENTIMENT_TEXT(released)
    unreleased("- A note written by hand.")(released)
    code, out, err = cli(released, "release")
    assert code == 0, err
    assert out.startswith("release 1.1.0 (minor after 1.0.0)\n  demo.sentiment: 1.0.0 -> 1.1.0\n")
    assert "wrote: prompts/demo/sentiment.yaml, pyproject.toml, CHANGELOG.md, evals/ledger" in err
    sentiment = (released / "prompts" / "demo" / "sentiment.yaml").read_text("utf-8")
    assert "version: 1.1.0  # the prompt's own version\n" in sentiment  # the comment is kept
    assert 'version = "1.1.0"' in (released / "pyproject.toml").read_text("utf-8")
    assert "version: 1.0.0\n" in (released / "prompts" / "demo" / "topic.yaml").read_text("utf-8")
    first, second = ledger_releases(released)
    assert (second["version"], second["previous"], second["bump"]) == ("1.1.0", "1.0.0", "minor")
    versions = {p["id"]: p["version"] for p in second["prompts"]}
    assert versions == {"demo.greet": "1.0.0", "demo.sentiment": "1.1.0", "demo.topic": "1.0.0"}
    old = {p["id"]: p["fingerprint"] for p in first["prompts"]}
    new = {p["id"]: p["fingerprint"] for p in second["prompts"]}
    assert [pid for pid in old if old[pid] != new[pid]] == ["demo.sentiment"]
    scores = _score_line(released, "sentiment", old["demo.sentiment"], new["demo.sentiment"])
    text = (released / "CHANGELOG.md").read_text("utf-8")
    assert (
        f"## [Unreleased]\n\n## [1.1.0] - {date.today().isoformat()}\n\n"
        "- A note written by hand.\n\n"
        "### Changed\n\n"
        f"- `demo.sentiment` 1.0.0 -> 1.1.0: messages[0] changed. {scores}\n\n"
        "## [1.0.0] - "
    ) in text
    code, out, err = cli(released, "check")
    assert code == 0, out + err


def test_the_changelog_has_breaking_added_changed_and_removed_sections(released: Path) -> None:
    for edit in (
        SENTIMENT_LABEL,
        SENTIMENT_NEUTRAL_LINE,
        TOPIC_TEXT,
        remove("greet"),
        add_farewell,
    ):
        edit(released)
    [first] = ledger_releases(released)
    code, out, err = cli(released, "release")
    assert code == 0, err
    assert out.startswith("release 2.0.0 (major after 1.0.0)\n")
    _, second = ledger_releases(released)
    old = {p["id"]: p["fingerprint"] for p in first["prompts"]}
    new = {p["id"]: p["fingerprint"] for p in second["prompts"]}
    assert sorted(new) == ["demo.farewell", "demo.sentiment", "demo.topic"]
    sentiment = _score_line(released, "sentiment", old["demo.sentiment"], new["demo.sentiment"])
    topic = _score_line(released, "topic", old["demo.topic"], new["demo.topic"])
    section = (
        f"## [2.0.0] - {date.today().isoformat()}\n\n"
        "### Breaking\n\n"
        f"- `demo.sentiment` 1.0.0 -> 2.0.0: output labels added ['neutral']; messages[0] changed. {sentiment}\n\n"
        "### Added\n\n"
        "- `demo.farewell` 1.0.0: new prompt.\n\n"
        "### Changed\n\n"
        f"- `demo.topic` 1.0.0 -> 1.1.0: messages[0] changed. {topic}\n\n"
        "### Removed\n\n"
        "- `demo.greet` (was 1.0.0).\n\n"
        "## [1.0.0]"
    )
    assert section in (released / "CHANGELOG.md").read_text("utf-8")
    assert cli(released, "check")[0] == 0


def test_release_commit_tags_and_never_pushes(released: Path, tmp_path: Path) -> None:
    # The fixture's first release was made with --commit, with no remote configured.
    assert git(released, "tag", "-l") == "v1.0.0"
    assert git(released, "remote") == ""
    assert git(released, "log", "-1", "--format=%s") == "Release 1.0.0"
    # Now with a remote: nothing may reach it.
    remote = tmp_path / "remote.git"
    run_checked(["git", "init", "-q", "--bare", remote])
    git(released, "remote", "add", "origin", str(remote))
    SENTIMENT_TEXT(released)
    code, _out, err = cli(released, "release", "--commit")
    assert code == 0, err
    head = git(released, "rev-parse", "HEAD")
    assert f"committed {head} and tagged v1.1.0 (not pushed)" in err
    assert git(released, "tag", "-l") == "v1.0.0\nv1.1.0"
    assert git(released, "rev-parse", "v1.1.0^{commit}") == head
    assert git(released, "cat-file", "-t", "v1.1.0") == "tag"  # annotated
    assert git(released, "log", "-1", "--format=%s") == "Release 1.1.0"
    assert git(released, "status", "--porcelain") == ""  # everything released is committed
    changed = git(released, "show", "--name-only", "--format=", "HEAD").splitlines()
    objects = [name for name in changed if name.startswith("evals/ledger/objects/")]
    assert sorted(set(changed) - set(objects)) == [
        "CHANGELOG.md",
        "evals/ledger/index.jsonl",
        "prompts/demo/sentiment.yaml",
        "pyproject.toml",
    ]
    assert objects  # the new behaviour and the release's runs' evidence
    assert git(released, "ls-remote", "origin") == ""  # never pushed


def test_release_commit_refuses_an_existing_tag(released: Path) -> None:
    SENTIMENT_TEXT(released)
    git(released, "tag", "v1.1.0")
    before = files_of(released)
    code, _out, err = cli(released, "release", "--commit")
    assert code == 2
    assert "git tag v1.1.0 already exists" in err
    assert files_of(released) == before


# -- REF resolution ------------------------------------------------------------------------------


@pytest.fixture
def two_releases(released: Path) -> Path:
    """v1.0.0 and v1.1.0 (demo.sentiment changed), both committed and tagged; the branch
    ``first`` and the tag ``git-only`` (not a release) point at v1.0.0's commit."""
    git(released, "branch", "first")
    git(released, "tag", "git-only")
    SENTIMENT_TEXT(released)
    code, _out, err = cli(released, "release", "--commit")
    assert code == 0, err
    return released


LEDGER_1_0_0 = "v1.0.0 (ledger release record)"

# (ref, expected base label (None: an error), prompts changed between it and the working tree)
REFS: list[tuple[str, str | None, list[str]]] = [
    ("v1.0.0", LEDGER_1_0_0, ["demo.sentiment"]),
    ("1.0.0", LEDGER_1_0_0, ["demo.sentiment"]),
    ("v1.1.0", "v1.1.0 (ledger release record)", []),
    ("latest", "v1.1.0 (ledger release record)", []),
    ("first", "first (git {first12})", ["demo.sentiment"]),
    ("git-only", "git-only (git {first12})", ["demo.sentiment"]),
    ("{first}", "{first} (git {first12})", ["demo.sentiment"]),
    ("{first8}", "{first8} (git {first12})", ["demo.sentiment"]),
    ("HEAD~1", "HEAD~1 (git {first12})", ["demo.sentiment"]),
    ("main", "main (git {head12})", []),
    ("v9.9.9", None, []),
    ("nope", None, []),
]


@pytest.mark.parametrize(("ref", "label", "changed"), REFS, ids=[r[0] for r in REFS])
def test_ref_resolution(
    two_releases: Path, ref: str, label: str | None, changed: list[str]
) -> None:
    first = git(two_releases, "rev-parse", "first")
    head = git(two_releases, "rev-parse", "HEAD")
    names = {"first": first, "first8": first[:8], "first12": first[:12], "head12": head[:12]}
    ref = ref.format(**names)
    code, out, err = cli(two_releases, "diff", ref, "--format", "json")
    if label is None:
        assert code == 2
        assert (
            f"error: unknown release or git ref {ref!r}; releases in the ledger: v1.0.0, v1.1.0"
        ) in err
        return
    assert code == 0, err
    data = json.loads(out)
    assert data["base"]["label"] == label.format(**names)
    assert [p["id"] for p in data["prompts"]] == changed
    code, out, err = cli(two_releases, "eval", "--against", ref, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["base"] == label.format(**names)
    assert [pid for pid, s in report["prompts"].items() if s == "changed"] == changed


def test_unknown_ref_before_any_release(project: Path) -> None:
    code, _out, err = cli(project, "diff", "v1.0.0")
    assert code == 2
    assert "unknown release or git ref 'v1.0.0'; releases in the ledger: none yet" in err


def test_eval_against_a_release_in_a_shallow_tagless_clone(
    two_releases: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    run_checked(
        ["git", "clone", "-q", "--depth", "1", "--no-tags", f"file://{two_releases}", clone]
    )
    assert git(clone, "rev-list", "--count", "HEAD") == "1"
    assert git(clone, "tag", "-l") == ""
    missing = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--verify", "--quiet", "v1.0.0"],
        capture_output=True,
        check=False,
    )
    assert missing.returncode != 0  # git alone cannot find the release
    code, out, err = cli(clone, "eval", "--against", "v1.0.0", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["base"] == LEDGER_1_0_0
    assert report["prompts"] == {
        "demo.greet": "unchanged",
        "demo.sentiment": "changed",
        "demo.topic": "unchanged",
    }
    assert [(c["prompt"], c["suite"], c["n"]) for c in report["comparisons"]] == [
        ("demo.sentiment", "sentiment", len(ROWS))
    ]
    code, out, err = cli(clone, "eval", "--against", "v1.0.0")
    assert code == 0, err
    assert "demo.sentiment" in out
    assert f"against {LEDGER_1_0_0}: 1 changed, 2 unchanged" in out
    # A git ref of the original repository that the clone did not fetch is an error that
    # lists the releases the ledger knows.
    code, _out, err = cli(clone, "eval", "--against", "first")
    assert code == 2
    assert "unknown release or git ref 'first'; releases in the ledger: v1.0.0, v1.1.0" in err


def test_release_notes_and_generated_entries_share_their_headings() -> None:
    from promptlib.versioning.release import _merge_notes

    notes = "### Changed\n\n- `a.b`: clearer instructions.\n\n### Fixed\n\n- a typo"
    generated = "\n### Breaking\n\n- `c.d` 1.0.0 -> 2.0.0: input 'x' removed.\n\n### Changed\n\n- `a.b` 1.0.0 -> 1.1.0: messages[0] changed.\n"
    assert _merge_notes(notes, generated) == (
        "### Breaking\n\n- `c.d` 1.0.0 -> 2.0.0: input 'x' removed.\n\n"
        "### Changed\n\n- `a.b`: clearer instructions.\n- `a.b` 1.0.0 -> 1.1.0: messages[0] changed.\n\n"
        "### Fixed\n\n- a typo"
    )
