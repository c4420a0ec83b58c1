"""A ``python`` provider judge for the tests: a fixed verdict with usage and cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COST = 0.00125


def priced_verdict(
    messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> dict[str, Any]:
    """Score 1 when the answer is "yes"; the usage and cost a priced API would report."""
    answer = str(messages[-1]["content"]).split("|")[1].strip()
    return {
        "text": f'{{"score": {int(answer == "yes")}, "reason": "answer {answer}"}}',
        "usage": {"prompt_tokens": 40, "completion_tokens": 9},
        "cost": COST,
    }
