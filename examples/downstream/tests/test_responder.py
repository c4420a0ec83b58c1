"""The responder against the installed promptlib wheel (run from a fresh virtual env)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support_responder import Responder
from support_responder.responder import MANIFEST, ROUTER

import promptlib

HERE = Path(__file__).resolve().parent.parent


def test_the_installed_library_matches_the_lock() -> None:
    promptlib_cli = Path(sys.executable).with_name("promptlib")
    result = subprocess.run(
        [str(promptlib_cli), "manifest", "check"], cwd=HERE, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "manifest check passed" in result.stderr


def test_only_the_pinned_prompts_are_loaded() -> None:
    responder = Responder()
    manifest_ids = {
        line.split(":")[0].strip()
        for line in MANIFEST.read_text(encoding="utf-8").splitlines()
        if line.startswith("  ") and ":" in line
    }
    assert set(responder.library) == manifest_ids
    lock = json.loads(MANIFEST.with_suffix(".lock").read_text(encoding="utf-8"))
    for prompt_id, prompt in responder.library.items():
        assert lock["prompts"][prompt_id]["fingerprint"] == prompt.fingerprint


def test_a_message_the_router_has_as_an_example_routes_to_its_label() -> None:
    # The router's few-shot turns are real Bitext requests with their labels; the offline
    # baseline must route each of them to that label.
    responder = Responder()
    messages = responder.router.messages or ()
    pairs = [
        (user.content.split("\n")[1], answer.content.strip())
        for user, answer in itertools.pairwise(messages)
        if user.role == "user" and answer.role == "assistant"
    ]
    assert len(pairs) >= 27
    for text, label in pairs[:10]:
        assert responder.route(text) == label


def test_answers_use_the_intent_prompt_or_the_general_one() -> None:
    responder = Responder()
    reply = responder.answer("I want to cancel the order I placed yesterday")
    assert reply.text.strip()
    assert reply.prompt in responder.library
    if reply.intent and f"support.answer.{reply.intent}" in responder.library:
        assert reply.prompt == f"support.answer.{reply.intent}"
    else:
        assert reply.prompt == "support.answer.general"


def test_start_up_fails_closed_when_the_lock_does_not_match(tmp_path: Path) -> None:
    manifest = tmp_path / "prompt_manifest.yaml"
    shutil.copy(MANIFEST, manifest)
    lock = json.loads(MANIFEST.with_suffix(".lock").read_text(encoding="utf-8"))
    lock["prompts"][ROUTER]["fingerprint"] = "sha256:" + "0" * 64
    manifest.with_suffix(".lock").write_text(json.dumps(lock), encoding="utf-8")
    with pytest.raises(promptlib.DriftError, match="differs from the locked") as caught:
        Responder(manifest)
    # The lock is sealed: an edit by hand is refused even before comparing prompts.
    assert "prompt_manifest.lock was edited by hand" in str(caught.value)
