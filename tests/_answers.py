"""Deterministic answer functions for the ``python`` provider in tests.

The system message steers them: ``[bad]`` answers "no" (wrong), ``[fail]`` fails every
request, ``[fail-every-11]`` fails the rows whose number is a multiple of 11, anything
else answers "yes" (right). ``strict`` also fails every request whose system message holds
``[old]``: a provider that cannot serve the released prompt.
"""

from __future__ import annotations

from typing import Any


def answer(messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    system = messages[0]["content"]
    row = int(messages[-1]["content"].rsplit("-", 1)[-1])
    if "[fail]" in system:
        raise RuntimeError("the model is down")
    if "[fail-every-11]" in system and row % 11 == 0:
        raise RuntimeError(f"no answer for row {row}")
    return "no" if "[bad]" in system else "yes"


def strict(messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    if "[old]" in messages[0]["content"]:
        raise RuntimeError("this provider cannot serve the released prompt")
    return answer(messages, params)
