"""Per-example evidence of a recorded run: inputs, the model's answer, references, scores.

``examples_of`` joins what the ledger kept for a run (its scores and outputs objects) with
what the project still has (the suite's input mapping and references, and the dataset
rows, when the dataset is the one the run used). Nothing here calls a model: it is how
``promptlib outputs`` and the reports show why a prompt scored what it scored.

``find_runs`` picks the runs to show: a run key (or a unique prefix of one), the runs of
a release's version of a prompt, or by default the runs of the prompt as it is in the
working tree, else its latest runs; one per suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LedgerError, NotFoundError, PromptlibError
from ..ledger import LedgerView, RunRecord
from ..library.collection import Library
from ..versions import parse_version
from .suite import Suite

__all__ = ["Example", "RunEvidence", "examples_of", "find_runs"]


@dataclass(frozen=True)
class Example:
    """One example of a run, as far as the ledger and the project can tell."""

    id: str
    inputs: Mapping[str, Any] | None
    outputs: Sequence[str] | None
    references: Sequence[str] | None
    scores: Mapping[str, float | None]
    error: str | None = None
    # Judge metrics: metric -> the judge's verdicts ({"score", "reason"}), one per repeat.
    verdicts: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)


@dataclass
class RunEvidence:
    """A run and its examples; ``notes`` say what could not be shown and why."""

    run: RunRecord
    examples: list[Example]
    notes: list[str] = field(default_factory=list)


def _release_fingerprint(view: LedgerView, version: str, prompt_id: str) -> str:
    wanted = parse_version(version)
    found = None
    for release in view.releases:  # oldest first: the latest record of a version wins
        if parse_version(release.version) == wanted:
            found = release
    if found is None:
        known = ", ".join(f"v{r.version}" for r in view.releases) or "none yet"
        raise NotFoundError(f"no release {version} in the ledger; releases: {known}")
    if prompt_id not in found.prompts:
        raise NotFoundError(f"release {version} has no prompt {prompt_id}")
    return found.prompts[prompt_id].fingerprint


def find_runs(
    view: LedgerView,
    prompt_id: str,
    *,
    suite: str | None = None,
    key: str | None = None,
    release: str | None = None,
    library: Library | None = None,
) -> list[RunRecord]:
    """The runs to show for ``prompt_id`` (see the module docstring), one per suite."""
    if key is not None:
        prefix = key.removeprefix("sha256:")
        matches = view.select(lambda entry: entry.key.removeprefix("sha256:").startswith(prefix))
        if len(matches) != 1:
            raise NotFoundError(
                f"run {key!r} matches {len(matches)} runs in the ledger; give more of the key "
                "(`promptlib ledger show --prompt ID --format json` lists them)"
            )
        return matches
    runs = view.select(lambda entry: entry.prompt_id == prompt_id)
    if suite is not None:
        runs = [r for r in runs if r.suite == suite]
    if not runs:
        where = f" in suite {suite}" if suite else ""
        raise NotFoundError(
            f"the ledger has no run of {prompt_id}{where}; `promptlib eval` records one"
        )
    if release is not None:
        fingerprint = _release_fingerprint(view, release, prompt_id)
        runs = [r for r in runs if r.prompt.fingerprint == fingerprint]
        if not runs:
            raise NotFoundError(f"the ledger has no run of {prompt_id} as released in {release}")
    elif library is not None and prompt_id in library:
        current = [r for r in runs if r.prompt.fingerprint == library[prompt_id].fingerprint]
        runs = current or runs
    latest: dict[str, RunRecord] = {}
    for run in sorted(runs, key=lambda r: (r.time, r.hash or "")):
        latest[run.suite] = run
    return [latest[name] for name in sorted(latest)]


def examples_of(
    view: LedgerView, run: RunRecord, suites: Mapping[str, Suite], root: Path | None = None
) -> RunEvidence:
    """Every example of ``run`` with what is known of it (see the module docstring)."""
    scores = view.scores(run)
    evidence = RunEvidence(run, [])
    try:
        outputs = view.outputs(run)
    except LedgerError as exc:
        outputs = None
        evidence.notes.append(f"outputs are not available: {exc}")
    if outputs is None and run.outputs is None:
        evidence.notes.append(
            "outputs were not kept for this run (recorded with --no-outputs, or before "
            "promptlib kept them)"
        )
    rows: dict[str, Mapping[str, Any]] = {}
    suite = suites.get(run.suite)
    if suite is None:
        evidence.notes.append(
            f"suite {run.suite} no longer exists: inputs and references are not shown"
        )
    else:
        try:
            dataset = suite.dataset()
        except PromptlibError as exc:
            evidence.notes.append(f"the dataset cannot be read ({exc}): inputs are not shown")
        else:
            if dataset.sha256 != run.dataset.sha256:
                evidence.notes.append(
                    f"{dataset.relative} changed since the run: inputs and references are not shown"
                )
            else:
                rows = {str(row["id"]): row for row in dataset}
    for index, example_id in enumerate(scores.ids):
        row = rows.get(example_id)
        inputs = references = None
        if row is not None and suite is not None:
            inputs = {name: row.get(column) for name, column in suite.spec.inputs.items()}
            references = suite.references_for(row)
        evidence.examples.append(
            Example(
                id=example_id,
                inputs=inputs,
                outputs=outputs.outputs[index] if outputs is not None else None,
                references=references,
                scores={name: values[index] for name, values in scores.scores.items()},
                error=scores.errors.get(example_id),
                verdicts={
                    name: per_example[index]
                    for name, per_example in (outputs.verdicts or {}).items()
                    if index < len(per_example) and per_example[index]
                }
                if outputs is not None
                else {},
            )
        )
    return evidence
