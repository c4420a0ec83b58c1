"""Rendered chat messages: the value a prompt renders to and a provider receives.

A leaf module: it imports nothing from promptlib and no template engine, so that providers
(which only ever see rendered text) do not load Jinja.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered chat message: ``role`` is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}
