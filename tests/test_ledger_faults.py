"""A damaged or ambiguous ledger stops the commands that would act on it, and says where.

Each scenario damages a released project's ledger the way it happens (a hand edit, a bad
merge, garbage from a tool, a real git union merge of two branches that both released the
same version); the commands that evaluate, compare or release must refuse with exit 2 and
the line, make no provider call, and write nothing; read-only commands go on and warn.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _llm_server import LLMServer
from conftest import write
from test_against import answer, calls, cli, make_project, prompt_file, write_prompt

INDEX = Path("evals") / "ledger" / "index.jsonl"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


@pytest.fixture
def server() -> Any:
    with LLMServer(answer=answer) as running:
        yield running


@pytest.fixture
def released(tmp_path: Path, server: LLMServer) -> Path:
    root = make_project(tmp_path / "project", server.base_url)
    code, out, err = cli(root, "release")
    assert code == 0, out + err
    return root


def _lines(root: Path) -> list[bytes]:
    return (root / INDEX).read_bytes().splitlines(keepends=True)


def _run_line(lines: list[bytes]) -> int:
    return next(i for i, line in enumerate(lines) if b'"kind":"run"' in line)


def flip_a_character(lines: list[bytes]) -> tuple[list[bytes], int]:
    index = _run_line(lines)
    lines[index] = lines[index].replace(b'"time":"2', b'"time":"1', 1)
    return lines, index + 1


def garbage(lines: list[bytes]) -> tuple[list[bytes], int]:
    index = _run_line(lines)
    lines[index] = b"\x00\x01not json at all\n"
    return lines, index + 1


def two_records_on_one_line(lines: list[bytes]) -> tuple[list[bytes], int]:
    # A merge tool that dropped a newline: two committed records on one line.
    index = _run_line(lines)
    merged = lines[index].rstrip(b"\n") + lines[index + 1]
    return [*lines[:index], merged, *lines[index + 2 :]], index + 1


def cut_in_the_middle(lines: list[bytes]) -> tuple[list[bytes], int]:
    # A committed line cut short (an editor, a bad copy), followed by other records.
    index = _run_line(lines)
    lines[index] = lines[index][: len(lines[index]) // 2] + b"\n"
    return lines, index + 1


DAMAGE: dict[str, Callable[[list[bytes]], tuple[list[bytes], int]]] = {
    "a character changed": flip_a_character,
    "garbage": garbage,
    "two records on one line": two_records_on_one_line,
    "a line cut short": cut_in_the_middle,
}

ACTIONS = {
    "eval": ("eval",),
    "eval --against": ("eval", "--against", "v1.0.0"),
    "release": ("release", "--bump", "minor"),
    "check": ("check",),
    "report --against": ("report", "--against", "v1.0.0"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_corrupt_committed_record_stops_every_command_that_acts(
    released: Path, server: LLMServer, damage: str
) -> None:
    root = released
    lines, number = DAMAGE[damage](_lines(root))
    (root / INDEX).write_bytes(b"".join(lines))
    # A change to act on, so that each command would have work to do.
    write_prompt(root, "alpha", prompt_file("alpha", "Answer yes, now.").replace("1.0.0", "1.1.0"))
    before_calls = sum(calls(server).values())
    before = (root / INDEX).read_bytes()
    for name, args in ACTIONS.items():
        code, out, err = cli(root, *args)
        assert code == 2, (name, out + err)
        assert f"index.jsonl:{number}:" in err, (name, err)
        assert "nothing was run" in err
        assert "Traceback" not in err
        assert (root / INDEX).read_bytes() == before, name
    assert sum(calls(server).values()) == before_calls
    # Read-only commands go on, and say what they skipped.
    code, out, err = cli(root, "ledger", "show")
    assert code == 0, err
    assert f"warning: {root / INDEX}:{number}:" in err
    code, out, err = cli(root, "ledger", "verify")
    assert code == 1
    assert f"index.jsonl:{number}:" in out + err


def test_a_torn_last_line_is_an_interrupted_write_not_a_reason_to_stop(
    released: Path, server: LLMServer
) -> None:
    root = released
    lines = _lines(root)
    torn = lines[_run_line(lines)][:100]
    (root / INDEX).write_bytes(b"".join(lines) + torn)
    change = prompt_file("alpha", "Answer yes, now.").replace("1.0.0", "1.1.0")
    write_prompt(root, "alpha", change)
    code, out, err = cli(root, "eval", "--against", "v1.0.0")
    assert code == 0, out + err
    # The append that followed moved the torn bytes aside, and said where.
    saved = list((root / INDEX).parent.glob("index.jsonl.torn-*"))
    assert len(saved) == 1
    assert saved[0].read_bytes() == torn
    assert f"moved a torn last line (line {len(lines) + 1}, 100 bytes, no newline)" in err
    code, _, _ = cli(root, "ledger", "verify")
    assert code == 0


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_two_branches_that_released_the_same_version_are_detected(
    released: Path, server: LLMServer
) -> None:
    root = released
    write(root / ".gitattributes", "evals/ledger/index.jsonl merge=union\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "dev@example.com")
    _git(root, "config", "user.name", "dev")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "1.0.0")
    base = _git(root, "rev-parse", "HEAD")
    for branch, name in (("left", "alpha"), ("right", "beta")):
        _git(root, "checkout", "-q", "-b", branch, "main")
        text = prompt_file(name, "Answer yes, now.").replace("1.0.0", "1.1.0")
        write_prompt(root, name, text)
        changelog = root / "CHANGELOG.md"
        changelog.write_text(
            changelog.read_text().replace("## [Unreleased]\n", f"## [Unreleased]\n\n- {name}\n")
        )
        code, out, err = cli(root, "release")
        assert code == 0, out + err
        _git(root, "add", "-A")
        _git(root, "commit", "-qm", f"release 1.1.0 ({name})")
    _git(root, "checkout", "-q", "left")
    # The index merges by union; the rest conflicts and is resolved for the left side.
    subprocess.run(["git", "merge", "-q", "right"], cwd=root, capture_output=True, check=False)
    _git(root, "checkout", "--ours", "--", "CHANGELOG.md", "pyproject.toml")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "merge right")
    releases = [
        json.loads(line)
        for line in (root / INDEX).read_text(encoding="utf-8").splitlines()
        if '"kind":"release"' in line
    ]
    # The union merge kept both releases of 1.1.0.
    assert sorted(r["version"] for r in releases) == ["1.0.0", "1.1.0", "1.1.0"]

    code, out, err = cli(root, "ledger", "verify")
    assert code == 1
    assert "version 1.1.0 was released 2 times with different prompts" in out + err
    before = sum(calls(server).values())
    for args in (("eval", "--against", "v1.1.0"), ("eval", "--against", "latest"), ("check",)):
        code, out, err = cli(root, *args)
        assert code == 2, (args, out + err)
        assert "release 1.1.0 is ambiguous: 2 records" in err
        assert "Traceback" not in err
    assert sum(calls(server).values()) == before
    # The message lists both records with the commit each release was made from.
    assert err.count(f"git commit {base}") == 2
    # An unambiguous older release is still a valid baseline.
    code, out, err = cli(root, "eval", "--against", "v1.0.0")
    assert code == 0, out + err


def test_a_run_key_with_two_results_is_named_with_the_one_readers_use(
    tmp_path: Path,
) -> None:
    flaky = {"answer": "yes"}
    with LLMServer(answer=lambda messages: flaky["answer"]) as server:
        root = make_project(tmp_path / "project", server.base_url)
        assert cli(root, "eval", "--prompt", "demo.gamma")[0] == 0
        flaky["answer"] = "no"
        assert cli(root, "eval", "--prompt", "demo.gamma", "--fresh", "--cache", "off")[0] == 0
    code, out, err = cli(root, "ledger", "verify")
    assert code == 0, out + err  # a warning: the latest record is the run
    assert "(extra/demo.gamma) has 2 records; readers use the latest" in out + err
