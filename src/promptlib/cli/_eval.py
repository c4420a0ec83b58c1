"""eval, ledger show, ledger verify."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from ..settings import Settings
from ._app import EXIT_GATE, EXIT_PROVIDER, app, console, handle_errors, progress_bar, state


class EvalFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    junit = "junit"


class CacheOption(str, Enum):
    """The response cache modes (``promptlib.cache.CacheMode``), without importing it."""

    on = "on"
    off = "off"
    read_only = "read-only"
    refresh = "refresh"


class LedgerFormat(str, Enum):
    table = "table"
    json = "json"


class RecordKind(str, Enum):
    run = "run"
    release = "release"


def print_eval_table(report: Any) -> None:
    from rich.table import Table

    out = console()
    by_suite: dict[str, list[Any]] = {}
    for outcome in report.outcomes:
        by_suite.setdefault(outcome.suite, []).append(outcome)
    for suite, outcomes in by_suite.items():
        metrics = sorted({m for o in outcomes for m in o.results})
        table = Table(title=f"suite {suite}", title_justify="left", box=None, header_style="bold")
        table.add_column("prompt")
        table.add_column("version")
        for metric in metrics:
            table.add_column(metric, justify="right")
        table.add_column("n", justify="right")
        table.add_column("errors", justify="right")
        table.add_column("status")
        for o in outcomes:
            cells = []
            for metric in metrics:
                value = o.results.get(metric)
                text = "" if value is None else f"{value['mean']:.3f}"
                gate = o.gates.get(metric)
                if gate is not None and not gate[1]:
                    text = f"[red]{text} < {gate[0]:g}[/red]"
                cells.append(text)
            n = max((int(v["n"]) for v in o.results.values()), default=0)
            status = o.status if o.passed else "[red]gate failed[/red]"
            if o.status == "failed":
                status = f"[red]failed: {o.failure}[/red]"
            table.add_row(o.prompt, o.version, *cells, str(n), str(o.errors), status)
        out.print(table)
        out.print()


@app.command("eval")
@handle_errors
def eval_command(
    suite: Annotated[
        list[str] | None, typer.Option("--suite", "-s", help="Only this suite (repeatable).")
    ] = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", "-p", help="Only prompts with this id or glob (repeatable)."),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="Provider name (default: the suite's, else default-provider)."),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="Compare with a release (v2.0.0 / 2.0.0 from the ledger, or 'latest'; "
            "else a git ref) on the same examples, with paired statistics; exit 1 on a "
            "significant regression. "
            "The Markdown report is also appended to $GITHUB_STEP_SUMMARY when it is set.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Requests in flight (default: the provider's).")
    ] = None,
    repeats: Annotated[
        int, typer.Option(min=1, help="Run each example K times; records per-example variance.")
    ] = 1,
    cache: Annotated[
        CacheOption, typer.Option(help="Response cache: on, off, read-only or refresh.")
    ] = CacheOption.on,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Re-run even when the ledger has this run.")
    ] = False,
    error_budget: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of failed examples tolerated per prompt (else exit 3)."
        ),
    ] = 0.1,
    output_format: Annotated[EvalFormat, typer.Option("--format")] = EvalFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the report to this file.")
    ] = None,
) -> None:
    """Evaluate prompts on the suites' datasets and append runs to the ledger.

    Runs already in the ledger (same prompt fingerprint, dataset, provider and metrics)
    are reused. Exit 1 when a gate fails, 3 when the provider failed beyond the error
    budget.
    """
    from ..evals.cache import CacheMode
    from ..evals.run import evaluate
    from ..evals.runner import EvalOptions
    from ..reports import render, write_output

    cache_mode = CacheMode(cache.value)
    settings = Settings.resolve(state.project, provider=None)
    options = EvalOptions(
        concurrency=concurrency, repeats=repeats, fresh=fresh, error_budget=error_budget
    )
    if against is not None:
        from ._versioning import run_against

        run_against(
            against,
            suite or [],
            prompt or [],
            provider,
            cache_mode,
            options,
            output_format.value,
            output,
        )
        return
    with progress_bar() as update:
        report = evaluate(
            settings,
            suites=suite or [],
            prompts=prompt or [],
            provider=provider,
            cache_mode=cache_mode,
            options=options,
            on_progress=update,
        )
    for message in report.repaired:
        typer.echo(f"ledger: {message}", err=True)
    if output_format is EvalFormat.table:
        print_eval_table(report)
    else:
        typer.echo(render(report, output_format.value))
    if output is not None:
        kind = "markdown" if output_format is EvalFormat.table else output_format.value
        write_output(output, render(report, kind))
    ran = sum(1 for o in report.outcomes if o.status == "ran")
    reused = sum(1 for o in report.outcomes if o.status == "reused")
    typer.echo(
        f"{len(report.outcomes)} prompt runs: {ran} evaluated, {reused} reused from the "
        f"ledger ({report.ledger})",
        err=True,
    )
    if report.provider_failures:
        for o in report.provider_failures:
            typer.echo(f"error: {o.suite}/{o.prompt}: {o.failure}", err=True)
        raise typer.Exit(EXIT_PROVIDER)
    if report.gate_failures:
        for o in report.gate_failures:
            failed = ", ".join(
                f"{m} {o.results[m]['mean']:.3f} < {t:g}"
                for m, (t, ok) in o.gates.items()
                if not ok
            )
            typer.echo(f"gate failed: {o.suite}/{o.prompt}: {failed}", err=True)
        raise typer.Exit(EXIT_GATE)


ledger_app = typer.Typer(
    help="Read and check the JSON ledger (evals/ledger.jsonl).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(ledger_app, name="ledger")


def _ledger(settings: Settings) -> Any:
    from ..ledger import Ledger

    path = settings.ledger_path
    if path is None:
        raise ConfigError("not inside a promptlib project; run from one or pass --project DIR")
    return Ledger(path)


@ledger_app.command("show")
@handle_errors
def ledger_show(
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="Only this prompt id.")
    ] = None,
    kind: Annotated[
        RecordKind | None, typer.Option(help="Only records of this kind: run or release.")
    ] = None,
    output_format: Annotated[LedgerFormat, typer.Option("--format")] = LedgerFormat.table,
) -> None:
    """List ledger records: runs (prompt, version, suite, provider, means) and releases."""
    settings = Settings.resolve(state.project)
    view = _ledger(settings).read()
    records = list(view.records)
    if kind is not None:
        records = [r for r in records if r.get("kind") == kind.value]
    if prompt is not None:
        records = [
            r
            for r in records
            if (r.get("kind") == "run" and r["prompt"]["id"] == prompt)
            or (r.get("kind") == "release" and prompt in {p["id"] for p in r.get("prompts", [])})
        ]
    for problem in view.problems:
        typer.echo(f"warning: {problem}", err=True)
    if output_format is LedgerFormat.json:
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("time", "kind", "prompt / release", "version", "suite", "provider", "results"):
        table.add_column(column)
    for r in records:
        if r.get("kind") == "run":
            means = ", ".join(f"{k} {v['mean']:.3f} (n={v['n']})" for k, v in r["results"].items())
            table.add_row(
                r["time"],
                "run",
                r["prompt"]["id"],
                r["prompt"]["version"],
                r["suite"],
                r["provider"]["name"],
                means,
            )
        else:
            table.add_row(
                r.get("time", ""),
                str(r.get("kind")),
                "release",
                str(r.get("version", "")),
                "",
                "",
                f"{len(r.get('prompts', []))} prompts",
            )
    console().print(table)
    typer.echo(f"{len(records)} records", err=True)


@ledger_app.command("verify")
@handle_errors
def ledger_verify() -> None:
    """Re-check every ledger line: JSON, hash, schema, duplicates, torn tail.

    Exit 1 on any problem.
    """
    settings = Settings.resolve(state.project)
    ledger = _ledger(settings)
    report = ledger.verify()
    for problem in report.problems:
        typer.echo(str(problem))
    typer.echo(report.summary(), err=not report.ok)
    if not report.ok:
        raise typer.Exit(EXIT_GATE)
