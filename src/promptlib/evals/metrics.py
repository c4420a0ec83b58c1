"""Metrics: one score in [0, 1] per example, from the model output and the references.

Every metric that compares with references takes the best score over them (several
references per row, e.g. SciTLDR's 2-4 TL;DRs). Built-in metrics:

``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum``
    F-measure, with rouge-score's exact semantics (its tokeniser, Porter stemmer and LCS),
    computed by promptlib's fast implementation (``promptlib._rouge``), which gives
    identical numbers. Options: ``stemmer`` (default true), ``normalize: placeholders``
    (see below).
``exact_match``
    1 if output and reference are equal after stripping and collapsing whitespace.
    Options: ``ignore_case`` (default false), ``json_field`` (compare one field of a JSON
    output; a JSON null or missing field equals an empty or null reference).
``accuracy``
    Label accuracy with this normalisation, applied to both sides: take the first
    non-empty line; strip whitespace and surrounding quotes, backticks, asterisks and
    final full stops; drop a leading ``label:``; compare case-insensitively. Binary.
``contains``
    1 if the output contains the reference (case-insensitive), or ``text`` when given.
``regex``
    1 if ``pattern`` (Python ``re`` syntax) matches anywhere in the output.
``json_valid``
    1 if the output parses as JSON (a surrounding Markdown code fence is ignored).
``json_schema``
    1 if the output is JSON that validates against ``schema`` or, by default, the
    prompt's ``output.schema`` (jsonschema, the schema's own draft).
``judge``
    A prompt of the library judges each answer through a provider (``evals.judges``).
``python:module:function``
    A custom metric: ``function(output, references, row, **options)`` returns a number in
    [0, 1] or a bool; the metric's other options are passed as keyword arguments
    (``binary: true`` marks it 0/1 for the paired test). Its source file's hash is part of
    the metric's identity, so editing it re-evaluates.

Each metric names the algorithm that computes it (``Metric.algorithm``, e.g.
``promptlib-rouge/1``): the run key holds these ids, never an installed package's version,
so upgrading a dependency does not invalidate recorded runs, and changing promptlib's own
scoring code (with a new id) does.

Placeholder normalisation (``normalize: placeholders``): every ``{{ ... }}`` span, such as
Bitext's ``{{Order Number}}``, is replaced by a space on both sides before scoring, so that
an answer is neither rewarded nor penalised for how it writes details it cannot know.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from typing import Any

from ..errors import ConfigError

__all__ = ["Metric", "MetricSpec", "build_metric", "normalize_label", "strip_placeholders"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.S)
_LABEL_STRIP = " \t\"'`*"


def strip_placeholders(text: str) -> str:
    """Replace every ``{{ ... }}`` placeholder span by a space."""
    return _PLACEHOLDER.sub(" ", text)


def normalize_label(text: str) -> str:
    """The label normalisation of ``accuracy`` (see the module docstring)."""
    line = next((part for part in text.splitlines() if part.strip()), "")
    line = line.strip().strip(_LABEL_STRIP).rstrip(".").strip(_LABEL_STRIP)
    if line.lower().startswith("label:"):
        line = line[len("label:") :].strip().strip(_LABEL_STRIP).rstrip(".")
    return line.casefold()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(text: str) -> Any:
    """Parse strict JSON (RFC 8259: no NaN or Infinity), ignoring a Markdown code fence."""
    match = _FENCE.match(text)
    return json.loads(match.group(1) if match else text, parse_constant=_reject_constant)


@dataclass(frozen=True)
class MetricSpec:
    """A metric as a suite names it: ``kind`` plus options; ``name`` keys its results."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    reference: str | None = None

    @property
    def key(self) -> str:
        return self.name or self.kind


