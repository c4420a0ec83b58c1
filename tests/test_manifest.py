"""Consumer manifests: range semantics, parsing, lock and drift (in process)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        "a.answer: installed version 2.1.0 is outside '~2.0.0'; install a matching promptlib release or widen the range, then run `promptlib manifest lock`",
        "a.answer: installed version 2.1.0 differs from the locked 2.0.3 (same fingerprint); review the installed release, then run `promptlib manifest lock`",
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
    outside, other_release = check_manifest(manifest, library)
    assert outside.startswith("installed promptlib 3.0.0 is outside 'promptlib>=2.1,<3'")
    assert other_release.startswith(
        "prompt_manifest.lock was made against promptlib 2.1.0 but promptlib 3.0.0 is installed"
    )
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


# -- the lock: golden formats, every way a lock can drift, the seal -------------------------

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_V1 = GOLDEN / "lock" / "v1"
GOLDEN_V2 = GOLDEN / "lock" / "v2"
# The seal written by lock format 2 for the golden manifest and prompts (promptlib 2.1.0).
# tests/golden/lock/v2/ is never regenerated: a different value here is a format change.
GOLDEN_V2_SEAL = "sha256:638e5ff20280bcec1d1be22b5e67252728f394d74e3ed516d985ba0e7ea4727d"
RELOCK = "run `promptlib manifest lock`"
SEAL_DRIFT = (
    "prompt_manifest.lock was edited by hand (its seal does not match its content): "
    "run `promptlib manifest lock`"
)


@pytest.fixture(scope="module")
def golden_library() -> promptlib.Library:
    return load(GOLDEN)


def copy_golden(version_dir: Path, where: Path) -> Path:
    """A scratch copy of a golden manifest and its lock; the golden files stay untouched."""
    for name in ("prompt_manifest.yaml", "prompt_manifest.lock"):
        shutil.copyfile(version_dir / name, where / name)
    return where / "prompt_manifest.yaml"


def edit_lock(manifest: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """Edit the lock beside ``manifest`` by hand, as a person with an editor would."""
    lock_path = manifest.with_suffix(".lock")
    data = json.loads(lock_path.read_text(encoding="utf-8"))
    change(data)
    lock_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return lock_path


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize("version_dir", [GOLDEN_V1, GOLDEN_V2], ids=["v1", "v2"])
def test_the_golden_locks_are_accepted(
    golden_library: promptlib.Library, version_dir: Path
) -> None:
    manifest = version_dir / "prompt_manifest.yaml"
    assert check_manifest(manifest, golden_library) == []
    pinned = promptlib.load(GOLDEN, manifest=manifest)
    assert sorted(pinned) == ["golden.chat", "golden.classify"]
    assert pinned["golden.chat"].fingerprint == golden_library["golden.chat"].fingerprint


@pytest.mark.usefixtures("installed")
def test_the_v1_golden_lock_predates_sealing_a_note_not_a_drift(
    golden_library: promptlib.Library,
) -> None:
    result = manifest_module.verify_manifest(GOLDEN_V1 / "prompt_manifest.yaml", golden_library)
    assert result.ok
    assert result.drifts == ()
    assert result.notes == (
        "prompt_manifest.lock predates sealing (lock format 1, no seal against hand edits); "
        "`promptlib manifest lock` rewrites it with a seal",
    )


@pytest.mark.usefixtures("installed")
def test_the_v2_golden_lock_carries_its_seal_and_verifies(
    golden_library: promptlib.Library,
) -> None:
    lock_path = GOLDEN_V2 / "prompt_manifest.lock"
    data = json.loads(lock_path.read_text(encoding="utf-8"))
    assert data["format"] == 2
    assert data["hash"] == GOLDEN_V2_SEAL
    assert manifest_module.seal_of(data) == GOLDEN_V2_SEAL
    lock = manifest_module.read_lock(lock_path)
    assert lock is not None
    assert (lock.format, lock.hash, lock.content_hash) == (2, GOLDEN_V2_SEAL, GOLDEN_V2_SEAL)
    assert lock.verify()
    result = manifest_module.verify_manifest(GOLDEN_V2 / "prompt_manifest.yaml", golden_library)
    assert (result.drifts, result.notes) == ((), ())
    # Format 2 is format 1 plus the seal: the same manifest locks the same prompts.
    v1 = json.loads((GOLDEN_V1 / "prompt_manifest.lock").read_text(encoding="utf-8"))
    assert {k: v for k, v in data.items() if k not in ("format", "hash")} == {
        k: v for k, v in v1.items() if k != "format"
    }


@pytest.mark.usefixtures("installed")
def test_lock_writes_the_golden_v2_lock_byte_for_byte(
    tmp_path: Path, golden_library: promptlib.Library
) -> None:
    manifest = tmp_path / "prompt_manifest.yaml"
    shutil.copyfile(GOLDEN_V2 / "prompt_manifest.yaml", manifest)
    lock = lock_manifest(manifest, golden_library)
    assert lock["hash"] == GOLDEN_V2_SEAL
    assert (
        manifest.with_suffix(".lock").read_bytes()
        == (GOLDEN_V2 / "prompt_manifest.lock").read_bytes()
    )


def _drop_entry(lock: dict[str, Any]) -> None:
    del lock["prompts"]["golden.chat"]


def _version_999(lock: dict[str, Any]) -> None:
    lock["prompts"]["golden.chat"]["version"] = "9.9.9"


def _other_release(lock: dict[str, Any]) -> None:
    lock["library"]["version"] = "2.0.0"


def _stale_entry(lock: dict[str, Any]) -> None:
    lock["prompts"]["golden.text"] = {"fingerprint": "sha256:" + "1" * 64, "version": "1.0.0"}


def _consistent_edit(lock: dict[str, Any]) -> None:
    lock["prompts"]["golden.chat"] = {"fingerprint": "sha256:" + "0" * 64, "version": "1.2.4"}


# (case, hand edit of a golden lock, the drifts it must cause besides a broken seal)
LOCK_DRIFTS: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    (
        "entry deleted",
        _drop_entry,
        [
            "golden.chat: pinned in prompt_manifest.yaml but not locked in prompt_manifest.lock: run `promptlib manifest lock`"
        ],
    ),
    (
        "version set to 9.9.9",
        _version_999,
        [
            "golden.chat: installed version 1.2.3 differs from the locked 9.9.9 (same fingerprint); review the installed release, then run `promptlib manifest lock`"
        ],
    ),
    (
        "locked against another release",
        _other_release,
        [
            "prompt_manifest.lock was made against promptlib 2.0.0 but promptlib 2.1.0 is installed: install promptlib==2.0.0, or review the prompts of 2.1.0 and run `promptlib manifest lock`"
        ],
    ),
    (
        "entry no longer in the manifest",
        _stale_entry,
        [
            "golden.text: locked in prompt_manifest.lock but not pinned in prompt_manifest.yaml (the lock is stale): run `promptlib manifest lock`"
        ],
    ),
    (
        "fingerprint and version edited together",
        _consistent_edit,
        [
            "golden.chat: installed fingerprint sha256:f311cea1f30c... differs from the locked sha256:000000000000... (version 1.2.3, locked 1.2.4): the prompt changed; review it, then run `promptlib manifest lock`"
        ],
    ),
]


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    ("case", "change", "expected"), LOCK_DRIFTS, ids=[d[0] for d in LOCK_DRIFTS]
)
@pytest.mark.parametrize("version_dir", [GOLDEN_V1, GOLDEN_V2], ids=["v1", "v2"])
def test_every_hand_edit_of_a_golden_lock_is_drift(
    tmp_path: Path,
    golden_library: promptlib.Library,
    version_dir: Path,
    case: str,
    change: Callable[[dict[str, Any]], None],
    expected: list[str],
) -> None:
    manifest = copy_golden(version_dir, tmp_path)
    edit_lock(manifest, change)
    # A sealed lock also reports the broken seal, first: it explains every other line.
    drifts = expected if version_dir == GOLDEN_V1 else [SEAL_DRIFT, *expected]
    assert check_manifest(manifest, golden_library) == drifts
    with pytest.raises(DriftError) as caught:
        promptlib.load(GOLDEN, manifest=manifest)
    assert list(caught.value.drifts) == drifts


@pytest.mark.parametrize("version_dir", [GOLDEN_V1, GOLDEN_V2], ids=["v1", "v2"])
def test_a_lock_made_against_another_installed_release_is_drift(
    monkeypatch: pytest.MonkeyPatch, golden_library: promptlib.Library, version_dir: Path
) -> None:
    # Inside the manifest's requirement, with the same prompts: still not what was locked.
    monkeypatch.setattr(manifest_module, "installed_version", lambda: "2.1.1")
    manifest = version_dir / "prompt_manifest.yaml"
    assert check_manifest(manifest, golden_library) == [
        "prompt_manifest.lock was made against promptlib 2.1.0 but promptlib 2.1.1 is installed: install promptlib==2.1.0, or review the prompts of 2.1.1 and run `promptlib manifest lock`"
    ]
    with pytest.raises(DriftError, match=r"made against promptlib 2\.1\.0"):
        promptlib.load(GOLDEN, manifest=manifest)


@pytest.mark.usefixtures("installed")
def test_the_seal_catches_a_hand_edit_that_matches_the_installed_library(tmp_path: Path) -> None:
    # Someone accepts an unreviewed prompt change by copying its version and fingerprint
    # into the lock: the library comparison cannot see it, the seal does.
    manifest = write(tmp_path / "prompt_manifest.yaml", MANIFEST)
    reviewed = make_library(
        tmp_path / "lib1", {"a.router": ("2.1.0", "Route:"), "a.answer": ("2.0.3", "Answer:")}
    )
    lock_manifest(manifest, reviewed)
    unreviewed = make_library(
        tmp_path / "lib2", {"a.router": ("2.1.1", "Route this:"), "a.answer": ("2.0.3", "Answer:")}
    )
    edit_lock(
        manifest,
        lambda lock: lock["prompts"]["a.router"].update(
            version="2.1.1", fingerprint=unreviewed["a.router"].fingerprint
        ),
    )
    assert check_manifest(manifest, unreviewed) == [SEAL_DRIFT]
    with pytest.raises(DriftError) as caught:
        promptlib.load(tmp_path / "lib2", manifest=manifest)
    assert caught.value.drifts == (SEAL_DRIFT,)
    # Re-locking after review seals the new content.
    lock_manifest(manifest, unreviewed)
    assert check_manifest(manifest, unreviewed) == []


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(lock: dict[str, Any]) -> None:
        target = lock
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda lock: lock.pop(key)


# (case, golden lock, hand edit, every line the ConfigError must hold after the lock's path)
BAD_LOCKS: list[tuple[str, Path, Callable[[dict[str, Any]], None], list[str]]] = [
    (
        "unknown top-level key",
        GOLDEN_V1,
        _set("colour", value="red"),
        ["unknown key 'colour'; allowed: format, library, manifest_sha256, prompts"],
    ),
    (
        "unknown key in library",
        GOLDEN_V1,
        _set("library", "channel", value="beta"),
        ["library: unknown key 'channel'; allowed: name, version"],
    ),
    (
        "unknown key in a prompt entry",
        GOLDEN_V1,
        _set("prompts", "golden.chat", "note", value="reviewed"),
        ["prompts.golden.chat: unknown key 'note'; allowed: fingerprint, version"],
    ),
    (
        "unknown key in a sealed lock",
        GOLDEN_V2,
        _set("library", "channel", value="beta"),
        ["library: unknown key 'channel'; allowed: name, version"],
    ),
    (
        "a seal in a format 1 lock",
        GOLDEN_V1,
        _set("hash", value=GOLDEN_V2_SEAL),
        ["unknown key 'hash'; allowed: format, library, manifest_sha256, prompts"],
    ),
    (
        "format 2 without its seal",
        GOLDEN_V2,
        _delete("hash"),
        ["missing key 'hash'"],
    ),
    (
        "missing manifest hash, wrong types, another package",
        GOLDEN_V1,
        lambda lock: (
            lock.pop("manifest_sha256"),
            lock["prompts"]["golden.chat"].update(version=123),
            lock["library"].update(name="otherlib"),
        ),
        [
            "missing key 'manifest_sha256'",
            "library.name: must be 'promptlib', not 'otherlib'",
            "prompts.golden.chat.version: must be text, not int",
        ],
    ),
    (
        "prompts is not an object",
        GOLDEN_V2,
        _set("prompts", value=["golden.chat"]),
        ["prompts: must be an object mapping prompt ids to locked prompts"],
    ),
]


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    ("case", "version_dir", "change", "lines"), BAD_LOCKS, ids=[b[0] for b in BAD_LOCKS]
)
def test_a_lock_not_as_promptlib_writes_it_is_refused(
    tmp_path: Path,
    golden_library: promptlib.Library,
    case: str,
    version_dir: Path,
    change: Callable[[dict[str, Any]], None],
    lines: list[str],
) -> None:
    manifest = copy_golden(version_dir, tmp_path)
    lock_path = edit_lock(manifest, change)
    with pytest.raises(ConfigError) as caught:
        check_manifest(manifest, golden_library)
    format_ = json.loads(lock_path.read_text(encoding="utf-8"))["format"]
    assert str(caught.value).splitlines() == [
        *(f"{lock_path}: {line}" for line in lines),
        f"{lock_path}: not a lock as promptlib writes it (format {format_}); {RELOCK} to rewrite it",
    ]
    with pytest.raises(ConfigError):
        promptlib.load(GOLDEN, manifest=manifest)


# (case, lock file bytes, what the ConfigError says after the lock's path)
UNREADABLE_LOCKS = [
    ("not JSON", b'{"format": 1,', "the lock is not valid JSON ("),
    ("an array", b"[]", f"a lock is a JSON object, not an array; {RELOCK} to rewrite it"),
    ("null", b"null", f"a lock is a JSON object, not null; {RELOCK} to rewrite it"),
    ("not UTF-8", b'{"format": "\xff"}', f"the lock is not UTF-8 text; {RELOCK} to rewrite it"),
    (
        "a key twice",
        b'{"format": 1, "format": 2}',
        "the lock is not valid JSON (key 'format' appears twice in one object); ",
    ),
    ("NaN", b'{"format": NaN}', "the lock is not valid JSON (NaN is not valid JSON); "),
    (
        "no format",
        b'{"library": {}}',
        f"not a promptlib lock ('format' must be a lock format number, found None); {RELOCK} to rewrite it",
    ),
    (
        "format as text",
        b'{"format": "2"}',
        f"not a promptlib lock ('format' must be a lock format number, found '2'); {RELOCK} to rewrite it",
    ),
    (
        "a newer format",
        b'{"format": 3, "whatever": "comes next"}',
        "written by a newer promptlib; upgrade promptlib to a release that reads it (lock format 3; promptlib 2.1.0 reads formats 1 to 2)",
    ),
]


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    ("case", "content", "message"), UNREADABLE_LOCKS, ids=[u[0] for u in UNREADABLE_LOCKS]
)
def test_an_unreadable_lock_is_a_config_error_naming_the_file(
    tmp_path: Path, golden_library: promptlib.Library, case: str, content: bytes, message: str
) -> None:
    manifest = copy_golden(GOLDEN_V2, tmp_path)
    lock_path = manifest.with_suffix(".lock")
    lock_path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        check_manifest(manifest, golden_library)
    assert str(caught.value).startswith(f"{lock_path}: {message}")
    assert RELOCK in str(caught.value) or "upgrade promptlib" in str(caught.value)
    with pytest.raises(ConfigError):
        promptlib.load(GOLDEN, manifest=manifest)


@pytest.mark.usefixtures("installed")
def test_lock_rewrites_a_broken_lock_but_never_downgrades_a_newer_one(
    tmp_path: Path, golden_library: promptlib.Library
) -> None:
    manifest = copy_golden(GOLDEN_V1, tmp_path)
    lock_path = manifest.with_suffix(".lock")
    lock_path.write_text("[", encoding="utf-8")
    lock_manifest(manifest, golden_library)
    assert lock_path.read_bytes() == (GOLDEN_V2 / "prompt_manifest.lock").read_bytes()
    newer = '{"format": 3}\n'
    lock_path.write_text(newer, encoding="utf-8")
    with pytest.raises(ConfigError, match="written by a newer promptlib; upgrade promptlib"):
        lock_manifest(manifest, golden_library)
    assert lock_path.read_text(encoding="utf-8") == newer


def test_manifest_check_cli_notes_drifts_and_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = promptlib.load()
    some = sorted(bundled)[:2]
    write(
        tmp_path / "prompt_manifest.yaml",
        f"library: 'promptlib=={promptlib.__version__}'\nprompts:\n"
        + "".join(f"  {pid}: '>=0.0.1'\n" for pid in some),
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["manifest", "lock"]).exit_code == 0
    lock_path = tmp_path / "prompt_manifest.lock"
    sealed = json.loads(lock_path.read_text(encoding="utf-8"))
    assert sealed["format"] == 2
    assert sealed["hash"] == manifest_module.seal_of(sealed)
    result = runner.invoke(app, ["manifest", "check"])
    assert (result.exit_code, result.stdout) == (0, "")
    assert "note:" not in result.stderr

    # A format 1 lock passes, with one note saying that re-locking adds a seal.
    unsealed = {k: v for k, v in sealed.items() if k != "hash"} | {"format": 1}
    lock_path.write_text(json.dumps(unsealed), encoding="utf-8")
    result = runner.invoke(app, ["manifest", "check"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("note: prompt_manifest.lock predates sealing") == 1
    assert "manifest check passed" in result.stderr

    # A hand edit of a sealed lock is drift: exit 1, one line per drift on stdout.
    edited = json.loads(json.dumps(sealed))
    del edited["prompts"][some[0]]
    lock_path.write_text(json.dumps(edited), encoding="utf-8")
    result = runner.invoke(app, ["manifest", "check"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"drift: {SEAL_DRIFT}",
        f"drift: {some[0]}: pinned in prompt_manifest.yaml but not locked in prompt_manifest.lock: {RELOCK}",
    ]

    # A lock that is not a lock is bad input: exit 2, the file and the fix, no traceback.
    lock_path.write_text(json.dumps(sealed | {"colour": "red"}), encoding="utf-8")
    result = runner.invoke(app, ["manifest", "check"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: prompt_manifest.lock: unknown key 'colour'")
    assert RELOCK in result.stderr
    assert "Traceback" not in result.stderr
