"""What a template may use, checked when it is parsed rather than when a branch runs.

Jinja looks filters and tests up only when the expression runs (inside ``{% if %}`` and
``a if c else b`` not even when compiling), and the immutable sandbox refuses ``.append()``
and its kin only at render time. Parsing reports every such problem, at its line.
"""

from __future__ import annotations

import pytest
from jinja2.sandbox import _mutable_spec

from promptlib.library.render import Renderer, TemplateProblem

UPPR = "unknown filter 'uppr' (did you mean 'upper'?)"
EVN = "unknown test 'evn' (did you mean 'even'?)"
APPEND = (
    "`.append()` would modify a value; templates cannot change data (the sandbox refuses "
    "it at render time): build a new value with filters instead, e.g. `xs + [item]`"
)
PARTIALS = {
    "shout.j2": "{{ message|uppr }}",
    "tidy.j2": "ok\n{% if message is evn %}{{ message|trim }}{% endif %}",
    "nested.j2": "{% include 'shout.j2' %}",
}

REFUSED = [
    # (name, template, [(template line, message), ...])
    ("filter", "{{ message|uppr }}", [(1, UPPR)]),
    (
        "filter in a branch that does not run",
        "{% if false %}\n{{ message|uppr }}\n{% endif %}",
        [(2, UPPR)],
    ),
    (
        "filter in an else branch",
        "{% if message %}ok{% else %}\n\n{{ message|uppr }}{% endif %}",
        [(3, UPPR)],
    ),
    ("filter in a conditional expression", "{{ message|uppr if message else '' }}", [(1, UPPR)]),
    (
        "filter in a for loop's else",
        "{% for m in [] %}{% else %}{{ m|uppr }}{% endfor %}",
        [(1, UPPR)],
    ),
    ("filter in a macro", "{% macro m(x) %}\n{{ x|uppr }}{% endmacro %}", [(2, UPPR)]),
    ("filter block", "{% filter uppr %}hi{% endfilter %}", [(1, UPPR)]),
    ("filter on a set block", "{% set s | uppr %}hi{% endset %}{{ s }}", [(1, UPPR)]),
    ("test", "{% if message is evn %}ok{% endif %}", [(1, EVN)]),
    ("test in a conditional expression", "x\n{{ 'a' if message is evn else 'b' }}", [(2, EVN)]),
    ("negated test", "{{ message is not evn }}", [(1, EVN)]),
    ("test named in select", "{{ xs|select('evn')|list }}", [(1, EVN)]),
    ("test named in rejectattr", "{{ xs|rejectattr('a', 'evn')|list }}", [(1, EVN)]),
    ("filter named in map", "{{ xs|map('uppr')|list }}", [(1, UPPR)]),
    (
        "unknown filter without a close name",
        "{{ message|frobnicate }}",
        [
            (
                1,
                "unknown filter 'frobnicate': templates can use Jinja's built-in filters "
                "(https://jinja.palletsprojects.com/en/stable/templates/#list-of-builtin-filters) "
                "and filters of installed packages; install the package that provides it, or "
                "register a function under the 'promptlib.filters' entry point "
                "(see docs/filters.md)",
            )
        ],
    ),
    (
        "every problem, in order",
        "{{ a|uppr }}\n{% if 0 %}{{ b is evn }}{% endif %}\n{{ c|uppr }}",
        [(1, UPPR), (2, EVN), (3, UPPR)],
    ),
    ("append", "{% if false %}{{ xs.append(1) }}{% endif %}", [(1, APPEND)]),
    ("append through attr", "{{ xs|attr('append') }}", [(1, APPEND)]),
    ("append in a conditional expression", "{{ xs.append(1) if xs else '' }}", [(1, APPEND)]),
    (
        "update",
        "\n{{ d.update(a=1) }}",
        [
            (
                2,
                "`.update()` would modify a value; templates cannot change data (the sandbox "
                "refuses it at render time): build a new value with filters instead, "
                "e.g. `dict(d, key=value)`",
            )
        ],
    ),
    (
        "pop",
        "{{ xs.pop() }}",
        [
            (
                1,
                "`.pop()` would modify a value; templates cannot change data (the sandbox "
                "refuses it at render time): build a new value with filters instead",
            )
        ],
    ),
    ("partial", "Hello.\n{% include 'shout.j2' %}", [(2, "in partial 'shout.j2' line 1: " + UPPR)]),
    ("partial's branch", "{% include 'tidy.j2' %}", [(1, "in partial 'tidy.j2' line 2: " + EVN)]),
    (
        "nested partial",
        "\n\n{% include 'nested.j2' %}",
        [(3, "in partial 'nested.j2' line 1: in partial 'shout.j2' line 1: " + UPPR)],
    ),
]

ACCEPTED = [
    "{% if false %}{{ message|upper|trim|default('x') }}{% endif %}",
    "{{ message|upper if message is string else '' }}",
    "{% filter upper %}hi{% endfilter %}",
    "{{ xs|select('odd')|map('string')|list }}",
    "{{ xs|selectattr('a')|map(attribute='a')|list }}",
    "{{ xs|selectattr('a', 'equalto', 1)|list }}",
    "{{ d.items()|list }} {{ d.get('a') }} {{ xs.index(1) }} {{ message.upper() }}",
    "{{ d['update'] }} {{ xs|attr('count') }}",
    "{% for x in xs %}{{ loop.cycle('a', 'b') }}{% endfor %}",
    "{{ (xs + [1])|sort|reverse|list }} {{ dict(d, a=1) }}",
]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(PARTIALS)


@pytest.mark.parametrize(
    ("source", "expected"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused_when_parsed(
    renderer: Renderer, source: str, expected: list[tuple[int, str]]
) -> None:
    with pytest.raises(TemplateProblem) as caught:
        renderer.parse(source)
    assert [(p.lineno, p.message) for p in caught.value.every] == expected


@pytest.mark.parametrize("source", ACCEPTED)
def test_accepted_when_parsed(renderer: Renderer, source: str) -> None:
    renderer.parse(source)


# Every method in Jinja's own table of mutations, whichever container it belongs to.
MUTATING = sorted({name for _kind, names in _mutable_spec for name in names})


@pytest.mark.parametrize("method", MUTATING)
def test_every_method_the_sandbox_refuses_is_refused_when_parsed(
    renderer: Renderer, method: str
) -> None:
    with pytest.raises(TemplateProblem) as caught:
        renderer.parse(f"{{{{ value.{method}() }}}}")
    assert caught.value.message.startswith(f"`.{method}()` would modify a value; ")
