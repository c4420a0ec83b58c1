"""eval, ledger show, ledger verify, ledger merge."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from ..settings import Settings
from ._app import (
    EXIT_GATE,
    EXIT_PROVIDER,
    app,
    console,
    handle_errors,
    progress_bar,
    state,
    warn_corrupt,
)
from ._cost import (
    DRY_RUN_HELP,
    GATES_ALL_HELP,
    LIMIT_HELP,
    SAMPLE_HELP,
    SEED_HELP,
    check_options,
)
from ._export import with_mlflow


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


class Executor(str, Enum):
    local = "local"
    ray = "ray"


class LedgerFormat(str, Enum):
    table = "table"
    json = "json"


class RecordKind(str, Enum):
    run = "run"
    release = "release"


# Below this, a status column would wrap into a word per line: one block per prompt reads
# better.
_MIN_STATUS_WIDTH = 20


def _eval_cells(outcome: Any, metrics: list[str]) -> tuple[list[Any], Any]:
    """A run's metric cells (red where a gate failed) and its status, as rich Text."""
    from rich.text import Text

    cells = []
    for metric in metrics:
        value = outcome.results.get(metric)
        mean = "" if value is None else f"{value['mean']:.3f}"
        gate = outcome.gates.get(metric)
        failed = gate is not None and not gate[1]
        cells.append(Text(f"{mean} < {gate[0]:g}", style="red") if failed else Text(mean))
    from ..reports._text import status_text

    shown = status_text(outcome)
    if not outcome.passed:
        status = Text(shown, style="red")
    else:
        status = Text(shown, style="yellow") if outcome.flaky else Text(shown)
    if outcome.status == "failed":
        status = Text(f"failed: {outcome.failure}", style="red")
    return cells, status


def _eval_n(outcome: Any) -> int:
    return max((int(v["n"]) for v in outcome.results.values()), default=0)


def _eval_table(outcomes: list[Any], metrics: list[str], status_width: int | None) -> Any:
    """The suite's table; the status column wraps inside ``status_width`` when given."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    table.add_column("prompt", no_wrap=True)
    table.add_column("version", no_wrap=True)
    for metric in metrics:
        table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    # A word wider than the column (a provider's URL in a failure) is folded, not cut.
    table.add_column("status", no_wrap=status_width is None, width=status_width, overflow="fold")
    for o in outcomes:
        cells, status = _eval_cells(o, metrics)
        row = (Text(o.prompt), Text(o.version), *cells, str(_eval_n(o)), str(o.errors), status)
        table.add_row(*row)
    return table


def print_eval_table(report: Any) -> None:
    """One table per suite, or one block per prompt for a suite whose table does not fit.

    A table fits when every prompt id, metric name and number is whole; a long status (a
    provider failure) may wrap inside its column.
    """
    from rich.text import Text

    from ._layout import flow, natural_width

    out = console()
    by_suite: dict[str, list[Any]] = {}
    for outcome in report.outcomes:
        by_suite.setdefault(outcome.suite, []).append(outcome)
    for suite, outcomes in by_suite.items():
        metrics = sorted({m for o in outcomes for m in o.results})
        out.print(Text(f"suite {suite}"), overflow="fold")
        table = _eval_table(outcomes, metrics, None)
        if natural_width(out, table) > out.width:
            rest = natural_width(out, _eval_table(outcomes, metrics, 1)) - 1
            wide_enough = out.width - rest >= _MIN_STATUS_WIDTH
            table = _eval_table(outcomes, metrics, out.width - rest) if wide_enough else None
        if table is not None:
            out.print(table)
            out.print()
            continue
        for o in outcomes:
            cells, status = _eval_cells(o, metrics)
            flow(out, [Text(o.prompt, style="bold"), o.version, status], indent=1)
            pairs = zip(metrics, cells, strict=True)
            scores = [Text(f"{m} ") + cell for m, cell in pairs if cell.plain]
            flow(out, [f"n {_eval_n(o)}", f"errors {o.errors}", *scores], indent=3, hanging=0)
        out.print()
    _print_consistency(report)


def _print_consistency(report: Any) -> None:
    """With repeats: each run's consistency per metric, and why a prompt is flaky."""
    from rich.text import Text

    from ..reports._text import consistency_text

    out = console()
    shown = [o for o in report.outcomes if o.consistency]
    if not shown:
        return
    out.print(Text(f"consistency over {shown[0].repeats} repeats"), overflow="fold")
    for o in shown:
        for metric in sorted(o.consistency):
            line = f"  {o.suite}/{o.prompt} {metric}: {consistency_text(o, metric)}"
            style = "yellow" if metric in o.flaky_metrics else ""
            out.print(Text(line, style=style), overflow="fold")
        text = o.flaky_text()
        if text is not None:
            out.print(Text(f"  {o.suite}/{o.prompt} {text}", style="yellow"), overflow="fold")
    out.print()


