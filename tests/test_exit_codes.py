"""Exit codes: bad input is 2, a bug is 4, and neither is ever 1 (a failed gate).

Each entry point where outside data enters promptlib (settings tables, recorded prompt
content, suite mappings, provider plug-ins, versions, bumps, ledger record bodies) gets a
row: the command's exit code and the words of its message, which must name the file and
the key. The last rows check how a bug in promptlib itself is reported.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write
from promptlib._canonical import canonical_json, sha256_of
from promptlib.cli import app

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The golden project: three prompts, one suite on six Banking77 rows, no ledger."""
    root = tmp_path / "project"
    shutil.copytree(GOLDEN / "project", root)
    shutil.copytree(GOLDEN / "prompts", root / "prompts")
    return root


def cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--project", str(root)])
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout + result.stderr


def add_config(root: Path, text: str) -> None:
    path = root / "pyproject.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")


def reseal_last(root: Path, edit: Callable[[dict[str, object]], None]) -> None:
    """Edit the last index line and seal it again: a valid envelope, a bad body."""
    path = root / "evals" / "ledger" / "index.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[-1])
    del record["hash"]
    edit(record)
    record["hash"] = sha256_of(record)
    lines[-1] = canonical_json(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def drop_body(record: dict[str, object]) -> None:
    for key in list(record):
        if key not in ("schema", "kind", "time"):
            del record[key]


def object_path(root: Path, reference: str) -> Path:
    digest = reference.removeprefix("sha256:")
    return root / "evals" / "ledger" / "objects" / digest[:2] / f"{digest[2:]}.json.gz"


def classify_behaviour(root: Path) -> Path:
    """The object file holding the released golden.classify's behaviour."""
    line = (root / "evals" / "ledger" / "index.jsonl").read_text(encoding="utf-8").splitlines()[-1]
    return object_path(root, json.loads(line)["prompts"]["golden.classify"]["fingerprint"])


SETTINGS = [
    (
        '[tool.promptlib.compare]\nalpha = "five percent"\n',
        "pyproject.toml [tool.promptlib] [compare]: alpha must be a number, not 'five percent'",
    ),
    ("[tool.promptlib.compare]\nalpha = true\n", "[compare]: alpha must be a number, not True"),
    ("[tool.promptlib.compare]\nresamples = 99.5\n", "[compare]: resamples must be an integer"),
    ("[tool.promptlib.compare]\nalpha = 5\n", "[compare]: alpha must be between 0 and 1, not 5.0"),
    ("[tool.promptlib.compare]\nbeta = 1\n", "[compare]: unknown key(s) beta"),
    ('[tool.promptlib.retry]\nmax-attempts = "many"\n', "[retry]: max-attempts must be an integer"),
    ("[tool.promptlib.retry]\nbase-delay = [1]\n", "[retry]: base-delay must be a number"),
    (
        "[tool.promptlib]\ncompare = 3\n",
        "pyproject.toml [tool.promptlib]: [compare] must be a table of settings, not int 3",
    ),
    ('[tool.promptlib]\nretry = "fast"\n', "[retry] must be a table of settings"),
    ('[tool.promptlib]\nproviders = "local"\n', "[providers] must be a table of settings"),
    ("[tool.promptlib]\ndefault-provider = 5\n", "default-provider must be a provider name, not 5"),
    ("[tool.promptlib\n", "pyproject.toml: invalid TOML"),
]


@pytest.mark.parametrize(("config", "message"), SETTINGS)
@pytest.mark.parametrize("command", [["list"], ["eval"], ["check"]])
def test_bad_settings_are_input_errors(
    project: Path, config: str, message: str, command: list[str]
) -> None:
    # The project's own file sets [tool.promptlib] default-provider already; a second
    # [tool.promptlib] header would be invalid TOML, so the golden file is rewritten.
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    (project / "pyproject.toml").write_text(
        text.replace('[tool.promptlib]\ndefault-provider = "retrieval"\n', ""), encoding="utf-8"
    )
    add_config(project, config)
    code, output = cli(project, *command)
    assert code == 2, output
    assert message in output


def test_bad_settings_in_promptlib_toml_name_that_file(project: Path) -> None:
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    (project / "pyproject.toml").write_text(text.split("[tool.promptlib]")[0], encoding="utf-8")
    write(project / "promptlib.toml", '[compare]\nalpha = "five percent"\n')
    code, output = cli(project, "list")
    assert code == 2
    assert "promptlib.toml [compare]: alpha must be a number, not 'five percent'" in output


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        (
            ["eval"],
            2,
            "malformed run record: key, prompt.id, prompt.fingerprint, suite, "
            "provider.fingerprint missing",
        ),
        (["ledger", "verify"], 1, "malformed run record: key: field required"),
    ],
)
def test_a_run_line_without_its_body_is_named(
    project: Path, command: list[str], code: int, message: str
) -> None:
    assert cli(project, "eval")[0] == 0
    reseal_last(project, drop_body)
    got, output = cli(project, *command)
    assert got == code, output
    assert message in output


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "is missing; fetch it (git lfs pull, dvc pull)"),
        ("altered", "it was changed after it was written"),
        ("not gzip", "is not valid gzip"),
    ],
)
def test_a_damaged_behaviour_object_is_named(project: Path, damage: str, message: str) -> None:
    assert cli(project, "eval")[0] == 0
    assert cli(project, "release")[0] == 0
    # Change the prompt so that its released content must be rebuilt and evaluated.
    path = project / "prompts" / "golden" / "classify.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("Classify", "Label"))
    stored = classify_behaviour(project)
    if damage == "missing":
        stored.unlink()
    elif damage == "altered":
        stored.write_bytes(gzip.compress(b'{"format":1}', mtime=0))
    else:
        stored.write_bytes(b"not gzip at all")
    code, output = cli(project, "eval", "--against", "v1.0.0")
    assert code == 2, output
    assert message in output
    code, output = cli(project, "ledger", "verify")
    assert code == 1, output
    assert "release 1.0.0 golden.classify behaviour" in output


