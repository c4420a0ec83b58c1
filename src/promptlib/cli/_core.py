"""validate, list, show, render, schema."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ConfigError, InputError
from ..settings import Settings
from ._app import EXIT_GATE, app, console, fail, handle_errors, state, warn_corrupt
from ._history import SCALE_HELP

if TYPE_CHECKING:  # the library stack is imported when a command runs, not for --help
    from ..library.collection import Library
    from ..library.prompt import Prompt


class ListFormat(str, Enum):
    table = "table"
    json = "json"


class TextFormat(str, Enum):
    text = "text"
    json = "json"


def settings() -> Settings:
    return Settings.resolve(state.project)


def current_library() -> Library:
    """The library read-only commands use: the prompts that load, the others skipped.

    One broken file must not hide the rest of the library from list, show and render; it
    is named in a warning, and asking for it shows its problems.
    """
    from ..library.collection import load, prompts_dir_for

    library = load(prompts_dir_for(settings()), strict=False)
    if library.broken:
        files = sorted({p.path for p in library.problems})
        typer.echo(
            f"warning: {len(files)} prompt file(s) do not load and were skipped "
            f"({', '.join(files)}); `promptlib validate` lists their problems",
            err=True,
        )
    return library


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@app.command()
@handle_errors
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Prompt files or folders to check (default: the project's prompts/).",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        TextFormat, typer.Option("--format", help="text for people, json for tools.")
    ] = TextFormat.text,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    use_cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache",
            help="Reuse results for unchanged files (kept in the project's .promptlib/).",
        ),
    ] = True,
) -> None:
    """Check prompt files: schema, ids, templates, includes, inputs vs variables, examples.

    Every problem is reported with file, line and key. Exit 1 if there is any error.
    """
    from ..library.collection import prompts_dir_for
    from ..library.loader import ValidationCache, scan_paths

    resolved = settings()
    for path in paths or []:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
    targets = list(paths) if paths else [prompts_dir_for(resolved)]
    cache = None
    if use_cache and resolved.cache_dir is not None:
        cache = ValidationCache(resolved.cache_dir / "validate.json")
    results = scan_paths(targets, cache)
    problems = [p for r in results for p in r.problems]
    if not paths and resolved.root is not None:
        # The whole project: also its suites against its prompts and datasets.
        from ..evals.checks import suite_problems

        problems += suite_problems(resolved.root)
    warnings = [w for r in results for w in r.warnings]
    prompts = sum(len(r.ids) for r in results)
    files = sum(r.files for r in results)
    failed = bool(problems) or (strict and bool(warnings))
    if output_format is TextFormat.json:
        echo_json(
            {
                "ok": not failed,
                "files": files,
                "prompts": prompts,
                "errors": [p.__dict__ for p in problems],
                "warnings": [w.__dict__ for w in warnings],
            }
        )
    else:
        for item in [*problems, *warnings]:
            typer.echo(str(item))
        summary = (
            f"{files} file{'s' if files != 1 else ''} checked: {prompts} valid prompts, "
            f"{len(problems)} error{'s' if len(problems) != 1 else ''}, "
            f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        )
        typer.echo(summary, err=failed)
    if failed:
        raise typer.Exit(EXIT_GATE)


@app.command("list")
@handle_errors
def list_prompts(
    tag: Annotated[str | None, typer.Option(help="Only prompts with this tag.")] = None,
    output_format: Annotated[
        ListFormat, typer.Option("--format", help="table for people, json for tools.")
    ] = ListFormat.table,
) -> None:
    """List the prompts of the library: id, version, output and description."""
    library = current_library()
    if tag is not None:
        library = library.filter(tag=tag)
    if output_format is ListFormat.json:
        echo_json(
            [
                {
                    "id": p.id,
                    "version": str(p.version),
                    "fingerprint": p.fingerprint,
                    "output": p.output.format,
                    "tags": list(p.tags),
                    "description": p.description,
                }
                for p in library.values()
            ]
        )
        return
    _print_prompt_list(list(library.values()))
    typer.echo(f"{len(library)} prompts", err=True)


# A description narrower than this wraps into a column of a few words per line: below it,
# `list` prints one block per prompt instead of a table.
_MIN_DESCRIPTION = 30


def _prompt_table(prompts: list[Prompt], tags: int, description: int) -> Any:
    """The prompt table; tags and description wrap at word breaks inside their widths."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("id", "version", "output"):
        table.add_column(column, no_wrap=True)
    # A word wider than its column (a URL, a long name) is folded, not cut.
    table.add_column("tags", width=max(tags, len("tags")), overflow="fold")
    table.add_column("description", width=max(description, len("description")), overflow="fold")
    for p in prompts:
        cells = (p.id, str(p.version), p.output.format, ", ".join(p.tags), p.description)
        table.add_row(*map(Text, cells))
    return table


