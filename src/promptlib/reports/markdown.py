"""Markdown for pull requests and ``$GITHUB_STEP_SUMMARY``.

The header icon follows the exit code: ✅ only when the command exits 0. Every failed job
(with its side and reason), every prompt that could not be compared and every failed gate
is listed under the header.
"""

from __future__ import annotations

from ..compare.against import AgainstReport
from ..evals.run import EvalReport, PromptOutcome
from ..versioning.diff import LibraryDiff
from ._text import interval_text, p_text, verdict_text

__all__ = ["against_markdown", "diff_markdown", "eval_markdown"]


def _failed_gates(o: PromptOutcome) -> str:
    return ", ".join(
        f"{m} {o.results[m]['mean']:.3f} < {t:g}" for m, (t, ok) in o.gates.items() if not ok
    )


def _failure_lines(report: EvalReport, baseline: list[PromptOutcome] | None = None) -> list[str]:
    lines = [
        f"- ❌ job failed: `{o.prompt}` ({o.suite}, candidate): {o.failure}"
        for o in report.provider_failures
    ]
    lines += [
        f"- ❌ job failed: `{o.prompt}` ({o.suite}, baseline): {o.failure}" for o in baseline or []
    ]
    lines += [
        f"- ❌ gate failed: `{o.prompt}` ({o.suite}): {_failed_gates(o)}"
        for o in report.gate_failures
    ]
    return lines


def eval_markdown(report: EvalReport) -> str:
    failed = bool(report.provider_failures or report.gate_failures)
    jobs = len(report.provider_failures)
    gates = len(report.gate_failures)
    if failed:
        parts = [
            f"{jobs} job(s) failed" if jobs else "",
            f"{gates} gate(s) failed" if gates else "",
        ]
        head = f"### ❌ promptlib eval ({report.provider}): {', '.join(p for p in parts if p)}"
    else:
        head = f"### ✅ promptlib eval ({report.provider})"
    lines = [head, ""]
    failures = _failure_lines(report)
    if failures:
        lines += [*failures, ""]
    by_suite: dict[str, list[PromptOutcome]] = {}
    for outcome in report.outcomes:
        by_suite.setdefault(outcome.suite, []).append(outcome)
    for suite, outcomes in by_suite.items():
        metrics = sorted({m for o in outcomes for m in o.results})
        lines.append(f"**{suite}**")
        lines.append("")
        lines.append("| prompt | version | " + " | ".join(metrics) + " | n | status |")
        lines.append("|---|---|" + "---:|" * len(metrics) + "---:|---|")
        for o in outcomes:
            cells = []
            for m in metrics:
                value = o.results.get(m)
                text = "" if value is None else f"{value['mean']:.3f}"
                gate = o.gates.get(m)
                if gate is not None and not gate[1]:
                    text += f" ❌ (< {gate[0]:g})"
                cells.append(text)
            n = max((int(v["n"]) for v in o.results.values()), default=0)
            if o.status == "failed":
                status = f"❌ failed: {o.failure}"
            elif not o.passed:
                status = "❌ gate failed"
            else:
                status = o.status
            lines.append(
                f"| `{o.prompt}` | {o.version} | " + " | ".join(cells) + f" | {n} | {status} |"
            )
        lines.append("")
    return "\n".join(lines)


