"""``promptlib eval --executor ray``: shards as tasks on a real local Ray cluster.

The cluster (``ray start --head`` with 2 CPUs, in its own temporary folder and process
group) is started once for the module. Each test evaluates a project twice, in two copies:
in one process (``--executor local``) and on Ray, and checks that the ledgers hold the
same runs: keys, aggregates, per-example scores, errors and answers. The projects use a
deterministic ``python`` provider (a module in the project folder, shipped to the workers
with it) or the offline ``retrieval`` provider. Ray itself is an optional extra: these
tests need it installed (``pip install 'promptlib[ray]'``, part of ``dev``); the tests of
what happens without it simulate its absence.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import DEMO_PROMPT, write
from promptlib.cli import app
from promptlib.ledger import open_project
from promptlib.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
PROMPTLIB = Path(sys.executable).with_name("promptlib")
RAY = Path(sys.executable).with_name("ray")


# The provider's module, written into each project. It logs every answer (and the pid of
# the process giving it) to CALLS; for the row named by HANG it first writes its pid to
# HANG_PID and waits to be killed, unless KILLED exists. "[bad]" in the system message
# answers wrong; "[fail]" fails every request.
ANSWERS = """\
import os
import pty
import time
from pathlib import Path

CALLS = Path({calls!r})
HANG = {hang!r}
HANG_PID = Path({hang_pid!r})
KILLED = Path({killed!r})


def answer(messages, params):
    system, text = messages[0]["content"], messages[-1]["content"]
    if "[fail]" in system:
        raise RuntimeError("the model is down")
    if HANG and text == HANG and not KILLED.exists():
        HANG_PID.write_text(str(os.getpid()))
        time.sleep(120)
    with CALLS.open("a") as log:
        log.write(f"{{os.getpid()}} {{system}} {{text}}\\n")
    return "no" if "[bad]" in system else "yes"
