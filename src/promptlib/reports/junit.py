"""JUnit XML for CI systems that show test results.

One ``<testcase>`` per (suite, prompt) of ``eval`` and per comparison of ``--against``;
a regression or a failed gate is a ``<failure>``, and a job that failed beyond its error
budget (candidate or baseline) is an ``<error>``: it is never absent from the count.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ..compare.against import AgainstReport
from ..compare.stats import REGRESSED
from ..evals.run import EvalReport, PromptOutcome
from ._text import failed_gates_text, gates_text, subset_text

__all__ = ["against_junit", "eval_junit"]


def _suite(
    name: str,
    cases: list[str],
    failures: int,
    errors: int,
    properties: dict[str, str] | None = None,
) -> str:
    head = "".join(
        f"    <property name={quoteattr(k)} value={quoteattr(v)}/>\n"
        for k, v in (properties or {}).items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name={quoteattr(name)} tests="{len(cases)}" failures="{failures}" '
        f'errors="{errors}">\n'
        + (f"  <properties>\n{head}  </properties>\n" if head else "")
        + "\n".join(cases)
        + ("\n" if cases else "")
        + "</testsuite>\n"
    )


def _error_case(o: PromptOutcome, classname: str) -> str:
    name = quoteattr(f"{o.suite}/{o.prompt}")
    message = quoteattr(o.failure or "failed")
    return (
        f'  <testcase classname="{classname}" name={name} time="{o.seconds:.3f}">'
        f"<error message={message}>{escape(o.failure or 'failed')}</error></testcase>"
    )


def _gate_text(o: PromptOutcome) -> str:
    return failed_gates_text(o, digits=4)


def _flaky_out(o: PromptOutcome) -> str:
    """A flaky prompt that passes (not gated) says so in its ``<system-out>``."""
    if not o.flaky or o.flaky_gated:
        return ""
    return f"<system-out>{escape(o.flaky_text() or 'flaky')}</system-out>"


def eval_junit(report: EvalReport) -> str:
    cases = []
    failures = errors = 0
    for o in report.outcomes:
        if o.status == "failed":
            errors += 1
            cases.append(_error_case(o, "promptlib.eval"))
            continue
        name = quoteattr(f"{o.suite}/{o.prompt}")
        body = ""
        if not o.passed:
            failures += 1
            text = _gate_text(o)
            body = f"<failure message={quoteattr(text)}>{escape(text)}</failure>"
        body += _flaky_out(o)
        cases.append(
            f'  <testcase classname="promptlib.eval" name={name} time="{o.seconds:.3f}">'
            f"{body}</testcase>"
        )
    properties = {"subset": subset_text(report.subset)} if report.subset is not None else None
    return _suite("promptlib eval", cases, failures, errors, properties)


def against_junit(report: AgainstReport) -> str:
    cases = []
    failures = errors = 0
    undecided = {id(c) for c in report.undecided}
    for c in report.comparisons:
        body = ""
        if c.primary and (c.verdict == REGRESSED or id(c) in undecided):
            failures += 1
            why = "regressed" if c.verdict == REGRESSED else "not shown non-inferior (strict)"
            text = (
                f"{c.metric} {c.baseline:.4f} -> {c.candidate:.4f} ({c.diff:+.4f}), "
                f"p_holm={c.p_adjusted:.3g}: {why}"
            )
            body = f"<failure message={quoteattr(text)}/>"
        elif not c.primary:
            body = '<skipped message="secondary metric: reported, not gated"/>'
        name = quoteattr(f"{c.suite}/{c.prompt}/{c.metric}")
        cases.append(f'  <testcase classname="promptlib.against" name={name}>{body}</testcase>')
    for o in report.candidate.provider_failures:
        errors += 1
        cases.append(_error_case(o, "promptlib.against.candidate"))
    for o in report.baseline_failures:
        errors += 1
        cases.append(_error_case(o, "promptlib.against.baseline"))
    for o in report.candidate.gate_failures:
        failures += 1
        name = quoteattr(f"{o.suite}/{o.prompt}/gates")
        text = _gate_text(o)
        cases.append(
            f'  <testcase classname="promptlib.gates" name={name}>'
            f"<failure message={quoteattr(text)}/></testcase>"
        )
    # p-values depend on which comparisons ran together: the family is part of the result.
    rule = {
        "family": str(report.family),
        "alpha": f"{report.alpha:g}",
        "min-effect": f"{report.min_effect:g}",
        "mode": report.mode,
        # Thresholds are checked only for the prompts evaluated: say whose.
        "gates": gates_text(report),
    }
    if report.subset is not None:
        rule["subset"] = subset_text(report.subset, compared=True)
    flaky = [
        f"{o.suite}/{o.prompt}: {o.flaky_text()}"
        for o in report.candidate.outcomes
        if o.flaky and not o.flaky_gated
    ]
    if flaky:
        # Reported, not gated: a property, since it fails no test case.
        rule["flaky"] = "; ".join(flaky)
    return _suite(f"promptlib eval --against {report.ref}", cases, failures, errors, rule)