class Metric(abc.ABC):
    """A scoring function with a stable identity."""

    binary = False
    uses_references = True

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.name = spec.key

    def config(self) -> dict[str, Any]:
        """What determines the scores, for the ledger's run key."""
        return {
            "name": self.name,
            "kind": self.spec.kind,
            "options": dict(self.spec.options),
            "reference": self.spec.reference,
        }

    #: promptlib's id of the algorithm that computes the scores: part of every run key.
    #: Bump its version whenever the scores it gives could change.
    algorithm = ""

    def identity(self) -> dict[str, Any]:
        """What determines the scores, for the run key: configuration and algorithm id.

        Installed library versions are not identity: a metric that depends on a library
        names its own algorithm (and its tests pin the scores), so an upgrade of the library
        does not silently invalidate every recorded run.
        """
        return {**self.config(), "algorithm": self.algorithm}

    def legacy_implementation(self) -> dict[str, str]:
        """The ``implementation`` of schema-1 run keys (installed versions, for migration)."""
        return {}

    @abc.abstractmethod
    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        """The example's score in [0, 1]."""


class _Rouge(Metric):
    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        allowed = {"stemmer", "normalize"}
        _check_options(spec, allowed)
        self.stemmer = bool(spec.options.get("stemmer", True))
        self.normalize = spec.options.get("normalize")
        if self.normalize not in (None, "placeholders"):
            raise ConfigError(f"metric {spec.key}: normalize must be 'placeholders'")

    @cached_property
    def _scorer(self) -> Any:
        from ._rouge import RougeScorer

        return RougeScorer([self.spec.kind], use_stemmer=self.stemmer)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.spec.kind,
            "options": {"stemmer": self.stemmer, "normalize": self.normalize},
            "reference": self.spec.reference,
        }

    # rouge-score 0.1.2's tokeniser, Porter stemmer, LCS and F-measure, reimplemented in
    # promptlib._rouge and pinned against the package by tests/test_rouge.py.
    algorithm = "promptlib-rouge/1"

    def legacy_implementation(self) -> dict[str, str]:
        return {"rouge-score-semantics": _dist_version("rouge-score") or "0.1.2"}

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        if not references:
            return 0.0
        if self.normalize == "placeholders":
            output = strip_placeholders(output)
            references = [strip_placeholders(r) for r in references]
        best = self._scorer.score_multi(list(references), output)
        return float(best[self.spec.kind].fmeasure)


class _ExactMatch(Metric):
    binary = True
    algorithm = "promptlib-exact-match/1"

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        _check_options(spec, {"ignore_case", "json_field"})
        self.ignore_case = bool(spec.options.get("ignore_case", False))
        self.field = spec.options.get("json_field")

    def _norm(self, value: Any) -> str:
        # A missing reference field reaches the metric as "" and a JSON null as None: both
        # mean "no value", so they compare equal.
        if value is None:
            return ""
        text = " ".join(str(value).split())
        return text.casefold() if self.ignore_case else text

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        if self.field is not None:
            try:
                parsed = _parse_json(output)
            except ValueError:
                return 0.0
            if not isinstance(parsed, dict):
                return 0.0
            got = self._norm(parsed.get(self.field))
            wanted: Sequence[Any] = references or [None]
            return float(any(got == self._norm(ref) for ref in wanted))
        got = self._norm(output)
        return float(any(got == self._norm(ref) for ref in references))


class _Accuracy(Metric):
    binary = True
    algorithm = "promptlib-label-accuracy/1"

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        _check_options(spec, set())

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        got = normalize_label(output)
        return float(any(got == normalize_label(str(ref)) for ref in references))


class _Contains(Metric):
    binary = True
    algorithm = "promptlib-contains/1"

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        _check_options(spec, {"text"})
        self.text = spec.options.get("text")
        self.uses_references = self.text is None

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        haystack = output.casefold()
        needles = [str(self.text)] if self.text is not None else [str(r) for r in references]
        return float(any(n.casefold() in haystack for n in needles))


class _Regex(Metric):
    binary = True
    algorithm = "promptlib-regex/1"
    uses_references = False

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        _check_options(spec, {"pattern"})
        pattern = spec.options.get("pattern")
        if not isinstance(pattern, str):
            raise ConfigError(f"metric {spec.key}: needs a 'pattern' string")
        try:
            self.pattern = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"metric {spec.key}: invalid pattern: {exc}") from None

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        return float(self.pattern.search(output) is not None)


class _JsonValid(Metric):
    binary = True
    algorithm = "promptlib-json-valid/1"
    uses_references = False

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        _check_options(spec, set())

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        try:
            _parse_json(output)
        except ValueError:
            return 0.0
        return 1.0


