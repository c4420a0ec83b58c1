"""MLflow: ``eval --mlflow``, ``release --mlflow`` and ``export mlflow`` against a real server.

One ``mlflow server`` (SQLite backend, artifacts served from a temporary folder) runs on
127.0.0.1 for the module; what promptlib sent is read back with ``MlflowClient``. Each
test works in its own project whose prompt ids start with their own namespace (``evl.``,
``rel.``...) and in its own experiment, since the registry is shared. Projects use the
offline ``retrieval`` provider: no network beyond 127.0.0.1, and MLflow's telemetry is
off. The error paths (no MLflow, no tracking URI, an unreachable server, options with
nothing to log) and the pure parts (settings, aliases, prompt payloads) need no server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import run_checked, write
from promptlib.cli import app
from promptlib.errors import ConfigError
from promptlib.integrations.mlflow import alias_of, prompt_payload
from promptlib.ledger import Ledger
from promptlib.settings import MlflowSettings
from promptlib.versioning.release import CHANGELOG_HEADER
from promptlib.versioning.snapshot import PromptState
from test_check_release import GREET, ROWS, SENTIMENT, SUITE, TOPIC

# Set for the whole module, before MLflow is first imported: no usage reporting.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
SERVER_START_TIMEOUT = 120.0


@pytest.fixture(scope="module", autouse=True)
def _no_telemetry() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in QUIET.items():
            patch.setenv(name, value)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real ``mlflow server`` on 127.0.0.1, up for the whole module."""
    pytest.importorskip("mlflow")
    folder = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {
        **os.environ,
        **QUIET,
        "HOME": str(folder),
        # The job runner (scheduled scorers) is a second process the tests do not need.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (folder / "server.log").open("wb")
    # Its own session: the server starts uvicorn as a child, and the teardown stops both.
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited {process.returncode}:\n{_tail(folder)}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not up after {SERVER_START_TIMEOUT:.0f} s:\n{_tail(folder)}"
                )
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _tail(folder: Path) -> str:
    return (folder / "server.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def client(server: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server, registry_uri=server)


# -- projects ------------------------------------------------------------------------------


def make_project(root: Path, ns: str, mlflow_table: str) -> Path:
    """test_check_release's project (two scored label prompts, one template prompt), with
    prompt ids under ``ns`` and ``[tool.promptlib.mlflow]`` set to ``mlflow_table``."""
    write(
        root / "pyproject.toml",
        '[project]\nname = "demo-prompts"\nversion = "1.0.0"\n\n'
        '[tool.promptlib]\ndefault-provider = "retrieval"\n\n'
        f"[tool.promptlib.mlflow]\n{mlflow_table}\n",
    )
    for name, text in (("sentiment", SENTIMENT), ("topic", TOPIC), ("greet", GREET)):
        write(root / "prompts" / ns / f"{name}.yaml", text.replace("demo.", f"{ns}."))
    lines = [
        json.dumps({"id": f"r{i}", "text": text, "sentiment": sentiment, "topic": topic})
        for i, (text, sentiment, topic) in enumerate(ROWS, 1)
    ]
    write(root / "evals" / "datasets" / "reviews.jsonl", "\n".join(lines) + "\n")
    for name in ("sentiment", "topic"):
        suite = SUITE.format(name=name).replace("demo.", f"{ns}.")
        write(root / "evals" / "suites" / f"{name}.yaml", suite)
    write(root / "CHANGELOG.md", CHANGELOG_HEADER)
    write(root / ".gitignore", ".promptlib/\n*.lock\n")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "Initial")):
        run_checked(["git", "-C", root, *args])
    return root


def served_project(tmp_path: Path, server: str, ns: str) -> Path:
    table = f'tracking-uri = "{server}"\nexperiment = "exp-{ns}"\nalias = "production"'
    return make_project(tmp_path / ns, ns, table)


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def ledger_runs(root: Path) -> dict[str, Any]:
    """The latest run record of each (prompt, suite)."""
    runs = Ledger(root / "evals" / "ledger").read().latest_runs().values()
    return {f"{r.prompt.id}/{r.suite}": r for r in sorted(runs, key=lambda r: r.time)}


