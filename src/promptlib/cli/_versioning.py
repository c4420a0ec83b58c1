"""diff, check, release, and the --against half of eval."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..settings import Settings
from ._app import EXIT_GATE, EXIT_PROVIDER, app, console, handle_errors, progress_bar, state


class DiffFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command()
@handle_errors
def diff(
    ref: Annotated[
        str | None,
        typer.Argument(help="A release (v2.0.0 / 2.0.0) or git ref; default: the latest release."),
    ] = None,
    output_format: Annotated[DiffFormat, typer.Option("--format")] = DiffFormat.table,
    text: Annotated[bool, typer.Option("--text/--no-text", help="Show text diffs.")] = True,
) -> None:
    """Semantic diff against a release: what changed per prompt and the semver bump it needs."""
    from ..ledger import open_project
    from ..library.collection import load
    from ..reports import render
    from ..versioning.diff import diff_snapshots
    from ..versioning.history import resolve_against, worktree_snapshot

    settings = Settings.resolve(state.project)
    root = settings.require_root()
    base = resolve_against(settings, ref, open_project(settings, write=False).read())
    result = diff_snapshots(base, worktree_snapshot(root, load(root)))
    if output_format is not DiffFormat.table:
        typer.echo(render(result, output_format.value))
        return
    typer.echo(f"{base.label} -> working tree: required bump {result.bump}")
    for p in result.changed():
        versions = f"{p.old.version if p.old else '-'} -> {p.new.version if p.new else '-'}"
        typer.echo(f"\n{p.id}: {p.status}, {p.bump} ({versions})")
        for change in p.changes:
            typer.echo(f"  [{change.bump}] {change.what}")
        if text and p.text_diff:
            typer.echo("  " + p.text_diff.rstrip("\n").replace("\n", "\n  "))
    unchanged = sum(1 for p in result.prompts if p.status == "unchanged")
    typer.echo(f"\n{len(result.changed())} changed, {unchanged} unchanged", err=True)


@app.command()
@handle_errors
def check(
    against: Annotated[
        str | None,
        typer.Option(
            "--against", help="Release or git ref to check against (default: latest release)."
        ),
    ] = None,
) -> None:
    """The pull-request gate: valid files, big-enough version bumps, a CHANGELOG entry.

    Exit 1 listing each problem with the version that would satisfy it.
    """
    from ..versioning.gate import check as run_check

    settings = Settings.resolve(state.project)
    report = run_check(settings, against)
    for problem in report.validation:
        typer.echo(str(problem))
    for message in report.problems:
        typer.echo(f"check: {message}")
    if report.base is None and report.ok:
        typer.echo("check passed: the library is valid (no release in the ledger yet)", err=True)
        return
    if not report.ok:
        count = len(report.problems) + len(report.validation)
        typer.echo(f"check failed: {count} problem(s)", err=True)
        raise typer.Exit(EXIT_GATE)
    assert report.diff is not None
    typer.echo(
        f"check passed against {report.base.label if report.base else '-'}: "
        f"{len(report.diff.changed())} prompt(s) changed, required bump {report.diff.bump}",
        err=True,
    )


@app.command()
@handle_errors
def release(
    bump: Annotated[
        str, typer.Option(help="auto (computed from the diff), major, minor or patch.")
    ] = "auto",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change no file.")
    ] = False,
    commit: Annotated[
        bool,
        typer.Option("--commit", help="Commit the release and tag it vX.Y.Z (never pushes)."),
    ] = False,
    provider: Annotated[str | None, typer.Option(help="Provider for the evaluation.")] = None,
    to_mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow",
            help="Then register the released prompts in the MLflow Prompt Registry (alias "
            "vX-Y-Z, and [tool.promptlib.mlflow] alias) and log their runs; needs "
            "promptlib[mlflow].",
        ),
    ] = False,
) -> None:
    """Release the library: bump versions, evaluate, write CHANGELOG, record the release."""
    from ..versioning.release import release as run_release
    from ._export import release_to_mlflow, require_mlflow

    settings = Settings.resolve(state.project)
    if to_mlflow:
        if dry_run:
            from ..errors import ConfigError

            raise ConfigError("--dry-run changes nothing, so it takes no --mlflow")
        require_mlflow(settings)
    with progress_bar(enabled=not dry_run) as update:
        plan = run_release(
            settings, bump, dry_run=dry_run, commit=commit, provider=provider, on_progress=update
        )
    if plan.resumed:
        typer.echo(
            f"release {plan.version} was recorded by an interrupted run; committed "
            f"{plan.committed} and tagged {plan.tagged} (not pushed)"
        )
        if to_mlflow:
            release_to_mlflow(settings, plan.version)
        return
    head = f"release {plan.version}" + (
        f" ({plan.bump} after {plan.previous})" if plan.previous else " (first release)"
    )
    typer.echo(("dry run: " if dry_run else "") + head)
    for prompt_id, (declared, final) in sorted(plan.prompt_versions.items()):
        if declared != final:
            typer.echo(f"  {prompt_id}: {declared} -> {final}")
    typer.echo("\n" + plan.changelog.rstrip("\n"))
    if dry_run:
        typer.echo("\n(dry run: no file changed)", err=True)
        return
    typer.echo(f"\nwrote: {', '.join(plan.files)}", err=True)
    if plan.tagged:
        typer.echo(f"committed {plan.committed} and tagged {plan.tagged} (not pushed)", err=True)
    else:
        typer.echo(
            f"next: git commit -am 'Release {plan.version}' && git tag -a v{plan.version} "
            f"-m 'Release {plan.version}' (or re-run with --commit)",
            err=True,
        )
    if to_mlflow:
        release_to_mlflow(settings, plan.version)


_AGAINST_COLUMNS = (
    "prompt",
    "suite",
    "metric",
    "n",
    "base",
    "cand",
    "Δ",
    "95% CI",
    "p (Holm)",
    "verdict",
)
_RIGHT_ALIGNED = frozenset({"n", "base", "cand", "Δ", "p (Holm)"})
_VERDICT_COLOURS = {
    "improved": "green",
    "equivalent": "green",
    "non-inferior": "green",
    "regressed": "red",
}
_Row = tuple[dict[str, str], str]


def _against_rows(report: Any) -> list[_Row]:
    """Each comparison's cells by column name, and the style of its verdict."""
    from ..reports._text import interval_text, p_text, verdict_text

    rows: list[_Row] = []
    for c in report.comparisons:
        colour = _VERDICT_COLOURS.get(c.verdict, "") if c.primary else "dim"
        if c in report.undecided:
            colour = "red"
        cells = (
            c.prompt,
            c.suite,
            c.metric,
            str(c.n) if c.groups is None else f"{c.n} ({c.groups} groups)",
            f"{c.baseline:.3f}",
            f"{c.candidate:.3f}",
            f"{c.diff:+.3f}",
            interval_text(c.ci),
            p_text(c.p_adjusted),
            verdict_text(c),
        )
        rows.append((dict(zip(_AGAINST_COLUMNS, cells, strict=True)), colour))
    return rows


