"""Eval suites (``evals/suites/*.yaml``): which prompts run on which rows, scored how.

A suite file::

    description: Bitext answers, ROUGE against the reference reply.
    dataset: evals/datasets/bitext/test.jsonl   # relative to the project folder
    prompts: ["support.answer.*", "!support.answer.general"]   # ids or fnmatch globs;
                                                # "!" excludes
    match: intent          # optional: each prompt gets only the rows whose `intent`
                           # equals the last segment of its id (support.answer.get_refund)
    where: {domain: [banking]}                  # optional row filter: field -> value(s)
    limit: 500                                  # optional: the first N rows (file order)
    inputs: {request: instruction}              # prompt input -> row field (each prompt
                                                # gets the inputs it declares)
    references: response                        # a field (or list of fields); list values
                                                # count as several references
    label_map: {NO_NODES_DETECTED: out_of_scope, "*": in_scope}   # optional
    metrics: [rougeL, {kind: rouge1, normalize: placeholders},
              {kind: exact_match, json_field: entity_type, reference: entity_type,
               name: entity_type}]                # `reference`: a field of its own
    gates: {rougeL: 0.25}                       # the mean must reach it, per prompt
    primary: rougeL                             # the metric eval --against gates on
                                                # (default: the first); the others are
                                                # reported, outside the Holm family
    group: intent                               # optional: a row field whose equal values
                                                # are not independent (paraphrases of one
                                                # intent, one source document): the
                                                # comparison resamples whole groups
    flaky: 0.05                                 # optional: with --repeats, the share of
                                                # examples whose repeats may disagree before
                                                # a prompt is flaky (default: [flaky]
                                                # threshold in the settings)
    provider: retrieval                         # optional; default: the configured default
    params: {temperature: 0}                    # optional generation overrides

The suite file, the suites folder and the dataset must stay inside the project once every
symlink is followed and every ``..`` applied (``promptlib._paths``): a suite or dataset that
leads outside is refused, naming the link and where it goes, before anything is read.

The suite's name is its file name without ``.yaml``. Everything that decides which rows
are scored and how (dataset, match, where, limit, inputs, references, label_map, params,
metrics) is part of each run's key in the ledger; ``primary`` and ``group`` only decide
how two runs are compared, and ``flaky`` only how a run is reported, so changing them
re-runs nothing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .._paths import escape
from .._yaml import KeyPath, format_key, read_yaml
from ..errors import ConfigError, DatasetError, Problem
from ..library.prompt import Prompt
from .dataset import Dataset, load_dataset
from .judges import PairwiseJudge
from .metrics import Metric, MetricSpec, build_metric

__all__ = [
    "SUITE_SCHEMA_ID",
    "Suite",
    "SuiteFile",
    "check_suites",
    "load_suite",
    "load_suites",
    "select_suites",
    "suite_file_schema",
]

SUITE_SCHEMA_ID = "https://promptlib.dev/schema/suite-file-1.json"


class SuiteFile(BaseModel):
    """The file format of a suite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    dataset: str
    prompts: list[str] = Field(min_length=1)
    match: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1)
    inputs: dict[str, str] = Field(default_factory=dict)
    references: str | list[str] = Field(default_factory=list)
    label_map: dict[str, str] | None = None
    metrics: list[str | dict[str, Any]] = Field(min_length=1)
    gates: dict[str, float] = Field(default_factory=dict)
    primary: str | None = None
    group: str | None = None
    flaky: float | None = Field(None, ge=0, lt=1)

    @field_validator("limit", mode="before")
    @classmethod
    def _limit_not_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("input should be a valid integer, not a boolean")
        return value

    @field_validator("flaky", mode="before")
    @classmethod
    def _flaky_not_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(
                "input should be a share of examples (a number below 1), not a boolean"
            )
        return value

    provider: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