def mlflow_runs(client: Any, ns: str) -> dict[str, Any]:
    """The MLflow runs of the experiment of ``ns``, by run key."""
    experiment = client.get_experiment_by_name(f"exp-{ns}")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    by_key: dict[str, Any] = {}
    for run in runs:
        key = run.data.tags["promptlib.run_key"]
        assert key not in by_key, f"run key {key} logged twice"
        by_key[key] = run
    return by_key


def versions(client: Any, name: str) -> dict[int, dict[str, str]]:
    """Every registered version of the prompt ``name`` and its tags."""
    return {int(v.version): v.tags for v in client.search_prompt_versions(name)}


def alias(client: Any, name: str, alias_name: str) -> int:
    return int(client.get_prompt_version_by_alias(name, alias_name).version)


# -- runs ----------------------------------------------------------------------------------


def test_eval_logs_each_run_once_and_updates_it_when_rerun(
    tmp_path: Path, server: str, client: Any
) -> None:
    root = served_project(tmp_path, server, "evl")
    code, out, err = cli(root, "eval", "--mlflow", "--format", "json")
    assert code == 0, err
    json.loads(out)  # the report on stdout stays parseable; MLflow lines go to stderr
    assert err.count("created   run evl.") == 2
    records = ledger_runs(root)
    logged = mlflow_runs(client, "evl")
    assert sorted(logged) == sorted(r.key for r in records.values())

    record = records["evl.sentiment/sentiment"]
    run = logged[record.key]
    assert run.info.run_name == "evl.sentiment 1.0.0 / sentiment"
    assert run.info.status == "FINISHED"
    assert {k: run.data.params[k] for k in ("prompt_id", "prompt_version", "suite")} == {
        "prompt_id": "evl.sentiment",
        "prompt_version": "1.0.0",
        "suite": "sentiment",
    }
    assert run.data.params["prompt_fingerprint"] == record.prompt.fingerprint
    assert run.data.params["dataset_sha256"] == record.dataset.sha256
    assert run.data.params["provider"] == "retrieval"
    assert "model" in run.data.params
    accuracy = record.results["accuracy"]
    assert run.data.metrics["accuracy/mean"] == pytest.approx(accuracy.mean)
    assert run.data.metrics["accuracy/stderr"] == pytest.approx(accuracy.stderr)
    assert run.data.metrics["accuracy/n"] == 8
    assert run.data.tags["promptlib.record"] == record.hash
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "promptlib")}
    assert artifacts == {
        f"promptlib/{name}"
        for name in ("examples.json", "examples.csv", "record.json", "report.html")
    }
    downloaded = client.download_artifacts(
        run.info.run_id, "promptlib/examples.json", str(tmp_path)
    )
    examples = json.loads(Path(downloaded).read_text())["examples"]
    assert [e["id"] for e in examples] == [f"r{i}" for i in range(1, 9)]
    first = examples[0]
    assert first["inputs"] == {"text": ROWS[0][0]}
    assert first["references"] == ["positive"]
    assert len(first["outputs"]) == 1
    assert set(first["scores"]) == {"accuracy"}

    # Again, by key prefix: nothing new.
    code, out, err = cli(root, "export", "mlflow", "--run", record.key[7:19])
    assert code == 0, err
    assert out.startswith("unchanged run evl.sentiment 1.0.0 / sentiment")
    assert len(mlflow_runs(client, "evl")) == 2

    # Recorded again (--fresh): the same MLflow runs, updated to the new records.
    code, _out, err = cli(root, "eval", "--mlflow", "--fresh")
    assert code == 0, err
    assert err.count("updated   run evl.") == 2
    again = mlflow_runs(client, "evl")
    assert {k: r.info.run_id for k, r in again.items()} == {
        k: r.info.run_id for k, r in logged.items()
    }
    fresh = ledger_runs(root)["evl.sentiment/sentiment"]
    assert fresh.hash != record.hash
    assert again[record.key].data.tags["promptlib.record"] == fresh.hash


