"""One self-contained HTML report: verdicts, a forest plot, flipped examples, history.

The file needs no network: styles, scripts, data and the charting library are inline, so
it opens from ``file://`` and as a CI artifact. Charts are Vega-Lite specifications drawn
by the Vega, Vega-Lite and Vega-Embed bundle that ``vl-convert-python`` builds offline
(about 0.9 MB, BSD-3-Clause; install ``promptlib[html]``). Without it the report is the
same but for the charts, and says so where they would be.

Everything that comes from prompts, datasets or the model's answers is HTML-escaped;
chart data is JSON in ``<script type="application/json">`` blocks with ``<`` escaped, so no
answer can close a script element.

The header follows the exit code, as in every format: ✅ only when the command exits 0.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..compare.against import AgainstReport, MetricComparison
from ..compare.flips import Flip, Flips
from ..evals.evidence import Example, RunEvidence
from ..evals.run import EvalReport, PromptOutcome
from ..ledger import LedgerView
from ._text import consistency_text, failed_gates_text, interval_text, p_text, verdict_text

__all__ = [
    "against_html",
    "against_page",
    "charts_available",
    "eval_html",
    "history_points",
    "project_facts",
    "run_html",
]

#: Flipped examples shown per direction and comparison.
FLIPS_SHOWN = 20
#: Characters of an input or an answer shown before it is cut (the rest is counted).
TEXT_SHOWN = 1_500

# Status marks are CSS, not emoji: many systems (headless browsers in CI among them) have
# no emoji font.
_DOT = '<span class="dot"></span>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    # "<" never appears raw, so no value can end the script element or open a comment.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{_e(element_id)}">{text}</script>'


def _cut(text: str) -> str:
    if len(text) <= TEXT_SHOWN:
        return _e(text)
    rest = len(text) - TEXT_SHOWN
    return f'{_e(text[:TEXT_SHOWN])}<span class="cut">… ({rest:,} more characters)</span>'


# -- the charting library ----------------------------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "promptlib"


def _vega_bundle() -> str | None:
    """The Vega-Embed bundle, built by vl-convert once per version and cached."""
    try:
        import vl_convert  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    version = getattr(vl_convert, "__version__", "unknown")
    cached = _cache_dir() / f"vega-embed-bundle-{version}.js"
    try:
        return cached.read_text(encoding="utf-8")
    except OSError:
        pass
    bundle: str = vl_convert.javascript_bundle(
        "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"
    )
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(bundle, encoding="utf-8")
        partial.replace(cached)
    except OSError:
        pass  # a read-only home: build it again next time
    return bundle


def charts_available() -> bool:
    """Whether the charting library (``promptlib[html]``) is installed."""
    try:
        import vl_convert  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


# -- page --------------------------------------------------------------------------------

_STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg2: #f6f8fa;
  --red: #cf222e; --green: #1a7f37; --blue: #0969da; --amber: #9a6700; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: var(--fg); margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin-top: 32px;
  border-bottom: 1px solid var(--line); padding-bottom: 4px; } h3 { font-size: 15px; }
.muted, .cut { color: var(--muted); } .cut { font-style: italic; }
.failures li { color: var(--red); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
  vertical-align: top; }
th { background: var(--bg2); cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
td.num { text-align: right; white-space: nowrap; }
tr.v-regressed td.verdict { color: var(--red); font-weight: 600; }
tr.v-improved td.verdict { color: var(--green); font-weight: 600; }
tr.v-equivalent td.verdict, tr.v-non-inferior td.verdict { color: var(--blue); }
tr.fails td.verdict { color: var(--red); font-weight: 600; }
tr.secondary td { color: var(--muted); }
.dot { display: inline-block; width: .7em; height: .7em; border-radius: 50%;
  background: #8c959f; margin-right: .4em; vertical-align: baseline; }
tr.v-regressed .dot, tr.fails .dot { background: var(--red); }
tr.v-improved .dot { background: var(--green); }
tr.v-equivalent .dot, tr.v-non-inferior .dot { background: var(--blue); }
tr.secondary .dot { opacity: .5; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
  font-size: 14px; vertical-align: middle; margin-right: 8px; }
.badge.pass { background: var(--green); } .badge.fail { background: var(--red); }
.scroll { overflow-x: auto; }
.filters { display: flex; gap: 12px; margin: 8px 0; flex-wrap: wrap; align-items: center; }
.filters label { color: var(--muted); }
pre { background: var(--bg2); padding: 8px; overflow-x: auto; white-space: pre-wrap;
  word-break: break-word; margin: 4px 0; }
.diff .add { color: var(--green); } .diff .del { color: var(--red); }
.example { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
  margin: 8px 0; }
.example .head { font-weight: 600; }
.example .kind-worse { color: var(--red); } .example .kind-better { color: var(--green); }
.answers { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.answers > div > .label { color: var(--muted); font-size: 12px; }
del { background: #ffebe9; color: var(--red); } ins { background: #dafbe1;
  color: var(--green); text-decoration: none; }
dl.inputs dt { color: var(--muted); font-size: 12px; } dl.inputs dd { margin: 0 0 6px; }
.chart { width: 100%; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""

# Sorting and filtering of the verdict table; no dependency.
_SCRIPT = """
(function () {
  const table = document.getElementById("verdicts");
  if (table) {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const controls = document.querySelectorAll("[data-filter]");
    function apply() {
      const want = {};
      controls.forEach(function (c) { want[c.dataset.filter] = c.value.trim().toLowerCase(); });
      let shown = 0;
      rows.forEach(function (row) {
        let ok = true;
        for (const key in want) {
          const value = want[key];
          if (!value) continue;
          const cell = (row.dataset[key] || "").toLowerCase();
          ok = ok && (key === "prompt" ? cell.indexOf(value) >= 0 : cell === value);
        }
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      document.getElementById("shown").textContent = shown + " of " + rows.length + " shown";
    }
    controls.forEach(function (c) { c.addEventListener("input", apply); });
    Array.from(table.tHead.rows[0].cells).forEach(function (th, index) {
      th.addEventListener("click", function () {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.from(table.tHead.rows[0].cells).forEach(function (o) {
          o.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const numeric = th.dataset.type === "number";
        const sorted = rows.slice().sort(function (a, b) {
          const x = a.cells[index].dataset.sort ?? a.cells[index].textContent;
          const y = b.cells[index].dataset.sort ?? b.cells[index].textContent;
          const c = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
          return ascending ? c : -c;
        });
        sorted.forEach(function (row) { body.appendChild(row); });
      });
    });
    apply();
  }
  if (window.vegaEmbed) {
    document.querySelectorAll("[data-chart]").forEach(function (div) {
      const spec = JSON.parse(document.getElementById(div.dataset.chart).textContent);
      window.vegaEmbed(div, spec, { actions: false, renderer: "svg" });
    });
  }
})();
"""


def _page(title: str, body: Sequence[str], *, charts: bool) -> str:
    bundle = _vega_bundle() if charts else None
    library = (
        "<script>/* Vega, Vega-Lite and Vega-Embed (BSD-3-Clause), bundled by "
        "vl-convert-python */\n" + bundle.replace("</script", "<\\/script") + "\n</script>"
        if bundle
        else ""
    )
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<footer>Written by promptlib on {generated}. Self-contained: no network access."
        + ("" if bundle else " Charts need the charting library: pip install 'promptlib[html]'.")
        + "</footer>\n"
        + library
        + f"\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _chart(element_id: str, spec: Mapping[str, Any], *, charts: bool) -> str:
    if not charts:
        return (
            "<p class='muted'>Chart not drawn: the charting library is not installed "
            "(pip install 'promptlib[html]').</p>"
        )
    return f'<div class="chart" data-chart="{_e(element_id)}"></div>' + _json_script(
        element_id, spec
    )


# -- eval --against --------------------------------------------------------------------


def _failure_items(report: AgainstReport) -> list[str]:
    items = []
    for o in report.candidate.provider_failures:
        items.append(f"{o.prompt}: job failed in {o.suite}: {o.failure}")
    for o in report.baseline_failures:
        items.append(f"{o.prompt}: baseline job failed in {o.suite}: {o.failure}")
    for prompt_id, reason in sorted(report.not_compared.items()):
        items.append(f"{prompt_id}: changed, not compared ({reason})")
    for c in report.regressions:
        items.append(
            f"{c.prompt}: {c.suite}/{c.metric} regressed {c.baseline:.3f} → {c.candidate:.3f}"
            f" (p_holm {p_text(c.p_adjusted)})"
        )
    for c in report.undecided:
        items.append(f"{c.prompt}: {c.suite}/{c.metric} not shown non-inferior (strict mode)")
    for o in report.candidate.gate_failures:
        items.append(f"{o.prompt}: gate failed in {o.suite}: {failed_gates_text(o)}")
    return items


def _badge(passed: bool) -> str:
    return (
        '<span class="badge pass">passed</span>'
        if passed
        else ('<span class="badge fail">failed</span>')
    )


def _head(report: AgainstReport) -> str:
    if report.passed:
        return f"promptlib eval --against {report.ref}"
    reasons = []
    if report.provider_failures:
        reasons.append(f"{len(report.provider_failures)} job(s) failed")
    if report.regressions:
        reasons.append(f"{len(report.regressions)} regression(s)")
    if report.undecided:
        reasons.append(f"{len(report.undecided)} not shown non-inferior (strict)")
    if report.candidate.gate_failures:
        reasons.append(f"{len(report.candidate.gate_failures)} gate(s) failed")
    return f"promptlib eval --against {report.ref}: {', '.join(reasons)}"


def _pairwise_table(report: AgainstReport) -> str:
    """The suites' pairwise judges (``compare.pairwise``): each side's order-consistent
    preferences, the sign test and the judge's position bias. They gate nothing."""
    head = "".join(
        f"<th>{_e(name)}</th>"
        for name in (
            "prompt",
            "suite",
            "judge",
            "n",
            "candidate",
            "baseline",
            "ties",
            "inconsistent",
            "p (Holm)",
            "verdict",
            "position bias",
        )
    )
    rows = []
    for r in report.pairwise:
        rows.append(
            "<tr>"
            f"<td><code>{_e(r.prompt)}</code></td>"
            f"<td>{_e(r.suite)}</td>"
            f"<td>{_e(r.judge)} (<code>{_e(r.judge_prompt)}</code>, {_e(r.provider)})</td>"
            f'<td class="num">{r.n}</td>'
            f'<td class="num">{r.candidate}</td>'
            f'<td class="num">{r.baseline}</td>'
            f'<td class="num">{r.ties}</td>'
            f'<td class="num">{r.inconsistent}</td>'
            f'<td class="num">{_e(p_text(r.p_adjusted))}</td>'
            f"<td>{_e(r.verdict)}</td>"
            f'<td class="num">{r.position_bias_rate:.0%}</td>'
            "</tr>"
        )
    return (
        f'<table class="pairwise"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table><p>Only preferences that agree in both orders count; a sign test, "
        "Holm-adjusted over the pairwise judges. Pairwise judges gate nothing.</p>"
    )


def _verdict_table(report: AgainstReport) -> str:
    undecided = {id(c) for c in report.undecided}
    columns = [
        ("prompt", "text"),
        ("suite", "text"),
        ("metric", "text"),
        ("n", "number"),
        ("failed (base / cand)", "text"),
        ("baseline", "number"),
        ("candidate", "number"),
        ("Δ", "number"),
        ("95% CI", "number"),
        ("p", "number"),
        ("p (Holm)", "number"),
        ("verdict", "text"),
    ]
    head = "".join(f'<th data-type="{kind}">{_e(name)}</th>' for name, kind in columns)
    rows = []
    for c in report.comparisons:
        classes = [f"v-{c.verdict}"]
        if not c.primary:
            classes.append("secondary")
        if id(c) in undecided:
            classes.append("fails")
        n = f"{c.n} ({c.groups} groups)" if c.groups else str(c.n)
        low = c.ci[0]
        cells = [
            f"<td><code>{_e(c.prompt)}</code></td>",
            f"<td>{_e(c.suite)}</td>",
            f"<td>{_e(c.metric)}</td>",
            f'<td class="num" data-sort="{c.n}">{_e(n)}</td>',
            f'<td class="num">{c.failed_baseline} / {c.failed_candidate}</td>',
            f'<td class="num">{c.baseline:.3f}</td>',
            f'<td class="num">{c.candidate:.3f}</td>',
            f'<td class="num" data-sort="{c.diff}">{c.diff:+.3f}</td>',
            f'<td class="num" data-sort="{0 if math.isnan(low) else low}">'
            f"{_e(interval_text(c.ci))}</td>",
            f'<td class="num" data-sort="{c.p_value}">{_e(p_text(c.p_value))}</td>',
            f'<td class="num" data-sort="{1 if c.p_adjusted is None else c.p_adjusted}">'
            f"{_e(p_text(c.p_adjusted))}</td>",
            f'<td class="verdict">{_DOT}{_e(verdict_text(c))}'
            + (" ❌ strict" if id(c) in undecided else "")
            + "</td>",
        ]
        rows.append(
            f'<tr class="{" ".join(classes)}" data-verdict="{_e(c.verdict)}" '
            f'data-prompt="{_e(c.prompt)}" data-suite="{_e(c.suite)}">' + "".join(cells) + "</tr>"
        )
    verdicts = sorted({c.verdict for c in report.comparisons})
    suites = sorted({c.suite for c in report.comparisons})
    options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in verdicts)
    suite_options = "".join(f'<option value="{_e(s)}">{_e(s)}</option>' for s in suites)
    filters = (
        '<div class="filters">'
        '<label>verdict <select data-filter="verdict" id="filter-verdict">'
        f'<option value="">all</option>{options}</select></label>'
        '<label>suite <select data-filter="suite" id="filter-suite">'
        f'<option value="">all</option>{suite_options}</select></label>'
        '<label>prompt <input data-filter="prompt" id="filter-prompt" type="search" '
        'placeholder="id contains"></label>'
        '<span id="shown" class="muted"></span></div>'
    )
    return (
        filters
        + f'<div class="scroll"><table id="verdicts"><thead><tr>{head}</tr></thead><tbody>'
        + "\n".join(rows)
        + "</tbody></table></div>"
    )


def _forest(report: AgainstReport, *, charts: bool) -> str:
    values = [
        {
            "comparison": f"{c.prompt} · {c.suite} · {c.metric}",
            "diff": round(c.diff, 6),
            "low": None if math.isnan(c.ci[0]) else round(c.ci[0], 6),
            "high": None if math.isnan(c.ci[1]) else round(c.ci[1], 6),
            "verdict": c.verdict,
            "gated": "primary" if c.primary else "secondary",
        }
        for c in report.comparisons
    ]
    margin = report.min_effect
    colours = {
        "domain": ["improved", "regressed", "equivalent", "non-inferior", "inconclusive"],
        "range": ["#1a7f37", "#cf222e", "#0969da", "#0969da", "#8c959f"],
    }
    opacity = {
        "field": "gated",
        "type": "nominal",
        "scale": {"domain": ["primary", "secondary"], "range": [1, 0.35]},
        "legend": None,
    }
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "width": "container",
        "height": max(60, 18 * len(values)),
        "data": {"values": values},
        "encoding": {
            "y": {
                "field": "comparison",
                "type": "nominal",
                "sort": None,
                "title": None,
                "axis": {"labelLimit": 520},
            },
        },
        "layer": [
            {
                "mark": {"type": "rule", "strokeDash": [4, 4], "color": "#8c959f"},
                "data": {"values": [{"x": -margin}, {"x": margin}]},
                "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": None},
            },
            {
                "mark": {"type": "rule", "color": "#1f2328"},
                "data": {"values": [{"x": 0}]},
                "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": None},
            },
            {
                "mark": "rule",
                "encoding": {
                    "x": {
                        "field": "low",
                        "type": "quantitative",
                        "title": "Δ (candidate - baseline) with its 95% interval",
                    },
                    "x2": {"field": "high"},
                    "opacity": opacity,
                    "color": {
                        "field": "verdict",
                        "type": "nominal",
                        "scale": colours,
                        "legend": None,
                    },
                },
            },
            {
                "mark": {"type": "point", "filled": True, "size": 50},
                "encoding": {
                    "x": {"field": "diff", "type": "quantitative"},
                    "opacity": opacity,
                    "color": {"field": "verdict", "type": "nominal", "scale": colours},
                    "tooltip": [
                        {"field": "comparison"},
                        {"field": "diff", "format": "+.3f"},
                        {"field": "low", "format": "+.3f"},
                        {"field": "high", "format": "+.3f"},
                        {"field": "verdict"},
                        {"field": "gated"},
                    ],
                },
            },
        ],
    }
    return (
        f"<p class='muted'>Dashed lines: the margin ±{margin:g}. Secondary metrics are "
        "drawn faint; intervals below 10 examples are not drawn.</p>"
        + _chart("forest-spec", spec, charts=charts)
    )


