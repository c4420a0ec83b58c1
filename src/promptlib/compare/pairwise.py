"""Pairwise judging in ``eval --against``: which side's answers a judge prefers.

A suite's ``{kind: judge_pairwise, prompt: judges.pairwise, provider: NAME}`` entry
(``evals.judges.PairwiseJudge``) asks its judge, for every example both runs of a compared
pair answered, to compare the baseline's answer with the candidate's, twice: once with
the baseline as answer A, once with the candidate as answer A. The verdicts
(``{"winner": "A"|"B"|"tie", "reason"}``, ``evals.judges.parse_preference``; a malformed
one is asked once more, then the example counts as an error) become one preference per
example:

* **candidate** or **baseline** when both orders name the same side;
* **tie** when both orders say tie;
* **inconsistent** otherwise. When the judge picked the same *position* (A twice or B
  twice) the example is also **position-biased**; the position-bias rate is their share of
  the examples judged in both orders.

Only order-consistent preferences count: a two-sided exact sign test on the candidate and
baseline wins (ties and inconsistent examples left out), Holm-adjusted over every pairwise
comparison of the invocation, at the comparison rule's alpha. The verdict is
``candidate preferred``, ``baseline preferred`` or ``no preference shown``. It is reported
beside the pointwise metrics and gates nothing. The answers are the first repeat of each
side, read from the ledger; the judge's answers go through the response cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError, LedgerError, ProviderError, RenderError
from ..evals.cache import CacheMode, ResponseCache
from ..evals.judges import MalformedVerdict, PairwiseJudge, parse_preference
from ..evals.runner import EvalOptions, _Example, _Runner
from ..evals.suite import Suite
from ..providers.contract import Request
from .stats import holm, mcnemar_exact

__all__ = ["BASELINE", "CANDIDATE", "NO_PREFERENCE", "PairwiseResult", "judge_pairs"]

CANDIDATE = "candidate preferred"
BASELINE = "baseline preferred"
NO_PREFERENCE = "no preference shown"


@dataclass
class PairwiseResult:
    """One pairwise judge on one compared (suite, prompt); see the module docstring."""

    suite: str
    prompt: str
    judge: str
    judge_prompt: str
    provider: str
    n: int
    candidate: int
    baseline: int
    ties: int
    inconsistent: int
    position_biased: int
    errors: int
    p_value: float
    p_adjusted: float = 1.0
    verdict: str = NO_PREFERENCE
    first_error: str | None = None

    @property
    def position_bias_rate(self) -> float:
        return self.position_biased / self.n if self.n else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "prompt": self.prompt,
            "judge": self.judge,
            "judge_prompt": self.judge_prompt,
            "provider": self.provider,
            "n": self.n,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "ties": self.ties,
            "inconsistent": self.inconsistent,
            "position_biased": self.position_biased,
            "position_bias_rate": self.position_bias_rate,
            "errors": self.errors,
            "test": "sign (exact binomial, two-sided)",
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Side:
    """What one pair gives the judge: the suite, the rows and each side's answers."""

    suite: Suite
    prompt: str
    rows: dict[str, Any]
    baseline: dict[str, str]
    candidate: dict[str, str]


def side_answers(view: Any, record: Any) -> dict[str, str]:
    """Each example's first answer in a run (examples that failed have none)."""
    outputs = view.outputs(record)
    if outputs is None:
        raise LedgerError(f"run {record.key[:19]}... kept no outputs (--no-outputs)")
    errors = set(view.scores(record).errors)
    return {
        example_id: answers[0]
        for example_id, answers in zip(outputs.ids, outputs.outputs, strict=True)
        if answers and example_id not in errors
    }


def _winner(first: str, second: str) -> tuple[str, bool]:
    """The preference from the baseline-first verdict ``first`` and the candidate-first
    verdict ``second``, and whether the judge picked the same position twice."""
    if first == "tie" and second == "tie":
        return "tie", False
    if first == "A" and second == "B":
        return "baseline", False
    if first == "B" and second == "A":
        return "candidate", False
    return "inconsistent", first == second and first != "tie"


