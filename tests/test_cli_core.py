"""The core commands: validate, list, show, render, schema, --version, --help."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO, write
from promptlib.cli import app

GOLDEN = Path(__file__).parent / "golden" / "prompts"
CORPUS = Path(__file__).parent / "corpus" / "prompts"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding the golden prompts; the test runs from a subfolder of it."""
    write(tmp_path / "pyproject.toml", "[project]\nname = 'demo'\nversion = '1.0.0'\n")
    shutil.copytree(GOLDEN, tmp_path / "prompts")
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path / "docs")
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_clean_project_exits_0(project: Path) -> None:
    code, out, _err = run("validate")
    assert code == 0
    assert "3 files checked: 3 valid prompts, 0 errors, 0 warnings" in out


def test_validate_lists_every_problem_and_exits_1(project: Path) -> None:
    code, out, err = run("validate", str(CORPUS))
    assert code == 1
    lines = [line for line in out.splitlines() if ": " in line]
    assert len(lines) >= 45
    assert any(
        line.endswith(
            "colour: unknown key 'colour'; allowed keys: description, examples, id, inputs, messages, model, output, owner, tags, template, version"
        )
        for line in lines
    )
    assert "Traceback" not in out + err
    assert "errors" in err


def test_validate_files_and_json(project: Path) -> None:
    bad = CORPUS / "bad" / "yaml11_boolean.yaml"
    code, out, _ = run("validate", str(bad), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert [(e["line"], e["key"]) for e in report["errors"]] == [(4, "description")]


def test_validate_strict_fails_on_warnings(project: Path) -> None:
    write(
        project / "prompts" / "lib" / "w.yaml",
        "id: lib.w\nversion: 1.0.0\ndescription: x\ntemplate: hi\n",
    )
    assert run("validate")[0] == 0
    code, out, _ = run("validate", "--strict")
    assert code == 1
    assert "warning: no examples" in out


def test_list_table_and_json(project: Path) -> None:
    code, out, _ = run("list")
    assert code == 0
    assert "golden.chat" in out
    assert "1.2.3" in out
    code, out, _ = run("list", "--format", "json", "--tag", "golden")
    assert code == 0
    assert [(p["id"], p["version"]) for p in json.loads(out)] == [("golden.chat", "1.2.3")]


def test_show(project: Path) -> None:
    code, out, _ = run("show", "golden.chat")
    assert code == 0
    assert out.startswith("golden.chat 1.2.3\n")
    assert "tone (string, optional, default 'warm', one of ['warm', 'formal'])" in out
    assert "--- system ---\n{% include 'voice.j2' %}" in out
    code, out, _ = run("show", "golden.chat", "--format", "json")
    assert json.loads(out)["behaviour"]["partials"] == {
        "voice.j2": "You are the support assistant of {{ company }}.\nBe concise and friendly.\n"
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--var", "message=Hi there"],
            "[system]\nYou are the support assistant of Acme.\nBe concise and friendly.\nEarlier messages:\n  (none)\n\n\n[user]\n<message>\nHi there\n</message>",
        ),
        (
            ["--var", "message=Hi", "--var", "tone=formal", "--var", 'history=["a"]'],
            "[system]\nYou are the support assistant of Acme.\nBe concise and friendly.\nUse a formal register.\nEarlier messages:\n  - a\n\n\n[user]\n<message>\nHi\n</message>",
        ),
        (["--example", "0"], "[user]\n<message>\nWhere is my parcel?\n</message>"),
    ],
)
def test_render_text(project: Path, args: list[str], expected: str) -> None:
    code, out, err = run("render", "golden.chat", *args)
    assert code == 0, err
    assert expected in out


