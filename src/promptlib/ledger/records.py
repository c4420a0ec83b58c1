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
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ..errors import LedgerError

__all__ = [
    "DatasetRef",
    "ExampleIds",
    "JudgeUsage",
    "MetricConsistency",
    "MetricIdentity",
    "MetricResult",
    "OutputsObject",
    "PromptMetadata",
    "PromptRef",
    "Provenance",
    "ProviderRef",
    "ReleaseBody",
    "ReleaseRecord",
    "ReleasedPrompt",
    "RunBody",
    "RunRecord",
    "ScoresObject",
    "Timing",
    "Usage",
    "body_problems",
    "check_body",
    "parse_record",
]


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
    """What is wrong with the body of ``record`` (empty when readers can use it).

    The record's ``schema`` picks the models: schema 1 (``RunBody``, ``ReleaseBody``) or
    schema 2 (``RunRecord``, ``ReleaseRecord``, defined below).
    """
    models: Mapping[str, type[BaseModel]] = _MODELS if record.get("schema") == 1 else RECORD_MODELS
    model = models.get(str(record.get("kind")))
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


# --- Schema 2 ------------------------------------------------------------------------------
#
# Index lines are small and typed; per-example evidence lives in objects (see ``objects``).
# Every model forbids unknown keys: a record promptlib did not write is refused, not half
# read. ``RunRecord`` and ``ReleaseRecord`` are what writers build and readers get back.

SCORES_FORMAT: Final = "promptlib-scores/1"
OUTPUTS_FORMAT: Final = "promptlib-outputs/1"
EXAMPLES_FORMAT: Final = "promptlib-examples/1"
METADATA_FORMAT: Final = "promptlib-prompt-metadata/1"

_Reference = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PromptRef(_Frozen):
    id: str
    version: str
    fingerprint: _Reference


class DatasetRef(_Frozen):
    path: str
    sha256: _Reference
    rows: int = Field(ge=0)


class ProviderRef(_Frozen):
    name: str
    type: str
    model: str | None = None
    fingerprint: _Reference


class MetricIdentity(_Frozen):
    """How a metric scores: its kind, promptlib's algorithm id, and whether it is 0/1."""

    kind: str
    algorithm: str
    binary: bool


class MetricResult(_Frozen):
    mean: float = Field(allow_inf_nan=False)
    stderr: float = Field(allow_inf_nan=False)
    n: int = Field(ge=0)


class MetricConsistency(_Frozen):
    """One metric's consistency over a run's repeats (``evals.consistency``; k is the
    run's ``repeats``): the share of examples whose repeats disagree, the mean per-example
    variance, and, for a 0/1 metric, pass@k and pass^k. ``n`` counts the examples scored.
    """

    n: int = Field(ge=0)
    disagreement: float = Field(ge=0, le=1, allow_inf_nan=False)
    mean_variance: float = Field(ge=0, allow_inf_nan=False)
    pass_at_k: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    pass_hat_k: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)


class Timing(_Frozen):
    seconds: float = Field(ge=0, allow_inf_nan=False)
    calls: int = Field(ge=0)
    cached: int = Field(ge=0)


class Usage(_Frozen):
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0, allow_inf_nan=False)


class JudgeUsage(_Frozen):
    """What a run's judge metrics cost, apart from the model under test: the judges'
    provider calls, answers from the response cache, and usage when reported."""

    calls: int = Field(0, ge=0)
    cached: int = Field(0, ge=0)
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0, allow_inf_nan=False)


class Provenance(_Frozen):
    """Where a result came from; never part of its identity."""

    promptlib: str
    git_commit: str | None = None
    dirty: bool | None = None
    dependencies: dict[str, str] = Field(default_factory=dict)