def test_a_failed_gate_keeps_its_exit_code_and_its_runs_are_logged(
    tmp_path: Path, server: str, client: Any
) -> None:
    root = served_project(tmp_path, server, "gat")
    suite = root / "evals" / "suites" / "sentiment.yaml"
    suite.write_text(suite.read_text() + "gates: {accuracy: 0.99}\n")  # it scores 0.875
    code, _out, err = cli(root, "eval", "--mlflow")
    assert code == 1
    assert "gate failed: sentiment/gat.sentiment: accuracy 0.875 < 0.99" in err
    assert sorted(mlflow_runs(client, "gat")) == sorted(r.key for r in ledger_runs(root).values())


# -- releases ------------------------------------------------------------------------------


def test_release_registers_prompts_then_only_aliases_unchanged_ones(
    tmp_path: Path, server: str, client: Any
) -> None:
    root = served_project(tmp_path, server, "rel")
    code, _out, err = cli(root, "release", "--mlflow")
    assert code == 0, err
    first = Ledger(root / "evals" / "ledger").read().releases[-1]
    for name in ("rel.sentiment", "rel.topic", "rel.greet"):
        assert versions(client, name) == {
            1: {
                **versions(client, name)[1],
                "promptlib.fingerprint": first.prompts[name].fingerprint,
                "promptlib.version": "1.0.0",
                "promptlib.release": "1.0.0",
            }
        }
        assert alias(client, name, "v1-0-0") == alias(client, name, "production") == 1
    chat = client.get_prompt_version("rel.sentiment", 1)
    assert [m["role"] for m in chat.template] == ["system", "user"]
    assert chat.template[1]["content"] == "<review>{{ text }}</review>"  # Jinja, as written
    assert chat.format(text="I love it")[1]["content"] == "<review>I love it</review>"
    assert client.get_prompt_version("rel.greet", 1).template == "Say hello to {{ name }}."
    assert len(mlflow_runs(client, "rel")) == 2  # the release's evaluation, logged

    path = root / "prompts" / "rel" / "sentiment.yaml"
    path.write_text(path.read_text().replace("happy, perfect", "happy, perfect, early"))
    code, _out, err = cli(root, "release", "--mlflow")
    assert code == 0, err
    assert "release 1.1.0" in _out
    assert "registered prompt rel.sentiment version 2 (v1-1-0, production)" in err
    assert "existing   prompt rel.topic version 1 (v1-1-0, production)" in err
    assert sorted(versions(client, "rel.sentiment")) == [1, 2]
    assert sorted(versions(client, "rel.topic")) == [1]
    assert versions(client, "rel.sentiment")[2]["promptlib.version"] == "1.1.0"
    assert alias(client, "rel.sentiment", "production") == 2
    assert alias(client, "rel.topic", "v1-1-0") == alias(client, "rel.topic", "production") == 1

    # An older release again: no new version, and the moving alias stays on the latest.
    code, _out, err = cli(root, "export", "mlflow", "--release", "v1.0.0")
    assert code == 0, err
    assert "alias 'production' was left where it is" in err
    assert sorted(versions(client, "rel.sentiment")) == [1, 2]
    assert alias(client, "rel.sentiment", "v1-0-0") == 1
    assert alias(client, "rel.sentiment", "production") == 2
    assert len(mlflow_runs(client, "rel")) == 3  # one more run: sentiment 1.1.0