def test_render_vars_file_and_json(project: Path) -> None:
    write(project / "vars.yaml", "title: Ice\ncount: 2\nstrict: true\n")
    code, out, _ = run(
        "render",
        "golden.text",
        "--vars",
        str(project / "vars.yaml"),
        "--var",
        "count=4",
        "--format",
        "json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["messages"] == [
        {"role": "user", "content": "Title: ICE\nGive 4 points (threshold 0.50), strictly.\n{}"}
    ]
    assert data["fingerprint"].startswith("sha256:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["golden.text", "--var", "count=many", "--var", "title=x"],
            "error: --var count: 'many' is not a valid integer",
        ),
        (["golden.text", "--var", "title"], "error: --var 'title': write it as NAME=VALUE"),
        (["golden.text", "--var", "colour=red"], "  unknown input 'colour'"),
        (["golden.text"], "  missing required input 'title' (string)"),
        (
            ["golden.text", "--example", "3"],
            "error: golden.text has 1 example(s); --example takes 0 to 0",
        ),
        (
            ["golden.text", "--example", "0", "--var", "title=x"],
            "error: --example cannot be combined with --var or --vars",
        ),
        (
            ["golden.txt"],
            "error: no prompt 'golden.txt' in the library; did you mean golden.text, golden.chat?",
        ),
        (
            ["golden.text", "--vars", "nope.yaml"],
            "error: --vars nope.yaml: No such file or directory",
        ),
    ],
)
def test_render_input_errors_exit_2(project: Path, args: list[str], message: str) -> None:
    code, _out, err = run("render", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_one_broken_file_does_not_block_read_only_commands(project: Path) -> None:
    write(
        project / "prompts" / "lib" / "bad.yaml",
        "id: lib.bad\nversion: 1.0.0\ndescription: x\ncolour: red\ntemplate: hi\n",
    )
    warning = (
        f"warning: 1 prompt file(s) do not load and were skipped ({project}/prompts/lib/bad.yaml); "
        "`promptlib validate` lists their problems"
    )
    code, out, err = run("list")
    assert code == 0
    assert "golden.chat" in out
    assert "lib.bad" not in out
    assert warning in err
    code, out, err = run("show", "golden.classify")
    assert (code, warning in err) == (0, True)
    assert out.startswith("golden.classify 2.0.0")
    code, out, err = run("render", "golden.classify", "--var", "text=hi")
    assert (code, out, warning in err) == (
        0,
        "[system]\nClassify the text. Labels:\n- refund: money back\n- other: anything else\n\n[user]\nhi\n",
        True,
    )
    # The broken prompt itself is an invalid file (exit 1) with its problems.
    code, _, err = run("show", "lib.bad")
    assert code == 1
    assert "bad.yaml:4: colour: unknown key 'colour'" in err
    # Commands that act on the library as a whole still refuse it.
    code, out, _ = run("validate")
    assert code == 1
    assert "bad.yaml:4: colour: unknown key 'colour'" in out


def test_schema_matches_the_committed_file_the_prompts_point_at(project: Path) -> None:
    code, out, _ = run("schema")
    assert code == 0
    assert json.loads(out) == json.loads(
        (REPO / "schema" / "prompt.schema.json").read_text(encoding="utf-8")
    )


def test_project_option_and_outside_any_project(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    code, out, _ = run("--project", str(project), "list", "--format", "json")
    assert code == 0
    assert len(json.loads(out)) == 3
    code, out, _ = run("list", "--format", "json")  # the bundled library
    assert code == 0
    assert len(json.loads(out)) >= 50


def test_version_and_help() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out.startswith("promptlib ")
    code, out, _ = run("--help")
    assert code == 0
    for command in ("validate", "list", "show", "render", "schema"):
        assert command in out
    assert "Exit codes" in out


def test_console_script_exit_codes_without_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("promptlib")
    result = subprocess.run(
        [str(exe), "validate", str(CORPUS)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    result = subprocess.run([str(exe), "render"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "Missing argument 'ID'" in result.stderr


def test_debug_variable_shows_the_traceback(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLIB_DEBUG", "1")
    result = CliRunner().invoke(app, ["show", "nope"])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "NotFoundError"