def _comparison_table(
    rows: list[_Row], columns: tuple[str, ...], widths: dict[str, int] | None = None, **options: Any
) -> Any:
    """A table of ``columns`` with no cell wrapped; ``widths`` fixes column widths."""
    from rich.table import Table
    from rich.text import Text

    widths = widths or {}
    table = Table(box=None, header_style="bold", **options)
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in _RIGHT_ALIGNED else "left",
            no_wrap=True,
            width=widths.get(column),
        )
    for cells, colour in rows:
        table.add_row(*(Text(cells[c], style=colour if c == "verdict" else "") for c in columns))
    return table


def _print_comparisons(out: Any, rows: list[_Row]) -> None:
    """The comparisons as the widest layout that fits ``out`` with no cell cut.

    Three layouts, widest first: one table row per comparison; a heading per prompt and
    suite with a table row per metric under it; and, when even that is too wide, one
    block per metric under each heading, its numbers flowed onto as many lines as needed.
    Every layout prints every fact of the first.
    """
    from itertools import groupby

    from rich.cells import cell_len
    from rich.padding import Padding
    from rich.text import Text

    from ._layout import flow, natural_width

    table = _comparison_table(rows, _AGAINST_COLUMNS)
    if natural_width(out, table) <= out.width:
        out.print(table)
        return
    groups = [
        (Text.assemble((prompt, "bold"), " · ", suite), list(members))
        for (prompt, suite), members in groupby(
            rows, key=lambda row: (row[0]["prompt"], row[0]["suite"])
        )
    ]
    heading = Text.assemble(("prompt", "bold"), " · ", ("suite", "bold"))
    inner = _AGAINST_COLUMNS[2:]
    widths = {c: max(cell_len(c), *(cell_len(cells[c]) for cells, _ in rows)) for c in inner}
    tables = [
        _comparison_table(members, inner, widths=widths, pad_edge=False, show_header=False)
        for _, members in groups
    ]
    header = _comparison_table([], inner, widths=widths, pad_edge=False)
    indent = 2
    if max(natural_width(out, header) + indent, *(h.cell_len for h, _ in groups)) <= out.width:
        out.print(heading)
        out.print(Padding(header, (0, 0, 0, indent), expand=False))
        for (title, _), group_table in zip(groups, tables, strict=True):
            out.print(title)
            out.print(Padding(group_table, (0, 0, 0, indent), expand=False))
        return
    for title, members in groups:
        flow(out, [title])
        for cells, colour in members:
            metric = Text(cells["metric"], style="bold")
            flow(out, [metric, Text(cells["verdict"], style=colour)], indent=indent)
            facts = [f"{c} {cells[c]}" for c in ("n", "base", "cand", "Δ", "95% CI", "p (Holm)")]
            flow(out, facts, indent=2 * indent, hanging=0)


