"""A prompt's score history across releases, read from the ledger alone.

``prompt_history(view, prompt_id)`` lists every release that contains the prompt, oldest
version first, with the prompt's version and fingerprint in it, whether the fingerprint
changed since the previous release that contained the prompt, and the mean of every metric
of the runs of that fingerprint. It reads release and run records only (no scores object,
no provider call, no working tree), so it works on any ledger a ``LedgerView`` reads,
schema 1 included.

Which run a release is scored by. Runs are matched to a release by the prompt's
fingerprint: the behaviour the release shipped, whatever version number it carried. For
each suite and provider, several distinct runs of one fingerprint may exist (the suite's
dataset or metrics changed, the provider was reconfigured, a migrated schema-1 run sits
next to today's). The release is scored by the run that existed when it was made: of the
run keys first recorded at or before the release's time, the one first recorded last; when
every run of the fingerprint came later (a release recorded without an evaluation), the
one first recorded earliest. The values are those of that key's current record (the
ledger's rule: the latest record of a key, then the greatest hash), so re-running a key
with ``--fresh`` updates them. Evaluations made after a release therefore never change
which run scores it, except to fill a gap. Record times have a resolution of one second: a
run first recorded in the same second as the release counts as made before it.

Providers are kept apart, never mixed: a score names its provider, and a series is one
(suite, metric, provider). A release whose fingerprint has no run in a suite has no score
for it, never one borrowed from another fingerprint.

The result is plain frozen dataclasses of strings, numbers, booleans and tuples;
``PromptHistory.to_json()`` is the JSON document (``json.dumps`` takes it as it is).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError
from ..ledger import LedgerView
from ..ledger.records import ReleaseRecord, RunRecord
from ..ledger.view import RunEntry
from .history import releases

__all__ = ["HistoryEntry", "PromptHistory", "Score", "Series", "prompt_history"]


@dataclass(frozen=True)
class Score:
    """The mean of one metric of the run that scores a release in one suite.

    ``run`` is the run key (``promptlib outputs ID --run KEY`` shows its answers), ``time``
    the time of the run record the values come from, ``dataset`` the sha256 of the dataset
    it ran on (a change of dataset between releases shows here), ``provider`` and ``model``
    the provider's name and model (None when the provider has none).
    """

    suite: str
    metric: str
    provider: str
    mean: float
    stderr: float
    n: int
    run: str
    time: str
    dataset: str
    model: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """The prompt in one release.

    ``release`` and ``time`` are the release's version and time; ``version`` and
    ``fingerprint`` the prompt's in that release. ``previous`` is the version of the
    previous release that contained the prompt (None at its first release), and
    ``changed`` whether the fingerprint differs from the one in ``previous`` (None at the
    first release: there is nothing to compare with). ``scores`` holds one ``Score`` per
    metric of each suite and provider that ran this fingerprint, sorted by suite, provider
    and then the run's metric order; empty when no run of the fingerprint is recorded.
    """

    release: str
    time: str
    version: str
    fingerprint: str
    previous: str | None
    changed: bool | None
    scores: tuple[Score, ...]

    def score(self, suite: str, metric: str, provider: str | None = None) -> Score | None:
        """The score of ``metric`` in ``suite`` (of ``provider``, if given), or None.

        Without ``provider`` the first match is returned: give it when several providers
        ran the fingerprint.
        """
        for score in self.scores:
            if (score.suite, score.metric) == (suite, metric) and provider in (
                None,
                score.provider,
            ):
                return score
        return None


@dataclass(frozen=True)
class Series:
    """One (suite, metric, provider) across the history: ``means[i]`` belongs to
    ``PromptHistory.entries[i]``, None where that release has no score (a chart's gap)."""

    suite: str
    metric: str
    provider: str
    means: tuple[float | None, ...]


@dataclass(frozen=True)
class PromptHistory:
    """A prompt's releases, oldest version first (see the module docstring).

    ``entries`` is empty when no release contains the prompt: it exists (in the working
    tree, in a run) but was never released. ``releases`` is the number of releases in the
    ledger, with or without the prompt.
    """

    prompt: str
    entries: tuple[HistoryEntry, ...]
    releases: int

    def series(self) -> tuple[Series, ...]:
        """Every (suite, metric, provider) scored in some release, in order of first
        appearance, with its mean in each entry."""
        order: list[tuple[str, str, str]] = []
        for entry in self.entries:
            for s in entry.scores:
                if (s.suite, s.metric, s.provider) not in order:
                    order.append((s.suite, s.metric, s.provider))
        return tuple(
            Series(
                suite,
                metric,
                provider,
                tuple(
                    score.mean if (score := e.score(suite, metric, provider)) else None
                    for e in self.entries
                ),
            )
            for suite, metric, provider in order
        )

    def to_json(self) -> dict[str, Any]:
        """The history as JSON data: ``prompt``, ``releases`` (the ledger's count),
        ``entries`` (each with its ``scores``) and ``series`` (from ``series()``)."""
        return {
            "prompt": self.prompt,
            "releases": self.releases,
            "entries": [_plain(dataclasses.asdict(e)) for e in self.entries],
            "series": [_plain(dataclasses.asdict(s)) for s in self.series()],
        }


def _plain(value: Any) -> Any:
    """``value`` with every tuple as a list: JSON data that compares equal to its own
    ``json.loads(json.dumps(...))``."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def prompt_history(view: LedgerView, prompt_id: str, *, known: Iterable[str] = ()) -> PromptHistory:
    """The history of ``prompt_id`` across the releases recorded in ``view``.

    ``known`` names prompts that exist outside the ledger (the working tree's library): a
    prompt that is in ``known`` or in any record of the ledger but in no release gets an
    empty history. Any other id raises ``NotFoundError`` with the closest known ids;
    ``LedgerError`` when a release version does not parse or a run record is malformed.
    """
    records = releases(view)
    containing = [record for record in records if prompt_id in record.prompts]
    if not containing:
        ids = {*known, *(pid for r in records for pid in r.prompts)}
        ids.update(entry.prompt_id for entry in view.entries)
        if prompt_id not in ids:
            close = difflib.get_close_matches(prompt_id, sorted(ids), n=3)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else "; `promptlib list` shows them all"
            )
            raise NotFoundError(
                f"no prompt {prompt_id!r} in the library or the ledger{hint}", known=sorted(ids)
            )
        return PromptHistory(prompt_id, (), len(records))
    fingerprints = {record.prompts[prompt_id].fingerprint for record in containing}

    def ours(entry: RunEntry) -> bool:
        return entry.prompt_id == prompt_id and entry.prompt_fingerprint in fingerprints

    first_seen: dict[str, str] = {}
    for run_entry in view.entries:
        if ours(run_entry):
            key, time = run_entry.key, run_entry.time
            first_seen[key] = min(first_seen.get(key, time), time)
    runs = view.select(ours)
    entries: list[HistoryEntry] = []
    previous: HistoryEntry | None = None
    for record in containing:
        item = record.prompts[prompt_id]
        scores = _scores(
            record, [r for r in runs if r.prompt.fingerprint == item.fingerprint], first_seen
        )
        entry = HistoryEntry(
            release=record.version,
            time=record.time,
            version=item.version,
            fingerprint=item.fingerprint,
            previous=previous.release if previous else None,
            changed=previous.fingerprint != item.fingerprint if previous else None,
            scores=scores,
        )
        entries.append(entry)
        previous = entry
    return PromptHistory(prompt_id, tuple(entries), len(records))


def _scores(
    release: ReleaseRecord, runs: list[RunRecord], first_seen: dict[str, str]
) -> tuple[Score, ...]:
    """The scores of ``release`` from the runs of its fingerprint: one run per suite and
    provider, chosen as the module docstring says."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.suite, run.provider.name), []).append(run)
    scores: list[Score] = []
    for suite, provider in sorted(groups):
        candidates = groups[(suite, provider)]
        before = [r for r in candidates if first_seen[r.key] <= release.time]
        if before:
            run = max(before, key=lambda r: (first_seen[r.key], r.time, r.hash or ""))
        else:
            run = min(candidates, key=lambda r: (first_seen[r.key], r.time, r.hash or ""))
        scores.extend(
            Score(
                suite=suite,
                metric=metric,
                provider=provider,
                mean=result.mean,
                stderr=result.stderr,
                n=result.n,
                run=run.key,
                time=run.time,
                dataset=run.dataset.sha256,
                model=run.provider.model,
            )
            for metric, result in run.results.items()
        )
    return tuple(scores)
