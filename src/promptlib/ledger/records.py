"""The bodies of ledger records, as typed models: what each kind must hold to be read.

The store (``promptlib.ledger.store``) checks envelopes: schema, kind, hash. A record can
have a valid envelope and a body that readers cannot use (a hand-written line, a record
cut down and re-sealed). Readers therefore go through ``check_body``: a record whose body
is malformed is a located ``LedgerError`` naming the record, never a ``KeyError`` deep in
a command, and ``promptlib ledger verify`` reports it with its line.

The models describe schema 1 as promptlib 1.0 to 2.1 wrote it. They list the fields
readers use and allow the others, so that adding a field to a record is not a schema
change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import LedgerError

__all__ = ["ReleaseBody", "RunBody", "body_problems", "check_body"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class _PromptRef(_Body):
    id: str
    version: str
    fingerprint: str


class _ProviderRef(_Body):
    name: str
    fingerprint: str


class _Result(_Body):
    mean: float = Field(allow_inf_nan=False)
    stderr: float = Field(allow_inf_nan=False)
    n: int = Field(ge=0)


class _Errors(_Body):
    count: int = Field(ge=0)
    examples: dict[str, str]


class RunBody(_Body):
    """A run record (kind ``run``): one prompt evaluated by one suite."""

    key: str
    time: str
    suite: str
    prompt: _PromptRef
    provider: _ProviderRef
    results: dict[str, _Result]
    scores: dict[str, dict[str, float]]
    errors: _Errors


class _Message(_Body):
    role: str
    content: str


class _Behaviour(_Body):
    """What the fingerprint covers; in a release record, partials are named, not inlined."""

    messages: list[_Message] | None = None
    template: str | None = None
    partials: list[str] = Field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _messages_or_template(self) -> _Behaviour:
        if (self.messages is None) == (self.template is None):
            raise ValueError("a prompt's behaviour holds exactly one of messages or template")
        return self


class _ReleasedPrompt(_Body):
    id: str
    version: str
    fingerprint: str
    behaviour: _Behaviour
    metadata: dict[str, Any] = Field(default_factory=dict)


class ReleaseBody(_Body):
    """A release record (kind ``release``): every prompt's content at a version."""

    version: str
    prompts: list[_ReleasedPrompt]
    partials: dict[str, str] = Field(default_factory=dict)


_MODELS: dict[str, type[_Body]] = {"run": RunBody, "release": ReleaseBody}


def body_problems(record: Mapping[str, Any]) -> list[str]:
    """What is wrong with the body of ``record`` (empty when readers can use it)."""
    model = _MODELS.get(str(record.get("kind")))
    if model is None:
        return [f"unknown record kind {record.get('kind')!r}"]
    try:
        model.model_validate(dict(record))
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in error['loc']) or 'record'}: {error['msg'].lower()}"
            for error in exc.errors()
        ]
    return []


def check_body(record: Mapping[str, Any], where: str) -> None:
    """Raise ``LedgerError`` naming the record when its body is malformed."""
    problems = body_problems(record)
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise LedgerError(
            f"{where}: {record.get('kind')} record {str(record.get('hash'))[:19]}... "
            f"(time {record.get('time', '?')}) is malformed: {shown}; it was not written by "
            "promptlib as it is now: restore the line from git or delete it "
            "(`promptlib ledger verify` shows its line)"
        )
