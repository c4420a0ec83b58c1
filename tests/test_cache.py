"""promptlib.evals.cache: the SQLite (WAL) response cache and its explicit request fingerprint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from promptlib.errors import ConfigError
from promptlib.evals.cache import CacheMode, ResponseCache
from promptlib.library.messages import Message
from promptlib.library.model import OutputSpec
from promptlib.providers.contract import Request, Response, Usage

PROVIDER = "sha256:" + "1" * 64
SYSTEM = Message(
    "system", "You are the intent classifier of a support assistant. Answer with one label."
)
LABELS = OutputSpec(format="label", labels=["cancel_order", "track_order"])

BASE = Request(
    messages=(SYSTEM, Message("user", "<request>\ncancel order 42\n</request>\n")),
    params={"temperature": 0, "max_tokens": 16},
    output=LABELS,
    prompt_id="support.classify.intent",
    example_id="bitext-0001",
    repeat=0,
)
ANSWER = Response("cancel_order", Usage(120, 3), 0.00042, "gpt-4o-mini-2024-07-18")


def request(user: str, **changes: Any) -> Request:
    return replace(BASE, messages=(SYSTEM, Message("user", user)), **changes)


@pytest.fixture
def open_cache(tmp_path: Path) -> Iterator[Callable[..., ResponseCache]]:
    opened: list[ResponseCache] = []

    def make(mode: CacheMode = CacheMode.on, path: Path | None = None) -> ResponseCache:
        cache = ResponseCache(path or tmp_path / ".promptlib" / "cache.sqlite", mode)
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


# ---------------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("name", "provider", "changed"),
    [
        ("provider fingerprint", "sha256:" + "2" * 64, BASE),
        (
            "system message",
            PROVIDER,
            replace(BASE, messages=(Message("system", SYSTEM.content + " "), BASE.messages[1])),
        ),
        (
            "user message",
            PROVIDER,
            replace(
                BASE, messages=(SYSTEM, Message("user", "<request>\ncancel order 43\n</request>\n"))
            ),
        ),
        (
            "message role",
            PROVIDER,
            replace(BASE, messages=(Message("user", SYSTEM.content), BASE.messages[1])),
        ),
        ("message order", PROVIDER, replace(BASE, messages=tuple(reversed(BASE.messages)))),
        (
            "extra message",
            PROVIDER,
            replace(BASE, messages=(*BASE.messages, Message("assistant", "cancel_order"))),
        ),
        ("temperature", PROVIDER, replace(BASE, params={"temperature": 0.2, "max_tokens": 16})),
        ("max_tokens", PROVIDER, replace(BASE, params={"temperature": 0, "max_tokens": 17})),
        ("extra parameter", PROVIDER, replace(BASE, params={**BASE.params, "seed": 7})),
        ("output format", PROVIDER, replace(BASE, output=OutputSpec(format="text"))),
        (
            "output labels",
            PROVIDER,
            replace(
                BASE, output=OutputSpec(format="label", labels=["track_order", "cancel_order"])
            ),
        ),
        ("repeat index", PROVIDER, replace(BASE, repeat=1)),
    ],
)
def test_every_part_of_the_request_changes_the_key(
    name: str, provider: str, changed: Request
) -> None:
    base_key, _ = ResponseCache.key(BASE, PROVIDER)
    key, _ = ResponseCache.key(changed, provider)
    assert key != base_key, name


@pytest.mark.parametrize(
    "same",
    [
        replace(BASE, prompt_id="support.classify.intent_v2"),
        replace(BASE, example_id="bitext-0999"),
        replace(BASE, params={"max_tokens": 16, "temperature": 0}),
    ],
    ids=["prompt id", "example id", "parameter order"],
)
def test_the_key_depends_only_on_what_the_provider_sees(same: Request) -> None:
    assert ResponseCache.key(same, PROVIDER)[0] == ResponseCache.key(BASE, PROVIDER)[0]


def test_the_key_is_the_hash_of_the_recorded_material() -> None:
    key, material = ResponseCache.key(BASE, PROVIDER)
    assert material == {
        "format": "promptlib-cache-key/2",
        "provider": PROVIDER,
        "messages": [m.to_dict() for m in BASE.messages],
        "params": {"temperature": 0, "max_tokens": 16},
        "output": {"format": "label", "labels": ["cancel_order", "track_order"]},
        "repeat": 0,
    }
    # sha256 of the canonical JSON, computed with the standard library alone.
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert key == "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # The schema-1 key is the same material without the format.
    legacy = {k: v for k, v in material.items() if k != "format"}
    canonical = json.dumps(legacy, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert ResponseCache.legacy_key(BASE, PROVIDER) == (
        "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    )


# --------------------------------------------------------------------------------- modes


def test_on_reads_and_writes(open_cache: Callable[..., ResponseCache]) -> None:
    cache = open_cache(CacheMode.on)
    key, material = ResponseCache.key(BASE, PROVIDER)
    assert cache.get(key) is None
    cache.put(key, material, ANSWER)
    assert cache.get(key) == ANSWER
    assert (cache.hits, cache.writes, len(cache)) == (1, 1, 1)


@pytest.mark.parametrize(
    ("mode", "reads", "writes"),
    [
        (CacheMode.on, True, True),
        (CacheMode.read_only, True, False),
        (CacheMode.refresh, False, True),
        (CacheMode.off, False, False),
    ],
)
def test_modes_on_a_filled_cache(
    open_cache: Callable[..., ResponseCache],
    tmp_path: Path,
    mode: CacheMode,
    reads: bool,
    writes: bool,
) -> None:
    path = tmp_path / "cache.sqlite"
    key, material = ResponseCache.key(BASE, PROVIDER)
    other_key, other_material = ResponseCache.key(replace(BASE, repeat=1), PROVIDER)
    filler = open_cache(CacheMode.on, path)
    filler.put(key, material, ANSWER)
    filler.close()

    cache = open_cache(mode, path)
    assert cache.mode is mode
    assert cache.get(key) == (ANSWER if reads else None)
    newer = Response("track_order")
    cache.put(key, material, newer)
    cache.put(other_key, other_material, newer)
    cache.close()

    check = open_cache(CacheMode.on, path)
    assert check.get(key) == (newer if writes else ANSWER)
    assert check.get(other_key) == (newer if writes else None)


def test_off_creates_no_file(open_cache: Callable[..., ResponseCache], tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "cache.sqlite"
    cache = open_cache(CacheMode.off, path)
    key, material = ResponseCache.key(BASE, PROVIDER)
    cache.put(key, material, ANSWER)
    assert cache.get(key) is None
    assert cache.material(key) is None
    assert len(cache) == 0
    assert not path.parent.exists()


def test_no_path_means_off() -> None:
    cache = ResponseCache(None, CacheMode.on)
    assert cache.mode is CacheMode.off
    key, material = ResponseCache.key(BASE, PROVIDER)
    cache.put(key, material, ANSWER)
    assert cache.get(key) is None


@pytest.mark.parametrize("value", ["on", "off", "read-only", "refresh"])
def test_modes_parse_from_their_cli_spelling(value: str) -> None:
    assert CacheMode(value).value == value


def test_an_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "is-a-folder"
    folder.mkdir()
    with pytest.raises(ConfigError, match=rf"^{folder}: cannot open the response cache: "):
        ResponseCache(folder, CacheMode.on)


# ------------------------------------------------------------------------------ storage


def test_wal_mode_is_on(open_cache: Callable[..., ResponseCache], tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    open_cache(CacheMode.on, path)
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_material_restores_the_full_request(open_cache: Callable[..., ResponseCache]) -> None:
    cache = open_cache()
    unusual = request("naïve — 日本語 \u2028 {{Order Number}}\n", params={"stop": ["\n\n"]})
    key, material = ResponseCache.key(unusual, PROVIDER)
    cache.put(key, material, ANSWER)
    assert cache.material(key) == material
    assert cache.material("sha256:" + "0" * 64) is None


def test_responses_round_trip(open_cache: Callable[..., ResponseCache]) -> None:
    cache = open_cache()
    for index, response in enumerate(
        [ANSWER, Response(""), Response("x", None, None, None), Response("y", Usage(0, 0), 0.0)]
    ):
        key, material = ResponseCache.key(replace(BASE, repeat=index), PROVIDER)
        cache.put(key, material, response)
        assert cache.get(key) == response


def test_each_message_is_stored_once(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    cache = open_cache(CacheMode.on, path)
    keys = []
    for number in range(50):
        key, material = ResponseCache.key(
            request(f"<request>\nrow {number}\n</request>\n"), PROVIDER
        )
        cache.put(key, material, Response(f"answer {number}"))
        keys.append(key)
    # The same 50 requests once more (a refresh) add nothing.
    for number, key in enumerate(keys):
        material = ResponseCache.key(request(f"<request>\nrow {number}\n</request>\n"), PROVIDER)[1]
        cache.put(key, material, Response(f"answer {number}"))
    assert rows(path, "SELECT COUNT(*) FROM responses") == [(50,)]
    assert rows(path, "SELECT COUNT(*) FROM messages") == [(51,)]
    system_rows = rows(
        path, "SELECT COUNT(*) FROM messages WHERE message LIKE '%intent classifier%'"
    )
    assert system_rows == [(1,)]
    assert (
        cache.material(keys[17])
        == ResponseCache.key(request("<request>\nrow 17\n</request>\n"), PROVIDER)[1]
    )


def test_messages_are_shared_across_cache_instances(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    first = open_cache(CacheMode.on, path)
    first.put(*ResponseCache.key(request("a"), PROVIDER), ANSWER)
    first.close()
    second = open_cache(CacheMode.on, path)
    key, material = ResponseCache.key(request("b"), PROVIDER)
    second.put(key, material, ANSWER)
    assert rows(path, "SELECT COUNT(*) FROM messages") == [(3,)]
    assert second.material(key) == material


def test_entries_are_durable_before_close(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    """An interrupted eval keeps every answer it received: each put is committed at once."""
    path = tmp_path / "cache.sqlite"
    cache = open_cache(CacheMode.on, path)
    key, material = ResponseCache.key(BASE, PROVIDER)
    cache.put(key, material, ANSWER)
    # Another connection (another process resuming the eval) sees it while this one is open.
    found = rows(path, f"SELECT key FROM responses WHERE key = '{key}'")
    assert found == [(key,)]
    reader = open_cache(CacheMode.read_only, path)
    assert reader.get(key) == ANSWER
    assert reader.material(key) == material


def _claimed_and_put(cache: ResponseCache, users: list[str]) -> list[str]:
    """Claim and answer one request per user message, all in the current loop turn."""
    keys = []
    for user in users:
        key, material = ResponseCache.key(request(user), PROVIDER)
        assert cache.claim(key)
        cache.put(key, material, replace(ANSWER, text=user))
        keys.append(key)
    return keys


def test_answers_of_one_loop_turn_are_committed_together_when_it_ends(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    """Inside an event loop, the answers of one turn are one transaction at its end: this
    cache sees them at once, another process as soon as the turn is over, and their
    claims go with them."""
    path = tmp_path / "cache.sqlite"
    cache = open_cache(CacheMode.on, path)
    users = [f"cancel order {i}" for i in range(12)]

    async def answer() -> tuple[list[str], int, int]:
        keys = _claimed_and_put(cache, users)
        assert [cache.get(key).text for key in keys] == users  # type: ignore[union-attr]
        during = rows(path, "SELECT COUNT(*) FROM responses")[0][0]
        await asyncio.sleep(0)
        after = rows(path, "SELECT COUNT(*) FROM responses")[0][0]
        return keys, during, after

    keys, during, after = asyncio.run(answer())
    assert (during, after) == (0, len(users))
    assert rows(path, "SELECT COUNT(*) FROM claims") == [(0,)]
    assert cache.writes == len(users)
    reader = open_cache(CacheMode.read_only, path)
    assert [reader.get(key).text for key in keys] == users  # type: ignore[union-attr]
    # The system message is stored once, whichever put of the turn brought it first.
    assert rows(path, "SELECT COUNT(*) FROM messages") == [(len(users) + 1,)]


def test_close_commits_the_answers_of_an_unfinished_turn(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    cache = open_cache(CacheMode.on, path)
    users = [f"track order {i}" for i in range(5)]

    async def answer_then_close() -> None:
        _claimed_and_put(cache, users)
        cache.close()  # an error ends the run before the turn does

    asyncio.run(answer_then_close())
    assert rows(path, "SELECT COUNT(*) FROM responses") == [(len(users),)]
    assert rows(path, "SELECT COUNT(*) FROM claims") == [(0,)]


_KILLED_AFTER_A_TURN = """
import asyncio, os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_cache import PROVIDER, ResponseCache, _claimed_and_put

