"""The value types of library snapshots: what ``diff`` compares and ``compare`` evaluates.

A *snapshot* is the prompts of a library at one point (the working tree, a release recorded
in the ledger, a git ref), each as a ``PromptState``: identity, behaviour content and
metadata. Nothing here reads files, the ledger or git; ``promptlib.versioning.history``
builds snapshots from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import LedgerError, PromptlibError
from ..library.prompt import Prompt

__all__ = ["PromptState", "Snapshot"]


@dataclass(frozen=True)
class PromptState:
    """A prompt as a snapshot holds it: identity, behaviour content and metadata."""

    id: str
    version: str
    fingerprint: str
    behaviour: Mapping[str, Any]
    metadata: Mapping[str, Any]


@dataclass
class Snapshot:
    """The prompts of a library at one point: working tree, release or git ref."""

    label: str
    source: str  # "worktree", "release" or "git"
    version: str | None
    prompts: dict[str, PromptState]
    commit: str | None = None
    record: Mapping[str, Any] | None = None
    _built: dict[str, Prompt] = field(default_factory=dict, repr=False)

    def prompt(self, prompt_id: str) -> Prompt:
        """The prompt, rebuilt from its behaviour content (cached)."""
        built = self._built.get(prompt_id)
        if built is None:
            state = self.prompts[prompt_id]
            try:
                built = Prompt.from_behaviour(
                    state.id, state.version, state.behaviour, state.metadata
                )
            except PromptlibError as exc:
                raise LedgerError(
                    f"{self.label}: prompt {prompt_id} cannot be rebuilt from its recorded "
                    f"content: {exc}"
                ) from exc
            if built.fingerprint != state.fingerprint:
                rebuilt = built.behaviour()
                changed = [
                    f"{key[:-1]} {name!r}"
                    for key in ("filters", "tests")
                    for name in sorted(
                        set(rebuilt.get(key, {})) | set(state.behaviour.get(key, {}))
                    )
                    if rebuilt.get(key, {}).get(name) != state.behaviour.get(key, {}).get(name)
                ]
                if changed:
                    raise LedgerError(
                        f"{self.label}: prompt {prompt_id} uses plugin {', '.join(changed)}, "
                        "whose installed entry point or source differs from the recorded one; "
                        "install the version of the package the record was made with to "
                        "evaluate it again"
                    )
                raise LedgerError(
                    f"{self.label}: prompt {prompt_id} rebuilds with fingerprint "
                    f"{built.fingerprint}, not the recorded {state.fingerprint}; the record "
                    "was written by an incompatible promptlib"
                )
            self._built[prompt_id] = built
        return built