@app.command("eval")
@handle_errors
@with_mlflow
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
            "significant regression of a suite's primary metric (in [compare] mode = "
            "'strict', also when non-inferiority is not shown). "
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
    no_retry_errors: Annotated[
        bool,
        typer.Option(
            "--no-retry-errors",
            help="Keep the failed examples of runs reused from the ledger as they are "
            "(by default they are evaluated again, and the completed run is recorded).",
        ),
    ] = False,
    output_format: Annotated[EvalFormat, typer.Option("--format")] = EvalFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the report to this file.")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Also write a self-contained HTML report (with --against: verdicts, forest "
            "plot, flipped examples with both answers, score history; `promptlib report` "
            "writes it later from the ledger).",
        ),
    ] = None,
    no_record: Annotated[
        bool,
        typer.Option(
            "--no-record",
            help="Write nothing to the ledger (exploratory runs); the response cache still "
            "works and recorded runs are still reused.",
        ),
    ] = False,
    ledger_dir: Annotated[
        Path | None,
        typer.Option(
            "--ledger",
            help="Write new runs to this ledger folder instead of the project's (a scratch or "
            "shard ledger); the project's runs and releases are still read.",
            file_okay=False,
        ),
    ] = None,
    no_outputs: Annotated[
        bool,
        typer.Option(
            "--no-outputs",
            help="Do not keep the model's answers in the ledger (sensitive data); scores are kept.",
        ),
    ] = False,
    gates_all: Annotated[bool, typer.Option("--gates-all", help=GATES_ALL_HELP)] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=DRY_RUN_HELP)] = False,
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", help=LIMIT_HELP)] = None,
    sample: Annotated[int | None, typer.Option("--sample", metavar="N", help=SAMPLE_HELP)] = None,
    seed: Annotated[int | None, typer.Option("--seed", metavar="S", help=SEED_HELP)] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            help="Run only shard K of N of the planned work (whole jobs by run key, jobs "
            "above --split-above rows split into N ranges) into --ledger DIR, a shard "
            "ledger; join the shards with `promptlib ledger merge`, then report from the "
            "merged ledger. With --against, records both sides' runs of its share.",
        ),
    ] = None,
    split_above: Annotated[
        int,
        typer.Option(
            "--split-above",
            metavar="N",
            min=1,
            help="With --shard or --executor ray: split jobs of more rows than this across "
            "the shards.",
        ),
    ] = 200,
    executor: Annotated[
        Executor,
        typer.Option(
            help="Where the examples are evaluated: in this process (local), or as shards "
            "on a Ray cluster (ray; `pip install 'promptlib[ray]'`), merged into the ledger.",
        ),
    ] = Executor.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="ADDR",
            help="With --executor ray: the cluster (auto, HOST:PORT or ray://HOST:PORT; "
            "default: $RAY_ADDRESS, else a local Ray started for the run).",
        ),
    ] = None,
    ray_num_cpus: Annotated[
        float | None,
        typer.Option(
            "--ray-num-cpus", min=0.0, help="With --executor ray: CPUs per shard task (1)."
        ),
    ] = None,
    ray_num_gpus: Annotated[
        float | None,
        typer.Option(
            "--ray-num-gpus",
            min=0.0,
            help="With --executor ray: GPUs per shard task (0; 1 for a local-model provider).",
        ),
    ] = None,
    ray_retries: Annotated[
        int | None,
        typer.Option(
            "--ray-retries",
            min=0,
            help="With --executor ray: times a shard task whose worker died is run again (3).",
        ),
    ] = None,
    ray_shards: Annotated[
        int | None,
        typer.Option(
            "--ray-shards",
            min=1,
            help="With --executor ray: shard tasks (default: the cluster's CPUs divided by "
            "--ray-num-cpus, or its GPUs by --ray-num-gpus).",
        ),
    ] = None,
    ray_keep_alive: Annotated[
        float | None,
        typer.Option(
            "--ray-keep-alive",
            metavar="SECONDS",
            min=0.0,
            help="With --executor ray: seconds the shard workers stay on the cluster after "
            "the run, warm for the next run of the same project and options (300). They "
            "hold their CPUs/GPUs while they wait; 0: the workers end with the run.",
        ),
    ] = None,
) -> None:
    """Evaluate prompts on the suites' datasets and append runs to the ledger.

    Runs already in the ledger (same prompt fingerprint, dataset, provider and metrics)
    are reused. Each new run keeps its per-example scores and the model's answers
    (`promptlib outputs` shows them). With --against, only the changed and added prompts
    are evaluated. --dry-run says what a run would cost first. Exit 1 when a gate fails, 3
    when the provider failed beyond the error budget.
    """
    from ..evals.cache import CacheMode
    from ..evals.run import evaluate
    from ..evals.runner import EvalOptions
    from ..evals.subset import Subset
    from ..ledger import open_project

    check_options(
        against=against,
        gates_all=gates_all,
        dry_run=dry_run,
        output_format=output_format.value,
        output=output,
    )
    if dry_run and html is not None:
        raise ConfigError("--dry-run writes nothing, so it takes no --html")
    from ..evals.shards import Shard

    sharded = Shard.parse(shard, split_above) if shard is not None else None
    reported = html is not None or output is not None
    if (
        sharded is not None
        and not dry_run
        and (
            reported
            or output_format.value
            not in (
                "table",
                "json",
            )
        )
    ):
        raise ConfigError(
            f"--shard {sharded} only records its share: the reports (--html, --output, "
            "--format markdown or junit) are made from the merged ledger, after "
            "`promptlib ledger merge`"
        )
    ray_given = {
        "--ray-address": ray_address,
        "--ray-num-cpus": ray_num_cpus,
        "--ray-num-gpus": ray_num_gpus,
        "--ray-retries": ray_retries,
        "--ray-shards": ray_shards,
        "--ray-keep-alive": ray_keep_alive,
    }
    on_ray = executor is Executor.ray
    if not on_ray and any(value is not None for value in ray_given.values()):
        named = ", ".join(name for name, value in ray_given.items() if value is not None)
        raise ConfigError(f"{named} applies to --executor ray")
    if on_ray:
        from ..integrations.ray import require_ray

        require_ray()  # before anything else: without Ray, say how to install it
        if against is not None:
            raise ConfigError(
                "--executor ray does not run --against yet: run `promptlib eval --executor "
                "ray` to record the runs, then `promptlib eval --against ...` reuses them"
            )
        if sharded is not None:
            raise ConfigError(
                f"--shard {sharded} runs one shard here; --executor ray runs every shard on "
                "the cluster: give one or the other"
            )
    cache_mode = CacheMode(cache.value)
    settings = Settings.resolve(state.project, provider=None)
    options = EvalOptions(
        concurrency=concurrency,
        repeats=repeats,
        fresh=fresh,
        error_budget=error_budget,
        keep_outputs=not no_outputs,
        subset=Subset.parse(limit, sample, seed),
        retry_errors=not no_retry_errors,
        shard=sharded,
    )
    # A dry run writes nothing, so it reads a schema-1 ledger without asking for a migration.
    ledger = open_project(settings, folder=ledger_dir, record=not no_record, write=not dry_run)
    if dry_run:
        from ._cost import dry_run as print_dry_run

        print_dry_run(
            against,
            suite or [],
            prompt or [],
            provider,
            cache_mode,
            options,
            output_format.value,
            ledger,
            gates_all,
        )
        return
    if sharded is not None:
        _run_shard(
            sharded,
            settings,
            against,
            suite or [],
            prompt or [],
            provider,
            cache_mode,
            options,
            ledger,
            output_format,
            gates_all=gates_all,
        )
        return
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
            ledger,
            gates_all=gates_all,
            html=html,
        )
        return
    with progress_bar() as update:
        if on_ray:
            from ..integrations.ray import (
                DEFAULT_KEEP_ALIVE,
                RayOptions,
                evaluate_on_ray,
                forwarded_environment,
            )

            report = evaluate_on_ray(
                settings,
                suites=suite or [],
                prompts=prompt or [],
                provider=provider,
                cache_mode=cache_mode,
                options=options,
                ray_options=RayOptions(
                    address=ray_address,
                    num_cpus=1.0 if ray_num_cpus is None else ray_num_cpus,
                    num_gpus=ray_num_gpus or 0.0,
                    retries=3 if ray_retries is None else ray_retries,
                    shards=ray_shards,
                    split_above=split_above,
                    env=forwarded_environment(settings, os.environ),
                    keep_alive=DEFAULT_KEEP_ALIVE if ray_keep_alive is None else ray_keep_alive,
                ),
                on_progress=update,
                ledger=ledger,
            )
        else:
            report = evaluate(
                settings,
                suites=suite or [],
                prompts=prompt or [],
                provider=provider,
                cache_mode=cache_mode,
                options=options,
                on_progress=update,
                ledger=ledger,
            )
    # Imported once the run is done: the reports are not needed before the first call.
    from ..reports import render, write_output

    for message in report.repaired:
        typer.echo(f"ledger: {message}", err=True)
    for message in report.warnings:
        typer.echo(f"warning: {message}", err=True)
    if output_format is EvalFormat.table:
        print_eval_table(report)
        if report.subset is not None:
            from rich.text import Text

            from ..reports._text import subset_text

            console().print(Text(subset_text(report.subset)))
    else:
        typer.echo(render(report, output_format.value))
    if output is not None:
        kind = "markdown" if output_format is EvalFormat.table else output_format.value
        write_output(output, render(report, kind))
    if html is not None:
        from ..reports.html import eval_html, project_facts

        write_output(html, eval_html(report, project=project_facts(settings.root)))
        typer.echo(f"wrote {html}", err=True)
    ran = sum(1 for o in report.outcomes if o.status == "ran")
    reused = sum(1 for o in report.outcomes if o.status == "reused")
    typer.echo(
        f"{len(report.outcomes)} prompt runs: {ran} evaluated, {reused} reused from the "
        f"ledger (new runs: {report.ledger})",
        err=True,
    )
    if report.provider_failures:
        for o in report.provider_failures:
            typer.echo(f"error: {o.suite}/{o.prompt}: {o.failure}", err=True)
        raise typer.Exit(EXIT_PROVIDER)
    if report.gate_failures:
        from ..reports._text import failed_gates_text

        for o in report.gate_failures:
            typer.echo(f"gate failed: {o.suite}/{o.prompt}: {failed_gates_text(o)}", err=True)
        raise typer.Exit(EXIT_GATE)


