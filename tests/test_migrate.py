"""`promptlib ledger migrate`: schema 1 (evals/ledger.jsonl) into schema 2 (evals/ledger/).

Two ledgers are migrated: the golden one written by promptlib 2.1.0 (with the offline
retrieval provider), and one built here from a real evaluation with the deterministic
``fake`` provider, written in schema 1's shape, whose runs must come out under today's run
keys so that ``eval`` reuses them without a single provider call.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import write
from promptlib import evaluate
from promptlib.cli import app
from promptlib.evals.run import open_provider
from promptlib.evals.runner import run_key, run_key_v1
from promptlib.evals.suite import load_suites
from promptlib.ledger import Ledger, LineStore, read_v1
from promptlib.library.collection import load
from promptlib.settings import Settings

GOLDEN = Path(__file__).parent / "golden"


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def golden_v1(tmp_path: Path) -> Path:
    """The golden project with the schema-1 ledger promptlib 2.1.0 wrote for it."""
    root = tmp_path / "project"
    shutil.copytree(GOLDEN / "project", root)
    shutil.copytree(GOLDEN / "prompts", root / "prompts")
    shutil.copy(GOLDEN / "ledger" / "v1" / "ledger.jsonl", root / "evals" / "ledger.jsonl")
    return root


def test_the_golden_v1_ledger_migrates_and_verifies(golden_v1: Path) -> None:
    before = read_v1(golden_v1 / "evals" / "ledger.jsonl")
    code, out, err = cli(golden_v1, "ledger", "migrate")
    assert code == 0, err
    assert out.startswith("migrated 1 run(s) and 1 release(s) from ")
    assert "added to .gitattributes: evals/ledger/index.jsonl merge=union" in out
    assert (golden_v1 / ".gitattributes").read_text() == "evals/ledger/index.jsonl merge=union\n"
    ledger = Ledger(golden_v1 / "evals" / "ledger")
    assert ledger.verify().ok
    view = ledger.read()
    [run] = view.runs
    [release] = view.releases
    [old_run] = before.runs
    assert run.migrated_from == old_run.hash
    assert run.hash != old_run.hash  # sealed anew in schema 2
    assert view.scores(run).of("accuracy") == before.scores(old_run).of("accuracy")
    assert run.results == old_run.results
    assert (release.version, release.migrated_from) == ("1.0.0", before.releases[0].hash)
    # Each behaviour object is named by the prompt's fingerprint.
    for item in release.prompts.values():
        assert ledger.objects.problem(item.fingerprint) is None
    # Idempotent: nothing is appended twice.
    index = (golden_v1 / "evals" / "ledger" / "index.jsonl").read_bytes()
    code, out, _ = cli(golden_v1, "ledger", "migrate")
    assert code == 0
    assert out.startswith("migrated 0 run(s) and 0 release(s)")
    assert "(2 already there)" in out
    assert (golden_v1 / "evals" / "ledger" / "index.jsonl").read_bytes() == index


def test_eval_against_prints_the_same_before_and_after_migration(golden_v1: Path) -> None:
    prompt = golden_v1 / "prompts" / "golden" / "classify.yaml"
    prompt.write_text(prompt.read_text(encoding="utf-8").replace("Classify", "Label"))
    args = ("eval", "--against", "v1.0.0", "--format", "json")
    code, before, err = cli(golden_v1, *args, "--no-record")  # schema 1 is read-only
    assert code == 0, err
    assert cli(golden_v1, "ledger", "migrate")[0] == 0
    code, after, err = cli(golden_v1, *args)
    assert code == 0, err
    before_report, after_report = json.loads(before), json.loads(after)
    # Schema 1 could not be reused, so the baseline was evaluated again with its outputs;
    # the migrated run is reused, and schema 1 kept no outputs to compare.
    [old_comparison] = before_report["comparisons"]
    [new_comparison] = after_report["comparisons"]
    assert old_comparison.pop("outputs_identical") is True
    assert new_comparison.pop("outputs_identical") is None
    assert after_report == before_report
    assert after_report["prompts"]["golden.classify"] == "changed"


PROMPT = """\
id: demo.sentiment
version: 1.0.0
description: Labels a product review.
inputs:
  text: {type: string}
messages:
  - role: user
    content: "Review: {{ text }}"
output: {format: label, labels: [positive, negative]}
examples:
  - inputs: {text: great}