def test_schema_1_content_that_no_longer_makes_a_prompt_is_named(project: Path) -> None:
    # A schema-1 release record (read-only, --no-record) whose recorded messages were
    # edited and the line sealed again: the content no longer hashes to its fingerprint.
    path = project / "evals" / "ledger.jsonl"
    shutil.copy(GOLDEN / "ledger" / "v1" / "ledger.jsonl", path)
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[-1])
    del record["hash"]
    for prompt in record["prompts"]:
        if prompt["id"] == "golden.classify":
            prompt["behaviour"]["messages"][1]["content"] = "{{ text"
    record["hash"] = sha256_of(record)
    path.write_text("\n".join([lines[0], canonical_json(record)]) + "\n", encoding="utf-8")
    code, output = cli(project, "eval", "--against", "v1.0.0", "--no-record")
    assert code == 2, output
    assert "prompt golden.classify's recorded content hashes to" in output


def test_an_unparseable_package_version_names_the_file(project: Path) -> None:
    assert cli(project, "eval")[0] == 0
    assert cli(project, "release")[0] == 0
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    (project / "pyproject.toml").write_text(text.replace('"1.0.0"', '"banana"'), encoding="utf-8")
    for command in (["release", "--dry-run"], ["diff"], ["check"], ["eval", "--against", "v1.0.0"]):
        code, output = cli(project, *command)
        assert code == 2, output
        assert "pyproject.toml: [project].version: 'banana' is not a semantic version" in output


def test_an_unknown_bump_is_an_input_error(project: Path) -> None:
    assert cli(project, "eval")[0] == 0
    assert cli(project, "release")[0] == 0
    text = (project / "prompts" / "golden" / "classify.yaml").read_text(encoding="utf-8")
    write(project / "prompts" / "golden" / "classify.yaml", text.replace("Classify", "Label"))
    code, output = cli(project, "release", "--bump", "huge", "--dry-run")
    assert code == 2
    assert "--bump: unknown bump 'huge'; use major, minor or patch (or auto)" in output