def suite_file_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one suite file, generated from ``SuiteFile``.

    Editors read it through the first line of each suite file
    (``# yaml-language-server: $schema=../../schema/suite.schema.json``); the committed copy
    in ``schema/suite.schema.json`` must equal ``promptlib schema --suite``. It checks the
    shape only: metric kinds, ``primary`` and ``gates`` naming a metric, and the dataset
    path are checked when the suite loads.
    """
    schema = SuiteFile.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SUITE_SCHEMA_ID,
        "title": "promptlib suite file",
        **{k: v for k, v in schema.items() if k != "title"},
    }


@dataclass(frozen=True)
class Suite:
    """A loaded suite, with its metrics built and its dataset path resolved."""

    name: str
    path: Path
    spec: SuiteFile
    dataset_path: Path
    metrics: tuple[Metric, ...]
    root: Path
    shown: str = ""
    lines: Mapping[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)
    # ``{kind: judge_pairwise, ...}`` entries of ``metrics``: used by ``eval --against``
    # only, never part of a run key.
    pairwise: tuple[PairwiseJudge, ...] = ()

    def line_of(self, *key: str | int) -> int:
        """The line of ``key`` in the suite file (of its nearest ancestor; 1 at worst)."""
        path: KeyPath = tuple(key)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    def mapping_problems(self, prompts: Sequence[Prompt]) -> list[Problem]:
        """Required inputs of ``prompts`` that this suite does not map."""
        mapped = self.spec.inputs
        shown_map = ", ".join(f"`{name}`" for name in mapped) or "no input"
        problems = []
        for prompt in prompts:
            for name, spec in prompt.inputs.items():
                if spec.required and name not in mapped:
                    problems.append(
                        Problem(
                            self.shown,
                            self.line_of("inputs"),
                            "inputs",
                            f"suite {self.name} maps {shown_map}, but {prompt.id} needs "
                            f"`{name}`: edit {self.shown} (inputs: {{{name}: <column>}})",
                        )
                    )
        return problems

    def field_problems(self, dataset: Dataset) -> list[Problem]:
        """Mapped columns and reference fields missing from rows the suite keeps."""
        rows = [row for row in dataset if self._where(row)]
        wanted: list[tuple[str, KeyPath, str]] = [
            (column, ("inputs", name), f"mapped to input `{name}`")
            for name, column in self.spec.inputs.items()
        ]
        wanted += [(ref, ("references",), "a reference field") for ref in self.references]
        for i, metric in enumerate(self.metrics):
            if metric.spec.reference:
                wanted.append((metric.spec.reference, ("metrics", i), f"metric {metric.name}"))
        if self.spec.group is not None:
            wanted.append((self.spec.group, ("group",), "the group column"))
        problems = []
        seen: set[str] = set()
        for column, key, role in wanted:
            if column in seen:
                continue
            seen.add(column)
            missing = [row for row in rows if column not in row]
            if not missing:
                continue
            where = (
                "in no row"
                if len(missing) == len(rows)
                else (f"in {len(missing)} of {len(rows)} rows (first: id {missing[0].get('id')!r})")
            )
            problems.append(
                Problem(
                    self.shown,
                    self.line_of(*key),
                    format_key(key),
                    f"field `{column}` ({role}) is missing {where} of {dataset.relative}: "
                    f"name a field the dataset has, or fix the dataset",
                )
            )
        return problems

    def selection_hint(self) -> str:
        spec = self.spec
        parts = []
        if spec.match is not None:
            parts.append(f"match: {spec.match}")
        if spec.where:
            parts.append(f"where: {spec.where}")
        if spec.limit is not None:
            parts.append(f"limit: {spec.limit}")
        return f" ({', '.join(parts)})" if parts else ""

    @property
    def primary(self) -> str:
        """The metric ``eval --against`` gates on: ``primary``, else the first metric."""
        return self.spec.primary or self.metrics[0].name

    @property
    def references(self) -> list[str]:
        refs = self.spec.references
        return [refs] if isinstance(refs, str) else list(refs)

    def dataset(self) -> Dataset:
        return load_dataset(self.dataset_path, self.root)

    def selects(self, prompt_id: str) -> bool:
        """Whether a positive pattern matches ``prompt_id`` and no ``!pattern`` excludes it."""
        include = [p for p in self.spec.prompts if not p.startswith("!")]
        exclude = [p[1:] for p in self.spec.prompts if p.startswith("!")]
        return any(fnmatch.fnmatchcase(prompt_id, p) for p in include) and not any(
            fnmatch.fnmatchcase(prompt_id, p) for p in exclude
        )

    def rows_for(self, prompt_id: str, dataset: Dataset) -> list[Mapping[str, Any]]:
        """The rows this suite scores ``prompt_id`` on, in file order."""
        rows = [row for row in dataset if self._where(row)]
        if self.spec.match is not None:
            name = prompt_id.rsplit(".", 1)[-1]
            rows = [row for row in rows if str(row.get(self.spec.match)) == name]
        if self.spec.limit is not None:
            rows = rows[: self.spec.limit]
        return rows

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether the suite's ``where`` keeps ``row``."""
        return self._where(row)

    def _where(self, row: Mapping[str, Any]) -> bool:
        for field_name, wanted in self.spec.where.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if row.get(field_name) not in values:
                return False
        return True

    def inputs_for(self, row: Mapping[str, Any], declared: Collection[str]) -> dict[str, Any]:
        """The prompt's render arguments from ``row``: mapped inputs the prompt declares."""
        chosen = {n: f for n, f in self.spec.inputs.items() if n in declared}
        missing = [f for f in chosen.values() if f not in row]
        if missing:
            raise DatasetError(
                f"row {row.get('id')!r} of {self.spec.dataset} has no field {missing[0]!r}"
            )
        return {name: row[field_name] for name, field_name in chosen.items()}

    def references_for(self, row: Mapping[str, Any], field: str | None = None) -> list[str]:
        """The row's references (a metric's own ``reference`` field, else the suite's)."""
        out: list[str] = []
        for field_name in [field] if field else self.references:
            value = row.get(field_name)
            values = value if isinstance(value, list) else [value]
            out.extend("" if v is None else str(v) for v in values)
        if self.spec.label_map is not None:
            mapping = self.spec.label_map
            out = [mapping.get(v, mapping.get("*", v)) for v in out]
        return out

    def eval_config(self) -> dict[str, Any]:
        """Everything about how rows become scores, for the run key."""
        spec = self.spec
        return {
            "match": spec.match,
            "where": spec.where,
            "limit": spec.limit,
            "inputs": spec.inputs,
            "references": self.references,
            "label_map": spec.label_map,
            "params": spec.params,
        }

    def metric_identity(self) -> list[dict[str, Any]]:
        """Each metric's configuration and algorithm id (part of the run key)."""
        return [m.identity() for m in self.metrics]

    def legacy_metric_config(self) -> list[dict[str, Any]]:
        """The metric part of a schema-1 run key (installed versions; for migration only)."""
        return [{**m.config(), "implementation": m.legacy_implementation()} for m in self.metrics]


def _metric_spec(entry: str | Mapping[str, Any]) -> MetricSpec:
    if isinstance(entry, str):
        return MetricSpec(kind=entry)
    options = {k: v for k, v in entry.items() if k not in ("kind", "name", "reference")}
    reference = entry.get("reference")
    return MetricSpec(
        kind=str(entry["kind"]),
        options=options,
        name=str(entry.get("name", "")),
        reference=str(reference) if reference is not None else None,
    )


def load_suite(path: Path, root: Path) -> Suite:
    """Load one suite file; ``ConfigError`` lists every problem with file and line."""
    shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    def fail(line: int, key: str, message: str) -> ConfigError:
        return ConfigError(problems=[Problem(shown, line, key, message)])

    left = escape(root, path.absolute())
    if left is not None:
        raise ConfigError(problems=[left.problem()])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(0, "", f"cannot read the suite: {exc}") from None
    doc = read_yaml(text, shown, "suite file")
    if doc.problems:
        raise ConfigError(problems=doc.problems)
    if not isinstance(doc.data, dict):
        raise fail(1, "", "a suite is a mapping (dataset, prompts, metrics, ...)")
    try:
        spec = SuiteFile.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(SuiteFile.model_fields))
                message = f"unknown key {loc[-1]!r}; allowed keys: {allowed}"
            elif err["type"] == "missing":
                message = f"missing required key {loc[-1]!r}"
            problems.append(Problem(shown, doc.line_of(loc), format_key(loc), message))
        raise ConfigError(problems=problems) from None
    metrics: list[Metric] = []
    pairwise: list[PairwiseJudge] = []
    names: set[str] = set()
    for i, entry in enumerate(spec.metrics):
        line = doc.line_of(("metrics", i))
        if isinstance(entry, dict) and not isinstance(entry.get("kind"), str):
            raise fail(line, f"metrics[{i}]", "a metric given as a mapping needs a 'kind'")
        if entry == "judge_pairwise" or (
            isinstance(entry, dict) and entry.get("kind") == "judge_pairwise"
        ):
            try:
                pairwise.append(PairwiseJudge(entry if isinstance(entry, dict) else {}))
            except ConfigError as exc:
                raise fail(line, "", str(exc)) from None
            continue
        try:
            metric = build_metric(_metric_spec(entry))
        except ConfigError as exc:
            raise fail(line, "", str(exc)) from None
        if metric.name in names:
            raise fail(
                line, "", f"metric {metric.name!r} is listed twice; give one a different 'name'"
            )
        names.add(metric.name)
        metrics.append(metric)
    if spec.primary is not None and spec.primary not in names:
        raise fail(
            doc.line_of(("primary",)),
            "primary",
            f"{spec.primary!r} names no metric of this suite ({', '.join(sorted(names))})",
        )
    for gate in spec.gates:
        if gate not in names:
            raise fail(
                doc.line_of(("gates", gate)),
                "",
                f"gate {gate!r} names no metric of this suite ({', '.join(sorted(names))})",
            )
    if any(m.uses_references and not m.spec.reference for m in metrics) and not spec.references:
        raise fail(1, "", "its metrics compare with references; name the 'references' field")
    left = escape(root, Path(spec.dataset))
    if left is not None:
        where = (
            f"dataset {spec.dataset!r} {left.reason}"
            if not left.link or left.shown == Path(spec.dataset).as_posix()
            else f"dataset {spec.dataset!r}: {left}"
        )
        raise fail(doc.line_of(("dataset",)), "", where)
    dataset_path = (root / spec.dataset).resolve()
    if not dataset_path.is_file():
        raise fail(doc.line_of(("dataset",)), "", f"dataset {spec.dataset!r} not found")
    if not metrics:
        raise fail(doc.line_of(("metrics",)), "metrics", "needs a metric besides judge_pairwise")
    return Suite(
        path.stem,
        path,
        spec,
        dataset_path,
        tuple(metrics),
        root,
        shown,
        doc.lines,
        tuple(pairwise),
    )


