"""Markdown for pull requests and ``$GITHUB_STEP_SUMMARY``.

The header icon follows the exit code: ✅ only when the command exits 0. Every failed job
(with its side and reason), every prompt that could not be compared and every failed gate
is listed under the header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..compare.against import AgainstReport
from ..compare.flips import Flip
from ..compare.stats import IMPROVED, REGRESSED
from ..evals.run import EvalReport, PromptOutcome
from ..versioning.diff import LibraryDiff
from ._text import (
    failed_gates_text,
    gates_text,
    interval_text,
    p_text,
    status_text,
    subset_text,
    verdict_text,
)

__all__ = ["against_markdown", "diff_markdown", "eval_markdown"]


def _failed_gates(o: PromptOutcome) -> str:
    return failed_gates_text(o)


def _flaky_lines(report: EvalReport) -> list[str]:
    """A warning for each flaky prompt that does not fail the gate (gated ones are listed
    as failed gates)."""
    return [
        f"- ⚠️ `{o.prompt}` ({o.suite}): {o.flaky_text()}"
        for o in report.outcomes
        if o.flaky and not o.flaky_gated
    ]


def _consistency_lines(report: EvalReport) -> list[str]:
    """The consistency of each run with repeats: one row per prompt and metric."""
    rows = [(o, m) for o in report.outcomes for m in sorted(o.consistency)]
    if not rows:
        return []
    lines = [
        "**Consistency over repeats** (pass@k: passed at least once in k; pass^k: passed "
        "all k; disagree: share of examples whose repeats differ)",
        "",
        "| prompt | suite | metric | repeats | pass@k | pass^k | disagree | variance | n |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for o, m in rows:
        c = o.consistency[m]
        at = f"{c['pass_at_k']:.3f}" if "pass_at_k" in c else "-"
        hat = f"{c['pass_hat_k']:.3f}" if "pass_hat_k" in c else "-"
        mark = " ⚠️" if m in o.flaky_metrics else ""
        lines.append(
            f"| `{o.prompt}` | {o.suite} | {m} | {o.repeats} | {at} | {hat} | "
            f"{c['disagreement']:.0%}{mark} | {c['mean_variance']:.3f} | {int(c['n'])} |"
        )
    return [*lines, ""]


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
    if report.subset is not None:
        lines += [subset_text(report.subset), ""]
    failures = _failure_lines(report)
    if failures:
        lines += [*failures, ""]
    warnings = _flaky_lines(report)
    if warnings:
        lines += [*warnings, ""]
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
                status = f"❌ {status_text(o)}"
            elif o.flaky:
                status = f"⚠️ {status_text(o)}"
            else:
                status = o.status
            lines.append(
                f"| `{o.prompt}` | {o.version} | " + " | ".join(cells) + f" | {n} | {status} |"
            )
        lines.append("")
    lines += _consistency_lines(report)
    return "\n".join(lines)


def against_markdown(report: AgainstReport, *, full_report: str | None = None) -> str:
    """The pull-request summary: verdicts, failures, and for each regressed or improved
    prompt its top flipped examples in a ``<details>`` block, within GitHub's 65,536
    characters. ``full_report`` says where the HTML report is."""
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
        gates_text(report),
        "",
    ]
    if report.subset is not None:
        lines += [subset_text(report.subset, compared=True), ""]
    failures = _failure_lines(report.candidate, report.baseline_failures)
    if failures:
        lines += [*failures, ""]
    warnings = _flaky_lines(report.candidate)
    if warnings:
        lines += [*warnings, ""]
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
    for r in report.pairwise:
        lines.append(
            f"- `{r.prompt}` {r.suite} pairwise judge {r.judge} (`{r.judge_prompt}`, "
            f"{r.provider}): candidate {r.candidate}, baseline {r.baseline}, ties {r.ties}, "
            f"inconsistent {r.inconsistent} of {r.n}; sign test p (Holm) "
            f"{r.p_adjusted:.3g}: {r.verdict}; position bias {r.position_bias_rate:.0%}"
        )
    footer = [
        "",
        f"<sub>Paired comparison on every example both sides attempted (a failure counts as "
        f"0 on its side): mid-p McNemar with Tango's interval (0/1 metrics) or sign-flip "
        f"permutation with a bootstrap-t interval, by group where the suite names one. "
        f"Family: {report.family} comparison(s) (each suite's primary metric; the others are "
        f"[secondary]), Holm-corrected; equivalent / non-inferior within ±{report.min_effect:g} "
        f"at alpha {report.alpha:g} per family; {report.mode} mode.</sub>",
    ]
    if full_report:
        footer[1:1] = [f"Every flipped example, charts and history: {full_report}", ""]
    text = "\n".join(lines)
    tail = "\n".join(footer) + "\n"
    return text + _evidence(report, GITHUB_LIMIT - len(text) - len(tail) - 200) + tail


#: GitHub's limit for a comment or a step summary, in characters.
GITHUB_LIMIT = 65_536
#: Flipped examples per prompt in the pull-request summary, and characters per text.
EXAMPLES_SHOWN = 5
SNIPPET = 400


def _fenced(text: str) -> str:
    """``text`` (cut to ``SNIPPET``) in a code fence longer than any backtick run in it."""
    if len(text) > SNIPPET:
        text = text[:SNIPPET] + f"… ({len(text) - SNIPPET:,} more characters)"
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, run + 1)
    return f"{fence}\n{text}\n{fence}"


def _flip_markdown(flip: Flip) -> list[str]:
    def answer(outputs: Sequence[str] | None, error: str | None) -> str:
        if error:
            return f"(failed: {error})"
        return "(not kept)" if outputs is None else "\n".join(outputs)

    lines = [f"**{flip.kind}** `{flip.id}`: {flip.baseline:.3f} → {flip.candidate:.3f}", ""]
    for name, value in (flip.inputs or {}).items():
        lines += [f"input `{name}`:", _fenced(str(value)), ""]
    lines += ["baseline:", _fenced(answer(flip.baseline_outputs, flip.baseline_error)), ""]
    lines += ["candidate:", _fenced(answer(flip.candidate_outputs, flip.candidate_error)), ""]
    for reference in flip.references or []:
        lines += ["reference:", _fenced(reference), ""]
    return lines


def _evidence(report: AgainstReport, budget: int) -> str:
    """A ``<details>`` block per regressed or improved primary comparison with its top
    flipped examples, as many as fit in ``budget`` characters."""
    blocks: list[str] = []
    used = 0
    wanted = [c for c in report.comparisons if c.primary and c.verdict in (REGRESSED, IMPROVED)]
    left_out = 0
    for c in wanted:
        flips = report.flips(c, limit=EXAMPLES_SHOWN)
        if flips is None or not flips.examples:
            continue
        chosen = [f for f in flips.examples if (f.change < 0) == (c.verdict == REGRESSED)]
        chosen = (chosen or flips.examples)[:EXAMPLES_SHOWN]
        lines = [
            "<details>",
            f"<summary><code>{c.prompt}</code> {c.suite} · {c.metric}: {c.verdict}; "
            f"{flips.moved:,} of {c.n:,} examples moved ({flips.worse:,} worse, "
            f"{flips.better:,} better), top {len(chosen)}</summary>",
            "",
        ]
        for note in flips.notes:
            lines += [f"_{note}_", ""]
        for flip in chosen:
            lines += _flip_markdown(flip)
        lines += ["</details>", ""]
        block = "\n".join(lines)
        if used + len(block) > budget:
            left_out += 1
            continue
        blocks.append(block)
        used += len(block) + 1
    if left_out:
        blocks.append(
            f"_{left_out} more comparison(s) with flipped examples did not fit GitHub's "
            "limit; see the full report._\n"
        )
    return ("\n" + "\n".join(blocks)) if blocks else ""


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