def _print_prompt_list(prompts: list[Prompt]) -> None:
    """A table when ids, versions and outputs fit whole beside a readable description;
    else one block per prompt: id, version, output and tags, then the description."""
    from rich.text import Text

    from ._layout import flow, natural_width

    out = console()
    room = out.width - natural_width(out, _prompt_table(prompts, 0, 0))
    room += len("tags") + len("description")
    tags = max((len(", ".join(p.tags)) for p in prompts), default=0)
    longest = max((len(p.description) for p in prompts), default=0)
    description = longest
    # A column is never narrower than its header: tags take len("tags") even when empty.
    if max(tags, len("tags")) + description > room:
        longest_tag = max((len(t) + 1 for p in prompts for t in p.tags), default=0)
        tags = min(tags, max(longest_tag, room // 3))
        description = room - max(tags, len("tags"))
    table = _prompt_table(prompts, tags, description)
    if description >= min(longest, _MIN_DESCRIPTION) and natural_width(out, table) <= out.width:
        out.print(table)
        return
    for p in prompts:
        head = [Text(p.id, style="bold"), str(p.version), p.output.format]
        if p.tags:
            head.append(f"[{', '.join(p.tags)}]")
        flow(out, head)
        flow(out, [p.description], indent=2, hanging=0)


def _prompt_json(prompt: Prompt) -> dict[str, Any]:
    data = {
        "id": prompt.id,
        "version": str(prompt.version),
        "fingerprint": prompt.fingerprint,
        "path": str(prompt.path) if prompt.path else None,
        **prompt.metadata(),
        "behaviour": prompt.behaviour(),
        "examples": [e.model_dump(exclude_none=True) for e in prompt.examples],
    }
    data["inputs"] = {
        name: {"description": spec.description, **prompt.behaviour()["inputs"][name]}
        for name, spec in prompt.inputs.items()
    }
    if prompt.plugins:
        data["plugins"] = [
            {
                "kind": p.kind,
                "name": p.name,
                "entry_point": p.target,
                "distribution": p.distribution,
                "sha256": p.sha256,
            }
            for p in prompt.plugins
        ]
    return data


@app.command()
@handle_errors
def show(
    prompt_id: Annotated[str, typer.Argument(metavar="ID", help="The prompt id.")],
    output_format: Annotated[TextFormat, typer.Option("--format")] = TextFormat.text,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help=(
                "Show the prompt's releases instead, from the ledger: its version and "
                "fingerprint in each, whether its behaviour changed, and the mean of each "
                "metric of the run of that fingerprint, with a sparkline per suite and "
                f"metric. {SCALE_HELP}"
            ),
        ),
    ] = False,
) -> None:
    """Show one prompt: version, fingerprint, inputs, model, output, examples and text.

    With --history: the prompt in every release of the ledger, and its scores.
    """
    if history:
        _show_history(prompt_id, output_format)
        return
    prompt = current_library()[prompt_id]
    if output_format is TextFormat.json:
        echo_json(_prompt_json(prompt))
        return
    lines = [
        f"{prompt.id} {prompt.version}",
        f"  {prompt.description}",
        f"  fingerprint: {prompt.fingerprint}",
    ]
    if prompt.path:
        lines.append(f"  file: {prompt.path}")
    if prompt.tags:
        lines.append(f"  tags: {', '.join(prompt.tags)}")
    if prompt.owner:
        lines.append(f"  owner: {prompt.owner}")
    lines.append("inputs:")
    for name, spec in prompt.inputs.items():
        if spec.required:
            flags = "required"
        elif "default" in spec.model_fields_set:
            flags = f"optional, default {spec.default!r}"
        else:
            flags = "optional, no default (undefined when not given)"
        enum = f", one of {spec.enum}" if spec.enum else ""
        lines.append(f"  {name} ({spec.type}, {flags}{enum}): {spec.description}")
    model = prompt.model.model_dump(exclude_none=True)
    if model:
        lines.append("model: " + ", ".join(f"{k}={v}" for k, v in model.items()))
    output = prompt.output
    lines.append(f"output: {output.format}")
    if output.labels:
        lines.append(f"  labels ({len(output.labels)}): {', '.join(output.labels)}")
    if prompt.partials:
        lines.append(f"partials: {', '.join(prompt.partials)}")
    if prompt.plugins:
        lines.append("plugins:")
        for plugin in prompt.plugins:
            lines.append(
                f"  {plugin.kind} {plugin.name}: {plugin.target} from {plugin.distribution} "
                f"({plugin.sha256[:19]})"
            )
    lines.append(f"examples: {len(prompt.examples)}")
    for i, example in enumerate(prompt.examples):
        source = f"  ({example.source})" if example.source else ""
        lines.append(f"  [{i}] {json.dumps(example.inputs, ensure_ascii=False)[:100]}{source}")
    if prompt.messages is not None:
        for message in prompt.messages:
            lines.append(f"--- {message.role} ---")
            lines.append(message.content.rstrip("\n"))
    else:
        lines.append("--- template ---")
        lines.append((prompt.template or "").rstrip("\n"))
    typer.echo("\n".join(lines))