def _print_against_table(report: Any) -> None:
    from rich.markup import escape

    out = console()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items()))
    out.print(f"against {report.base_label}: {counts}")
    if report.comparisons:
        _print_comparisons(out, _against_rows(report))
        out.print(
            f"family: {report.family} gated comparisons (Holm); alpha {report.alpha}, "
            f"margin ±{report.min_effect}, mode {report.mode}"
        )
    for r in report.pairwise:
        out.print(
            escape(
                f"pairwise {r.judge} ({r.judge_prompt}, {r.provider}) {r.prompt} · {r.suite}: "
                f"candidate {r.candidate}, baseline {r.baseline}, ties {r.ties}, "
                f"inconsistent {r.inconsistent} of {r.n}"
                + (f" ({r.errors} failed)" if r.errors else "")
                + f"; sign test p (Holm) {r.p_adjusted:.3g}: {r.verdict}; position bias "
                f"{r.position_bias_rate:.0%}"
            )
        )
    for c in report.undecided:
        line = f"{c.prompt}: {c.suite}/{c.metric} not shown non-inferior (strict mode)"
        out.print(f"[red]{escape(line)}[/red]")
    for o in report.candidate.provider_failures:
        out.print(f"[red]{escape(f'{o.prompt}: job failed in {o.suite}: {o.failure}')}[/red]")
    for o in report.baseline_failures:
        out.print(
            f"[red]{escape(f'{o.prompt}: baseline job failed in {o.suite}: {o.failure}')}[/red]"
        )
    for prompt_id, reason in sorted(report.not_compared.items()):
        out.print(f"[red]{escape(f'{prompt_id}: changed, not compared ({reason})')}[/red]")
    for prompt_id, reason in sorted(report.not_comparable.items()):
        out.print(f"{prompt_id}: not comparable ({reason})")
    for prompt_id, status in sorted(report.statuses.items()):
        if status in ("added", "removed"):
            out.print(f"{prompt_id}: {status}")


