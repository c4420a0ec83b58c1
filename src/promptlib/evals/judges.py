"""Judge metrics: a prompt of the library scores each answer through a provider.

A suite names one as ``{kind: judge, prompt: judges.correctness, provider: NAME,
scale: binary|1-5, aggregate: mean}``; ``provider`` defaults to the project's default
provider and ``scale`` to ``binary``. Options:

``prompt``
    the judge prompt's id (bundled judges live under ``prompts/judges/``); required.
``inputs``
    judge input -> row field, for inputs that are neither ``answer`` nor ``reference``
    (default: the suite's own mapping of an input of the same name, else the row field of
    that name).

Rendering: ``answer`` is the candidate's output, ``reference`` the row's first reference
(the metric's ``reference`` field, else the suite's), the other inputs come from the row.

Verdicts (``promptlib-judge-verdict/1``): the judge's output is one JSON object with a
``score`` and a ``reason`` (a surrounding Markdown code fence is ignored). ``binary``
accepts 0, 1, true or false; ``1-5`` accepts an integer from 1 to 5, scored
``(score - 1) / 4``. Anything else is malformed: the judge is asked once more (a request
with its own cache key, so that a cached malformed answer is not read back), and a second
malformed verdict fails the example as a metric error, never as a silent 0.

Identity: the metric's configuration, the judge prompt's fingerprint, the judge provider's
fingerprint and the verdict rules' id are part of every run key. Changing the judge
re-scores: the model under test is not asked again when its answers are in the response
cache.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DatasetError
from ..ledger import LedgerView, RunRecord
from ..library.messages import Message
from ..library.prompt import Prompt
from ..providers.contract import Provider
from .metrics import Metric, MetricSpec

if TYPE_CHECKING:
    from .suite import Suite

__all__ = [
    "PREFERENCE_RULES",
    "SCALES",
    "VERDICT_RULES",
    "JudgeMetric",
    "MalformedVerdict",
    "PairwiseJudge",
    "Verdict",
    "bind_judges",
    "bind_pairwise",
    "calibration_of",
    "calibration_warnings",
    "judge_metrics",
    "parse_preference",
    "parse_verdict",
]

#: The id of the verdict parsing rules: part of every judge metric's identity.
VERDICT_RULES = "promptlib-judge-verdict/1"
SCALES = ("binary", "1-5")
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.S)
_REASON_LIMIT = 2000


class MalformedVerdict(ValueError):
    """A judge's output that is not a verdict on the metric's scale."""


@dataclass(frozen=True)
class Verdict:
    """A parsed verdict: the judge's own ``raw`` score, its score in [0, 1], its reason."""

    raw: int
    score: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"score": self.raw, "reason": self.reason}


def parse_verdict(text: str, scale: str) -> Verdict:
    """The verdict in ``text`` on ``scale``; ``MalformedVerdict`` says what is wrong."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedVerdict(f"not JSON: {text[:80]!r}") from None
    if not isinstance(data, dict):
        raise MalformedVerdict(f"not a JSON object: {text[:80]!r}")
    if "score" not in data or "reason" not in data:
        raise MalformedVerdict("needs both 'score' and 'reason'")
    reason = data["reason"]
    if not isinstance(reason, str):
        raise MalformedVerdict("'reason' must be a string")
    value = data["score"]
    if scale == "binary":
        if isinstance(value, bool):
            raw = int(value)
        elif isinstance(value, int) and value in (0, 1):
            raw = value
        else:
            raise MalformedVerdict(f"score {value!r} is not 0 or 1")
        return Verdict(raw, float(raw), reason[:_REASON_LIMIT])
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise MalformedVerdict(f"score {value!r} is not an integer from 1 to 5")
    return Verdict(value, (value - 1) / 4, reason[:_REASON_LIMIT])


@dataclass(frozen=True)
class _Binding:
    prompt: Prompt
    provider: Provider


class JudgeMetric(Metric):
    """A metric scored by a judge prompt through a provider (see the module docstring).

    It is built from the suite file alone; ``bind`` gives it the judge prompt and the
    judge provider before any run key is computed.
    """

    algorithm = "promptlib-judge/1"
    uses_references = False

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        allowed = {"prompt", "provider", "scale", "aggregate", "inputs"}
        unknown = sorted(set(spec.options) - allowed)
        if unknown:
            raise ConfigError(
                f"metric {spec.key}: unknown option(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
        prompt = spec.options.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ConfigError(f"metric {spec.key}: a judge needs 'prompt', a judge prompt's id")
        self.prompt_id = prompt
        provider = spec.options.get("provider")
        if provider is not None and not isinstance(provider, str):
            raise ConfigError(f"metric {spec.key}: 'provider' must be a provider name")
        self.provider_name = provider
        self.scale = str(spec.options.get("scale", "binary"))
        if self.scale not in SCALES:
            raise ConfigError(f"metric {spec.key}: scale must be binary or 1-5, not {self.scale!r}")
        if spec.options.get("aggregate", "mean") != "mean":
            raise ConfigError(f"metric {spec.key}: aggregate must be 'mean'")
        inputs = spec.options.get("inputs", {})
        if not isinstance(inputs, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()
        ):
            raise ConfigError(f"metric {spec.key}: 'inputs' maps judge inputs to row fields")
        self.inputs = dict(inputs)
        self.binary = self.scale == "binary"
        self._binding: _Binding | None = None

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "judge",
            "options": {
                "prompt": self.prompt_id,
                "scale": self.scale,
                "aggregate": "mean",
                "inputs": dict(sorted(self.inputs.items())),
            },
            "reference": self.spec.reference,
        }

    @property
    def binding(self) -> _Binding:
        if self._binding is None:
            raise ConfigError(
                f"metric {self.name}: its judge is not bound to a prompt and a provider"
            )
        return self._binding

    @property
    def judge_prompt(self) -> Prompt:
        return self.binding.prompt

    @property
    def judge_provider(self) -> Provider:
        return self.binding.provider

    def bind(self, prompt: Prompt, provider: Provider) -> None:
        """Give the metric its judge; ``ConfigError`` when the prompt cannot judge."""
        if "answer" not in prompt.inputs:
            raise ConfigError(
                f"metric {self.name}: judge prompt {prompt.id} has no input `answer` "
                "(the candidate's output)"
            )
        self._binding = _Binding(prompt, provider)

    def identity(self) -> dict[str, Any]:
        binding = self.binding
        return {
            **super().identity(),
            "judge": {
                "prompt": binding.prompt.id,
                "prompt_fingerprint": binding.prompt.fingerprint,
                "provider_fingerprint": binding.provider.fingerprint,
                "verdict": VERDICT_RULES,
            },
        }

    def render(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        suite_inputs: Mapping[str, str],
    ) -> list[Message]:
        """The judge's messages for one answer (``RenderError``/``DatasetError`` on bad rows)."""
        return _render_judge(
            self.judge_prompt, {"answer": output}, references, row, self.inputs, suite_inputs
        )

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        raise TypeError(f"metric {self.name} is scored by the harness through its judge")


