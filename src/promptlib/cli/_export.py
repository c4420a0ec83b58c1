"""``promptlib export mlflow``, and the ``--mlflow`` option of ``eval`` and ``release``.

Every path ends in ``promptlib.integrations.mlflow``: this module only picks the runs or
release to send and prints what was done. A missing MLflow or tracking URI is an error
(exit 2) before any model is called.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer

from ..errors import ConfigError, PromptlibError
from ..settings import Settings
from ._app import EXIT_GATE, EXIT_PROVIDER, app, handle_errors, state, warn_corrupt

R = TypeVar("R")

export_app = typer.Typer(
    help="Send what the ledger holds to other tools (no model is called).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(export_app, name="export")

MLFLOW_HELP = (
    "Also log the runs to MLflow (params, metrics, tags, per-example artifacts), once they "
    "are recorded; [tool.promptlib.mlflow] or MLFLOW_TRACKING_URI says where. Needs "
    "promptlib[mlflow]."
)


def _quiet() -> None:
    # MLflow logs progress at INFO ("Waiting up to 300 seconds for prompt version..."),
    # between the lines this command prints.
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def print_export(result: Any, *, err: bool = False) -> None:
    """One line per run and per prompt (on stderr with ``err``: after an eval's report),
    then where they went (on stderr)."""
    for run in result.runs:
        typer.echo(f"{run.status:<9} run {run.name}  (mlflow run {run.run_id})", err=err)
    for prompt in result.prompts:
        aliases = ", ".join(prompt.aliases)
        line = f"{prompt.status:<10} prompt {prompt.name} version {prompt.version} ({aliases})"
        typer.echo(line, err=err)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    where = f"experiment {result.experiment!r}" + (
        f" (id {result.experiment_id})" if result.experiment_id else ""
    )
    typer.echo(
        f"mlflow: {len(result.runs)} run(s) in {where}, {len(result.prompts)} prompt(s) at "
        f"{result.tracking_uri}",
        err=True,
    )


@export_app.command("mlflow")
@handle_errors
def export_mlflow(
    run: Annotated[
        list[str] | None,
        typer.Option(
            "--run", metavar="KEY", help="A recorded run (its key or a unique prefix); repeatable."
        ),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            metavar="VERSION",
            help="A recorded release (v2.1.0 or 'latest'): register its prompts in the "
            "MLflow Prompt Registry with their aliases, and log the runs of the released "
            "prompts.",
        ),
    ] = None,
) -> None:
    """Log recorded runs to MLflow, or register a release in its Prompt Registry.

    Idempotent: a run already logged (tagged with its run key) is not logged again, and a
    prompt whose fingerprint is registered is only aliased. Where: tracking-uri and
    experiment in [tool.promptlib.mlflow], or MLFLOW_TRACKING_URI.
    """
    from ..integrations import mlflow
    from ..ledger import open_project

    if not run and release is None:
        raise ConfigError("give --run KEY (repeatable) or --release VERSION")
    settings = Settings.resolve(state.project)
    mlflow.require(settings.mlflow)
    _quiet()
    view = open_project(settings, write=False).read()
    warn_corrupt(view)
    if release is not None:
        result = mlflow.export_release(settings, view, release)
        if run:
            more = mlflow.export_runs(settings, view, [mlflow.find_run(view, k) for k in run])
            result.runs += more.runs
            result.notes += more.notes
    else:
        result = mlflow.export_runs(settings, view, [mlflow.find_run(view, k) for k in run or []])
    print_export(result)


def release_to_mlflow(settings: Settings, version: str) -> None:
    """``release --mlflow``: register the release just recorded (``export --release``)."""
    from ..integrations import mlflow
    from ..ledger import open_project

    _quiet()
    view = open_project(settings, write=False).read()
    try:
        result = mlflow.export_release(settings, view, version)
    except PromptlibError as exc:
        raise ConfigError(
            f"release {version} is recorded, but sending it to MLflow failed: {exc}\n"
            f"Once that is fixed: promptlib export mlflow --release v{version}"
        ) from exc
    print_export(result, err=True)


def require_mlflow(settings: Settings) -> None:
    """Fail (exit 2) now when ``--mlflow`` cannot work: no MLflow or no tracking URI."""
    from ..integrations import mlflow

    mlflow.require(settings.mlflow)


_MLFLOW = inspect.Parameter(
    "to_mlflow",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[bool, typer.Option("--mlflow", help=MLFLOW_HELP)],
)


def _refuse(options: Mapping[str, Any]) -> None:
    """The eval options under which there is nothing recorded to log."""
    if options.get("dry_run"):
        raise ConfigError("--dry-run records nothing, so it takes no --mlflow")
    if options.get("no_record"):
        raise ConfigError("--mlflow logs recorded runs: drop --no-record")
    if options.get("limit") is not None or options.get("sample") is not None:
        raise ConfigError(
            "--mlflow logs recorded runs, and a --limit or --sample run is not recorded: "
            "drop one or the other"
        )


def with_mlflow(command: Callable[..., R]) -> Callable[..., R]:
    """Give ``eval`` its ``--mlflow`` option.

    The command runs as it would without it; then the runs it used (read back from the
    ledger by ``integrations.mlflow.export_eval`` from the command's own options: suite,
    prompt, provider, repeats, against, gates_all, ledger_dir) are logged. They are logged
    too when a gate failed (exit 1) or a job failed (exit 3: the failed job has no run),
    and the command keeps its exit code; a failed export then only prints its error.
    """

    @wraps(command)
    def wrapper(*args: Any, to_mlflow: bool = False, **options: Any) -> R:
        if not to_mlflow:
            return command(*args, **options)
        _refuse(options)
        settings = Settings.resolve(state.project)
        require_mlflow(settings)
        try:
            result = command(*args, **options)
        except typer.Exit as exc:
            if exc.exit_code not in (EXIT_GATE, EXIT_PROVIDER):
                raise
            try:
                _export_eval(settings, options)
            except PromptlibError as error:
                typer.echo(f"error: mlflow: {error}", err=True)
            raise
        _export_eval(settings, options)
        return result

    signature = inspect.signature(command, eval_str=True)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), _MLFLOW]
    )
    return wrapper


def _export_eval(settings: Settings, options: Mapping[str, Any]) -> None:
    from ..integrations import mlflow
    from ..ledger import open_project

    _quiet()
    ledger = open_project(settings, folder=options.get("ledger_dir"), record=False, write=False)
    result = mlflow.export_eval(
        settings,
        ledger,
        suites=options.get("suite") or [],
        prompts=options.get("prompt") or [],
        provider=options.get("provider"),
        repeats=options.get("repeats") or 1,
        against=options.get("against"),
        gates_all=bool(options.get("gates_all")),
    )
    print_export(result, err=True)
