"""A child process for tests/test_ledger.py: appends records to a ledger in a loop.

It speaks JSON lines on stdout, flushed one at a time: ``{"event": "ready"}`` once set up,
``{"event": "appending", "id": ..., "size": ...}`` just before each append (and with
``--announce-writes``, ``{"event": "writing"}`` just before each large ``os.write``),
``{"event": "committed", "id": ..., "hash": ...}`` for each record only after ``append``
returned (so every reported record must survive a kill), and ``{"event": "repaired", ...}``
when an append repaired a torn last line. With ``--wait`` it reads one line from stdin
before appending, so that several writers can be started together. ``--fsize-limit``
caps the file size the process may write (RLIMIT_FSIZE): the kernel then cuts a write
short, a deterministic torn write; the next write either kills the writer with SIGXFSZ
(``--on-limit kill``) or fails with EFBIG, which append reports as an error
(``--on-limit error``: the writer says ``{"event": "error"}`` and exits 3).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from promptlib.errors import LedgerError
from promptlib.ledger import LineStore


def say(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def announce_large_writes() -> None:
    """Say ``{"event": "writing"}`` just before each os.write of over 1 MB.

    A kill is most likely to tear a record when it lands inside that write, which is a few
    per cent of an append's time (sealing and fsync take the rest): this lets the test aim.
    """
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if len(data) > 1 << 20:
            say("writing", size=len(data))
        return real_write(fd, data)

    os.write = write


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ledger")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--count", type=int, default=0, help="records to append; 0: forever")
    parser.add_argument("--min-size", type=int, default=100)
    parser.add_argument("--max-size", type=int, default=100)
    parser.add_argument("--small-size", type=int, default=0, help="if set: every other record")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--announce-writes", action="store_true")
    parser.add_argument("--pause", type=float, default=0.0, help="longest sleep between appends")
    parser.add_argument("--fsize-limit", type=int, default=0)
    parser.add_argument("--on-limit", choices=["kill", "error"], default="error")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    ledger = LineStore(args.ledger)
    if args.fsize_limit:
        import resource
        import signal

        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
        if args.on_limit == "kill":
            # Python ignores SIGXFSZ; the default action kills the process (no core file).
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    if args.announce_writes:
        announce_large_writes()
    say("ready")
    if args.wait:
        sys.stdin.readline()
    number = 0
    while args.count == 0 or number < args.count:
        record_id = f"{args.tag}-{number}"
        size = rng.randint(args.min_size, args.max_size)
        if args.small_size and number % 2 == 0:
            # Small records commit fast even on a slow machine; the large ones between them
            # take long enough to write that a kill can land in the middle.
            size = args.small_size
        record = {
            "kind": "run",
            "id": record_id,
            "time": datetime.now(timezone.utc).isoformat(),
            # One repeated letter keeps building the payload cheap; the id makes it unique.
            "payload": rng.choice("abcdefghijklmnopqrstuvwxyz") * size,
        }
        say("appending", id=record_id, size=size)
        try:
            result = ledger.append(record)
        except LedgerError as exc:
            say("error", message=str(exc))
            sys.exit(3)
        if result.repaired is not None:
            repaired = result.repaired
            say("repaired", line=repaired.line, size=repaired.size, action=repaired.action)
        say("committed", id=record_id, hash=result.hashes[0])
        number += 1
        if args.pause:
            # Work between appends, as a real run does; it lets waiting writers in.
            time.sleep(rng.uniform(0, args.pause))


if __name__ == "__main__":
    main()
