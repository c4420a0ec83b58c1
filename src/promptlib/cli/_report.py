"""``promptlib report``: the HTML report of a comparison or of one run, from the ledger alone.

No model is called. ``--against REF`` needs every run the comparison reads to be in the
ledger already (``eval --against REF`` records them); when one is missing the command
exits 2 and lists the missing jobs instead of evaluating them. Its exit code is the one
``eval --against`` would give for the same runs, since the report shows the same verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError, NotFoundError
from ..settings import Settings
from ._app import EXIT_GATE, EXIT_PROVIDER, app, handle_errors, state, warn_corrupt

DEFAULT_OUTPUT = Path("promptlib-report.html")


@app.command("report")
@handle_errors
def report_command(
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="REF",
            help="Compare the working tree with this release (vX.Y.Z, a git ref or 'latest') "
            "using only runs already in the ledger.",
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            metavar="KEY",
            help="One recorded run (its key or a unique prefix): means, provenance and every "
            "example, worst first.",
        ),
    ] = None,
    suite: Annotated[
        list[str] | None, typer.Option("--suite", "-s", help="Only these suites (--against).")
    ] = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", "-p", help="Only prompts matching these ids or globs."),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option("--provider", help="The provider whose runs to compare (--against)."),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", "--html", metavar="FILE", help="Where to write the HTML file."
        ),
    ] = DEFAULT_OUTPUT,
) -> None:
    """Write a self-contained HTML report from the ledger, with no model call.

    --against REF: the verdict table (sortable, filterable), a forest plot of every
    difference with its interval, for each changed prompt its template diff, the examples
    that flipped with both answers and a word diff, and its score history across releases;
    the provenance. Exit 2 when a run it needs is not in the ledger (`promptlib eval
    --against REF` records it); otherwise the exit code of `eval --against` (1 on a
    regression or failed gate, 3 on a failed job).

    --run KEY: one recorded run with all its examples, worst first.
    """
    if (against is None) == (run is None):
        raise ConfigError("give exactly one of --against REF or --run KEY")
    settings = Settings.resolve(state.project)
    if run is not None:
        if suite or prompt or provider:
            raise ConfigError("--suite, --prompt and --provider apply to --against, not --run")
        _run_report(settings, run, output)
        return
    assert against is not None
    code = _against_report(settings, against, suite or [], prompt or [], provider, output)
    if code:
        raise typer.Exit(code)


def _run_report(settings: Settings, key: str, output: Path) -> None:
    from ..evals.evidence import examples_of
    from ..evals.suite import load_suites
    from ..ledger import open_project
    from ..reports import write_output
    from ..reports.html import project_facts, run_html

    root = settings.require_root()
    view = open_project(settings, write=False).read()
    warn_corrupt(view)
    prefix = key.removeprefix("sha256:")
    matches = view.select(lambda entry: entry.key.removeprefix("sha256:").startswith(prefix))
    if len(matches) != 1:
        known = sorted({f"{e.key[:23]}  {e.prompt_id} / {e.suite}" for e in view.entries})
        shown = "\n  ".join(known[:20]) + (
            f"\n  ... and {len(known) - 20} more" if len(known) > 20 else ""
        )
        what = "no run" if not matches else f"{len(matches)} runs"
        raise NotFoundError(
            f"{what} in the ledger match {key!r}"
            + (f"; give more of the key. Runs:\n  {shown}" if known else "; the ledger has no runs")
        )
    suites = {s.name: s for s in load_suites(root)}
    evidence = examples_of(view, matches[0], suites, root)
    write_output(output, run_html(evidence, project=project_facts(root)))
    typer.echo(f"wrote {output} ({output.stat().st_size:,} bytes)", err=True)


def _against_report(
    settings: Settings,
    ref: str,
    suites: list[str],
    prompts: list[str],
    provider: str | None,
    output: Path,
) -> int:
    from ..compare.against import compare_against, estimate_against
    from ..evals.cache import CacheMode
    from ..evals.runner import EvalOptions
    from ..ledger import open_project
    from ..reports import write_output
    from ..reports.html import against_page

    root = settings.require_root()
    ledger = open_project(settings, record=False, write=False)
    # A recorded run with failed examples is shown as recorded, never completed by a call.
    recorded_only = EvalOptions(retry_errors=False)
    plan = estimate_against(
        settings,
        ref,
        suites=suites,
        prompts=prompts,
        provider=provider,
        cache_mode=CacheMode.off,
        options=recorded_only,
        ledger=ledger,
    )
    missing = [
        f"{r.job.suite.name}/{r.job.prompt.id} ({plan.side(r)}, provider {name})"
        for name, results in plan.estimate.groups
        for r in results
        if r.status != "reused"
    ]
    if missing:
        raise NotFoundError(
            f"the ledger has no run for {len(missing)} job(s) of this comparison (a report "
            f"calls no model; `promptlib eval --against {ref}` evaluates and records them):\n  "
            + "\n  ".join(missing)
        )
    report = compare_against(
        settings,
        ref,
        suites=suites,
        prompts=prompts,
        provider=provider,
        cache_mode=CacheMode.off,
        options=recorded_only,
        ledger=ledger,
        pairwise=False,
    )
    write_output(output, against_page(report, ledger.read(), root))
    typer.echo(f"wrote {output} ({output.stat().st_size:,} bytes)", err=True)
    return exit_code(report)


def exit_code(report: Any) -> int:
    """The exit code of ``eval --against`` for ``report``."""
    if report.provider_failures:
        return EXIT_PROVIDER
    return EXIT_GATE if report.failed else 0
