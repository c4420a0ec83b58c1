"""What an evaluation costs before it runs: ``eval --dry-run`` and the subset options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import ConfigError
from ..settings import Settings
from ._app import state

LIMIT_HELP = (
    "Evaluate only the first N rows of each suite (per prompt, after the suite's own "
    "where/match/limit), on both sides of --against. Reports say so; a subset run is "
    "never written to the ledger."
)
SAMPLE_HELP = (
    "Evaluate N rows of each suite picked by a seeded hash of the row id (needs --seed): "
    "the same rows on both sides of --against, and the same rows again when other rows "
    "are added to the dataset. Reports say so; a subset run is never written to the ledger."
)
SEED_HELP = "The seed of --sample: the same seed picks the same rows."
DRY_RUN_HELP = (
    "Plan the evaluation as it would run (same jobs, ledger reuse and response-cache "
    "lookups), call no provider and write nothing; print per provider the jobs, the "
    "runs reused from the ledger, the answers found in the response cache and the calls "
    "that would be made. Table or JSON (--format json)."
)
GATES_ALL_HELP = (
    "With --against: also evaluate the unchanged prompts, to check every selected "
    "prompt's suite thresholds (gates) as `promptlib eval` does. Without it, --against "
    "evaluates only the changed and added prompts."
)


def check_options(
    *,
    against: str | None,
    gates_all: bool,
    dry_run: bool,
    output_format: str,
    output: Path | None,
) -> None:
    """Refuse combinations of ``eval`` options that mean nothing (``ConfigError``: exit 2)."""
    if gates_all and against is None:
        raise ConfigError(
            "--gates-all applies to --against; `promptlib eval` already checks the thresholds "
            "of every prompt it evaluates"
        )
    if dry_run and output_format not in ("table", "json"):
        raise ConfigError(
            f"--dry-run prints a table or JSON, not {output_format}; use --format table or "
            "--format json"
        )
    if dry_run and output is not None:
        raise ConfigError(
            "--dry-run writes nothing, so it takes no --output; redirect --format json instead"
        )


def dry_run(
    against: str | None,
    suites: list[str],
    prompts: list[str],
    provider: str | None,
    cache: Any,
    options: Any,
    output_format: str,
    ledger: Any,
    gates_all: bool,
) -> None:
    """The body of ``eval [--against REF] --dry-run``: print the estimate, exit 0."""
    from ..reports import render

    settings = Settings.resolve(state.project)
    result: Any
    if against is not None:
        from ..compare.against import estimate_against

        result = estimate_against(
            settings,
            against,
            suites=suites,
            prompts=prompts,
            provider=provider,
            cache_mode=cache,
            options=options,
            ledger=ledger,
            gates_all=gates_all,
        )
    else:
        from ..evals.run import estimate

        result = estimate(
            settings,
            suites=suites,
            prompts=prompts,
            provider=provider,
            cache_mode=cache,
            options=options,
            ledger=ledger,
        )
    if output_format == "json":
        typer.echo(render(result, "json"))
    else:
        _print_estimate(result)


def _print_estimate(result: Any) -> None:
    from ..compare.against import AgainstEstimate
    from ..reports._text import subset_text

    lines = []
    side = None
    if isinstance(result, AgainstEstimate):
        counts: dict[str, int] = {}
        for status in result.statuses.values():
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines.append(f"dry run: against {result.base_label}: {summary}")
        if result.gates_all:
            lines.append("evaluated: every selected prompt (--gates-all)")
        else:
            skipped = len(result.not_evaluated)
            lines.append(
                "evaluated: the changed and added prompts"
                + (
                    f"; {skipped} unchanged prompt(s) not evaluated (--gates-all adds them)"
                    if skipped
                    else ""
                )
            )
        side = result.side
        estimate = result.estimate
    else:
        lines.append("dry run: eval")
        estimate = result
    if estimate.subset is not None:
        lines.append(subset_text(estimate.subset, compared=side is not None))
    header = ("provider", "jobs", "reused", "to run", "examples", "cached", "calls")
    cells: list[tuple[str, ...]] = [header]
    for p in estimate.providers:
        counted = (p.jobs, p.reused, p.planned, p.examples, p.cached, p.calls)
        cells.append((p.provider, *(f"{n:,}" for n in counted)))
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    for first, *rest in cells:
        numbers = "".join(f"  {v:>{w}}" for v, w in zip(rest, widths[1:], strict=True))
        lines.append(f"{first:<{widths[0]}}{numbers}")
    planned = [
        (name, r) for name, results in estimate.groups for r in results if r.status == "planned"
    ]
    if planned:
        lines.append("")
        lines.append("would run:")
        for name, r in planned:
            where = f"{r.job.suite.name}/{r.job.prompt.id}"
            if side is not None:
                where += f" ({side(r)})"
            judged = (
                f"; judges: {r.judge_cached:,} cached, {r.judge_calls:,} calls"
                if r.judge_calls or r.judge_cached
                else ""
            )
            lines.append(
                f"  {where} [{name}]: {len(r.job.rows):,} examples, {r.cached:,} cached, "
                f"{r.calls:,} calls{judged}"
            )
    typer.echo("\n".join(lines))
    if estimate.judged:
        typer.echo(
            f"dry run: {estimate.judge_calls:,} judge call(s) would be made (a ceiling when "
            "an answer is not cached yet: its verdict is counted as a call)",
            err=True,
        )
    typer.echo(
        f"dry run: {estimate.calls:,} provider call(s) would be made (a floor: retries add "
        "to it); no provider was called and nothing was written",
        err=True,
    )