_WORD = re.compile(r"\s+|[^\s]+")


def _word_diff(old: str, new: str) -> tuple[str, str]:
    """Both answers, with the words only one of them has marked (``del`` / ``ins``)."""
    a, b = _WORD.findall(old), _WORD.findall(new)
    if len(a) + len(b) > 4_000:  # long answers: no diff, just the text
        return _cut(old), _cut(new)
    left, right = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old_part, new_part = _e("".join(a[i1:i2])), _e("".join(b[j1:j2]))
        if tag == "equal":
            left.append(old_part)
            right.append(new_part)
        else:
            if old_part:
                left.append(f"<del>{old_part}</del>")
            if new_part:
                right.append(f"<ins>{new_part}</ins>")
    return "".join(left), "".join(right)


def _answer_text(outputs: Sequence[str] | None, error: str | None) -> str:
    if error:
        return f"(failed: {error})"
    if outputs is None:
        return ""
    return "\n— repeat —\n".join(outputs)


def _example(flip: Flip, metric: str) -> str:
    worse = flip.change < 0
    old = _answer_text(flip.baseline_outputs, flip.baseline_error)
    new = _answer_text(flip.candidate_outputs, flip.candidate_error)
    if flip.baseline_outputs is None and not flip.baseline_error:
        left, right = "<span class='muted'>not kept</span>", _cut(new)
    elif flip.candidate_outputs is None and not flip.candidate_error:
        left, right = _cut(old), "<span class='muted'>not kept</span>"
    else:
        left, right = _word_diff(old, new)
    inputs = "".join(
        f"<dt>{_e(name)}</dt><dd>{_cut(str(value))}</dd>"
        for name, value in (flip.inputs or {}).items()
    )
    references = "".join(f"<pre>{_cut(r)}</pre>" for r in flip.references or [])
    return (
        f'<div class="example" data-example="{_e(flip.id)}">'
        f'<div class="head"><span class="{"kind-worse" if worse else "kind-better"}">'
        f"{_e(flip.kind)}</span> <code>{_e(flip.id)}</code> — {_e(metric)} "
        f"{flip.baseline:.3f} → {flip.candidate:.3f}</div>"
        + (f'<dl class="inputs">{inputs}</dl>' if inputs else "")
        + '<div class="answers">'
        f'<div><div class="label">baseline answer</div><pre class="baseline">{left}</pre></div>'
        f'<div><div class="label">candidate answer</div><pre class="candidate">{right}</pre>'
        "</div></div>"
        + (f'<div class="label muted">reference</div>{references}' if references else "")
        + "</div>"
    )


