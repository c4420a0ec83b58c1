"""The text of ``promptlib show ID --history``: releases, scores and sparklines in 80 columns.

Nothing here computes a score: the history comes from
``promptlib.versioning.scores.prompt_history``; this module only lays it out. Values are
never cut: a table too wide for 80 columns is wrapped into several tables (each repeating
the release column), and a sparkline that does not fit is left out, with a note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the ledger stack is imported when the command runs, not for --help
    from ..versioning.scores import PromptHistory, Series

__all__ = ["BARS", "GAP", "SCALE_HELP", "WIDTH", "render_history", "sparkline"]

WIDTH = 80
BARS = "▁▂▃▄▅▆▇█"
GAP = "·"  # a release with no score in a sparkline

SCALE_HELP = (
    f"Each sparkline has one mark per release and spans its own lowest ({BARS[0]}) to "
    f"highest ({BARS[-1]}) mean, in 8 equal steps, both printed next to it; a constant "
    f"series is drawn {BARS[3]}, and {GAP} marks a release with no score."
)


def sparkline(values: Sequence[float | None]) -> str:
    """One mark per value, scaled as ``SCALE_HELP`` says; None is ``GAP``.

    A value is drawn at the nearest of the eight levels between the series' minimum and
    maximum: ``[2, 4, 3]`` is ``▁█▅``, since 3 is half way (level 3.5, rounded up).
    """
    present = [v for v in values if v is not None]
    low, high = (min(present), max(present)) if present else (0.0, 0.0)
    marks = []
    for value in values:
        if value is None:
            marks.append(GAP)
        elif high == low:
            marks.append(BARS[3])
        else:
            level = math.floor((value - low) / (high - low) * (len(BARS) - 1) + 0.5)
            marks.append(BARS[min(max(level, 0), len(BARS) - 1)])
    return "".join(marks)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _when(time: str) -> str:
    """``2026-11-27T13:33:46Z`` as ``2026-11-27 13:33`` (UTC); anything else as it is."""
    if len(time) == 20 and time[10] == "T" and time.endswith("Z"):
        return f"{time[:10]} {time[11:16]}"
    return time


def _tables(header: Sequence[Sequence[str]], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; wrapped into several tables, each starting
    with the first column, when all of them do not fit in ``WIDTH``.

    ``header`` is one or more header lines, ``rows`` the body; every line has the same
    number of cells.
    """
    lines = [*header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    groups: list[list[int]] = []
    used = WIDTH  # start a new group on the first column
    for column in range(1, len(widths)):
        if groups and used + 2 + widths[column] <= WIDTH:
            groups[-1].append(column)
            used += 2 + widths[column]
        else:
            groups.append([0, column])
            used = widths[0] + 2 + widths[column]
    if not groups:
        groups = [[0]]
    out: list[str] = []
    for number, group in enumerate(groups):
        if number:
            out.append("")
        for line in lines:
            out.append("  ".join(line[i].ljust(widths[i]) for i in group).rstrip())
    return out


def _change(entry_changed: bool | None, previous: str | None, scored: bool) -> str:
    text = "first release" if entry_changed is None else "changed" if entry_changed else "unchanged"
    if entry_changed is not None:
        text += f" since {previous}"
    return text if scored else f"{text}; no run"


def _label(series: Series, providers: int) -> str:
    label = f"{series.suite} {series.metric}"
    return f"{label} ({series.provider})" if providers > 1 else label


def render_history(history: PromptHistory) -> str:
    """The text of ``promptlib show ID --history`` (see the module docstring)."""
    pid = history.prompt
    if not history.entries:
        return (
            f"{pid} has never been released: none of the {history.releases} release(s) in "
            "the ledger contains it (`promptlib release` records one)"
        )
    entries = history.entries
    # "no run" is said per release when some releases have scores, once when none has.
    scored = any(e.scores for e in entries)
    behaviours = len({e.fingerprint for e in entries})
    lines = [
        f"{pid}: in {len(entries)} of {history.releases} release(s), {behaviours} fingerprint(s)",
        "",
    ]
    lines += _tables(
        [["release", "released (UTC)", "prompt", "fingerprint", "behaviour"]],
        [
            [
                e.release,
                _when(e.time),
                e.version,
                e.fingerprint[:19],
                _change(e.changed, e.previous, bool(e.scores) or not scored),
            ]
            for e in entries
        ],
    )
    series = history.series()
    if not series:
        lines += ["", "no scores: no run of any of its released fingerprints is recorded"]
        return "\n".join(lines)
    providers = sorted({s.provider for s in series})
    lines += ["", "scores: the mean of each metric of the run of the release's fingerprint"]
    if len(providers) == 1:
        lines.append(f"(provider {providers[0]}; - where that fingerprint has no run):")
    else:
        lines.append("(- where that fingerprint has no run with that suite and provider):")
    header = [["release", *(s.suite for s in series)], ["", *(s.metric for s in series)]]
    if len(providers) > 1:
        header.append(["", *(s.provider for s in series)])
    rows = [[e.release, *(_number(s.means[i]) for s in series)] for i, e in enumerate(entries)]
    lines += _tables(header, rows)
    lines += [
        "",
        f"trends (one mark per release, {BARS[0]} lowest to {BARS[-1]} highest, {GAP} no score):",
    ]
    labels = [_label(s, len(providers)) for s in series]
    width = max(len(label) for label in labels)
    dropped = 0
    for label, one in zip(labels, series, strict=True):
        present = [v for v in one.means if v is not None]
        low, high = min(present), max(present)
        span = (
            f"constant {_number(low)}"
            if low == high
            else f"lowest {_number(low)}, highest {_number(high)}"
        )
        line = f"{label.ljust(width)}  {sparkline(one.means)}  {span}"
        if len(line) > WIDTH:
            line = f"{label.ljust(width)}  {span}"
            dropped += 1
        lines.append(line.rstrip())
    if dropped:
        lines.append(f"({dropped} sparkline(s) left out: wider than {WIDTH} columns)")
    return "\n".join(lines)
