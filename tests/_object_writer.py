"""A child process for tests/test_ledger_v2.py: writes large ledger objects in a loop.

It says ``{"event": "ready"}`` once set up and ``{"event": "stored", "reference": ...}``
after each ``put`` returned, flushed one line at a time, until it is killed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from promptlib.ledger.objects import ObjectStore


def main() -> None:
    store = ObjectStore(Path(sys.argv[1]))
    rng = random.Random(int(sys.argv[2]))
    sys.stdout.write(json.dumps({"event": "ready"}) + "\n")
    sys.stdout.flush()
    while True:
        # Incompressible text of a few MB: the gzip write takes long enough to be hit.
        value = {
            "n": rng.random(),
            "text": "".join(rng.choice("abcdefgh0123") for _ in range(2_000_000)),
        }
        reference = store.put(value)
        sys.stdout.write(json.dumps({"event": "stored", "reference": reference}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
