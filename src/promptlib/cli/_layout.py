"""Fitting rich tables to the console: a table when every cell fits, else stacked blocks.

The contract every table of the CLI keeps: a prompt id, suite name, metric name or verdict
is never cut. A table is printed only when it fits the console's width with every such
cell whole (``natural_width``); otherwise the command prints one block per row instead,
its facts flowed onto as many lines as the width needs (``flow``), never split inside a
fact unless the fact alone is wider than the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["flow", "natural_width", "pack"]

# Measuring on a console this wide never wraps a cell, so the maximum is the width the
# table needs with every cell on one line.
_UNBOUNDED = 1_000_000


def natural_width(out: Any, table: Any) -> int:
    """The width ``table`` takes on ``out`` when no cell is wrapped, folded or cut.

    A column given an explicit ``width`` counts as that width (its cells wrap inside it).
    """
    from rich.measure import Measurement

    return int(Measurement.get(out, out.options.update_width(_UNBOUNDED), table).maximum)


def flow(out: Any, facts: Sequence[Any], indent: int = 0, hanging: int = 2) -> None:
    """Print ``facts`` (str or rich Text) on as few lines of ``out`` as fit its width.

    Facts are separated by two spaces and never split across lines, except a fact too wide
    for a line of its own: it follows the facts before it and is word-wrapped (folded only
    where one word is wider than the line). The first line is indented by ``indent``, the
    lines after it by ``indent + hanging``.
    """
    from rich.text import Text

    first = max(out.width - indent, 1)
    room = max(first - hanging, 1)
    lines: list[Any] = []
    for fact in facts:
        text = fact if isinstance(fact, Text) else Text(str(fact))
        width = first if len(lines) == 1 else room
        fits = lines and lines[-1].cell_len + 2 + text.cell_len <= width
        if fits or (lines and text.cell_len > room):
            lines[-1].append("  ")
            lines[-1].append_text(text)
        else:
            lines.append(text.copy())
    pieces = []
    for number, line in enumerate(lines):
        if line.cell_len <= (first if number == 0 else room):
            pieces.append(line)
            continue
        line.overflow = "fold"
        if number == 0:
            # The first line is `hanging` wider than the others: fill it at its own width,
            # so a fact that fits it (a long prompt id) is not folded.
            head = line.wrap(out, first)[0]
            rest = line[len(head.plain) :]
            rest = rest[len(rest.plain) - len(rest.plain.lstrip()) :]
            head.rstrip()
            pieces.append(head)
            if not rest.plain:
                continue
            line = rest
            line.overflow = "fold"
        for piece in line.wrap(out, room):
            piece.rstrip()
            pieces.append(piece)
    for number, piece in enumerate(pieces):
        margin = indent if number == 0 else indent + hanging
        out.print(Text(" " * margin) + piece, no_wrap=True, crop=False)


def pack(facts: Sequence[str], width: int) -> str:
    """``facts`` joined by ", ", with a line break instead of a space wherever the next
    fact would not fit in ``width`` (a fact is never split)."""
    lines: list[str] = []
    for fact in facts:
        if lines and len(lines[-1]) + 2 + len(fact) <= width:
            lines[-1] += f", {fact}"
        elif lines:
            lines[-1] += ","
            lines.append(fact)
        else:
            lines.append(fact)
    return "\n".join(lines)
