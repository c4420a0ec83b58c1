"""``promptlib judge calibrate``: a judge's agreement with human labels, recorded."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer

from ..settings import Settings
from ._app import app, handle_errors, progress_bar, state
from ._eval import CacheOption

judge_app = typer.Typer(
    help="Judge prompts: calibrate a judge against human labels.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(judge_app, name="judge")


class CalibrateFormat(str, Enum):
    table = "table"
    json = "json"


class Scale(str, Enum):
    binary = "binary"
    one_to_five = "1-5"


@judge_app.command("calibrate")
@handle_errors
def calibrate_command(
    suite: Annotated[str, typer.Argument(metavar="SUITE", help="A calibration suite.")],
    labels: Annotated[
        str, typer.Option("--labels", help="The dataset column that holds the human label.")
    ],
    scale: Annotated[Scale, typer.Option("--scale", help="The judge's scale.")] = Scale.binary,
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Compute, but append nothing to the ledger.")
    ] = False,
    cache: Annotated[
        CacheOption, typer.Option("--cache", help="Response cache mode.")
    ] = CacheOption.on,
    output_format: Annotated[CalibrateFormat, typer.Option("--format")] = CalibrateFormat.table,
) -> None:
    """Score a human-labelled dataset with a judge and report how far they agree.

    SUITE evaluates one judge prompt with its judge provider; each verdict is compared
    with the --labels column: Cohen's kappa with a 95% bootstrap interval, raw agreement,
    Spearman's rho, the judge's bias and the confusion matrix. The result is recorded in
    the ledger against the judge prompt's fingerprint; judge metrics warn when their judge
    has no calibration or one below [tool.promptlib.judges] min-kappa.
    """
    from ..evals.cache import CacheMode
    from ..evals.calibrate import calibrate, describe
    from ..ledger import open_project

    settings = Settings.resolve(state.project)
    ledger = open_project(settings, record=not no_record)
    with progress_bar() as update:
        result = calibrate(
            settings,
            suite,
            labels,
            scale=scale.value,
            cache_mode=CacheMode(cache.value),
            ledger=ledger,
            on_progress=update,
        )
    for note in result.notes:
        typer.echo(f"ledger: {note}", err=True)
    found = result.agreement
    if output_format is CalibrateFormat.json:
        document = {
            "suite": result.suite,
            "judge": {"prompt": result.judge, "version": result.judge_version},
            "provider": result.provider,
            "labels": result.labels,
            "scale": result.scale,
            **describe(found),
            "malformed": result.malformed,
            "failed": result.failed,
            "record": {"key": result.record.key, "status": result.status},
        }
        typer.echo(json.dumps(document, indent=2))
        return

    def figure(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.3f}"

    interval = (
        f"[{found.kappa_low:.3f}, {found.kappa_high:.3f}]"
        if found.kappa_low is not None and found.kappa_high is not None
        else "undefined"
    )
    typer.echo(
        f"judge {result.judge} {result.judge_version} with provider {result.provider} "
        f"against {result.labels!r} in suite {result.suite} ({result.scale} scale)"
    )
    typer.echo(f"  n                {found.n}")
    typer.echo(f"  raw agreement    {found.raw:.3f}")
    typer.echo(f"  Cohen's kappa    {figure(found.kappa)}  95% bootstrap interval {interval}")
    typer.echo(f"  Spearman's rho   {figure(found.spearman)}")
    typer.echo(f"  bias (judge - human mean)  {found.bias:+.3f}")
    if result.malformed or result.failed:
        typer.echo(
            f"  left out: {result.malformed} malformed verdict(s), {result.failed} failed "
            "example(s)"
        )
    width = max(len(str(c)) for c in found.categories) + 2
    typer.echo("  confusion (rows: human, columns: judge)")
    typer.echo("    " + " " * width + "".join(f"{c:>{width + 4}}" for c in found.categories))
    for category, row in zip(found.categories, found.confusion, strict=True):
        typer.echo(f"    {category:>{width}}" + "".join(f"{v:>{width + 4}}" for v in row))
    typer.echo(f"calibration {result.status}: run {result.record.key[:19]}...")