def _run_shard(
    shard: Any,
    settings: Settings,
    against: str | None,
    suites: list[str],
    prompts: list[str],
    provider: str | None,
    cache_mode: Any,
    options: Any,
    ledger: Any,
    output_format: EvalFormat,
    *,
    gates_all: bool,
) -> None:
    """The body of ``eval --shard K/N``: run and record the shard's share, and say what it
    did; gates and comparisons are checked after the merge."""
    with progress_bar() as update:
        if against is not None:
            from ..compare.against import record_against

            report = record_against(
                settings,
                against,
                suites=suites,
                prompts=prompts,
                provider=provider,
                cache_mode=cache_mode,
                options=options,
                on_progress=update,
                ledger=ledger,
                gates_all=gates_all,
            )
        else:
            from ..evals.run import evaluate

            report = evaluate(
                settings,
                suites=suites,
                prompts=prompts,
                provider=provider,
                cache_mode=cache_mode,
                options=options,
                on_progress=update,
                ledger=ledger,
            )
    for message in report.repaired:
        typer.echo(f"ledger: {message}", err=True)
    outcomes = report.outcomes
    if output_format is EvalFormat.json:
        rows = [
            {
                "suite": o.suite,
                "prompt": o.prompt,
                "status": o.status,
                "rows": list(o.part) if o.part is not None else None,
                "errors": o.errors,
                "calls": o.calls,
                "cached": o.cached,
            }
            for o in outcomes
        ]
        typer.echo(json.dumps({"shard": str(shard), "ledger": report.ledger, "jobs": rows}))
    else:
        for o in outcomes:
            what = f" rows {o.part[0] + 1}-{o.part[1]}" if o.part is not None else ""
            typer.echo(f"{o.status:8} {o.suite}/{o.prompt}{what}")
    ran = sum(1 for o in outcomes if o.status == "ran")
    parts = sum(1 for o in outcomes if o.part is not None)
    reused = sum(1 for o in outcomes if o.status == "reused")
    typer.echo(
        f"shard {shard}: {len(outcomes)} jobs ({parts} part(s) of split jobs): {ran} evaluated, "
        f"{reused} reused from the ledger (new runs: {report.ledger}); join the shard "
        "ledgers with `promptlib ledger merge`",
        err=True,
    )
    if report.provider_failures:
        for o in report.provider_failures:
            typer.echo(f"error: {o.suite}/{o.prompt}: {o.failure}", err=True)
        raise typer.Exit(EXIT_PROVIDER)