def test_eval_against_tags_each_candidate_run_with_its_verdicts(
    tmp_path: Path, server: str, client: Any
) -> None:
    root = served_project(tmp_path, server, "cmp")
    code, _out, err = cli(root, "release")
    assert code == 0, err
    path = root / "prompts" / "cmp" / "sentiment.yaml"
    path.write_text(path.read_text().replace("terrible, refund", "terrible, refund, late"))
    code, _out, err = cli(root, "eval", "--against", "latest", "--mlflow")
    assert code == 0, err
    view = Ledger(root / "evals" / "ledger").read()
    released = view.releases[-1].prompts["cmp.sentiment"].fingerprint
    sentiment = [r for r in view.latest_runs().values() if r.prompt.id == "cmp.sentiment"]
    (candidate,) = [r for r in sentiment if r.prompt.fingerprint != released]
    (baseline,) = [r for r in sentiment if r.prompt.fingerprint == released]
    logged = mlflow_runs(client, "cmp")
    assert set(logged) == {candidate.key, baseline.key}  # unchanged prompts: not evaluated
    tags = logged[candidate.key].data.tags
    assert tags["promptlib.against"] == "v1.0.0 (ledger release record)"
    assert tags["promptlib.against.ref"] == "latest"
    assert tags["promptlib.against.accuracy.verdict"] in {
        "improved",
        "regressed",
        "equivalent",
        "non-inferior",
        "inconclusive",
    }
    assert tags["promptlib.against.accuracy.baseline_run"] == baseline.key
    assert tags["promptlib.against.accuracy.n"] == "8"
    assert tags["promptlib.against.accuracy.gated"] == "true"
    assert "promptlib.against" not in logged[baseline.key].data.tags


# -- errors --------------------------------------------------------------------------------


@pytest.fixture
def offline(tmp_path: Path) -> Path:
    """A project whose MLflow server is a port nothing listens on (no retries)."""
    return make_project(
        tmp_path / "off", "off", f'tracking-uri = "http://127.0.0.1:{_free_port()}"'
    )