def test_a_suite_that_cannot_supply_a_required_input(project: Path) -> None:
    suite = project / "evals" / "suites" / "golden_refund.yaml"
    suite.write_text(suite.read_text(encoding="utf-8").replace("{text: text}", "{message: text}"))
    message = (
        "golden_refund.yaml:4: inputs: suite golden_refund maps `message`, but golden.classify "
        "needs `text`: edit evals/suites/golden_refund.yaml"
    )
    code, output = cli(project, "validate")
    assert (code, message in output) == (1, True), output
    code, output = cli(project, "check")
    assert (code, message in output) == (1, True), output
    code, output = cli(project, "eval")
    assert (code, message in output) == (2, True), output
    assert "nothing was run" in output
    assert not (project / "evals" / "ledger").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("references: label", "references: intent"),
            "golden_refund.yaml:5: references: field `intent` (a reference field) is missing in "
            "no row",
        ),
        (
            ("{text: text}", "{text: utterance}"),
            "golden_refund.yaml:4: inputs.text: field `utterance` (mapped to input `text`) is "
            "missing in no row",
        ),
        (
            ("prompts: [golden.classify]", "prompts: [golden.classify]\nwhere: {label: nope}"),
            "suite golden_refund selects no row of evals/datasets/banking77_refund.jsonl for "
            "golden.classify (where: {'label': 'nope'})",
        ),
    ],
)
def test_suite_fields_and_rows_are_checked_before_any_call(
    project: Path, edit: tuple[str, str], message: str
) -> None:
    suite = project / "evals" / "suites" / "golden_refund.yaml"
    suite.write_text(suite.read_text(encoding="utf-8").replace(*edit))
    code, output = cli(project, "validate")
    assert code == 1, output
    assert message in output
    code, output = cli(project, "eval")
    assert code == 2, output
    assert not (project / "evals" / "ledger").exists()


def test_an_empty_dataset_is_an_input_error_before_any_call(project: Path) -> None:
    (project / "evals" / "datasets" / "banking77_refund.jsonl").write_text("", encoding="utf-8")
    code, output = cli(project, "eval")
    assert code == 2
    assert "banking77_refund.jsonl: the dataset has no rows" in output
    assert not (project / "evals" / "ledger").exists()


def test_a_provider_plugin_that_does_not_import(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed distribution whose entry point names a module that raises on import.
    site = tmp_path / "site"
    write(site / "broken_plugin.py", "raise RuntimeError('plug-in bug')\n")
    write(
        site / "broken_plugin-1.0.dist-info" / "METADATA",
        "Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n",
    )
    write(
        site / "broken_plugin-1.0.dist-info" / "entry_points.txt",
        "[promptlib.providers]\nbroken = broken_plugin:BrokenProvider\n",
    )
    monkeypatch.syspath_prepend(str(site))
    add_config(project, '[tool.promptlib.providers.mine]\ntype = "broken"\n')
    code, output = cli(project, "eval", "--provider", "mine")
    assert code == 2
    assert (
        "provider type 'broken' (broken_plugin:BrokenProvider): cannot import broken_plugin: "
        "RuntimeError: plug-in bug"
    ) in output


def test_a_missing_file_given_to_validate_is_a_usage_error(project: Path) -> None:
    code, output = cli(project, "validate", str(project / "prompts" / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: no such file or folder" in output


def test_project_is_accepted_after_the_command_too(project: Path, tmp_path: Path) -> None:
    for args in (["list", "--project", str(project)], ["--project", str(project), "list"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.stderr
        assert "golden.classify" in result.stdout
    result = CliRunner().invoke(
        app, ["eval", "--suite", "golden_refund", "--project", str(project)]
    )
    assert result.exit_code == 0, result.stderr


def test_a_bug_is_exit_4_never_1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptlib.library import collection

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(collection, "load", broken)
    result = CliRunner().invoke(app, ["--project", str(project), "list"])
    assert result.exit_code == 4
    assert result.stderr.startswith(
        "error: promptlib hit a bug: ZeroDivisionError: division by zero\n"
        "This is not a problem with your files or a failed gate. Please report it, with the "
        "command you ran; rerun with PROMPTLIB_DEBUG=1 for the traceback."
    )
    assert "Traceback" not in result.stdout + result.stderr
    monkeypatch.setenv("PROMPTLIB_DEBUG", "1")
    result = CliRunner().invoke(app, ["--project", str(project), "list"])
    assert isinstance(result.exception, ZeroDivisionError)