ledger_app = typer.Typer(
    help="Read, check and convert the ledger (evals/ledger/: index.jsonl and objects/).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(ledger_app, name="ledger")


def _record_json(record: Any) -> dict[str, Any]:
    return {**record.to_json(), "hash": record.hash}


def _record_cells(record: Any) -> tuple[list[str], list[str]]:
    """A ledger record's cells up to the provider, and its results, one fact each."""
    from ..ledger import RunRecord

    if isinstance(record, RunRecord):
        head = [record.time, "run", record.prompt.id, record.prompt.version, record.suite]
        results = [f"{k} {v.mean:.3f} (n={v.n})" for k, v in record.results.items()]
        return [*head, record.provider.name], results
    return [record.time, "release", "release", record.version, "", ""], [
        f"{len(record.prompts)} prompts"
    ]


def _records_table(rows: list[tuple[list[str], list[str]]], results_width: int | None) -> Any:
    """The records table; with ``results_width``, results are packed into lines that wide."""
    from rich.table import Table
    from rich.text import Text

    from ._layout import pack

    table = Table(box=None, header_style="bold")
    for column in ("time", "kind", "prompt / release", "version", "suite", "provider"):
        table.add_column(column, no_wrap=True)
    table.add_column("results", no_wrap=True, width=results_width)
    for head, results in rows:
        text = ", ".join(results) if results_width is None else pack(results, results_width)
        table.add_row(*map(Text, head), Text(text))
    return table


def _print_records(records: list[Any]) -> None:
    """A table when every cell but the results fits whole (results then pack onto several
    lines of their column, each metric whole); else one block per record."""
    from rich.text import Text

    from ._layout import flow, natural_width

    out = console()
    rows = [_record_cells(r) for r in records]
    table = _records_table(rows, None)
    if natural_width(out, table) > out.width:
        room = out.width - natural_width(out, _records_table(rows, 1)) + 1
        longest = max((len(fact) + 1 for _, results in rows for fact in results), default=0)
        table = _records_table(rows, room) if room >= max(longest, len("results")) else None
    if table is not None:
        out.print(table)
        return
    for head, results in rows:
        if head[1] == "release":
            facts: list[Any] = [head[0], "release", head[3]]
        else:
            facts = [head[0], "run", Text(head[2], style="bold"), *head[3:5], f"provider {head[5]}"]
        flow(out, facts)
        flow(out, results, indent=2, hanging=0)


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
    from ..ledger import RunRecord, open_project

    settings = Settings.resolve(state.project)
    view = open_project(settings, write=False).read()
    records: list[Any] = sorted([*view.runs, *view.releases], key=lambda r: (r.time, r.hash or ""))
    if kind is not None:
        records = [r for r in records if r.kind == kind.value]
    if prompt is not None:
        records = [
            r
            for r in records
            if (r.prompt.id == prompt if isinstance(r, RunRecord) else prompt in r.prompts)
        ]
    for problem in view.problems:
        typer.echo(f"warning: {problem}", err=True)
    if output_format is LedgerFormat.json:
        typer.echo(json.dumps([_record_json(r) for r in records], indent=2, ensure_ascii=False))
        return
    _print_records(records)
    typer.echo(f"{len(records)} records ({view.source})", err=True)


@ledger_app.command("verify")
@handle_errors
def ledger_verify() -> None:
    """Re-check the whole ledger: every index line (JSON, hash, schema, body), duplicates,
    a torn last line, and every object a record references (it must exist and hash to its
    name).

    Exit 1 on any problem.
    """
    from ..ledger import LegacyLedger, LineStore, open_project

    settings = Settings.resolve(state.project)
    ledger = open_project(settings, write=False)
    if isinstance(ledger, LegacyLedger):
        report: Any = LineStore(ledger.path, schema=1).verify()
    else:
        report = ledger.verify()
    for problem in report.problems:
        typer.echo(str(problem))
    typer.echo(report.summary(), err=not report.ok)
    if not report.ok:
        raise typer.Exit(EXIT_GATE)


@ledger_app.command("migrate")
@handle_errors
def ledger_migrate() -> None:
    """Convert a schema-1 ledger (evals/ledger.jsonl) into schema 2 (evals/ledger/).

    Idempotent: records already migrated are skipped. Runs whose identity can be
    re-derived from the project get today's run keys and are reused by eval; the others
    are kept as history. The schema-1 file is left in place; delete it once `promptlib
    ledger verify` passes.
    """
    from ..evals.migrate import GITATTRIBUTES_LINE, migrate

    settings = Settings.resolve(state.project)
    report = migrate(settings)
    typer.echo(
        f"migrated {report.runs} run(s) and {report.releases} release(s) from {report.source} "
        f"into {report.target} ({report.skipped} already there); {report.rekeyed} run(s) got "
        f"today's keys"
    )
    for item in report.unmatched:
        typer.echo(f"  kept as history (no matching job today): {item}")
    if report.gitattributes:
        typer.echo(f"added to .gitattributes: {GITATTRIBUTES_LINE}")
    typer.echo(
        f"next: `promptlib ledger verify`, then delete {report.source.name} (it is no longer "
        "read once evals/ledger/ exists)",
        err=True,
    )


class OutputsFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


@ledger_app.command("merge")
@handle_errors
def ledger_merge(
    shard_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="SHARD_DIR...",
            help="The shard ledgers written by `promptlib eval --shard K/N --ledger DIR`.",
        ),
    ],
    into: Annotated[
        Path | None,
        typer.Option(
            "--into",
            file_okay=False,
            help="The ledger folder to append to (default: the project's, evals/ledger).",
        ),
    ] = None,
) -> None:
    """Join shard ledgers into one ledger, identical to an unsharded run's.

    Every shard ledger is verified; split jobs are joined into one run record each; records
    the target holds already are not appended again. Exit 1, naming the shard ledger or the
    job, when a shard is missing, corrupt, of another project or plan, or when two shards
    disagree on an example.
    """
    from ..errors import LedgerError
    from ..evals.shards import library_fingerprints, merge_ledgers
    from ..library.collection import load
    from ._app import fail

    settings = Settings.resolve(state.project)
    root = settings.require_root()
    target = into if into is not None else settings.ledger_dir
    assert target is not None
    try:
        report = merge_ledgers(shard_dirs, target, library=library_fingerprints(load(root)))
    except LedgerError as exc:
        raise fail(str(exc), EXIT_GATE) from None
    for message in report.repaired:
        typer.echo(f"ledger: {message}", err=True)
    typer.echo(
        f"merged {report.shards} shard ledger(s) into {report.into}: "
        f"{len(report.appended)} run(s) appended ({len(report.joined)} joined from parts), "
        f"{len(report.present)} already there"
    )