class _JsonSchema(Metric):
    binary = True
    uses_references = False

    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        _check_options(spec, {"schema"})
        self.schema = spec.options.get("schema")
        self._validators: dict[str, Any] = {}

    # Validation by the draft the schema names in "$schema" (2020-12 when it names none),
    # as the jsonschema package implements it.
    algorithm = "promptlib-json-schema/1"

    def legacy_implementation(self) -> dict[str, str]:
        return {"jsonschema": _dist_version("jsonschema") or "unknown"}

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        import jsonschema

        chosen = self.schema if self.schema is not None else schema
        if chosen is None:
            raise ConfigError(
                f"metric {self.name}: the prompt has no output.schema; give the metric a 'schema'"
            )
        cache_key = json.dumps(chosen, sort_keys=True)
        validator = self._validators.get(cache_key)
        if validator is None:
            cls = jsonschema.validators.validator_for(chosen)
            validator = self._validators[cache_key] = cls(chosen)
        try:
            parsed = _parse_json(output)
        except ValueError:
            return 0.0
        return float(validator.is_valid(parsed))


class _Python(Metric):
    def __init__(self, spec: MetricSpec) -> None:
        super().__init__(spec)
        target = spec.kind.removeprefix("python:")
        module_name, _, attribute = target.partition(":")
        if not module_name or not attribute:
            raise ConfigError(
                f"metric {spec.kind!r}: write custom metrics as python:module:function"
            )
        try:
            module = importlib.import_module(module_name)
            function = getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"metric {spec.kind!r}: cannot import it: {exc}") from None
        except Exception as exc:  # any failure while importing user code is a config error
            raise ConfigError(
                f"metric {spec.kind!r}: cannot import it: {type(exc).__name__}: {exc}"
            ) from None
        if not callable(function):
            raise ConfigError(f"metric {spec.kind!r}: {attribute} is not callable")
        self.function: Callable[..., Any] = function
        # Its source is its algorithm: editing the function's file re-evaluates.
        digest = self.legacy_implementation().get("source_sha256", "unknown")
        self.algorithm = f"{spec.kind}@sha256:{digest}"
        self.options = dict(spec.options)
        self.binary = bool(self.options.pop("binary", False))
        try:
            inspect.signature(function).bind("", [], {}, **self.options)
        except TypeError as exc:
            raise ConfigError(
                f"metric {spec.kind!r}: its options {sorted(self.options)} do not fit "
                f"{attribute}(output, references, row, ...): {exc}"
            ) from None

    def legacy_implementation(self) -> dict[str, str]:
        try:
            source = inspect.getsourcefile(self.function)
            if source:
                with open(source, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                return {"source_sha256": digest}
        except (OSError, TypeError):
            pass
        return {}

    def score(
        self,
        output: str,
        references: Sequence[str],
        row: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> float:
        value = self.function(output, list(references), dict(row), **self.options)
        number = float(value)
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"custom metric {self.spec.kind} returned {number}, outside [0, 1]")
        return number


_KINDS: dict[str, type[Metric]] = {
    **dict.fromkeys(ROUGE_TYPES, _Rouge),
    "exact_match": _ExactMatch,
    "accuracy": _Accuracy,
    "contains": _Contains,
    "regex": _Regex,
    "json_valid": _JsonValid,
    "json_schema": _JsonSchema,
}


def _check_options(spec: MetricSpec, allowed: set[str]) -> None:
    unknown = sorted(set(spec.options) - allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(
            f"metric {spec.key}: unknown option(s) {', '.join(unknown)}; allowed: {allowed_text}"
        )


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def build_metric(spec: MetricSpec) -> Metric:
    """The metric for ``spec``; ``ConfigError`` for unknown kinds or options."""
    if spec.kind.startswith("python:"):
        return _Python(spec)
    if spec.kind == "judge":
        from .judges import JudgeMetric

        return JudgeMetric(spec)
    cls = _KINDS.get(spec.kind)
    if cls is None:
        known = ", ".join([*_KINDS, "judge", "python:module:function"])
        raise ConfigError(f"unknown metric {spec.kind!r}; known metrics: {known}")
    return cls(spec)