def _flip_section(c: MetricComparison, flips: Flips | None) -> str:
    if flips is None:
        return "<p class='muted'>The runs of this comparison are not at hand.</p>"
    head = (
        f"<h4>{_e(c.suite)} · {_e(c.metric)}: {flips.moved:,} of {c.n:,} examples moved "
        f"({flips.worse:,} worse, {flips.better:,} better)</h4>"
    )
    notes = "".join(f"<p class='muted'>{_e(note)}</p>" for note in flips.notes)
    if c.identical:
        notes += (
            f"<p>Outputs identical on all {c.n:,} examples: the provider did not react to "
            "this change.</p>"
        )
    body = "".join(_example(f, flips.metric) for f in flips.examples)
    shown = len(flips.examples)
    more = (
        f"<p class='muted'>Showing {shown} of {flips.moved:,}: the first {FLIPS_SHOWN} of "
        "each direction. `promptlib outputs` shows every answer.</p>"
        if shown < flips.moved
        else ""
    )
    return head + notes + body + more


def _prompt_sections(
    report: AgainstReport, history: Mapping[str, Mapping[str, Any]], *, charts: bool
) -> list[str]:
    out = []
    by_prompt: dict[str, list[MetricComparison]] = {}
    for c in report.comparisons:
        by_prompt.setdefault(c.prompt, []).append(c)
    diffs = {d.id: d for d in report.diff.prompts}
    for prompt_id in sorted(report.statuses):
        status = report.statuses[prompt_id]
        if status not in ("changed", "not comparable", "not compared", "added"):
            continue
        parts = [f'<section class="prompt" id="prompt-{_e(prompt_id)}">']
        parts.append(f"<h3><code>{_e(prompt_id)}</code> — {_e(status)}</h3>")
        d = diffs.get(prompt_id)
        if d is not None:
            versions = " → ".join(s.version for s in (d.old, d.new) if s is not None and s.version)
            if versions:
                parts.append(f"<p class='muted'>version {_e(versions)}</p>")
            if d.changes:
                parts.append(
                    "<ul>" + "".join(f"<li>{_e(ch.what)}</li>" for ch in d.changes) + "</ul>"
                )
            if d.text_diff:
                parts.append(f'<pre class="diff">{_diff_lines(d.text_diff)}</pre>')
        for c in by_prompt.get(prompt_id, []):
            if not c.primary:
                continue
            parts.append(_flip_section(c, report.flips(c, limit=FLIPS_SHOWN)))
        points = history.get(prompt_id)
        if points:
            parts.append("<h4>Score history across releases</h4>")
            parts.append(_chart(f"history-{prompt_id}", _history_spec(points), charts=charts))
        parts.append("</section>")
        out.append("\n".join(parts))
    return out