def load_suites(root: Path) -> list[Suite]:
    """Every suite of the project at ``root`` (``evals/suites/*.yaml``), sorted by name.

    ``ConfigError`` lists the problems of every broken suite file, not only the first.
    """
    folder = root / "evals" / "suites"
    left = escape(root, folder.absolute())
    if left is not None:
        raise ConfigError(problems=[left.problem()])
    if not folder.is_dir():
        return []
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    suites: list[Suite] = []
    problems: list[Problem] = []
    for path in files:
        try:
            suites.append(load_suite(path, root))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems=problems)
    seen: dict[str, Path] = {}
    for suite in suites:
        if suite.name in seen:
            raise ConfigError(
                f"{suite.path.relative_to(root)}: suite name {suite.name!r} is also used by "
                f"{seen[suite.name].relative_to(root)}; rename one of the files"
            )
        seen[suite.name] = suite.path
    return suites


def check_suites(suites: Sequence[Suite], prompts: Iterable[Prompt]) -> list[Problem]:
    """What would make a suite fail at run time, found before any call.

    For every suite and every prompt it selects: each required input of the prompt must be
    mapped by the suite; each mapped column and reference field must be present in every
    row the suite's ``where`` keeps (a JSON null counts as present); and the prompt must
    get at least one row (``match``, ``where`` and ``limit`` may leave none). Each problem
    names the suite file, the line of the key to edit and what to do.
    """
    problems: list[Problem] = []
    chosen = list(prompts)
    for suite in suites:
        selected = [p for p in chosen if suite.selects(p.id)]
        if not selected:
            continue
        problems += suite.mapping_problems(selected)
        try:
            dataset = suite.dataset()
        except DatasetError as exc:
            problems.append(Problem(suite.shown, suite.line_of("dataset"), "dataset", str(exc)))
            continue
        problems += suite.field_problems(dataset)
        for prompt in selected:
            if not suite.rows_for(prompt.id, dataset):
                problems.append(
                    Problem(
                        suite.shown,
                        suite.line_of("prompts"),
                        "prompts",
                        f"suite {suite.name} selects no row of {dataset.relative} for "
                        f"{prompt.id}{suite.selection_hint()}; fix the row selection or "
                        f"exclude the prompt with '!{prompt.id}'",
                    )
                )
    return problems


def select_suites(suites: Sequence[Suite], names: Sequence[str]) -> list[Suite]:
    """The suites called ``names`` (all when empty); ``ConfigError`` for unknown names."""
    if not names:
        return list(suites)
    by_name = {s.name: s for s in suites}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ConfigError(f"unknown suite {unknown[0]!r}; suites: {known}")
    return [by_name[n] for n in names]