async def _verdict(runner: _Runner, messages: Any, judge: PairwiseJudge, example: str) -> str:
    prompt = judge.binding.prompt
    params = prompt.model.model_dump(exclude_none=True)
    problem: MalformedVerdict | None = None
    scratch = _Example(example)
    for attempt in range(2):
        request = Request(tuple(messages), params, prompt.output, prompt.id, example, attempt)
        response = await runner.respond(request, scratch)
        try:
            return parse_preference(response.text)[0]
        except MalformedVerdict as exc:
            problem = exc
    raise MalformedVerdict(f"malformed verdict twice ({problem})")


async def _judge_side(
    side: Side, judge: PairwiseJudge, runner: _Runner, limit: asyncio.Semaphore
) -> PairwiseResult:
    shared = [i for i in side.baseline if i in side.candidate and i in side.rows]
    counts = {"candidate": 0, "baseline": 0, "tie": 0, "inconsistent": 0}
    biased = errors = 0
    first_error: str | None = None

    async def one(example: str) -> tuple[str, bool] | str:
        row = side.rows[example]
        references = side.suite.references_for(row)
        inputs = side.suite.spec.inputs
        base, cand = side.baseline[example], side.candidate[example]
        async with limit:
            try:
                ab = judge.render(base, cand, references, row, inputs)
                ba = judge.render(cand, base, references, row, inputs)
                first = await _verdict(runner, ab, judge, example)
                second = await _verdict(runner, ba, judge, example)
            except (ProviderError, MalformedVerdict, RenderError, DatasetError) as exc:
                return f"judge_pairwise {judge.name}: {exc}"
        return _winner(first, second)

    for outcome in await asyncio.gather(*(one(i) for i in shared)):
        if isinstance(outcome, str):
            errors += 1
            first_error = first_error or outcome
            continue
        preference, position = outcome
        counts[preference] += 1
        biased += int(position)
    judged = len(shared) - errors
    binding = judge.binding
    return PairwiseResult(
        suite=side.suite.name,
        prompt=side.prompt,
        judge=judge.name,
        judge_prompt=binding.prompt.id,
        provider=binding.provider.name,
        n=judged,
        candidate=counts["candidate"],
        baseline=counts["baseline"],
        ties=counts["tie"],
        inconsistent=counts["inconsistent"],
        position_biased=biased,
        errors=errors,
        p_value=mcnemar_exact(counts["baseline"], counts["candidate"]),
        first_error=first_error,
    )


def judge_pairs(
    sides: Sequence[Side],
    *,
    cache_path: Path | None,
    cache_mode: CacheMode,
    options: EvalOptions,
    alpha: float,
) -> list[PairwiseResult]:
    """Every pairwise judge of every side's suite, Holm-adjusted together.

    ``ProviderError`` when a judge failed on every example it was asked about.
    """
    work = [(side, judge) for side in sides for judge in side.suite.pairwise]
    if not work:
        return []
    cache = ResponseCache(cache_path, cache_mode)
    try:
        results = asyncio.run(_run(work, cache, options))
    finally:
        cache.close()
    for result in results:
        if result.errors and result.n == 0:
            raise ProviderError(
                f"{result.suite}/{result.prompt}: pairwise judge {result.judge} failed on "
                f"all {result.errors} examples; first: {result.first_error}"
            )
    adjusted = holm([r.p_value for r in results])
    for result, p in zip(results, adjusted, strict=True):
        result.p_adjusted = p
        if p < alpha and result.candidate != result.baseline:
            result.verdict = CANDIDATE if result.candidate > result.baseline else BASELINE
    return results


async def _run(
    work: Sequence[tuple[Side, PairwiseJudge]], cache: ResponseCache, options: EvalOptions
) -> list[PairwiseResult]:
    runners: dict[str, _Runner] = {}
    results = []
    try:
        for side, judge in work:
            provider = judge.binding.provider
            runner = runners.get(provider.fingerprint)
            if runner is None:
                runner = _Runner([], provider, cache, options, lambda _n: None, _ignore)
                runners[provider.fingerprint] = runner
            limit = asyncio.Semaphore(max(1, options.concurrency or provider.concurrency))
            results.append(await _judge_side(side, judge, runner, limit))
    finally:
        for runner in runners.values():
            await runner.provider.aclose()
    return results


def _ignore(*_args: Any) -> None:
    return None