def _diff_lines(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            lines.append(f'<span class="add">{_e(line)}</span>')
        elif line.startswith("-") and not line.startswith("---"):
            lines.append(f'<span class="del">{_e(line)}</span>')
        else:
            lines.append(_e(line))
    return "\n".join(lines)


def _history_spec(points: Mapping[str, Any]) -> dict[str, Any]:
    """A line chart per metric: ``points["values"]`` rows of release, series, mean."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "width": "container",
        "height": 160,
        "data": {"values": list(points.get("values", []))},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "release", "type": "ordinal", "sort": None, "title": "release"},
            "y": {
                "field": "mean",
                "type": "quantitative",
                "title": "mean score",
                "scale": {"zero": False},
            },
            "color": {"field": "series", "type": "nominal", "title": "suite · metric"},
            "tooltip": [
                {"field": "release"},
                {"field": "series"},
                {"field": "mean", "format": ".3f"},
            ],
        },
    }


def _provenance(report: AgainstReport, project: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("baseline", report.base_label), ("provider", report.provider)]
    models = sorted(
        {
            f"{p.candidate.record.provider.name}: {p.candidate.record.provider.model or '-'}"
            for p in report.pairs
            if p.candidate.record is not None
        }
    )
    if models:
        rows.append(("model", ", ".join(models)))
    datasets = sorted(
        {
            f"{p.candidate.record.dataset.path} {p.candidate.record.dataset.sha256[:19]}…"
            for p in report.pairs
            if p.candidate.record is not None
        }
    )
    for key, value in project.items():
        rows.append((key, str(value)))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    if datasets:
        body += (
            "<tr><th>datasets</th><td>"
            + "<br>".join(f"<code>{_e(d)}</code>" for d in datasets)
            + "</td></tr>"
        )
    rule = (
        f"alpha {report.alpha:g}, margin ±{report.min_effect:g}, {report.mode} mode, family "
        f"of {report.family} gated comparison(s) (Holm)"
    )
    body += f"<tr><th>rule</th><td>{_e(rule)}</td></tr>"
    return f'<table class="provenance">{body}</table>'


def against_html(
    report: AgainstReport,
    *,
    history: Mapping[str, Mapping[str, Any]] | None = None,
    project: Mapping[str, Any] | None = None,
    charts: bool = True,
) -> str:
    """The report of ``eval --against`` as one HTML page.

    ``history`` maps a prompt id to ``{"values": [{"release", "series", "mean"}, ...]}``
    (its scores across releases); ``project`` adds provenance rows (package version, git
    commit). ``charts=False`` leaves the charting library out.
    """
    charts = charts and charts_available()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items()))
    failures = _failure_items(report)
    body = [
        f'<h1 id="status" data-passed="{str(report.passed).lower()}">'
        f"{_badge(report.passed)}{_e(_head(report))}</h1>",
        f"<p>Baseline: {_e(report.base_label)}. Provider: <code>{_e(report.provider)}</code>. "
        f"Prompts: {_e(counts)}.</p>",
    ]
    if failures:
        body.append(
            '<ul class="failures">' + "".join(f"<li>{_e(f)}</li>" for f in failures) + "</ul>"
        )
    flaky = [
        f"{o.prompt} ({o.suite}): {o.flaky_text()}"
        for o in report.candidate.outcomes
        if o.flaky and not o.flaky_gated
    ]
    if flaky:
        body.append('<ul class="flaky">' + "".join(f"<li>{_e(f)}</li>" for f in flaky) + "</ul>")
    body.append("<h2>Verdicts</h2>")
    if report.comparisons:
        body.append(_verdict_table(report))
        body.append("<h2>Differences and their intervals</h2>")
        body.append(_forest(report, charts=charts))
    else:
        body.append(
            "<p>No changed prompt could be compared.</p>"
            if report.changed_count
            else "<p>No prompt changed behaviour.</p>"
        )
    if report.pairwise:
        body.append("<h2>Pairwise judges</h2>")
        body.append(_pairwise_table(report))
    sections = _prompt_sections(report, history or {}, charts=charts)
    if sections:
        body.append("<h2>Changed prompts: what changed and which examples moved</h2>")
        body.extend(sections)
    body.append("<h2>Provenance</h2>")
    body.append(_provenance(report, project or {}))
    return _page(f"promptlib eval --against {report.ref}", body, charts=charts)


def history_points(view: LedgerView, report: AgainstReport) -> dict[str, dict[str, Any]]:
    """Each changed prompt's scores across the ledger's releases (``prompt_history``), and
    this change's candidate means as a last point, in the form ``against_html`` draws."""
    from ..versioning.scores import prompt_history

    out: dict[str, dict[str, Any]] = {}
    for prompt_id, status in sorted(report.statuses.items()):
        if status not in ("changed", "not comparable", "not compared"):
            continue
        history = prompt_history(view, prompt_id)
        series = history.series()
        several = len({s.provider for s in series}) > 1
        values: list[dict[str, Any]] = []
        for s in series:
            name = f"{s.suite} · {s.metric}" + (f" ({s.provider})" if several else "")
            values += [
                {"release": f"v{entry.release}", "series": name, "mean": mean}
                for entry, mean in zip(history.entries, s.means, strict=True)
                if mean is not None
            ]
        for c in report.comparisons:
            if c.prompt == prompt_id:
                name = f"{c.suite} · {c.metric}" + (f" ({report.provider})" if several else "")
                values.append({"release": "this change", "series": name, "mean": c.candidate})
        if values:
            out[prompt_id] = {"values": values}
    return out


def project_facts(root: Path | None) -> dict[str, str]:
    """The provenance of the report itself: the promptlib that wrote it and the commit."""
    from ..evals.runner import provenance

    origin = provenance(root)
    commit = origin.git_commit or "not a git checkout"
    if origin.git_commit and origin.dirty:
        commit += " (with uncommitted changes)"
    return {"promptlib": origin.promptlib, "git commit": commit}


def against_page(report: AgainstReport, view: LedgerView | None, root: Path | None) -> str:
    """``against_html`` with the history read from ``view`` and the provenance of ``root``."""
    history = history_points(view, report) if view is not None else {}
    return against_html(report, history=history, project=project_facts(root))


# -- eval --------------------------------------------------------------------------------


def _outcome_row(o: PromptOutcome) -> str:
    shown = o.status if o.status == "failed" else ("passed" if o.passed else "gate failed")
    # A flaky prompt is filtered as "flaky"; its cell says whether it failed the gate.
    status = "flaky" if o.flaky else shown
    if o.flaky:
        shown = f"{shown}, flaky"
    means = ", ".join(f"{m} {r['mean']:.3f}" for m, r in (o.results or {}).items())
    consistency = "; ".join(f"{m}: {consistency_text(o, m)}" for m in sorted(o.consistency))
    detail = o.failure or o.flaky_text()
    return (
        f'<tr data-verdict="{_e(status)}" data-prompt="{_e(o.prompt)}" '
        f'data-suite="{_e(o.suite)}"><td><code>{_e(o.prompt)}</code></td><td>{_e(o.suite)}</td>'
        f"<td>{_e(means)}</td><td>{_e(consistency) if consistency else '-'}</td>"
        f"<td>{_e(shown)}" + (f": {_e(detail)}" if detail else "") + "</td></tr>"
    )


def eval_html(report: EvalReport, *, project: Mapping[str, Any] | None = None) -> str:
    """The report of ``eval`` as one HTML page: every (suite, prompt) with its means."""
    failed = bool(report.gate_failures or report.provider_failures)
    rows = "\n".join(_outcome_row(o) for o in report.outcomes)
    options = "".join(
        f'<option value="{v}">{v}</option>' for v in ("passed", "flaky", "gate failed", "failed")
    )
    body = [
        f'<h1 id="status" data-passed="{str(not failed).lower()}">{_badge(not failed)}'
        "promptlib eval</h1>",
        f"<p>Provider: <code>{_e(report.provider)}</code>. Runs: {len(report.outcomes)}.</p>",
        '<div class="filters"><label>status <select data-filter="verdict">'
        f'<option value="">all</option>{options}</select></label>'
        '<label>prompt <input data-filter="prompt" type="search"></label>'
        '<span id="shown" class="muted"></span></div>',
        '<table id="verdicts"><thead><tr><th>prompt</th><th>suite</th><th>means</th>'
        "<th>consistency over repeats</th>"
        f"<th>status</th></tr></thead><tbody>{rows}</tbody></table>",
    ]
    if project:
        body.append(
            "<h2>Provenance</h2><table>"
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in project.items())
            + "</table>"
        )
    return _page("promptlib eval", body, charts=False)


