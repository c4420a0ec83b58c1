"""Personal settings: promptlib.local.toml and PROMPTLIB_* variables over the project file.

Precedence, lowest first: default, project file (pyproject.toml [tool.promptlib] or
promptlib.toml), promptlib.local.toml, environment, command-line flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import write
from promptlib.cli import app
from promptlib.settings import Settings

PROJECT = """\
[tool.promptlib]
default-provider = "from-project"

[tool.promptlib.retry]
max-attempts = 4

[tool.promptlib.mlflow]
tracking-uri = "http://project"

[tool.promptlib.providers.my-server]
type = "openai"
model = "project-model"
base_url = "http://project/v1"
"""

LOCAL = """\
default-provider = "from-local"

[retry]
max-attempts = 3

[mlflow]
tracking-uri = "http://local"

[providers.my-server]
base_url = "http://local/v1"
"""

ENV = {
    "PROMPTLIB_PROVIDER": "from-env",
    "PROMPTLIB_RETRY__MAX_ATTEMPTS": "2",
    "PROMPTLIB_MLFLOW__TRACKING_URI": "http://env",
    "PROMPTLIB_PROVIDERS__MY_SERVER__BASE_URL": "http://env/v1",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "prompts").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def resolved(settings: Settings) -> dict[str, Any]:
    return {
        "provider": settings.default_provider,
        "attempts": settings.retry.max_attempts,
        "tracking": settings.mlflow.tracking_uri,
        "base_url": settings.config.get("providers", {}).get("my-server", {}).get("base_url"),
    }


# Each row adds one layer; every value comes from the highest layer present.
LAYERS = [
    ("defaults", None, None, {}, None, ("retrieval", 5, None, None)),
    (
        "project",
        PROJECT,
        None,
        {},
        None,
        ("from-project", 4, "http://project", "http://project/v1"),
    ),
    ("local", PROJECT, LOCAL, {}, None, ("from-local", 3, "http://local", "http://local/v1")),
    ("env", PROJECT, LOCAL, ENV, None, ("from-env", 2, "http://env", "http://env/v1")),
    ("flag", PROJECT, LOCAL, ENV, "from-flag", ("from-flag", 2, "http://env", "http://env/v1")),
    # A layer may be missing: the environment overrides the project file directly.
    ("env over project", PROJECT, None, ENV, None, ("from-env", 2, "http://env", "http://env/v1")),
    ("local alone", None, LOCAL, {}, None, ("from-local", 3, "http://local", "http://local/v1")),
]


@pytest.mark.parametrize(
    ("layer", "pyproject", "local", "environ", "flag", "expected"),
    LAYERS,
    ids=[row[0] for row in LAYERS],
)
def test_each_layer_overrides_the_one_below(
    project: Path,
    layer: str,
    pyproject: str | None,
    local: str | None,
    environ: dict[str, str],
    flag: str | None,
    expected: tuple[Any, ...],
) -> None:
    write(project / "pyproject.toml", pyproject or "")
    if local is not None:
        write(project / "promptlib.local.toml", local)
    settings = Settings.resolve(project, environ=environ, provider=flag)
    keys = ("provider", "attempts", "tracking", "base_url")
    assert resolved(settings) == dict(zip(keys, expected, strict=True))


def test_provider_options_merge_one_by_one(project: Path) -> None:
    write(project / "pyproject.toml", PROJECT)
    write(project / "promptlib.local.toml", LOCAL)
    settings = Settings.resolve(project, environ={"PROMPTLIB_PROVIDERS__MY_SERVER__TIMEOUT": "30"})
    assert settings.config["providers"]["my-server"] == {
        "type": "openai",
        "model": "project-model",  # from the project file
        "base_url": "http://local/v1",  # from promptlib.local.toml
        "timeout": 30,  # from the environment, read as a TOML value
    }


@pytest.mark.parametrize(
    ("raw", "value"),
    [("30", 30), ("1.5", 1.5), ("true", True), ('"8080"', "8080"), ("http://x/v1", "http://x/v1")],
)
def test_environment_values_are_read_as_toml_values_else_text(
    project: Path, raw: str, value: Any
) -> None:
    write(project / "pyproject.toml", "")
    settings = Settings.resolve(project, environ={"PROMPTLIB_PROVIDERS__NEW__OPTION": raw})
    assert settings.config["providers"]["new"]["option"] == value


def test_local_file_beside_promptlib_toml(project: Path) -> None:
    write(project / "pyproject.toml", "[project]\nname = 'x'\n")
    write(project / "promptlib.toml", 'default-provider = "team"\n[retry]\nmax-attempts = 4\n')
    write(project / "promptlib.local.toml", 'default-provider = "mine"\n')
    settings = Settings.resolve(project, environ={})
    assert (settings.default_provider, settings.retry.max_attempts) == ("mine", 4)


def test_a_provider_defined_only_in_the_environment_runs(project: Path) -> None:
    write(project / "pyproject.toml", "[tool.promptlib]\n")
    write(
        project / "prompts" / "greet.yaml",
        "id: greet\nversion: 1.0.0\ndescription: Greets.\ninputs: {name: {type: string}}\n"
        'template: "Say hello to {{ name }}."\noutput: {format: label, labels: [hi, bye]}\n',
    )
    write(project / "evals/datasets/d.jsonl", '{"id": "1", "name": "Ann", "label": "hi"}\n')
    write(
        project / "evals/suites/s.yaml",
        "dataset: evals/datasets/d.jsonl\nprompts: [greet]\ninputs: {name: name}\n"
        "references: label\nmetrics: [accuracy]\n",
    )
    env = {
        "PROMPTLIB_PROVIDER": "bm25",
        "PROMPTLIB_PROVIDERS__BM25__TYPE": "retrieval",
        "PROMPTLIB_PROVIDERS__BM25__K1": "1.2",
    }
    result = CliRunner().invoke(app, ["eval", "--no-record"], env=env)
    assert result.exit_code == 0, result.stderr
    # The option reaches the provider: a bad one is refused by it.
    result = CliRunner().invoke(
        app, ["eval", "--no-record"], env={**env, "PROMPTLIB_PROVIDERS__BM25__K1": "-1"}
    )
    assert result.exit_code == 2
    assert "provider 'bm25': option 'k1' must be >= 0, got -1" in result.stderr


LOCAL_FILE = "promptlib.local.toml"

# (where the bad value is, its text, what the message must say)
BAD = [
    (
        "local",
        '[retry]\nmax-attempts = "x"\n',
        "promptlib.local.toml [retry]: max-attempts must be an integer, not 'x'",
    ),
    ("local", "[retry]\nbackoff = 1\n", "promptlib.local.toml [retry]: unknown key(s) backoff"),
    (
        "local",
        "default-provider = 3\n",
        "promptlib.local.toml: default-provider must be a provider name, not 3",
    ),
    (
        "local",
        "[providers]\nmine = 3\n",
        "promptlib.local.toml [providers.mine]: must be a table of options",
    ),
    (
        "local",
        '[mlflow]\nalias = "latest"\n',
        "promptlib.local.toml [mlflow]: alias 'latest' is not a name MLflow accepts",
    ),
    ("local", "[compare]\nalpha = 0.1\n", "promptlib.local.toml: compare cannot be set here"),
    ("local", "default-provider = \n", "promptlib.local.toml: invalid TOML"),
    (
        "env",
        ("PROMPTLIB_RETRY__MAX_ATTEMPTS", "abc"),
        "PROMPTLIB_RETRY__MAX_ATTEMPTS [retry]: max-attempts must be an integer, not 'abc'",
    ),
    (
        "env",
        ("PROMPTLIB_RETRY__BACKOFF", "1"),
        "PROMPTLIB_RETRY__BACKOFF [retry]: unknown key(s) backoff",
    ),
    (
        "env",
        ("PROMPTLIB_MLFLOW__ALIAS", "v2"),
        "PROMPTLIB_MLFLOW__ALIAS [mlflow]: alias 'v2' is not a name MLflow accepts",
    ),
    (
        "env",
        ("PROMPTLIB_COMPARE__ALPHA", "0.1"),
        "PROMPTLIB_COMPARE__ALPHA: not a promptlib setting",
    ),
    (
        "env",
        ("PROMPTLIB_PROVIDERS__LOCAL", "x"),
        "PROMPTLIB_PROVIDERS__LOCAL: not a promptlib setting",
    ),
    ("env", ("PROMPTLIB_NOPE__X", "1"), "PROMPTLIB_NOPE__X: not a promptlib setting"),
]


@pytest.mark.parametrize(("layer", "bad", "message"), BAD)
def test_a_bad_value_names_its_file_or_variable_and_key_and_exits_2(
    project: Path, monkeypatch: pytest.MonkeyPatch, layer: str, bad: Any, message: str
) -> None:
    write(project / "pyproject.toml", "[tool.promptlib]\n")
    if layer == "local":
        write(project / LOCAL_FILE, bad)
    else:
        monkeypatch.setenv(*bad)
    code, _, err = run("list")
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_an_overridden_bad_project_value_is_still_named_by_the_project_file(
    project: Path,
) -> None:
    write(project / "pyproject.toml", '[tool.promptlib.retry]\nmax-delay = "slow"\n')
    write(project / LOCAL_FILE, "[retry]\nmax-attempts = 2\n")
    code, _, err = run("list")
    assert code == 2
    assert "pyproject.toml [tool.promptlib] [retry]: max-delay must be a number" in err


def test_variables_that_are_not_settings_are_left_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project / "pyproject.toml", "[tool.promptlib]\n")
    monkeypatch.setenv("PROMPTLIB_DEBUG", "0")
    monkeypatch.setenv("PROMPTLIB_TEST_WHEELHOUSE", "/nowhere")
    assert run("list")[0] == 0


def test_promptlib_toml_and_tool_promptlib_together_say_which_file_to_use(project: Path) -> None:
    write(project / "pyproject.toml", '[tool.promptlib]\ndefault-provider = "a"\n')
    write(project / "promptlib.toml", 'default-provider = "b"\n')
    code, _, err = run("list")
    assert code == 2
    assert "reads only one project file" in err
    assert "move the keys of one into the other" in err
    assert "promptlib.local.toml" in err