def _render_judge(
    prompt: Prompt,
    answers: Mapping[str, str],
    references: Sequence[str],
    row: Mapping[str, Any],
    inputs: Mapping[str, str],
    suite_inputs: Mapping[str, str],
) -> list[Message]:
    """A judge prompt's messages: ``answers`` by input name, ``reference`` the first
    reference, every other input from the row's column the judge's ``inputs`` (then the
    suite's) map it to, or its own name (``DatasetError`` when a required one is missing)."""
    values: dict[str, Any] = {}
    for name, spec in prompt.inputs.items():
        if name in answers:
            values[name] = answers[name]
        elif name == "reference":
            values[name] = references[0] if references else ""
        else:
            column = inputs.get(name) or suite_inputs.get(name) or name
            if column in row:
                values[name] = row[column]
            elif spec.required:
                raise DatasetError(
                    f"judge input `{name}` needs row field {column!r}; map it with "
                    "the judge's 'inputs'"
                )
    return prompt.render(**values)


def judge_metrics(metrics: Sequence[Metric]) -> list[JudgeMetric]:
    return [m for m in metrics if isinstance(m, JudgeMetric)]


def bind_judges(
    metrics: Sequence[Metric],
    prompts: Mapping[str, Prompt],
    open_provider: Any,
    default_provider: str,
    where: str = "",
) -> None:
    """Bind every judge metric of ``metrics`` to its prompt and provider.

    ``open_provider(name)`` creates a provider; each provider is opened once.
    """
    opened: dict[str, Provider] = {}
    for metric in judge_metrics(metrics):
        prompt = prompts.get(metric.prompt_id)
        if prompt is None:
            judges = sorted(p for p in prompts if p.startswith("judges."))
            raise ConfigError(
                f"{where}metric {metric.name}: no prompt {metric.prompt_id!r} in the library"
                f" (judges: {', '.join(judges) or 'none'})"
            )
        name = metric.provider_name or default_provider
        if name not in opened:
            opened[name] = open_provider(name)
        metric.bind(prompt, opened[name])


def bind_pairwise(
    judges: Sequence[PairwiseJudge],
    prompts: Mapping[str, Prompt],
    open_provider: Any,
    default_provider: str,
    where: str = "",
) -> None:
    """Bind every pairwise judge to its prompt and provider (as ``bind_judges``)."""
    for judge in judges:
        prompt = prompts.get(judge.prompt_id)
        if prompt is None:
            raise ConfigError(
                f"{where}judge_pairwise {judge.name}: no prompt {judge.prompt_id!r} in the library"
            )
        judge.bind(prompt, open_provider(judge.provider_name or default_provider))