def against_markdown(report: AgainstReport) -> str:
    counts = report.counts()
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if report.passed:
        head = f"### ✅ promptlib eval --against {report.ref}"
    else:
        reasons = []
        if report.provider_failures:
            reasons.append(f"{len(report.provider_failures)} job(s) failed")
        if report.regressions:
            reasons.append(f"{len(report.regressions)} regression(s)")
        if report.undecided:
            reasons.append(f"{len(report.undecided)} not shown non-inferior (strict)")
        if report.candidate.gate_failures:
            reasons.append(f"{len(report.candidate.gate_failures)} gate(s) failed")
        head = f"### ❌ promptlib eval --against {report.ref}: {', '.join(reasons)}"
    lines = [
        head,
        "",
        f"Baseline: {report.base_label}. Provider: `{report.provider}`. Prompts: {summary}.",
        "",
    ]
    failures = _failure_lines(report.candidate, report.baseline_failures)
    if failures:
        lines += [*failures, ""]
    if report.comparisons:
        lines += [
            "| prompt | suite | metric | n | failed (base / cand) | baseline | candidate | Δ "
            "| 95% CI | p (Holm) | verdict |",
            "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|",
        ]
        undecided = {id(c) for c in report.undecided}
        for c in report.comparisons:
            mark = {
                "improved": "🟢",
                "regressed": "🔴" if c.primary else "🟠",
                "equivalent": "🔵",
                "non-inferior": "🔵",
            }.get(c.verdict, "❌" if id(c) in undecided else "⚪")
            n = f"{c.n} ({c.groups} groups)" if c.groups else str(c.n)
            lines.append(
                f"| `{c.prompt}` | {c.suite} | {c.metric} | {n} | "
                f"{c.failed_baseline} / {c.failed_candidate} | {c.baseline:.3f} | "
                f"{c.candidate:.3f} | {c.diff:+.3f} | {interval_text(c.ci)} | "
                f"{p_text(c.p_adjusted)} | {mark} {verdict_text(c)} |"
            )
        lines.append("")
    elif report.changed_count:
        lines += ["No changed prompt could be compared.", ""]
    else:
        lines += ["No prompt changed behaviour.", ""]
    for prompt_id, reason in sorted(report.not_compared.items()):
        lines.append(f"- ❌ `{prompt_id}`: changed, not compared ({reason})")
    for prompt_id, reason in sorted(report.not_comparable.items()):
        lines.append(f"- `{prompt_id}`: not comparable ({reason})")
    for prompt_id, status in sorted(report.statuses.items()):
        if status in ("added", "removed"):
            lines.append(f"- `{prompt_id}`: {status}")
    for c in report.undecided:
        lines.append(
            f"- ❌ `{c.prompt}` {c.suite} {c.metric}: not shown non-inferior (strict mode): "
            f"{verdict_text(c)}"
        )
    lines += [
        "",
        f"<sub>Paired comparison on every example both sides attempted (a failure counts as "
        f"0 on its side): mid-p McNemar with Tango's interval (0/1 metrics) or sign-flip "
        f"permutation with a bootstrap-t interval, by group where the suite names one. "
        f"Family: {report.family} comparison(s) (each suite's primary metric; the others are "
        f"[secondary]), Holm-corrected; equivalent / non-inferior within ±{report.min_effect:g} "
        f"at alpha {report.alpha:g} per family; {report.mode} mode.</sub>",
    ]
    return "\n".join(lines) + "\n"


def diff_markdown(diff: LibraryDiff) -> str:
    lines = [
        f"### promptlib diff: {diff.base.label} -> {diff.head.label}",
        "",
        f"Required package bump: **{diff.bump}**.",
        "",
    ]
    changed = diff.changed()
    if not changed:
        return "\n".join([*lines, "No prompt changed."]) + "\n"
    lines += ["| prompt | change | bump | versions | what changed |", "|---|---|---|---|---|"]
    for p in changed:
        versions = f"{p.old.version if p.old else '-'} -> {p.new.version if p.new else '-'}"
        what = "; ".join(c.what for c in p.changes)
        lines.append(f"| `{p.id}` | {p.status} | {p.bump} | {versions} | {what} |")
    for p in changed:
        if p.text_diff:
            lines += [
                "",
                f"<details><summary><code>{p.id}</code> text</summary>",
                "",
                "```diff",
                p.text_diff.rstrip("\n"),
                "```",
                "</details>",
            ]
    return "\n".join(lines) + "\n"