"""

REVIEWS = [
    {"id": "r1", "text": "I liked it a lot", "label": "positive"},
    {"id": "r2", "text": "did not like it", "label": "negative"},
    {"id": "r3", "text": "great", "label": "positive"},
]


def fake_project(root: Path) -> Path:
    write(
        root / "pyproject.toml",
        "[project]\nname = 'demo'\nversion = '1.0.0'\n\n[tool.promptlib]\n"
        'default-provider = "fake"\n\n[tool.promptlib.providers.fake]\ntype = "fake"\n'
        'default = "positive"\n',
    )
    write(root / "prompts" / "demo" / "sentiment.yaml", PROMPT)
    write(
        root / "evals" / "datasets" / "reviews.jsonl",
        "".join(json.dumps(r) + "\n" for r in REVIEWS),
    )
    write(
        root / "evals" / "suites" / "reviews.yaml",
        "dataset: evals/datasets/reviews.jsonl\nprompts: [demo.*]\ninputs: {text: text}\n"
        "references: label\nmetrics: [accuracy, exact_match]\n",
    )
    return root


def as_schema_1(root: Path) -> dict[str, Any]:
    """The project's one schema-2 run, written the way promptlib 2.1.0 wrote runs."""
    view = Ledger(root / "evals" / "ledger").read()
    [run] = view.runs
    scores = view.scores(run)
    settings = Settings.resolve(root)
    [suite] = load_suites(root)
    prompt = load(root)["demo.sentiment"]
    provider = open_provider(settings, "fake")
    return {
        "kind": "run",
        "key": run_key_v1(suite, prompt, suite.dataset(), provider, 1),
        "time": run.time,
        "suite": run.suite,
        "prompt": run.prompt.model_dump(),
        "dataset": run.dataset.model_dump(),
        "examples": run.examples,
        "provider": {
            "name": "fake",
            "type": "fake",
            "model": None,
            "params": run.params,
            "fingerprint": provider.legacy_fingerprint,
        },
        "metrics": {
            "config": suite.legacy_metric_config(),
            "implementation": {"promptlib": "2.1.0"},
        },
        "eval": suite.eval_config(),
        "repeats": 1,
        "results": {k: v.model_dump() for k, v in run.results.items()},
        "scores": {name: scores.of(name) for name in run.metrics},
        "errors": {"count": 0, "examples": {}},
        "timing": run.timing.model_dump(),
        "usage": {"prompt_tokens": None, "completion_tokens": None, "cost": None},
        "package": {"version": "2.1.0", "git_commit": None, "dirty": None},
    }


def test_migrated_runs_get_todays_keys_and_are_reused(tmp_path: Path) -> None:
    root = fake_project(tmp_path / "project")
    first = evaluate(root)
    assert [(o.status, o.calls) for o in first.outcomes] == [("ran", 3)]
    record = as_schema_1(root)
    shutil.rmtree(root / "evals" / "ledger")
    LineStore(root / "evals" / "ledger.jsonl", schema=1).append(record)
    code, out, err = cli(root, "ledger", "migrate")
    assert code == 0, err
    assert "1 run(s) got today's keys" in out
    [run] = Ledger(root / "evals" / "ledger").read().runs
    [suite] = load_suites(root)
    provider = open_provider(Settings.resolve(root), "fake")
    assert run.key == run_key(suite, load(root)["demo.sentiment"], suite.dataset(), provider, 1)
    assert run.metrics["accuracy"].algorithm == "promptlib-label-accuracy/1"
    # The migrated run is reused: no provider call, the same scores.
    again = evaluate(root)
    assert [(o.status, o.calls) for o in again.outcomes] == [("reused", 0)]
    assert again.outcomes[0].results == first.outcomes[0].results


def test_a_run_that_matches_no_job_is_kept_as_history(tmp_path: Path) -> None:
    root = fake_project(tmp_path / "project")
    evaluate(root)
    record = as_schema_1(root)
    record["suite"] = "renamed_since"
    shutil.rmtree(root / "evals" / "ledger")
    LineStore(root / "evals" / "ledger.jsonl", schema=1).append(record)
    code, out, _ = cli(root, "ledger", "migrate")
    assert code == 0
    assert "kept as history (no matching job today): renamed_since/demo.sentiment" in out
    assert "0 run(s) got today's keys" in out
    again = evaluate(root)
    assert [o.status for o in again.outcomes] == ["ran"]


def test_migrate_refuses_a_damaged_schema_1_ledger(golden_v1: Path) -> None:
    path = golden_v1 / "evals" / "ledger.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace('"n":6', '"n":7', 1))
    code, _, err = cli(golden_v1, "ledger", "migrate")
    assert code == 2
    assert "fix or delete these lines before migrating" in err
    assert "hash mismatch" in err
    assert not (golden_v1 / "evals" / "ledger").exists()


def test_nothing_to_migrate(tmp_path: Path) -> None:
    root = fake_project(tmp_path / "project")
    code, _, err = cli(root, "ledger", "migrate")
    assert code == 2
    assert "there is no schema-1 ledger to migrate" in err