def run_against(
    ref: str,
    suites: list[str],
    prompts: list[str],
    provider: str | None,
    cache: Any,
    options: Any,
    output_format: str,
    output: Path | None,
    ledger: Any,
    *,
    gates_all: bool = False,
    html: Path | None = None,
) -> None:
    """The body of ``eval --against`` (called by the eval command)."""
    from rich.text import Text

    from ..compare.against import compare_against
    from ..reports import render, write_output
    from ..reports._text import gates_text, subset_text
    from ..reports.markdown import against_markdown

    settings = Settings.resolve(state.project)
    with progress_bar() as update:
        report = compare_against(
            settings,
            ref,
            suites=suites,
            prompts=prompts,
            provider=provider,
            cache_mode=cache,
            options=options,
            on_progress=update,
            ledger=ledger,
            gates_all=gates_all,
        )
    for message in report.candidate.repaired:
        typer.echo(f"ledger: {message}", err=True)
    for message in report.candidate.warnings:
        typer.echo(f"warning: {message}", err=True)
    if html is not None:
        from ..reports.html import against_page

        write_output(html, against_page(report, ledger.read(), settings.root))
        typer.echo(f"wrote {html}", err=True)
    markdown = against_markdown(report, full_report=str(html) if html is not None else None)
    text = markdown if output_format in ("table", "markdown") else render(report, output_format)
    if output_format == "table":
        _print_against_table(report)
        notes = [gates_text(report)]
        if report.subset is not None:
            notes.append(subset_text(report.subset, compared=True))
        for note in notes:  # wrapped at the console's width, at word breaks
            console().print(Text(note))
    else:
        typer.echo(text)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    if output is not None:
        write_output(output, text)
    for o in report.candidate.provider_failures:
        typer.echo(f"error: {o.suite}/{o.prompt}: {o.failure}", err=True)
    for o in report.baseline_failures:
        typer.echo(f"error: {o.suite}/{o.prompt} (baseline): {o.failure}", err=True)
    for prompt_id, reason in sorted(report.not_compared.items()):
        typer.echo(f"error: {prompt_id}: changed, not compared ({reason})", err=True)
    if report.provider_failures:
        raise typer.Exit(EXIT_PROVIDER)
    for c in report.regressions:
        typer.echo(
            f"regressed: {c.prompt} {c.suite} {c.metric} {c.baseline:.3f} -> "
            f"{c.candidate:.3f} (p_holm={c.p_adjusted:.3g})",
            err=True,
        )
    from ..reports._text import failed_gates_text, interval_text

    for c in report.undecided:
        typer.echo(
            f"not shown non-inferior (strict mode): {c.prompt} {c.suite} {c.metric} "
            f"{c.diff:+.3f}; its {1 - 2 * report.alpha / report.family:.1%} interval "
            f"{interval_text(c.tost)} reaches below -{report.min_effect:g}"
            + (f"; {c.n_needed:,} {c.unit} needed" if c.n_needed is not None else ""),
            err=True,
        )
    for o in report.candidate.outcomes:
        if o.flaky and not o.flaky_gated:
            typer.echo(f"warning: {o.suite}/{o.prompt}: {o.flaky_text()}", err=True)
    for o in report.candidate.gate_failures:
        typer.echo(f"gate failed: {o.suite}/{o.prompt}: {failed_gates_text(o)}", err=True)
    if report.failed:
        raise typer.Exit(EXIT_GATE)


manifest_app = typer.Typer(
    help="Pin prompts in a consuming project: prompt_manifest.yaml and its lock. These "
    "commands check the installed promptlib package (what your code imports), not a "
    "project's prompts/ folder.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(manifest_app, name="manifest")

ManifestOption = Annotated[
    Path,
    typer.Option("--manifest", "-m", help="The manifest file.", dir_okay=False),
]


@manifest_app.command("lock")
@handle_errors
def manifest_lock(manifest: ManifestOption = Path("prompt_manifest.yaml")) -> None:
    """Resolve the manifest against the installed library and write prompt_manifest.lock."""
    from ..consumers.manifest import lock_manifest, lock_path_for

    lock = lock_manifest(manifest)
    for prompt_id, entry in lock["prompts"].items():
        typer.echo(f"{prompt_id} {entry['version']} {entry['fingerprint']}")
    typer.echo(
        f"locked {len(lock['prompts'])} prompt(s) of promptlib {lock['library']['version']} "
        f"in {lock_path_for(manifest)}",
        err=True,
    )


@manifest_app.command("check")
@handle_errors
def manifest_check(manifest: ManifestOption = Path("prompt_manifest.yaml")) -> None:
    """Fail (exit 1) on any drift between the manifest, its lock and the installed library."""
    from ..consumers.manifest import installed_version, verify_manifest

    result = verify_manifest(manifest)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    drifts = result.drifts
    for drift in drifts:
        typer.echo(f"drift: {drift}")
    if drifts:
        typer.echo(f"manifest check failed: {len(drifts)} drift(s)", err=True)
        raise typer.Exit(EXIT_GATE)
    typer.echo(
        f"manifest check passed: promptlib {installed_version()} matches {manifest}", err=True
    )