def _show_history(prompt_id: str, output_format: TextFormat) -> None:
    """``show ID --history``: the prompt's releases and scores (``prompt_history``)."""
    from ..ledger import open_project
    from ..versioning.scores import prompt_history
    from ._history import render_history

    view = open_project(settings(), write=False).read()
    warn_corrupt(view)
    library = current_library()
    result = prompt_history(view, prompt_id, known=[*library, *library.broken])
    if output_format is TextFormat.json:
        echo_json(result.to_json())
    else:
        typer.echo(render_history(result))


def _parse_var(prompt: Prompt, item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--var {item!r}: write it as NAME=VALUE")
    name, _, raw = item.partition("=")
    spec = prompt.inputs.get(name)
    if spec is None:
        return name, raw  # reported by input validation, with the declared names
    try:
        if spec.type == "integer":
            return name, int(raw)
        if spec.type == "number":
            return name, float(raw)
        if spec.type == "boolean":
            lowered = raw.lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(raw)
            return name, lowered in {"true", "1", "yes"}
        if spec.type in ("array", "object"):
            return name, json.loads(raw)
    except ValueError:
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        raise ConfigError(f"--var {name}: {shown!r} is not a valid {spec.type}") from None
    except RecursionError:
        raise ConfigError(
            f"--var {name}: the JSON value is nested too deeply to read; pass flatter data"
        ) from None
    return name, raw


def _read_vars(path: Path) -> dict[str, Any]:
    from .._yaml import read_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--vars {path}: {exc.strerror}") from None
    doc = read_yaml(text, str(path))
    if doc.problems:
        raise ConfigError("\n".join(str(p) for p in doc.problems))
    if not isinstance(doc.data, dict):
        raise ConfigError(f"--vars {path}: expected a mapping of input names to values")
    return doc.data


@app.command()
@handle_errors
def render(
    prompt_id: Annotated[str, typer.Argument(metavar="ID", help="The prompt id.")],
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            help="An input as NAME=VALUE (repeatable); converted to the declared type "
            "(arrays and objects as JSON).",
        ),
    ] = None,
    vars_file: Annotated[
        Path | None,
        typer.Option("--vars", help="A YAML or JSON file mapping input names to values."),
    ] = None,
    example: Annotated[
        int | None,
        typer.Option("--example", help="Render the prompt's example N (0-based, as `show` lists)."),
    ] = None,
    output_format: Annotated[TextFormat, typer.Option("--format")] = TextFormat.text,
) -> None:
    """Render a prompt with inputs from --var, --vars or one of its examples.

    --var values override --vars; --example cannot be combined with either.
    """
    prompt = current_library()[prompt_id]
    if example is not None:
        if var or vars_file:
            raise ConfigError("--example cannot be combined with --var or --vars")
        if not 0 <= example < len(prompt.examples):
            raise ConfigError(
                f"{prompt.id} has {len(prompt.examples)} example(s); --example takes 0 to "
                f"{len(prompt.examples) - 1}"
            )
        values = dict(prompt.examples[example].inputs)
    else:
        values = _read_vars(vars_file) if vars_file else {}
        values.update(_parse_var(prompt, item) for item in var or [])
    try:
        messages = prompt.render(**values)
    except InputError as exc:
        raise fail(
            "\n".join([f"{prompt.id}: invalid inputs", *(f"  {p}" for p in exc.problems)])
        ) from None
    if output_format is TextFormat.json:
        echo_json(
            {
                "id": prompt.id,
                "version": str(prompt.version),
                "fingerprint": prompt.fingerprint,
                "messages": [m.to_dict() for m in messages],
            }
        )
    elif prompt.is_chat:
        typer.echo("\n\n".join(f"[{m.role}]\n{m.content}" for m in messages))
    else:
        typer.echo(messages[0].content)


@app.command()
@handle_errors
def schema(
    suite: Annotated[
        bool, typer.Option("--suite", help="The schema of suite files (evals/suites/*.yaml).")
    ] = False,
) -> None:
    """Print the JSON Schema of prompt files, or of suite files with --suite (for editor
    completion and checks; the committed copies are in schema/)."""
    if suite:
        from ..evals.suite import suite_file_schema

        echo_json(suite_file_schema())
        return
    from ..library.schema import prompt_file_schema

    echo_json(prompt_file_schema())