async def main():
    cache = ResponseCache(Path({path!r}))
    _claimed_and_put(cache, [f"order {{i}}" for i in range(20)])
    await asyncio.sleep(0)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_process_killed_after_a_turn_keeps_every_answer_of_it(tmp_path: Path) -> None:
    """Batched writes lose nothing on a crash: once the loop has moved on, the answers of
    the turn are in the file, even if the process is killed with no chance to clean up."""
    path = tmp_path / "cache.sqlite"
    code = _KILLED_AFTER_A_TURN.format(tests=str(Path(__file__).parent), path=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert rows(path, "SELECT COUNT(*) FROM responses") == [(20,)]
    cache = ResponseCache(path)
    try:
        key, _material = ResponseCache.key(request("order 7"), PROVIDER)
        assert cache.get(key) == replace(ANSWER, text="order 7")
    finally:
        cache.close()


def _open_at_once(path: str, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        ResponseCache(Path(path)).close()
    except ConfigError as exc:
        failures.put(str(exc))


def test_processes_opening_a_new_cache_file_at_once_all_open_it(tmp_path: Path) -> None:
    # The shards of one run on one machine open a cache file that does not exist yet at
    # the same moment; SQLite answers some of their races to switch it to WAL with
    # "database is locked" at once, which must not stop a shard.
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        path = tmp_path / f"{attempt}" / "cache.sqlite"
        barrier = context.Barrier(8)
        failures = context.Queue()
        workers = [
            context.Process(target=_open_at_once, args=(str(path), barrier, failures))
            for _ in range(8)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [w.exitcode for w in workers] == [0] * 8
        found = []
        while not failures.empty():
            found.append(failures.get())
        assert found == []


# ------------------------------------------------- look-ups and claims of one turn (reserve)


def _statements(cache: ResponseCache) -> list[str]:
    """Every SQL statement ``cache`` runs from now on, as SQLite reports it."""
    seen: list[str] = []
    assert cache._db is not None
    cache._db.set_trace_callback(seen.append)
    return seen


def test_reserve_answers_a_turn_of_look_ups_with_one_read_and_one_write(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    """The look-ups made during one turn of the loop: the cached ones answered, the others
    claimed, all with one SELECT and one transaction; another process sees the claims."""
    path = tmp_path / "cache.sqlite"
    cache = open_cache(CacheMode.on, path)
    stored = [ResponseCache.key(request(f"order {i}"), PROVIDER) for i in range(5)]
    for i, (key, material) in enumerate(stored):
        cache.put(key, material, replace(ANSWER, text=f"answer {i}"))
    new = [ResponseCache.key(request(f"refund {i}"), PROVIDER)[0] for i in range(40)]
    statements = _statements(cache)

    async def look_up() -> list[tuple[Response | None, bool]]:
        keys = [key for key, _material in stored] + new
        return list(await asyncio.gather(*(cache.reserve(key) for key in keys)))

    answers = asyncio.run(look_up())
    assert answers[:5] == [(replace(ANSWER, text=f"answer {i}"), False) for i in range(5)]
    assert answers[5:] == [(None, True)] * len(new)
    assert [s.split()[0] for s in statements] == ["SELECT", "BEGIN", *["INSERT"] * 40, "COMMIT"]
    assert cache.hits == 5
    other = open_cache(CacheMode.on, path)
    assert not any(other.claim(key) for key in new)  # held by this (live) process
    assert all(other.claim(key) for key, _material in stored) is True


def test_reserve_leaves_a_key_another_process_holds_to_the_slow_path(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    cache, other = open_cache(CacheMode.on, path), open_cache(CacheMode.on, path)
    key, material = ResponseCache.key(BASE, PROVIDER)
    assert other.claim(key)
    assert asyncio.run(cache.reserve(key)) == (None, False)
    other.put(key, material, ANSWER)  # the other process answers and drops its claim
    assert cache.get(key) == ANSWER
    assert rows(path, "SELECT COUNT(*) FROM claims") == [(0,)]


def test_reserve_finds_the_answers_of_its_own_turn_and_commits_them(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    """An answer put in a turn is found by a look-up of the same turn, with no read, and
    the turn's one transaction both stores it and drops its claim."""
    path = tmp_path / "cache.sqlite"
    cache = open_cache(CacheMode.on, path)
    key, material = ResponseCache.key(BASE, PROVIDER)

    async def ask_then_answer() -> tuple[tuple[Response | None, bool], ...]:
        first = await cache.reserve(key)
        cache.put(key, material, ANSWER)
        second = await cache.reserve(key)
        return first, second

    assert asyncio.run(ask_then_answer()) == ((None, True), (ANSWER, False))
    assert rows(path, "SELECT COUNT(*) FROM responses") == [(1,)]
    assert rows(path, "SELECT COUNT(*) FROM claims") == [(0,)]


def test_reserve_counts_an_untrusted_row_as_a_miss_and_claims_it(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    cache = open_cache(CacheMode.on, path)
    key, material = ResponseCache.key(BASE, PROVIDER)
    cache.put(key, material, ANSWER)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE responses SET response = replace(response, 'cancel', 'track')")
    assert asyncio.run(cache.reserve(key, "support.classify.intent bitext-0001")) == (None, True)
    [warning] = cache.warnings
    assert "support.classify.intent bitext-0001" in warning
    assert "does not match its digest" in warning


@pytest.mark.parametrize(
    ("mode", "found"), [(CacheMode.read_only, ANSWER), (CacheMode.refresh, None)]
)
def test_reserve_in_modes_that_share_no_answers_takes_no_claim(
    open_cache: Callable[..., ResponseCache], tmp_path: Path, mode: CacheMode, found: Any
) -> None:
    path = tmp_path / "cache.sqlite"
    filler = open_cache(CacheMode.on, path)
    key, material = ResponseCache.key(BASE, PROVIDER)
    filler.put(key, material, ANSWER)
    other = ResponseCache.key(replace(BASE, repeat=1), PROVIDER)[0]
    cache = open_cache(mode, path)

    async def look_up() -> list[tuple[Response | None, bool]]:
        return list(await asyncio.gather(cache.reserve(key), cache.reserve(other)))

    assert asyncio.run(look_up()) == [(found, found is None), (None, True)]
    assert rows(path, "SELECT COUNT(*) FROM claims") == [(0,)]


def test_reserve_reads_a_long_turn_in_batches(
    open_cache: Callable[..., ResponseCache], tmp_path: Path
) -> None:
    """More look-ups in one turn than one statement takes: every one is answered."""
    cache = open_cache(CacheMode.read_only, tmp_path / "cache.sqlite")
    writer = open_cache(CacheMode.on, tmp_path / "cache.sqlite")
    keys = []
    for i in range(1300):
        key, material = ResponseCache.key(request(f"order {i}"), PROVIDER)
        if i % 3 == 0:
            writer.put(key, material, replace(ANSWER, text=str(i)))
        keys.append(key)

    async def look_up() -> list[tuple[Response | None, bool]]:
        return list(await asyncio.gather(*(cache.reserve(key) for key in keys)))

    answers = asyncio.run(look_up())
    expected = [
        (replace(ANSWER, text=str(i)), False) if i % 3 == 0 else (None, True) for i in range(1300)
    ]
    assert answers == expected