#: Examples listed in a run's report, worst first.
RUN_EXAMPLES_SHOWN = 300


def run_html(evidence: RunEvidence, *, project: Mapping[str, Any] | None = None) -> str:
    """One recorded run as an HTML page: its means, provenance and examples, worst first
    (``promptlib report --run KEY``)."""
    run = evidence.run
    metric = next(iter(run.metrics), None)

    def rank(example: Example) -> tuple[int, float, str]:
        value = example.scores.get(metric) if metric else None
        return (0 if example.error else 1, -1.0 if value is None else value, example.id)

    examples = sorted(evidence.examples, key=rank)
    shown = examples[:RUN_EXAMPLES_SHOWN]
    means = "".join(
        f"<tr><th>{_e(name)}</th><td>{r.mean:.4f}</td><td>± {r.stderr:.4f}</td>"
        f"<td>n = {r.n:,}</td></tr>"
        for name, r in run.results.items()
    )
    k = run.repeats
    consistency = "".join(
        f"<tr><th>{_e(name)}</th><td>disagree {c.disagreement:.1%}</td>"
        f"<td>variance {c.mean_variance:.4f}</td>"
        + (f"<td>pass@{k} {c.pass_at_k:.4f}</td>" if c.pass_at_k is not None else "<td></td>")
        + (f"<td>pass^{k} {c.pass_hat_k:.4f}</td>" if c.pass_hat_k is not None else "<td></td>")
        + f"<td>n = {c.n:,}</td></tr>"
        for name, c in (run.consistency or {}).items()
    )
    facts = [
        ("prompt", f"{run.prompt.id} {run.prompt.version} ({run.prompt.fingerprint[:19]}…)"),
        ("suite", run.suite),
        ("provider", f"{run.provider.name} ({run.provider.type}, {run.provider.model or '-'})"),
        ("dataset", f"{run.dataset.path} {run.dataset.sha256[:19]}… ({run.dataset.rows:,} rows)"),
        ("recorded", run.time),
        ("run key", run.key),
        ("promptlib", run.provenance.promptlib),
        ("git commit", run.provenance.git_commit or "-"),
        *((str(k), str(v)) for k, v in (project or {}).items()),
    ]
    rows = []
    for example in shown:
        scores = ", ".join(
            f"{k} {'-' if v is None else format(v, '.3f')}" for k, v in example.scores.items()
        )
        inputs = "".join(
            f"<dt>{_e(k)}</dt><dd>{_cut(str(v))}</dd>" for k, v in (example.inputs or {}).items()
        )
        answer = _answer_text(example.outputs, example.error)
        refs = "".join(f"<pre>{_cut(r)}</pre>" for r in example.references or [])
        judged = "".join(
            f"<dt>judge {_e(name)}: {_e(str(v.get('score')))}</dt>"
            f"<dd>{_cut(str(v.get('reason', '')))}</dd>"
            for name, verdicts in example.verdicts.items()
            for v in verdicts
        )
        rows.append(
            f'<div class="example" data-example="{_e(example.id)}"><div class="head">'
            f"<code>{_e(example.id)}</code> — {_e(scores)}</div>"
            + (f'<dl class="inputs">{inputs}</dl>' if inputs else "")
            + f'<div class="label muted">answer</div><pre>{_cut(answer) if answer else ""}</pre>'
            + (f'<div class="label muted">reference</div>{refs}' if refs else "")
            + (f'<dl class="verdicts">{judged}</dl>' if judged else "")
            + "</div>"
        )
    body = [
        f"<h1>{_e(run.prompt.id)} in {_e(run.suite)}</h1>",
        f"<table class='means'>{means}</table>",
        (
            f"<h2>Consistency over {k} repeats</h2><table class='consistency'>{consistency}</table>"
            if consistency
            else ""
        ),
        "<h2>Provenance</h2><table>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
        + "</table>",
        "".join(f"<p class='muted'>{_e(note)}</p>" for note in evidence.notes),
        f"<h2>Examples, worst first ({len(shown):,} of {len(examples):,})</h2>",
        *rows,
    ]
    return _page(f"promptlib run {run.prompt.id} / {run.suite}", body, charts=False)
