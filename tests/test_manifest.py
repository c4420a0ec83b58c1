"""Consumer manifests: range semantics, parsing, lock and drift (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptlib
from conftest import write
from promptlib.cli import app
from promptlib.consumers import manifest as manifest_module
from promptlib.consumers.manifest import check_manifest, lock_manifest, read_manifest
from promptlib.errors import ConfigError, DriftError
from promptlib.library.collection import load
from promptlib.versions import in_range, version_range

RANGES = [
    # (range, version, matches?)
    ("2.0.0", "2.0.0", True),
    ("2.0.0", "2.0.1", False),
    ("=2.0.0", "2.0.0", True),
    (">=2.0.0, <3.0.0", "2.9.9", True),
    (">=2.0.0, <3.0.0", "3.0.0", False),
    (">=2.0.0 <3.0.0", "1.9.9", False),
    ("^2.1", "2.1.0", True),
    ("^2.1", "2.9.0", True),
    ("^2.1", "2.0.9", False),
    ("^2.1", "3.0.0", False),
    ("^2.1.3", "2.1.2", False),
    ("^0.3", "0.3.9", True),
    ("^0.3", "0.4.0", False),
    ("~2.1.0", "2.1.7", True),
    ("~2.1.0", "2.2.0", False),
    ("~2.1", "2.1.0", True),
    ("2.1.x", "2.1.4", True),
    ("2.1.x", "2.2.0", False),
    ("^1.0.0 || ^2.0.0", "2.5.0", True),
    ("^1.0.0 || ^2.0.0", "3.0.0", False),
    # Pre-releases match only a range that names one of the same major.minor.patch.
    ("^2.0.0", "2.2.0-beta.1", False),
    (">=2.0.0, <3.0.0", "2.1.0-rc.1", False),
    (">=2.1.0-rc.1", "2.1.0-rc.2", True),
    (">=2.1.0-rc.1", "2.1.0", True),
    (">=2.1.0-rc.1", "2.2.0-rc.1", False),
    ("^2.1.0-rc.1", "2.1.0-rc.3", True),
    ("2.1.0-rc.1", "2.1.0", False),
    ("2.1.0-rc.1", "2.1.0-rc.1", True),
    ("=2.1.0", "2.1.0", True),
]


@pytest.mark.parametrize(("text", "version", "matches"), RANGES)
def test_range_semantics(text: str, version: str, matches: bool) -> None:
    assert in_range(version, version_range(text)) is matches


@pytest.mark.parametrize("text", ["", "banana", ">>2", "^", "2.0.0 ||| 3"])
def test_invalid_ranges(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a version range"):
        version_range(text)


BAD_MANIFESTS = [
    ("prompts:\n  a.b: '^1'\n", "'library' must be a requirement"),
    ("library: 'promptlib>=1'\n", "'prompts' must map prompt ids to version ranges"),
    (
        "library: 'promptlib>=1'\nprompts:\n  a.b: ^^1\n",
        "prompts.a.b: '^^1' is not a version range",
    ),
    (
        "library: 'promptlib>=1'\nprompts:\n  a.b: 2.0\n",
        'the range must be text (write it in quotes: "2.0")',
    ),
    (
        "library: 'requests>=1'\nprompts:\n  a.b: '1.0.0'\n",
        ":1: library: must be a requirement on promptlib, not 'requests'",
    ),
    (
        "library: 'promptlib>=>1'\nprompts:\n  a.b: '1.0.0'\n",
        ":1: library: 'promptlib>=>1' is not a requirement: Expected",
    ),
    (
        "library: 'promptlib'\nprompts:\n  a.b: '1.0.0'\ncolour: red\n",
        "unknown key 'colour'; allowed: library, prompts",
    ),
    ("library: 'promptlib'\nprompts:\n  a.b: '1.0.0'\n  a.b: '2.0.0'\n", "duplicate key 'a.b'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_MANIFESTS)
def test_manifest_errors_name_the_file_line_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path / "prompt_manifest.yaml", text)
    with pytest.raises(ConfigError) as caught:
        read_manifest(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


PROMPT = """\
id: {id}
version: {version}
description: A prompt.
inputs:
  message: {{type: string}}
template: "{text} {{{{ message }}}}"
examples:
  - inputs: {{message: hi}}