def calibration_of(view: LedgerView, prompt_fingerprint: str, provider: str) -> RunRecord | None:
    """The latest calibration of a judge prompt (by fingerprint) with a judge provider (by
    fingerprint), or None."""
    found: RunRecord | None = None
    for run in view.each_run():
        if (
            run.prompt.fingerprint == prompt_fingerprint
            and run.provider.fingerprint == provider
            and "kappa" in run.results
            and (found is None or run.time >= found.time)
        ):
            found = run
    return found


def calibration_warnings(view: LedgerView, suites: Sequence[Suite], min_kappa: float) -> list[str]:
    """A warning for each judge (prompt and provider) of ``suites``' judge metrics that has
    no calibration in the ledger, or whose latest calibration's kappa is below
    ``min_kappa``."""
    warnings: list[str] = []
    seen: set[tuple[str, str]] = set()
    for suite in suites:
        for metric in judge_metrics(suite.metrics):
            prompt, provider = metric.judge_prompt, metric.judge_provider
            pair = (prompt.fingerprint, provider.fingerprint)
            if pair in seen:
                continue
            seen.add(pair)
            record = calibration_of(view, *pair)
            who = f"judge {prompt.id} {prompt.version} with provider {provider.name}"
            if record is None:
                warnings.append(
                    f"{who} (metric {metric.name} of {suite.name}) has no calibration "
                    "in the ledger: its scores are not known to agree with people; run "
                    "`promptlib judge calibrate SUITE --labels COLUMN` on human-labelled data"
                )
                continue
            kappa = record.results["kappa"]
            if kappa.mean < min_kappa:
                warnings.append(
                    f"{who} (metric {metric.name} of {suite.name}) agrees with human labels "
                    f"at kappa {kappa.mean:.3f} (suite {record.suite}, n={kappa.n}), below "
                    f"min-kappa {min_kappa:g}: read its scores with care"
                )
    return warnings


#: The id of the pairwise verdict rules (``parse_preference``).
PREFERENCE_RULES = "promptlib-pairwise-verdict/1"
_WINNERS = {"a": "A", "b": "B", "tie": "tie"}


def parse_preference(text: str) -> tuple[str, str]:
    """The winner (``A``, ``B`` or ``tie``) and reason of a pairwise verdict
    ``{"winner": ..., "reason": ...}``; ``MalformedVerdict`` otherwise."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedVerdict(f"not JSON: {text[:80]!r}") from None
    if not isinstance(data, dict) or "winner" not in data or "reason" not in data:
        raise MalformedVerdict("needs a JSON object with 'winner' and 'reason'")
    winner = data["winner"]
    if not isinstance(winner, str) or winner.strip().lower() not in _WINNERS:
        raise MalformedVerdict(f"winner {winner!r} is not A, B or tie")
    if not isinstance(data["reason"], str):
        raise MalformedVerdict("'reason' must be a string")
    return _WINNERS[winner.strip().lower()], data["reason"][:_REASON_LIMIT]


class PairwiseJudge:
    """A suite's ``{kind: judge_pairwise, prompt: ID, provider: NAME}``: in
    ``eval --against``, a judge prompt with inputs ``answer_a`` and ``answer_b`` sees the
    baseline's and the candidate's answers in both orders (``compare.pairwise``). It is not
    a metric of the run: it changes no run key and is not scored by ``promptlib eval``."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        allowed = {"kind", "name", "prompt", "provider", "inputs"}
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(
                f"judge_pairwise: unknown option(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(allowed - {'kind'}))}"
            )
        prompt = entry.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ConfigError("judge_pairwise: needs 'prompt', a pairwise judge prompt's id")
        self.prompt_id = prompt
        self.name = str(entry.get("name") or "pairwise")
        provider = entry.get("provider")
        if provider is not None and not isinstance(provider, str):
            raise ConfigError(f"judge_pairwise {self.name}: 'provider' must be a provider name")
        self.provider_name = provider
        inputs = entry.get("inputs", {})
        if not isinstance(inputs, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()
        ):
            raise ConfigError(f"judge_pairwise {self.name}: 'inputs' maps inputs to row fields")
        self.inputs = dict(inputs)
        self._binding: _Binding | None = None

    @property
    def binding(self) -> _Binding:
        if self._binding is None:
            raise ConfigError(f"judge_pairwise {self.name}: its judge is not bound")
        return self._binding

    def bind(self, prompt: Prompt, provider: Provider) -> None:
        missing = [n for n in ("answer_a", "answer_b") if n not in prompt.inputs]
        if missing:
            raise ConfigError(
                f"judge_pairwise {self.name}: judge prompt {prompt.id} has no input "
                f"{', '.join(f'`{m}`' for m in missing)}"
            )
        self._binding = _Binding(prompt, provider)

    def render(
        self,
        first: str,
        second: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        suite_inputs: Mapping[str, str],
    ) -> list[Message]:
        """The judge's messages with ``first`` as answer A and ``second`` as answer B."""
        return _render_judge(
            self.binding.prompt,
            {"answer_a": first, "answer_b": second},
            references,
            row,
            self.inputs,
            suite_inputs,
        )
