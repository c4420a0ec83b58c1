"""Every rendering of every result, in one place: JSON, Markdown and JUnit XML.

The results are those of ``eval`` (``EvalReport``), ``eval --against`` (``AgainstReport``)
and ``diff`` (``LibraryDiff``); a dry run's estimates (``Estimate``, ``AgainstEstimate``)
have a JSON form only. One rule holds for all of them: **a report is never greener
than the exit code.** A job that failed beyond its error budget, a baseline that could not
be evaluated, a failed gate or a regression shows in every format: ``passed`` is false in
JSON, the Markdown header is ❌ and names each failure, and JUnit has an ``<error>`` or
``<failure>`` for each. Only the CLI and integrations call this package; the terminal
tables are drawn by the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..compare.against import AgainstEstimate, AgainstReport
from ..errors import ConfigError
from ..evals.run import Estimate, EvalReport
from ..versioning.diff import LibraryDiff
from . import json as json_report
from . import junit, markdown

__all__ = ["FORMATS", "render", "to_json", "write_output"]

FORMATS = ("json", "markdown", "junit")

Result = EvalReport | AgainstReport | LibraryDiff | Estimate | AgainstEstimate


def to_json(result: Result) -> dict[str, Any]:
    """The JSON document of a result (plain data)."""
    if isinstance(result, Estimate):
        return json_report.estimate_json(result)
    if isinstance(result, AgainstEstimate):
        return json_report.against_estimate_json(result)
    if isinstance(result, EvalReport):
        return json_report.eval_json(result)
    if isinstance(result, AgainstReport):
        return json_report.against_json(result)
    return json_report.diff_json(result)


def render(result: Result, output_format: str) -> str:
    """A result as ``json``, ``markdown`` or ``junit`` text."""
    if output_format == "json":
        import json

        return json.dumps(to_json(result), indent=2, ensure_ascii=False)
    if isinstance(result, Estimate | AgainstEstimate):
        raise ConfigError(
            f"a dry run has no {output_format} form; use --format table or --format json"
        )
    if output_format == "markdown":
        if isinstance(result, EvalReport):
            return markdown.eval_markdown(result)
        if isinstance(result, AgainstReport):
            return markdown.against_markdown(result)
        return markdown.diff_markdown(result)
    if output_format == "junit":
        if isinstance(result, EvalReport):
            return junit.eval_junit(result)
        if isinstance(result, AgainstReport):
            return junit.against_junit(result)
        raise ConfigError("a diff has no JUnit form; use json or markdown")
    raise ConfigError(f"unknown format {output_format!r}; use one of {', '.join(FORMATS)}")


def write_output(path: Path, text: str) -> None:
    """Write a report file atomically (no partial file on a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(temporary, path)
