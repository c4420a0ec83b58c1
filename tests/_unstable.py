"""A deterministic but unstable answer function for the ``python`` provider in tests.

It answers from the row number in the user message (``row-N``) and the repeat index, so
every run gives the same answers and a test can compute consistency by hand. With
``[unstable]`` in the system message: rows whose number is a multiple of 5 are answered
wrongly ("no") on repeat 1 only, rows whose number is a multiple of 7 wrongly on every
repeat, and the others rightly ("yes"). Without it every answer is "yes". The row named
by the ``UNSTABLE_DOWN_ROW`` environment variable fails (a provider outage on one example).
"""

from __future__ import annotations

import os
from typing import Any


def answer(messages: list[dict[str, Any]], params: dict[str, Any], repeat: int = 0) -> str:
    row = int(messages[-1]["content"].rsplit("-", 1)[-1])
    if os.environ.get("UNSTABLE_DOWN_ROW") == str(row):
        raise RuntimeError(f"no answer for row {row}")
    if "[unstable]" not in messages[0]["content"]:
        return "yes"
    if row % 7 == 0 or (row % 5 == 0 and repeat == 1):
        return "no"
    return "yes"