class RunRecord(_Frozen):
    """One prompt evaluated by one suite (kind ``run``): identity, aggregates, evidence.

    ``scores`` names the scores object (per-example scores and errors), ``outputs`` the
    outputs object (the model's answers), or None when outputs were not kept.
    ``migrated_from`` is the hash of the schema-1 record a migration converted.
    """

    schema_: Literal[2] = Field(2, alias="schema")
    kind: Literal["run"] = "run"
    hash: _Reference | None = None
    time: str
    key: _Reference
    suite: str
    prompt: PromptRef
    dataset: DatasetRef
    provider: ProviderRef
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, MetricIdentity]
    repeats: int = Field(ge=1)
    examples: int = Field(ge=0)
    results: dict[str, MetricResult]
    errors: int = Field(ge=0)
    timing: Timing
    usage: Usage = Field(default_factory=Usage)
    # Only on runs with judge metrics.
    judge_usage: JudgeUsage | None = None
    provenance: Provenance
    scores: _Reference
    outputs: _Reference | None = None
    # With repeats (``repeats`` > 1) only: each metric's consistency over the repeats.
    consistency: dict[str, MetricConsistency] | None = None
    migrated_from: _Reference | None = None
    # The hash of the record on the line this one was appended after (None for a first
    # line); ``ledger verify`` reports a record whose predecessor is gone: a deleted line.
    after: _Reference | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON data, without ``hash`` (the ledger seals it) and without
        empty optional fields (a reader fills in their defaults)."""
        return self.model_dump(mode="json", by_alias=True, exclude={"hash"}, exclude_none=True)


class ReleasedPrompt(_Frozen):
    """A prompt of a release: its behaviour is the object named by its fingerprint."""

    version: str
    fingerprint: _Reference
    metadata: _Reference


class ReleaseRecord(_Frozen):
    """A release of the library (kind ``release``)."""

    schema_: Literal[2] = Field(2, alias="schema")
    kind: Literal["release"] = "release"
    hash: _Reference | None = None
    time: str
    version: str
    git_commit: str | None = None
    previous: str | None = None
    bump: str | None = None
    prompts: dict[str, ReleasedPrompt]
    migrated_from: _Reference | None = None
    after: _Reference | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude={"hash"}, exclude_none=True)


class ExampleIds(_Frozen):
    """The example ids of a run, in row order: shared by every run of the same rows."""

    format: Literal["promptlib-examples/1"] = "promptlib-examples/1"
    ids: list[str]


class ScoresObject(_Frozen):
    """Per-example scores of a run, in the order of its ``examples`` object.

    ``scores[metric][i]`` is example i's score (the mean over repeats), None when the
    example failed; ``errors`` maps the index (as text) of each failed example to its
    reason; ``variance`` (with repeats) holds each example's variance over repeats, and
    ``repeats`` (with repeats; absent from runs recorded before it existed) each example's
    score per repeat, in repeat order (None when the example failed), from which the
    run's consistency can be computed again.
    """

    format: Literal["promptlib-scores/1"] = "promptlib-scores/1"
    examples: _Reference
    scores: dict[str, list[float | None]]
    errors: dict[str, str] = Field(default_factory=dict)
    variance: dict[str, list[float | None]] | None = None
    repeats: dict[str, list[list[float] | None]] | None = None


class OutputsObject(_Frozen):
    """The model's answers of a run, in the order of its ``examples`` object.

    ``outputs[i]`` lists example i's answers, one per repeat that got an answer (empty
    when the request failed). ``usage[i]`` is ``[prompt_tokens, completion_tokens]`` summed
    over repeats, when the provider reported it.
    """

    format: Literal["promptlib-outputs/1"] = "promptlib-outputs/1"
    examples: _Reference
    outputs: list[list[str]]
    usage: list[list[int] | None] | None = None
    # Judge metrics: metric name -> per example, the verdicts (``{"score", "reason"}``)
    # one per repeat that was judged (empty when the example failed).
    verdicts: dict[str, list[list[dict[str, Any]]]] | None = None


class PromptMetadata(_Frozen):
    """What a prompt carries besides its behaviour (description, tags, examples...)."""

    format: Literal["promptlib-prompt-metadata/1"] = "promptlib-prompt-metadata/1"
    metadata: dict[str, Any]


RECORD_MODELS: Final[dict[str, type[_Frozen]]] = {"run": RunRecord, "release": ReleaseRecord}


def parse_record(data: Mapping[str, Any], where: str) -> RunRecord | ReleaseRecord:
    """A sealed schema-2 index line as its typed record; ``LedgerError`` naming it if not."""
    model = RECORD_MODELS.get(str(data.get("kind")))
    if model is None:
        raise LedgerError(f"{where}: unknown record kind {data.get('kind')!r}")
    try:
        record = model.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg'].lower()}"
            for e in exc.errors()[:3]
        )
        raise LedgerError(
            f"{where}: malformed {data.get('kind')} record: {problems}; restore the line "
            "from git or delete it"
        ) from None
    assert isinstance(record, RunRecord | ReleaseRecord)
    return record