def _short(text: Any, limit: int = 300) -> str:
    value = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    value = value.replace("\n", " ⏎ ")
    return value if len(value) <= limit else value[: limit - 1] + "…"


@app.command("outputs")
@handle_errors
def outputs_command(
    prompt_id: Annotated[str, typer.Argument(metavar="ID", help="The prompt id.")],
    suite: Annotated[str | None, typer.Option("--suite", "-s", help="Only this suite.")] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="A run key (or a unique prefix of one).")
    ] = None,
    release: Annotated[
        str | None,
        typer.Option("--release", help="The runs of the prompt as released in this version."),
    ] = None,
    worst: Annotated[
        int | None,
        typer.Option(
            "--worst", min=1, help="Only the N examples with the lowest score (failures first)."
        ),
    ] = None,
    output_format: Annotated[OutputsFormat, typer.Option("--format")] = OutputsFormat.table,
) -> None:
    """The model's answers kept in the ledger, with inputs, references and scores.

    By default, the runs of the prompt as it is in the working tree (else its latest
    runs), one per suite. No model is called.
    """
    from ..evals.evidence import examples_of, find_runs
    from ..evals.suite import load_suites
    from ..ledger import open_project
    from ..library.collection import load

    settings = Settings.resolve(state.project)
    root = settings.require_root()
    view = open_project(settings, write=False).read()
    warn_corrupt(view)
    library = load(root, strict=False)
    runs = find_runs(view, prompt_id, suite=suite, key=run, release=release, library=library)
    suites = {s.name: s for s in load_suites(root)}
    shown = []
    for record in runs:
        evidence = examples_of(view, record, suites, root)
        examples = evidence.examples
        if worst is not None:
            primary = next(iter(record.metrics), None)

            def rank(example: Any, metric: str | None = primary) -> tuple[int, float]:
                value = example.scores.get(metric) if metric else None
                return (0 if example.error else 1, value if value is not None else -1.0)

            examples = sorted(examples, key=rank)[:worst]
        shown.append((evidence, examples))
    if output_format is not OutputsFormat.table:
        documents: list[dict[str, Any]] = []
        for evidence, examples in shown:
            head = {
                "key": evidence.run.key,
                "suite": evidence.run.suite,
                "prompt": evidence.run.prompt.model_dump(),
                "provider": evidence.run.provider.model_dump(),
                "time": evidence.run.time,
                "notes": evidence.notes,
            }
            rows = [
                {
                    "id": e.id,
                    "inputs": e.inputs,
                    "outputs": e.outputs,
                    "references": e.references,
                    "scores": e.scores,
                    "error": e.error,
                    **({"verdicts": e.verdicts} if e.verdicts else {}),
                }
                for e in examples
            ]
            documents.append({"run": head, "examples": rows})
        if output_format is OutputsFormat.json:
            echo = json.dumps(documents, indent=2, ensure_ascii=False)
            typer.echo(echo)
        else:
            for document in documents:
                for row in document["examples"]:
                    typer.echo(
                        json.dumps({"run": document["run"]["key"], **row}, ensure_ascii=False)
                    )
        return
    for evidence, examples in shown:
        r = evidence.run
        means = ", ".join(f"{k} {v.mean:.3f} (n={v.n})" for k, v in r.results.items())
        typer.echo(
            f"{r.prompt.id} {r.prompt.version} in {r.suite} (run {r.key[:19]}..., {r.time}, "
            f"provider {r.provider.name}): {means}"
        )
        for note in evidence.notes:
            typer.echo(f"  note: {note}")
        for e in examples:
            scores = ", ".join(
                f"{k} {'-' if v is None else format(v, '.3g')}" for k, v in e.scores.items()
            )
            typer.echo(f"\n  [{e.id}] {scores}")
            for name, value in (e.inputs or {}).items():
                typer.echo(f"    input {name}: {_short(value)}")
            if e.error:
                typer.echo(f"    error: {_short(e.error)}")
            for answer in e.outputs or []:
                typer.echo(f"    output: {_short(answer)}")
            for metric, verdicts in e.verdicts.items():
                for verdict in verdicts:
                    typer.echo(
                        f"    judge {metric}: {verdict.get('score')} "
                        f"({_short(verdict.get('reason', ''))})"
                    )
            for reference in e.references or []:
                typer.echo(f"    reference: {_short(reference)}")
        typer.echo("")
    count = sum(len(examples) for _, examples in shown)
    typer.echo(f"{count} example(s) from {len(shown)} run(s) ({view.source})", err=True)
