"""Stored formats are contracts: files written by earlier code, read by today's code.

Everything here is literal: the files under tests/golden/ were written once by the code of
the release that introduced each format (tests/golden/README.md says how) and the values
asserted below were printed by it. None of them may be edited or regenerated; a format change adds a new version and
new golden files beside these, and these keep being read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from promptlib.evals.cache import ResponseCache
from promptlib.evals.run import open_provider
from promptlib.evals.runner import run_key, run_key_v1
from promptlib.evals.suite import load_suites
from promptlib.ledger import Ledger, LineStore, read_v1
from promptlib.library.collection import load
from promptlib.library.messages import Message
from promptlib.library.model import OutputSpec
from promptlib.providers import Provider, Request, Response
from promptlib.settings import Settings
from promptlib.versioning.history import latest_release, releases

GOLDEN = Path(__file__).parent / "golden"
LEDGER_V1 = GOLDEN / "ledger" / "v1" / "ledger.jsonl"

RUN_HASH = "sha256:156c493d1baedc291f6a51a18d1a4947c10f6b5e6f23a919dab0d565b695be8c"
RELEASE_HASH = "sha256:a1cf0653ee226e3c0c039710aaf8a7f0637a7c3524def9c61ea40085df015b3f"
FINGERPRINTS = {
    "golden.chat": "sha256:f311cea1f30c31b0710ddc1e7369f09a37654ed19e78c6b7e0265e0359ce156d",
    "golden.classify": "sha256:479511b4a240136a2a3b5127d12359f7b45d30daebc1b106366039242e691f03",
    "golden.text": "sha256:72347c1565eb9828e6e89d7f8865b75295a6b9129d033135559acf7ee0d6a8e2",
}
DATASET = "sha256:5a3b21716e154be58e7da7368da9819f34d1e02e0e8131aafe67f73b88b6991a"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(GOLDEN / "project", root)
    shutil.copytree(GOLDEN / "prompts", root / "prompts")
    return root


# --- The v1 ledger ----------------------------------------------------------------------


def test_the_v1_ledger_reads_and_verifies() -> None:
    ledger = LineStore(LEDGER_V1, schema=1)
    report = ledger.verify()
    assert report.ok, report.problems
    assert (report.lines, report.records, report.duplicates) == (2, 2, 0)
    view = ledger.read()
    assert [r["hash"] for r in view.records] == [RUN_HASH, RELEASE_HASH]


def test_a_v1_hash_is_sha256_of_canonical_json_without_the_hash() -> None:
    # Computed here with the standard library alone, not with promptlib's canonical JSON.
    for text in LEDGER_V1.read_text(encoding="utf-8").splitlines():
        record = json.loads(text)
        body = {k: v for k, v in record.items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert record["hash"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
        # The line is itself the canonical JSON of the whole record.
        whole = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert text == whole


def test_the_v1_run_record() -> None:
    [run] = LineStore(LEDGER_V1, schema=1).read().of_kind("run")
    assert run["schema"] == 1
    assert run["key"] == "sha256:3950de6c79a25a402e12c0131bfc2f2f8212ffab7ad538864d65fb15afa6c7e8"
    assert run["suite"] == "golden_refund"
    assert run["prompt"] == {
        "id": "golden.classify",
        "version": "2.0.0",
        "fingerprint": FINGERPRINTS["golden.classify"],
    }
    assert run["dataset"] == {
        "path": "evals/datasets/banking77_refund.jsonl",
        "rows": 6,
        "sha256": DATASET,
    }
    assert run["results"] == {"accuracy": {"mean": 1.0, "n": 6, "stderr": 0.0}}
    assert sorted(run["scores"]["accuracy"]) == [
        "banking77-test-0100",
        "banking77-test-0101",
        "banking77-test-1681",
        "banking77-test-1682",
        "banking77-test-1683",
        "banking77-test-2000",
    ]
    assert run["errors"] == {"count": 0, "examples": {}}


def test_the_v1_run_reads_as_a_schema_2_run() -> None:
    view = read_v1(LEDGER_V1)
    [run] = view.runs
    assert (run.hash, run.migrated_from, run.outputs) == (RUN_HASH, RUN_HASH, None)
    assert run.key == "sha256:3950de6c79a25a402e12c0131bfc2f2f8212ffab7ad538864d65fb15afa6c7e8"
    scores = view.scores(run)
    assert scores.of("accuracy") == dict.fromkeys(scores.ids, 1.0)
    assert len(scores.ids) == 6
    assert dict(scores.errors) == {}


def test_the_v1_release_record_rebuilds_every_prompt() -> None:
    view = read_v1(LEDGER_V1)
    [record] = releases(view)
    assert record.hash == RELEASE_HASH
    snapshot = latest_release(view)
    assert snapshot is not None
    assert (snapshot.version, snapshot.source) == ("1.0.0", "release")
    assert {pid: state.fingerprint for pid, state in snapshot.prompts.items()} == FINGERPRINTS
    for prompt_id, fingerprint in FINGERPRINTS.items():
        assert snapshot.prompt(prompt_id).fingerprint == fingerprint
    messages = snapshot.prompt("golden.classify").render(text="Get an item refund")
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[1].content == "Get an item refund"


# --- Keys of promptlib 2.1.0 for the golden project ---------------------------------------


class StubProvider(Provider):
    """A provider whose identity is fixed, so that the key depends on promptlib alone."""

    type = "golden-stub"

    @classmethod
    def from_config(cls, name: str, options: Any, environ: Any) -> Provider:
        return cls(name)

    def fingerprint_data(self) -> dict[str, Any]:
        return {"type": "golden-stub", "model": "none"}

    async def complete(self, request: Request) -> Response:
        return Response("other")


def test_the_provider_fingerprint_is_sha256_of_its_data() -> None:
    assert StubProvider("s").fingerprint == (
        "sha256:d633f72d1567ec4ac2cd5e099a37d7b304546d11d5af97534703c018a98f7f67"
    )


@pytest.mark.parametrize(
    ("repeats", "key"),
    [
        (1, "sha256:fff65cfac4ef0fbba7fbdccb3100b6608253417b93d254129c99ec4818723045"),
        (3, "sha256:427abb4869f1d1365a20bdeab3b527edac3fd0346df1690dc10ef44211a1906a"),
    ],
)
def test_the_v1_run_key(project: Path, repeats: int, key: str) -> None:
    [suite] = load_suites(project)
    prompt = load(project)["golden.classify"]
    dataset = suite.dataset()
    assert (prompt.fingerprint, dataset.sha256) == (FINGERPRINTS["golden.classify"], DATASET)
    assert run_key_v1(suite, prompt, dataset, StubProvider("stub"), repeats) == key


@pytest.mark.parametrize(
    ("repeat", "key"),
    [
        (0, "sha256:bb45c65245ffc751ddc2875c0617988862c19bb428d9df0b88224f12b035a79f"),
        (1, "sha256:fa8296a5586bf479ddcc3aee2955ec4a8679fcb6d719bf15e874d4251e30d057"),
    ],
)
def test_the_v1_response_cache_key(repeat: int, key: str) -> None:
    request = Request(
        messages=(
            Message(
                "system",
                "Classify the text. Labels:\n- refund: money back\n- other: anything else",
            ),
            Message("user", "Can I receive a refund for my item?"),
        ),
        params={"temperature": 0, "seed": 7},
        output=OutputSpec(format="label", labels=["other", "refund"]),
        prompt_id="golden.classify",
        example_id="banking77-test-1682",
        repeat=repeat,
    )
    assert ResponseCache.legacy_key(request, "sha256:" + "0" * 64) == key


# --- Schema 2, written by the code that introduced it ---------------------------------------

LEDGER_V2 = GOLDEN / "ledger" / "v2"
RUN_HASH_V2 = "sha256:c3f30bda10ac6725269c0a940f37a09f8ea2bbb383d37cc2f1bd7c8318271f0c"
RELEASE_HASH_V2 = "sha256:9458e6f15f935a8985d3d0bd9206ca2662c99c1b61d60acd3c6c01e303720da5"
# The retrieval provider's run key: it names promptlib's algorithms only, so it is the same
# whatever versions of bm25s, jsonschema or rouge-score are installed.
RETRIEVAL_RUN_KEY_V2 = "sha256:f794e69031f4e696c91fc08c8d705999f4d7bcf2968a2f12c8102715a3c0177c"


def test_the_v2_ledger_reads_and_verifies() -> None:
    ledger = Ledger(LEDGER_V2)
    report = ledger.verify()
    assert report.ok, report.problems
    assert (report.index.lines, report.objects, report.unreferenced) == (2, 9, 0)
    view = ledger.read()
    [run] = view.runs
    [release] = view.releases
    assert (run.hash, release.hash) == (RUN_HASH_V2, RELEASE_HASH_V2)
    assert run.key == RETRIEVAL_RUN_KEY_V2
    assert run.metrics["accuracy"].algorithm == "promptlib-label-accuracy/1"
    assert run.scores == "sha256:9ca3ac23aa101f979884dd9874aa50acf5a43234a6a4445deddabb918b9b03ab"
    assert run.outputs == (
        "sha256:0be7dbb0068e454244f48cb17a0c4c880c9c027c177c10347a77cdc494ca3c05"
    )
    assert view.scores(run).ids == (
        "banking77-test-1681",
        "banking77-test-1682",
        "banking77-test-1683",
        "banking77-test-0100",
        "banking77-test-0101",
        "banking77-test-2000",
    )
    outputs = view.outputs(run)
    assert outputs is not None
    assert [list(o) for o in outputs.outputs] == [["refund"]] * 3 + [["other"]] * 3
    assert {pid: item.fingerprint for pid, item in release.prompts.items()} == FINGERPRINTS
    snapshot = latest_release(view)
    assert snapshot is not None
    assert snapshot.prompt("golden.chat").fingerprint == FINGERPRINTS["golden.chat"]


def test_the_v2_run_key_of_the_golden_project(project: Path) -> None:
    [suite] = load_suites(project)
    prompt = load(project)["golden.classify"]
    dataset = suite.dataset()
    retrieval = open_provider(Settings.resolve(project), "retrieval")
    assert run_key(suite, prompt, dataset, retrieval, 1) == RETRIEVAL_RUN_KEY_V2
    assert run_key(suite, prompt, dataset, StubProvider("stub"), 1) == (
        "sha256:8ff0970e39498c71fd3aaf097fd754540f5a298ba17d483dd6b3bafd9494bf92"
    )
    assert run_key(suite, prompt, dataset, StubProvider("stub"), 3) == (
        "sha256:4304dc99e83c92d577cc2886bea15d4e731f22603bb8a692e1e4ee2134722952"
    )


def test_the_v2_response_cache_key() -> None:
    request = Request(
        messages=(
            Message(
                "system",
                "Classify the text. Labels:\n- refund: money back\n- other: anything else",
            ),
            Message("user", "Can I receive a refund for my item?"),
        ),
        params={"temperature": 0, "seed": 7},
        output=OutputSpec(format="label", labels=["other", "refund"]),
        prompt_id="golden.classify",
        example_id="banking77-test-1682",
        repeat=0,
    )
    assert ResponseCache.key(request, "sha256:" + "0" * 64)[0] == (
        "sha256:ba8be6e9b521b6a17dd6230a3d0131f0273692fdbcbcd0de17b635e42b4e39dc"
    )
