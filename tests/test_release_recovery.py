"""An interrupted ``promptlib release`` is finished by running it again.

The release is killed (SIGKILL, in a real subprocess) right after each of its steps, or its
git commit fails (a pre-commit hook); ``release --commit`` run again must leave exactly
what one uninterrupted release leaves: one ``## [1.1.0]`` section, one release record,
the commit and the tag, and a clean working tree.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_check_release import SENTIMENT_TEXT, cli, git, make_project


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A project after its first release, committed and tagged v1.0.0."""
    root = make_project(tmp_path / "project")
    code, _out, err = cli(root, "release", "--commit")
    assert code == 0, err
    return root


# Run the real CLI in a subprocess with one step wrapped: after the step returns, the
# process kills itself, as a SIGKILL from outside would at that moment.
KILLER = """
import os, signal, sys
import promptlib.versioning.release as release
from promptlib import _git
from promptlib.ledger import Ledger

step = sys.argv.pop(1)

def kill_after(owner, name, when=lambda *a, **k: True):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(owner, name, wrapped)

if step == "versions":
    kill_after(release, "write_project_version")
elif step == "evaluation":
    kill_after(release, "evaluate")
elif step == "changelog":
    kill_after(release, "_write_changelog")
elif step == "ledger":
    kill_after(Ledger, "append", lambda self, record, *a, **k: record.kind == "release")
elif step == "commit":
    kill_after(_git, "git", lambda root, *args, **k: args[:1] == ("commit",))

from promptlib.cli import main
sys.argv[0] = "promptlib"
main()
"""

STEPS = ["versions", "evaluation", "changelog", "ledger", "commit"]


def _release_killed_after(root: Path, step: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", KILLER, step, "--project", str(root), "release", "--commit"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr


def _releases(root: Path) -> list[str]:
    index = root / "evals" / "ledger" / "index.jsonl"
    return [
        json.loads(line)["version"]
        for line in index.read_text(encoding="utf-8").splitlines()
        if '"kind":"release"' in line
    ]


def _assert_released_once(root: Path) -> None:
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.count("## [1.1.0]") == 1
    assert changelog.count("## [1.0.0]") == 1
    assert _releases(root) == ["1.0.0", "1.1.0"]
    assert git(root, "tag", "-l") == "v1.0.0\nv1.1.0"
    assert git(root, "rev-parse", "v1.1.0^{commit}") == git(root, "rev-parse", "HEAD")
    assert git(root, "log", "--format=%s").splitlines()[:2] == ["Release 1.1.0", "Release 1.0.0"]
    assert git(root, "status", "--porcelain") == ""
    code, out, err = cli(root, "ledger", "verify")
    assert code == 0, out + err


@pytest.mark.parametrize("step", STEPS)
def test_a_release_killed_after_each_step_is_finished_by_running_it_again(
    released: Path, step: str
) -> None:
    SENTIMENT_TEXT(released)
    _release_killed_after(released, step)
    code, out, err = cli(released, "release", "--commit")
    assert code == 0, out + err
    _assert_released_once(released)


def test_a_failed_commit_is_finished_by_running_it_again(released: Path) -> None:
    hook = released / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by a hook' >&2\nexit 1\n")
    hook.chmod(0o755)
    SENTIMENT_TEXT(released)
    code, out, err = cli(released, "release", "--commit")
    assert code != 0
    assert "Traceback" not in err
    assert _releases(released) == ["1.0.0", "1.1.0"]  # recorded, not committed
    # Without --commit there is nothing left to do, and the message says how to finish.
    code, _, err = cli(released, "release")
    assert code == 2
    assert "`promptlib release --commit` commits and tags it" in err
    hook.unlink()
    code, out, err = cli(released, "release", "--commit")
    assert code == 0, out + err
    assert "was recorded by an interrupted run; committed" in out
    _assert_released_once(released)