@pytest.fixture
def no_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import mlflow`` fails, as without the extra."""
    monkeypatch.setitem(sys.modules, "mlflow", None)


NO_MLFLOW_CASES = [
    ["eval", "--mlflow"],
    ["release", "--mlflow"],
    ["export", "mlflow", "--release", "latest"],
]


@pytest.mark.parametrize("args", NO_MLFLOW_CASES, ids=lambda a: a[0])
def test_without_mlflow_nothing_runs_and_the_extra_is_named(
    offline: Path, no_mlflow: None, args: list[str]
) -> None:
    code, _out, err = cli(offline, *args)
    assert code == 2
    assert "pip install 'promptlib[mlflow]'" in err
    assert "Traceback" not in err
    assert not (offline / "evals" / "ledger").exists()  # nothing evaluated nor released


# (arguments, message on stderr): refused before anything runs.
USAGE_CASES = [
    (["eval", "--mlflow", "--dry-run"], "--dry-run records nothing, so it takes no --mlflow"),
    (["eval", "--mlflow", "--no-record"], "drop --no-record"),
    (["eval", "--mlflow", "--limit", "2"], "a --limit or --sample run is not recorded"),
    (["release", "--mlflow", "--dry-run"], "--dry-run changes nothing, so it takes no --mlflow"),
    (["export", "mlflow"], "give --run KEY (repeatable) or --release VERSION"),
    (["export", "mlflow", "--release", "v9.9.9"], "no release yet"),
]


@pytest.mark.parametrize(
    ("args", "message"), USAGE_CASES, ids=[" ".join(args) for args, _ in USAGE_CASES]
)
def test_options_with_nothing_to_log_are_usage_errors(
    offline: Path, args: list[str], message: str
) -> None:
    pytest.importorskip("mlflow")
    code, _out, err = cli(offline, *args)
    assert (code, message in err) == (2, True), err
    assert not (offline / "evals" / "ledger").exists()


def test_no_tracking_uri_is_a_usage_error_before_evaluating(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    root = make_project(tmp_path / "nouri", "nouri", 'experiment = "x"')
    code, _out, err = cli(root, "eval", "--mlflow")
    assert code == 2
    assert "no MLflow tracking URI: set tracking-uri in [tool.promptlib.mlflow]" in err
    assert not (root / "evals" / "ledger").exists()


def test_an_unreachable_server_fails_the_export_not_the_recorded_eval(
    offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    code, _out, err = cli(offline, "eval", "--mlflow")
    assert code == 2
    assert "error: MLflow at http://127.0.0.1:" in err
    assert "Check that the server is up" in err
    assert len(ledger_runs(offline)) == 2  # recorded: `export mlflow --run` sends them later


# -- pure parts ----------------------------------------------------------------------------

WHERE = "pyproject.toml [tool.promptlib]"

# (table, environment, expected settings or the start of the error)
SETTINGS_CASES: list[tuple[dict[str, Any], dict[str, str], MlflowSettings | str]] = [
    ({}, {}, MlflowSettings(None, "promptlib", None)),
    (
        {"tracking-uri": "http://h:5000", "experiment": "e", "alias": "production"},
        {},
        MlflowSettings("http://h:5000", "e", "production"),
    ),
    (
        {"tracking-uri": "http://file"},
        {"MLFLOW_TRACKING_URI": "http://env"},
        MlflowSettings("http://env"),
    ),
    ({}, {"MLFLOW_TRACKING_URI": "sqlite:///m.db"}, MlflowSettings("sqlite:///m.db")),
    ({"alias": "v2"}, {}, f"{WHERE} [mlflow]: alias 'v2' is not a name MLflow accepts"),
    ({"alias": "Latest"}, {}, f"{WHERE} [mlflow]: alias 'Latest' is not a name"),
    ({"alias": "prod env"}, {}, f"{WHERE} [mlflow]: alias 'prod env' is not a name"),
    ({"experiment": ""}, {}, f"{WHERE} [mlflow]: experiment must be a non-empty string"),
    ({"tracking-uri": 5}, {}, f"{WHERE} [mlflow]: tracking-uri must be a non-empty string"),
    ({"uri": "x"}, {}, f"{WHERE} [mlflow]: unknown key(s) uri; known: alias, experiment"),
]


@pytest.mark.parametrize(("table", "environ", "expected"), SETTINGS_CASES)
def test_mlflow_settings(
    table: dict[str, Any], environ: dict[str, str], expected: MlflowSettings | str
) -> None:
    if isinstance(expected, str):
        with pytest.raises(ConfigError) as caught:
            MlflowSettings.from_table(table, WHERE, environ)
        assert str(caught.value).startswith(expected)
    else:
        assert MlflowSettings.from_table(table, WHERE, environ) == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.1.0", "v2-1-0"),
        ("v1.0.0", "v1-0-0"),
        ("1.0.0-rc.1", "v1-0-0-rc-1"),
        ("10.20.30", "v10-20-30"),
    ],
)
def test_release_alias(version: str, expected: str) -> None:
    assert alias_of(version) == expected


def test_prompt_payload_keeps_the_template_and_maps_model_parameters() -> None:
    behaviour = {
        "template": '{% include "tone.j2" %}Say hello to {{ name | title }}.',
        "partials": {"tone.j2": "Be kind. "},
        "inputs": {"name": {"type": "string", "required": True}},
        "model": {"temperature": 0.2, "stop": ["\n"], "seed": 7},
        "output": {"format": "json", "schema": {"type": "object"}},
    }
    payload = prompt_payload(PromptState("a.b", "1.2.0", "sha256:f", behaviour, {}), "3.0.0")
    assert payload.name == "a.b"
    assert payload.template == behaviour["template"]
    assert payload.model_config == {
        "temperature": 0.2,
        "stop_sequences": ["\n"],
        "extra_params": {"seed": 7},
    }
    assert payload.response_format == {"type": "object"}
    assert payload.tags["promptlib.partials"] == '{"tone.j2":"Be kind. "}'
    assert payload.tags["promptlib.fingerprint"] == "sha256:f"
    assert payload.tags["promptlib.version"] == "1.2.0"
    assert payload.tags["promptlib.release"] == "3.0.0"
    assert payload.commit_message == "promptlib release 3.0.0: a.b 1.2.0"
