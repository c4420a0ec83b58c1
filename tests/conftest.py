"""Shared fixtures. Every test runs isolated from the user's configuration and cwd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["_browser"]  # the `browser` fixture (headless Chromium)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No PROMPTLIB_* variable, user config or provider key leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("PROMPTLIB_", "OPENAI_", "GITHUB_")):
            monkeypatch.delenv(name)
    # Tables choose their layout from $COLUMNS: a terminal's value must not change what
    # the CLI tests read (they see the 200-column layout of a pipe unless they set it).
    monkeypatch.delenv("COLUMNS", raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty temporary directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


#: A one-input prompt file, to ``.format(name=..., system=...)``: id ``demo.{name}``, the
#: system message ``{system}`` and the row's ``text`` as the user message.
DEMO_PROMPT = """\
id: demo.{name}
version: 1.0.0
description: The {name} prompt.
inputs:
  text: {{type: string}}
messages:
  - role: system
    content: "{system}"
  - role: user
    content: "{{{{ text }}}}"
examples:
  - inputs: {{text: row-1}}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


WHEELHOUSE = Path(os.environ.get("PROMPTLIB_TEST_WHEELHOUSE", REPO / ".wheelhouse"))


def run_checked(args: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with its output."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result  # type: ignore[no-any-return]


def build_wheel(source: Path, out: Path) -> Path:
    """Build a wheel of the project at ``source`` into ``out`` (offline: no build isolation)."""
    run_checked(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, source]
    )
    wheels = sorted(out.glob("promptlib-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def fresh_venv(where: Path) -> Path:
    """A new virtual environment with nothing installed; returns its bin folder."""
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.skip(
            f"no dependency wheels in {WHEELHOUSE}: `make test` builds them "
            "(they let tests install the built wheel offline)"
        )
    run_checked([sys.executable, "-m", "venv", where])
    return where / "bin"


def pip_install(bin_dir: Path, *requirements: str, find_links: list[Path]) -> None:
    links = [arg for d in [*find_links, WHEELHOUSE] for arg in ("--find-links", str(d))]
    run_checked(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-index", *links, *requirements]
    )


@pytest.fixture(scope="session")
def repo_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this repository, built once per test session."""
    return build_wheel(REPO, tmp_path_factory.mktemp("dist"))