"""


def make_project(root: Path, rows: int, prompts: dict[str, str], *, hang: str = "") -> Path:
    """A project of ``prompts`` (name -> system message) scored with exact_match on
    ``rows`` rows by the ``python`` provider of ``ANSWERS``, with a 0.5 gate."""
    write(
        root / "pyproject.toml",
        '[project]\nname = "demo"\nversion = "1.0.0"\n\n[tool.promptlib]\n'
        'default-provider = "py"\n\n[tool.promptlib.providers.py]\ntype = "python"\n'
        'callable = "ray_answers:answer"\n',
    )
    logs = root.parent / f"{root.name}-logs"
    logs.mkdir()
    write(
        root / "ray_answers.py",
        ANSWERS.format(
            calls=str(logs / "calls.log"),
            hang=hang,
            hang_pid=str(logs / "hang.pid"),
            killed=str(logs / "killed"),
        ),
    )
    for name, system in prompts.items():
        write(
            root / "prompts" / "demo" / f"{name}.yaml", DEMO_PROMPT.format(name=name, system=system)
        )
    lines = [
        json.dumps({"id": f"r{i:03d}", "text": f"row-{i}", "label": "yes"})
        for i in range(1, rows + 1)
    ]
    write(root / "evals" / "datasets" / "main.jsonl", "\n".join(lines) + "\n")
    names = ", ".join(f"demo.{name}" for name in prompts)
    write(
        root / "evals" / "suites" / "main.yaml",
        f"dataset: evals/datasets/main.jsonl\nprompts: [{names}]\ninputs: {{text: text}}\n"
        "references: label\nmetrics: [exact_match]\ngates: {exact_match: 0.5}\n",
    )
    return root


def calls(root: Path) -> list[str]:
    path = root.parent / f"{root.name}-logs" / "calls.log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def twin(root: Path) -> Path:
    """A copy of the project ``root``: the same files, so the same run keys (its provider
    module logs to ``root``'s log folder: run one project at a time, ``clear_logs`` between)."""
    copy = root.parent / f"{root.name}-local"
    shutil.copytree(root, copy)
    return copy


def clear_logs(root: Path) -> None:
    for path in (root.parent / f"{root.name}-logs").iterdir():
        path.unlink()


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLIB_", "RAY_"))}
    env["COLUMNS"] = "200"
    return env


def promptlib(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process (the provider module found on the project's path)."""
    env = {**environment(), "PYTHONPATH": str(root)}
    result = subprocess.run(
        [str(PROMPTLIB), "eval", "--project", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ledger_summary(root: Path) -> dict[str, dict[str, Any]]:
    """Every run of the project's ledger by key: what an equal run must hold the same."""
    view = open_project(Settings.resolve(root), write=False).read()
    out: dict[str, dict[str, Any]] = {}
    for run in view.latest_runs().values():
        scores = view.scores(run)
        outputs = view.outputs(run)
        out[run.key] = {
            "job": (run.suite, run.prompt.id, run.prompt.fingerprint),
            "results": {k: v.model_dump() for k, v in run.results.items()},
            "examples": run.examples,
            "errors": run.errors,
            "ids": scores.ids,
            "scores": {m: list(v) for m, v in scores.scores.items()},
            "error_texts": dict(scores.errors),
            "outputs": None if outputs is None else [list(o) for o in outputs.outputs],
        }
    return out


def index_lines(root: Path) -> list[dict[str, Any]]:
    path = root / "evals" / "ledger" / "index.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster (2 CPUs) for the module; its GCS address."""
    if shutil.which(str(RAY)) is None:
        pytest.fail("Ray is not installed: pip install 'promptlib[ray]' (part of .[dev])")
    # A short folder: Ray's socket paths must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="ray"))
    log = (folder / "start.log").open("w")
    process = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--port",
            "0",
            "--num-cpus",
            "2",
            "--node-ip-address",
            "127.0.0.1",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
            "--temp-dir",
            str(folder),
            "--block",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment(),
        start_new_session=True,  # its own process group: torn down as one
    )
    try:
        address_file = folder / "ray_current_cluster"
        deadline = time.monotonic() + 120
        while not address_file.exists() or not address_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start failed:\n" + (folder / "start.log").read_text())
            time.sleep(0.2)
        yield address_file.read_text().strip()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        # The cluster's services may outlive the signal while they shut down: whatever is
        # left of the group after the grace period is killed.
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def on_ray(root: Path, address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return promptlib(root, "--executor", "ray", "--ray-address", address, *args)


# -- without a cluster ------------------------------------------------------------------


def cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", "--project", str(root), *args])
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout + result.stderr


def test_without_ray_the_flag_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", 3, {"alpha": "Answer."})
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    code, output = cli(root, "--executor", "ray")
    assert code == 2, output
    assert "--executor ray needs Ray: pip install 'promptlib[ray]'" in output
    assert calls(root) == []
    assert not (root / "evals" / "ledger").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray-num-gpus", "1"], "--ray-num-gpus applies to --executor ray"),
        (["--ray-keep-alive", "0"], "--ray-keep-alive applies to --executor ray"),
        (["--executor", "ray", "--ray-keep-alive", "-1"], "Invalid value for '--ray-keep-alive'"),
        (
            ["--ray-address", "auto", "--ray-shards", "2"],
            "--ray-address, --ray-shards applies to --executor ray",
        ),
        (["--executor", "ray", "--limit", "2"], "a subset (--limit 2) is never recorded"),
        (["--executor", "ray", "--no-record"], "it takes no --no-record"),
        (["--executor", "ray", "--against", "v1.0.0"], "does not run --against yet"),
        (["--executor", "gpu"], "Invalid value for '--executor'"),
    ],
)
def test_options_that_mean_nothing_are_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    root = make_project(tmp_path / "p", 3, {"alpha": "Answer."})
    code, output = cli(root, *args)
    assert code == 2, output
    assert message in output
    assert calls(root) == []


# -- on the cluster ---------------------------------------------------------------------


def test_python_provider_on_ray_records_what_one_process_records(
    cluster: str, tmp_path: Path
) -> None:
    # Twelve rows, split above five: every job is split in two, plus a whole-job plan for
    # the shard assignment on the other prompt when run with a larger threshold.
    root = make_project(tmp_path / "p", 12, {"alpha": "Answer.", "beta": "Answer. [bad]"})
    local = twin(root)
    expected = promptlib(local, "--split-above", "5")
    assert expected.returncode == 1, expected.stderr  # beta's gate fails
    answered_locally = calls(root)
    clear_logs(root)
    result = on_ray(root, cluster, "--split-above", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gate failed: main/demo.beta: exact_match 0.000 < 0.5" in result.stderr
    assert result.stdout == expected.stdout.replace(str(local), str(root))
    summary = ledger_summary(root)
    assert summary == ledger_summary(local)
    assert len(summary) == 2
    assert all(s["examples"] == 12 for s in summary.values())
    # Each example was answered once, by the cluster's workers, never by the driver.
    assert sorted(c.split(" ", 1)[1] for c in calls(root)) == sorted(
        c.split(" ", 1)[1] for c in answered_locally
    )
    assert len(calls(root)) == 24
    assert {c.split(" ", 1)[0] for c in calls(root)}.isdisjoint(
        {c.split(" ", 1)[0] for c in answered_locally}
    )
    # A second run reuses everything and contacts no cluster.
    again = promptlib(root, "--executor", "ray", "--ray-address", "127.0.0.1:1")
    assert again.returncode == 1
    assert "2 prompt runs: 0 evaluated, 2 reused" in again.stderr
    assert len(calls(root)) == 24


def test_offline_provider_on_ray_records_what_one_process_records(
    cluster: str, tmp_path: Path
) -> None:
    root = tmp_path / "golden"
    shutil.copytree(GOLDEN / "project", root)
    shutil.copytree(GOLDEN / "prompts", root / "prompts")
    local = tmp_path / "golden-local"
    shutil.copytree(root, local)
    expected = promptlib(local, "--format", "json")
    result = on_ray(root, cluster, "--ray-shards", "3", "--split-above", "2", "--format", "json")
    assert (result.returncode, expected.returncode) == (0, 0), result.stderr
    assert ledger_summary(root) == ledger_summary(local)
    report, reference = json.loads(result.stdout), json.loads(expected.stdout)
    for document in (report, reference):
        for job in document["results"]:
            job.pop("seconds")
    assert report == reference


def test_a_killed_worker_is_retried_and_nothing_is_lost(cluster: str, tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p", 8, {"alpha": "Answer.", "beta": "Answer too."}, hang="row-3"
    )
    local = twin(root)
    logs = root.parent / f"{root.name}-logs"
    (logs / "killed").touch()  # the local run does not hang
    assert promptlib(local).returncode == 0
    answered_locally = calls(root)
    clear_logs(root)
    env = {**environment(), "PYTHONPATH": str(root)}
    command = [str(PROMPTLIB), "eval", "--project", str(root), "--executor", "ray"]
    process = subprocess.Popen(
        [*command, "--ray-address", cluster, "--ray-shards", "2", "--split-above", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        pid_file = logs / "hang.pid"
        while not pid_file.exists() or not pid_file.read_text():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no task reached the row to kill it on"
            time.sleep(0.1)
        killed = int(pid_file.read_text())
        (logs / "killed").touch()
        os.kill(killed, signal.SIGKILL)
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err
    assert "Traceback" not in err
    assert ledger_summary(root) == ledger_summary(local)
    answered = calls(root)
    # Every example was answered, by a live worker: the dead one never answered row 3, and
    # the shard it ran was run again in another process.
    assert sorted({c.split(" ", 1)[1] for c in answered}) == sorted(
        c.split(" ", 1)[1] for c in answered_locally
    )
    assert all(int(c.split(" ", 1)[0]) != killed for c in answered if c.endswith(" row-3"))
    assert len(answered) >= 16


def test_a_provider_failure_in_a_shard_exits_3_after_merging_the_rest(
    cluster: str, tmp_path: Path
) -> None:
    root = make_project(tmp_path / "p", 6, {"alpha": "Answer.", "down": "Answer. [fail]"})
    local = twin(root)
    expected = promptlib(local)
    result = on_ray(root, cluster, "--ray-shards", "2")
    assert (result.returncode, expected.returncode) == (3, 3), result.stderr
    assert "error: main/demo.down: 6 of 6 examples failed" in result.stderr
    assert "failed: 6 of 6 examples failed" in result.stdout
    summary = ledger_summary(root)
    assert summary == ledger_summary(local)
    assert [s["job"][1] for s in summary.values()] == ["demo.alpha"]
    assert [line["prompt"]["id"] for line in index_lines(root)] == ["demo.alpha"]


def test_an_unreachable_cluster_is_an_infrastructure_failure(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 3, {"alpha": "Answer."})
    result = promptlib(root, "--executor", "ray", "--ray-address", "127.0.0.1:9")
    assert result.returncode == 3, result.stderr
    assert "Ray: cannot start the run on 127.0.0.1:9" in result.stderr
    assert calls(root) == []


def test_the_progress_bar_counts_the_examples_of_every_shard(cluster: str, tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 10, {"alpha": "Answer.", "beta": "Answer too."})
    # stderr on a terminal: the progress bar is drawn, as in a local run.
    leader, follower = pty.openpty()
    env = {**environment(), "PYTHONPATH": str(root), "TERM": "xterm"}
    command = [str(PROMPTLIB), "eval", "--project", str(root), "--executor", "ray"]
    process = subprocess.Popen(
        [*command, "--ray-address", cluster, "--ray-shards", "2"],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
        while chunk := os.read(leader, 65536):
            drawn += chunk
    os.close(leader)
    assert process.wait(timeout=240) == 0
    text = drawn.decode("utf-8", "replace")
    assert "evaluating" in text
    assert "20/20" in text  # both shards' examples, counted on the driver
    assert len(calls(root)) == 20


# -- the pool of warm workers -----------------------------------------------------------


@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """This process as a Ray driver of the cluster at ``address``."""
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def workers(address: str) -> list[str]:
    """The names of the pool's workers alive on the cluster."""
    from promptlib.integrations.ray import pool_workers

    with connected(address) as ray:
        return pool_workers(ray)


@pytest.fixture
def pool(cluster: str) -> Iterator[str]:
    """The cluster with no pool worker before and after the test (whatever an earlier test
    left warm holds the cluster's CPUs); its address."""
    from promptlib.integrations.ray import NAMESPACE, pool_workers

    def clear() -> None:
        with connected(cluster) as ray:
            for name in pool_workers(ray):
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)

    clear()
    yield cluster
    clear()


def ray_run(
    root: Path,
    address: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    keep_alive: float = 60.0,
    fresh: bool = False,
    cache: str = "on",
) -> tuple[Any, list[Any]]:
    """``evaluate_on_ray`` on ``root`` from this process, two shards, split above 4 rows:
    the report and the shards' results (``ShardResult``: the pid that ran each)."""
    from promptlib.evals.cache import CacheMode
    from promptlib.evals.runner import EvalOptions
    from promptlib.integrations import ray as executor

    shards: list[Any] = []
    original = executor._run_tasks

    def recording(*args: Any, **kwargs: Any) -> Any:
        results = original(*args, **kwargs)
        shards.extend(results)
        return results

    monkeypatch.syspath_prepend(str(root))  # the driver imports the provider's module
    monkeypatch.delitem(sys.modules, "ray_answers", raising=False)
    settings = Settings.resolve(root)
    with monkeypatch.context() as patch:
        patch.setattr(executor, "_run_tasks", recording)
        report = executor.evaluate_on_ray(
            settings,
            cache_mode=CacheMode(cache),
            options=EvalOptions(fresh=fresh),
            ray_options=executor.RayOptions(
                address=address, shards=2, split_above=4, keep_alive=keep_alive
            ),
            ledger=open_project(settings),
        )
    return report, shards


def means(report: Any) -> dict[str, float]:
    return {o.prompt: o.results["exact_match"]["mean"] for o in report.outcomes}


def test_a_second_run_reuses_the_warm_workers(
    pool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", 8, {"alpha": "Answer.", "beta": "Answer. [bad]"})
    local = twin(root)
    assert promptlib(local, "--split-above", "4").returncode == 1  # beta's gate fails
    clear_logs(root)
    first, shards = ray_run(root, pool, monkeypatch)
    assert ledger_summary(root) == ledger_summary(local)
    pids = sorted(s.pid for s in shards)
    assert len(set(pids)) == 2
    assert len(calls(root)) == 16
    # Evaluated again (--fresh, --cache off): by the same two processes, every example asked
    # again as fresh workers would, and the same runs recorded.
    second, again = ray_run(root, pool, monkeypatch, fresh=True, cache="off")
    assert sorted(s.pid for s in again) == pids
    assert len(calls(root)) == 32
    assert {int(c.split(" ", 1)[0]) for c in calls(root)} == set(pids)
    assert means(second) == means(first) == {"demo.alpha": 1.0, "demo.beta": 0.0}
    assert ledger_summary(root) == ledger_summary(local)
    assert len(workers(pool)) == 2


def test_a_changed_prompt_gets_new_workers_that_evaluate_it(
    pool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", 8, {"alpha": "Answer.", "beta": "Answer too."})
    first, shards = ray_run(root, pool, monkeypatch)
    assert means(first) == {"demo.alpha": 1.0, "demo.beta": 1.0}
    before = workers(pool)
    assert len(before) == 2
    write(
        root / "prompts" / "demo" / "alpha.yaml",
        DEMO_PROMPT.format(name="alpha", system="Answer. [bad]"),
    )
    # The cluster's two CPUs are held by the warm workers of the old snapshot: the run
    # retires them (after their calls) for workers of the new one.
    second, again = ray_run(root, pool, monkeypatch)
    assert {s.pid for s in again}.isdisjoint({s.pid for s in shards})
    assert means(second) == {"demo.alpha": 0.0, "demo.beta": 1.0}
    new_pids = {s.pid for s in again}
    answered = [c for c in calls(root) if "[bad]" in c]
    assert len(answered) == 8
    assert {int(c.split(" ", 1)[0]) for c in answered} <= new_pids
    after = workers(pool)
    assert len(after) == 2
    assert set(after).isdisjoint(before)


def test_warm_workers_exit_after_the_keep_alive(
    pool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", 4, {"alpha": "Answer."})
    _, shards = ray_run(root, pool, monkeypatch, keep_alive=2)
    pids = {s.pid for s in shards}
    assert len(pids) == 2
    deadline = time.monotonic() + 90
    while workers(pool) or any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "the pool's workers outlived their keep-alive"
        time.sleep(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_keep_alive_0_leaves_no_worker_behind(pool: str, tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 6, {"alpha": "Answer.", "beta": "Answer too."})
    # With a keep-alive, the run leaves its workers warm, holding the cluster's two CPUs
    # for ten minutes (longer than a run is given here).
    warm = on_ray(root, pool, "--ray-shards", "2", "--ray-keep-alive", "600")
    assert warm.returncode == 0, warm.stderr
    assert len(workers(pool)) == 2
    # --ray-keep-alive 0: plain tasks, for which the idle workers are retired, and nothing
    # stays on the cluster after the run.
    clear_logs(root)
    result = on_ray(
        root, pool, "--ray-shards", "2", "--ray-keep-alive", "0", "--fresh", "--cache", "off"
    )
    assert result.returncode == 0, result.stderr
    assert len(calls(root)) == 12
    assert workers(pool) == []
