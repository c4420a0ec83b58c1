"""The typer application, global options and the error-to-exit-code mapping."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from ..errors import DriftError, LoadError, PromptlibError, ProviderError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_PROVIDER, EXIT_INTERNAL = 0, 1, 2, 3, 4

app = typer.Typer(
    name="promptlib",
    help=(
        "A prompt library that behaves like software: validate typed YAML prompts, render "
        "them, evaluate them on real datasets into a JSON ledger, compute the semantic "
        "version bump a change needs, compare a change with the last release, and lock "
        "prompts in downstream projects.\n\n"
        "Commands work on the project that contains the current directory (the nearest "
        "folder with pyproject.toml and prompts/), or on --project DIR. Outside a project, "
        "list, show and render use the library bundled with the installed package.\n\n"
        "Exit codes: 0 passed; 1 a gate failed (invalid files, regression, threshold, "
        "version bump, manifest drift); 2 usage or input error; 3 provider failure beyond "
        "the error budget; 4 internal error (a bug in promptlib: please report it). Set "
        "PROMPTLIB_DEBUG=1 to see tracebacks."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: rendering it with rich costs ~50 ms of imports on every --help.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class State:
    """Options given before the command name."""

    project: Path | None = None


state = State()


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"promptlib {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="The project folder to work on (default: found from the current directory).",
            file_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the installed promptlib version and exit.",
        ),
    ] = False,
) -> None:
    state.project = project


def console() -> Any:
    """A rich console for stdout: $COLUMNS, else the terminal's width, else 200 when piped.

    Tables choose their layout from ``console().width``, so a narrow terminal (or
    ``COLUMNS=80`` in a pipe or a test) gets the narrow layout instead of cut cells.
    """
    import sys

    from rich.console import Console

    columns = os.environ.get("COLUMNS", "")
    wide = not sys.stdout.isatty() and not columns.isdigit()
    # A pipe with no $COLUMNS gets wide lines: rich would otherwise use 80, or the width of
    # whatever terminal stderr or stdin is attached to.
    return Console(width=200 if wide else None)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on an interactive terminal; nothing when piped or in CI.

    Yields the ``on_progress(done, total)`` callback to hand to the library, or None.
    """
    import sys

    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task("evaluating", total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update


def warn_corrupt(view: Any) -> None:
    """Say which ledger lines a read-only command skipped (commands that evaluate, compare
    or release refuse them instead: ``LedgerView.refuse_corrupt``)."""
    for problem in view.corrupt:
        typer.echo(f"warning: ledger line skipped: {problem}", err=True)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


_PROJECT = inspect.Parameter(
    "project",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="The project folder to work on (default: found from the current directory).",
            file_okay=False,
        ),
    ],
)


def _exit_code(exc: PromptlibError) -> int:
    if isinstance(exc, LoadError | DriftError):
        return EXIT_GATE
    if isinstance(exc, ProviderError):
        return EXIT_PROVIDER
    return EXIT_USAGE


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Map errors to exit codes and messages, without tracebacks; accept ``--project``.

    A ``PromptlibError`` is the user's to fix (exit 1 for a failed gate, 2 for bad input, 3
    for a provider failure); any other exception is a bug in promptlib (exit 4), never
    reported as a failed gate. ``PROMPTLIB_DEBUG=1`` re-raises either, with its traceback.
    Every command also takes ``--project DIR`` after its name, like before it.
    """

    @wraps(func)
    def wrapper(*args: Any, project: Path | None = None, **kwargs: Any) -> Any:
        if project is not None:
            state.project = project
        debug = os.environ.get("PROMPTLIB_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except PromptlibError as exc:
            if debug:
                raise
            raise fail(str(exc), _exit_code(exc)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if debug:
                raise
            raise fail(
                f"promptlib hit a bug: {type(exc).__name__}: {exc}\n"
                "This is not a problem with your files or a failed gate. Please report it, "
                "with the command you ran; rerun with PROMPTLIB_DEBUG=1 for the traceback.",
                EXIT_INTERNAL,
            ) from None

    signature = inspect.signature(func, eval_str=True)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), _PROJECT]
    )
    return wrapper  # type: ignore[return-value]
