"""import: prompts from promptfoo, Prompty and dotprompt as promptlib prompt files."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ConfigError
from ..settings import Settings
from ._app import EXIT_GATE, app, handle_errors, state

if TYPE_CHECKING:
    from ..importers import ImportResult


class ImportFormat(str, Enum):
    promptfoo = "promptfoo"
    prompty = "prompty"
    dotprompt = "dotprompt"


@app.command("import")
@handle_errors
def import_prompts(
    source_format: Annotated[
        ImportFormat, typer.Argument(metavar="FORMAT", help="promptfoo, prompty or dotprompt.")
    ],
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            help="Source files, or folders to take every file of that format from.",
            show_default=False,
        ),
    ],
    into: Annotated[
        Path | None,
        typer.Option(
            "--into",
            help="The folder under prompts/ to write to (default: the project's "
            "prompts/imported). A prompt's id is its path there.",
            file_okay=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite prompt files that already exist.")
    ] = False,
) -> None:
    """Convert prompts from another tool into prompt files that validate.

    Every file is converted, or none is written: the report lists, per file, the prompts
    made and what could not be carried over, or why the file cannot be converted. Exit 1
    when any file failed (nothing is written then), 2 for usage errors.
    """
    from ..importers import import_files

    if into is None:
        prompts = Settings.resolve(state.project).prompts_dir
        if prompts is None:
            raise ConfigError(
                "not inside a promptlib project (a folder with pyproject.toml and prompts/): "
                "run the import there, or pass --into prompts/AREA"
            )
        into = prompts / "imported"
    result = import_files(source_format.value, paths, into, force=force)
    _report(result)
    if not result.ok:
        raise typer.Exit(EXIT_GATE)


def _report(result: ImportResult) -> None:
    from ..library.loader import display_path

    for outcome in result.files:
        source = display_path(outcome.source.absolute())
        if outcome.ok:
            for prompt in outcome.prompts:
                target = display_path(prompt.path)
                typer.echo(f"converted  {source} -> {target} ({prompt.id})")
            for note in outcome.notes:
                typer.echo(f"    note: {note}")
        else:
            typer.echo(f"failed     {source}")
            for problem in outcome.problems:
                typer.echo(f"    {problem}")
    failed = len(result.failed)
    converted = len(result.files) - failed
    summary = (
        f"{len(result.files)} file{'s' if len(result.files) != 1 else ''}: "
        f"{converted} converted, {failed} failed"
    )
    if failed:
        typer.echo(
            f"{summary}; nothing was written (fix or leave out the failed files and import again)",
            err=True,
        )
    else:
        prompts = len(result.written)
        typer.echo(
            f"{summary}; {prompts} prompt file{'s' if prompts != 1 else ''} written under "
            f"{display_path(result.into.absolute())}",
            err=True,
        )