"""


def make_library(root: Path, prompts: dict[str, tuple[str, str]]) -> promptlib.Library:
    for prompt_id, (version, text) in prompts.items():
        write(
            root / (prompt_id.replace(".", "/") + ".yaml"),
            PROMPT.format(id=prompt_id, version=version, text=text),
        )
    return load(root)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "installed_version", lambda: "2.1.0")


MANIFEST = "library: 'promptlib>=2.1,<3'\nprompts:\n  a.router: '^2.1'\n  a.answer: '~2.0.0'\n"


@pytest.mark.usefixtures("installed")
def test_lock_then_check_then_each_drift(tmp_path: Path) -> None:
    manifest = write(tmp_path / "consumer" / "prompt_manifest.yaml", MANIFEST)
    library = make_library(
        tmp_path / "lib1",
        {
            "a.router": ("2.1.0", "Route:"),
            "a.answer": ("2.0.3", "Answer:"),
            "a.other": ("1.0.0", "x"),
        },
    )
    lock = lock_manifest(manifest, library)
    assert lock["library"] == {"name": "promptlib", "version": "2.1.0"}
    assert sorted(lock["prompts"]) == ["a.answer", "a.router"]
    assert (
        json.loads(manifest.with_suffix(".lock").read_text())["prompts"]["a.router"]["version"]
        == "2.1.0"
    )
    assert check_manifest(manifest, library) == []
    pinned = promptlib.load(tmp_path / "lib1", manifest=manifest)
    assert sorted(pinned) == ["a.answer", "a.router"]

    changed = make_library(
        tmp_path / "lib2", {"a.router": ("2.1.0", "Route this:"), "a.answer": ("2.0.3", "Answer:")}
    )
    [drift] = check_manifest(manifest, changed)
    assert drift.startswith("a.router: installed fingerprint sha256:")
    assert "differs from the locked" in drift
    assert "run `promptlib manifest lock`" in drift
    with pytest.raises(DriftError, match=r"a\.router: installed fingerprint"):
        promptlib.load(tmp_path / "lib2", manifest=manifest)

    removed = make_library(tmp_path / "lib3", {"a.router": ("2.1.0", "Route:")})
    assert check_manifest(manifest, removed) == [
        "a.answer: not in the installed library (promptlib 2.1.0); install a release that has it or remove it from the manifest"
    ]
    outside = make_library(
        tmp_path / "lib4", {"a.router": ("2.1.0", "Route:"), "a.answer": ("2.1.0", "Answer:")}
    )
    assert check_manifest(manifest, outside) == [
        "a.answer: installed version 2.1.0 is outside '~2.0.0'; install a matching promptlib release or widen the range, then run `promptlib manifest lock`"
    ]


@pytest.mark.usefixtures("installed")
def test_library_outside_the_requirement_and_stale_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write(tmp_path / "prompt_manifest.yaml", MANIFEST)
    library = make_library(
        tmp_path / "lib", {"a.router": ("2.1.0", "Route:"), "a.answer": ("2.0.3", "Answer:")}
    )
    assert check_manifest(manifest, library) == [
        "prompt_manifest.lock is missing: run `promptlib manifest lock`"
    ]
    lock_manifest(manifest, library)
    write(manifest, MANIFEST + "  # a comment changes the file\n")
    assert check_manifest(manifest, library) == [
        "prompt_manifest.lock is older than prompt_manifest.yaml (the manifest changed since it was locked): run `promptlib manifest lock`"
    ]
    lock_manifest(manifest, library)
    monkeypatch.setattr(manifest_module, "installed_version", lambda: "3.0.0")
    [drift] = check_manifest(manifest, library)
    assert drift.startswith("installed promptlib 3.0.0 is outside 'promptlib>=2.1,<3'")
    with pytest.raises(DriftError):
        lock_manifest(manifest, library)


def test_manifest_cli_uses_the_installed_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = promptlib.load()
    some = sorted(bundled)[:2]
    version = promptlib.__version__
    write(
        tmp_path / "prompt_manifest.yaml",
        f"library: 'promptlib=={version}'\nprompts:\n"
        + "".join(f"  {pid}: '>=0.0.1'\n" for pid in some),
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["manifest", "check"])
    assert result.exit_code == 1
    assert "drift: prompt_manifest.lock is missing" in result.stdout
    result = runner.invoke(app, ["manifest", "lock"])
    assert result.exit_code == 0, result.stderr
    assert f"{some[0]} {bundled[some[0]].version} {bundled[some[0]].fingerprint}" in result.stdout
    result = runner.invoke(app, ["manifest", "check"])
    assert result.exit_code == 0
    assert "manifest check passed" in result.stderr
