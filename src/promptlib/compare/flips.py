"""The examples a change moved: what a reviewer reads after a verdict.

A comparison says *whether* a prompt got better or worse; the flipped examples say *where*.
For one metric of one (suite, prompt) pair, ``flipped`` joins the two runs' evidence
(``promptlib.evals.evidence``: inputs, the model's answers, references, scores) by example
id and orders what moved:

* 0/1 metrics: examples that went right -> wrong, then wrong -> right;
* continuous metrics (ROUGE): the largest drops, then the largest gains.

An example that failed on one side scores 0 there, as in the comparison. Nothing here
calls a model: it reads what the ledger kept, and says (in ``notes``) what it could not
show, such as outputs of a run recorded with ``--no-outputs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..evals.evidence import Example, RunEvidence

__all__ = ["DROP", "GAIN", "RIGHT_TO_WRONG", "WRONG_TO_RIGHT", "Flip", "Flips", "flipped"]

RIGHT_TO_WRONG = "right → wrong"
WRONG_TO_RIGHT = "wrong → right"
DROP = "drop"
GAIN = "gain"


@dataclass(frozen=True)
class Flip:
    """One example whose score moved between the baseline and the candidate."""

    id: str
    kind: str
    baseline: float
    candidate: float
    inputs: Mapping[str, Any] | None
    baseline_outputs: Sequence[str] | None
    candidate_outputs: Sequence[str] | None
    references: Sequence[str] | None
    baseline_error: str | None = None
    candidate_error: str | None = None

    @property
    def change(self) -> float:
        return self.candidate - self.baseline


@dataclass
class Flips:
    """The moved examples of one metric, worst first, and how many moved in all."""

    metric: str
    binary: bool
    examples: list[Flip]
    moved: int
    worse: int
    better: int
    notes: list[str] = field(default_factory=list)


def _score(example: Example, metric: str) -> float:
    value = example.scores.get(metric)
    return 0.0 if value is None else float(value)


def flipped(
    baseline: RunEvidence,
    candidate: RunEvidence,
    metric: str,
    *,
    binary: bool,
    limit: int | None = None,
) -> Flips:
    """The examples of ``metric`` that moved, ordered as the module docstring says.

    ``limit`` keeps the first ``limit`` of each direction (``moved``, ``worse`` and
    ``better`` still count all).
    """
    before = {e.id: e for e in baseline.examples}
    moved: list[Flip] = []
    for after in candidate.examples:
        old = before.get(after.id)
        if old is None:
            continue
        a, b = _score(old, metric), _score(after, metric)
        if a == b:
            continue
        down, up = (RIGHT_TO_WRONG, WRONG_TO_RIGHT) if binary else (DROP, GAIN)
        kind = down if b < a else up
        moved.append(
            Flip(
                id=after.id,
                kind=kind,
                baseline=a,
                candidate=b,
                inputs=after.inputs if after.inputs is not None else old.inputs,
                baseline_outputs=old.outputs,
                candidate_outputs=after.outputs,
                references=after.references if after.references is not None else old.references,
                baseline_error=old.error,
                candidate_error=after.error,
            )
        )
    # Worse first; within a direction the largest change first, then by id (stable).
    moved.sort(key=lambda f: (f.change > 0, -abs(f.change), f.id))
    worse = [f for f in moved if f.change < 0]
    better = [f for f in moved if f.change > 0]
    if limit is not None:
        worse, better = worse[:limit], better[:limit]
    notes = list(dict.fromkeys([*baseline.notes, *candidate.notes]))
    return Flips(
        metric=metric,
        binary=binary,
        examples=worse + better,
        moved=len(moved),
        worse=sum(1 for f in moved if f.change < 0),
        better=sum(1 for f in moved if f.change > 0),
        notes=notes,
    )
