"""Server-side template injection and resource bombs are stopped with a clear error.

Each payload is a template a hostile or careless contributor could commit. It must fail
with ``UnsafeTemplateError`` (or a ``RenderError`` naming the undefined handle) within 5
seconds of wall time, and allocate little memory on the way (measured with tracemalloc).
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from promptlib.errors import RenderError, UnsafeTemplateError
from promptlib.library.render import Renderer, RenderLimits

MB = 1 << 20

PAYLOADS = [
    # Attribute traversal to Python internals.
    (
        "dunder_mro",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "access to attribute '__class__'",
    ),
    ("dunder_via_input", "{{ text.__class__ }}", "access to attribute '__class__'"),
    ("dunder_subscript", "{{ text['__class__'] }}", "access to attribute '__class__'"),
    (
        "cycler_globals",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "access to attribute '__init__'",
    ),
    (
        "lipsum_globals",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "'lipsum' is undefined",
    ),
    ("joiner_globals", "{{ joiner.__init__.__globals__ }}", "access to attribute '__init__'"),
    ("namespace_init", "{{ namespace.__init__.__globals__ }}", "access to attribute '__init__'"),
    ("range_func_globals", "{{ range.__globals__ }}", "access to attribute '__globals__'"),
    ("self_module", "{{ self._TemplateReference__context }}", "access to attribute"),
    # str.format reaching attributes (CVE-2024-56326 stored format, CVE-2025-27516 |attr).
    (
        "format_attr_filter",
        "{{ '{0.__class__.__mro__}'|attr('format')(text) }}",
        "access to attribute '__class__'",
    ),
    (
        "stored_format",
        "{% set f = '{0.__class__}'.format %}{{ f(text) }}",
        "access to attribute '__class__'",
    ),
    (
        "stored_format_map",
        "{% set f = '{x.__class__}'.format_map %}{{ f({'x': text}) }}",
        "access to attribute '__class__'",
    ),
    (
        "format_filter_dunder",
        "{{ '%s'|format(text.__class__) }}",
        "access to attribute '__class__'",
    ),
    # Mutation of containers (immutable sandbox), by a method name built at render time so
    # that the parse-time check of method calls (tests/test_template_rules.py) cannot see it.
    (
        "list_append",
        "{% set xs = [] %}{{ (xs|attr('app' ~ 'end'))(1) }}",
        "access to attribute 'append'",
    ),
    (
        "dict_update",
        "{% set d = {} %}{% set f = d|attr('up' ~ 'date') %}{{ f(a=1) }}",
        "access to attribute 'update'",
    ),
    # Work and memory bombs.
    ("huge_range", "{{ range(10**9)|list|length }}", "Range too big"),
    ("string_repeat", "{{ 'a' * 10**9 }}", "repeating a value"),
    ("list_repeat", "{{ [0] * 10**9 }}", "repeating a value"),
    ("nested_repeat", "{{ ('a' * 100000) * 100000 }}", "repeating a value"),
    ("ljust_width", "{{ 'a'.ljust(10**9) }}", "str.ljust width"),
    ("rjust_width", "{{ 'a'.rjust(10**9) }}", "str.rjust width"),
    ("center_method", "{{ 'a'.center(10**9) }}", "str.center width"),
    ("zfill_width", "{{ 'a'.zfill(10**9) }}", "str.zfill width"),
    ("center_filter", "{{ 'a'|center(10**9) }}", "center width"),
    ("indent_filter", "{{ ('a\n' * 1000)|indent(10**6) }}", "indent width"),
    ("format_width", "{{ '{:>1000000000}'.format(1) }}", "format width"),
    ("format_nested_width", "{{ '{:>{w}}'.format(1, w=10**9) }}", "nested fields in format specs"),
    ("percent_width", "{{ '%1000000000s' % 1 }}", "format width"),
    ("percent_star", "{{ '%*s' % (10**9, 1) }}", "'*' widths"),
    ("format_filter_width", "{{ '%1000000000d'|format(1) }}", "format width"),
    ("attr_format_width", "{{ '{:>1000000000}'|attr('format')(1) }}", "format width"),
    ("replace_bomb", "{{ ('a' * 100000)|replace('a', 'b' * 10000) }}", "replace would build"),
    (
        "replace_method_bomb",
        "{{ ('a' * 100000).replace('a', 'b' * 10000) }}",
        "replace would build",
    ),
    (
        "concat_doubling",
        "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s }}{% endmacro %}{{ d('a', 64) }}",
        "joining text with ~",
    ),
    (
        "plus_doubling",
        "{% macro d(s, n) %}{{ d(s + s, n - 1) if n else s }}{% endmacro %}{{ d('a', 64) }}",
        "joining values",
    ),
    (
        "namespace_doubling",
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "joining text with ~",
    ),
    (
        "capture_bomb",
        "{% set x %}{% for i in range(100000) %}{{ 'a' * 100000 }}{% endfor %}{% endset %}{{ x|length }}",
        "loops and macros produced",
    ),
    (
        "macro_capture_bomb",
        "{% macro m() %}{% for i in range(100000) %}{{ 'b' * 100000 }}{% endfor %}{% endmacro %}{{ m()|length }}",
        "loops and macros produced",
    ),
    ("output_bomb", "{% for i in range(100000) %}{{ 'c' * 1000 }}{% endfor %}", "over the limit"),
    ("batch_bomb", "{{ range(10)|batch(10**9)|list }}", "batch width"),
    ("slice_bomb", "{{ range(10)|slice(10**9)|list }}", "slice width"),
    ("power_bomb", "{{ 10 ** 100000 }}", "exponent too large"),
    ("chained_power_bomb", "{{ (2 ** 5000) ** 5000 }}", "exponent too large"),
    (
        "nested_loops",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "rendering took longer",
    ),
    (
        "exponential_macro",
        "{% macro d(n) %}{% if n %}{{ d(n - 1) }}{{ d(n - 1) }}{% endif %}{% endmacro %}{{ d(60) }}",
        "rendering took longer",
    ),
    ("recursive_loop", "{% for x in [1, 2] recursive %}{{ loop([x, x]) }}{% endfor %}", "too deep"),
    (
        "deep_recursion",
        "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
        "recursion is too deep",
    ),
]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer({}, RenderLimits(max_seconds=1.0))


@pytest.mark.parametrize(
    ("source", "fragment"), [p[1:] for p in PAYLOADS], ids=[p[0] for p in PAYLOADS]
)
def test_payload_is_stopped_quickly_with_bounded_memory(
    renderer: Renderer, source: str, fragment: str
) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(RenderError) as caught:
            renderer.render(renderer.compile(renderer.parse(source)), {"text": "hello"})
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fragment in str(caught.value)
    assert elapsed < 5.0
    assert peak < 64 * MB, f"peak {peak / MB:.0f} MB"


def test_sandbox_refusals_are_unsafe_template_errors(renderer: Renderer) -> None:
    with pytest.raises(UnsafeTemplateError, match="__class__"):
        renderer.render(renderer.compile(renderer.parse("{{ ''.__class__ }}")), {})


@pytest.mark.parametrize(
    "text",
    [
        "{{ 7 * 7 }}",
        "{% for x in range(10**9) %}{% endfor %}",
        "{{ ''.__class__.__mro__ }}",
        "{% include '/etc/passwd' %}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_caller_text_is_data_never_template_source(renderer: Renderer, text: str) -> None:
    template = renderer.compile(renderer.parse("Customer wrote: {{ message }}"))
    assert renderer.render(template, {"message": text}) == f"Customer wrote: {text}"


def test_template_source_size_is_limited() -> None:
    small = Renderer({}, RenderLimits(max_source_chars=1000))
    with pytest.raises(
        Exception, match="template source of 1,001 characters is over the limit of 1,000"
    ):
        small.parse("a" * 1001)


def test_normal_templates_still_work(renderer: Renderer) -> None:
    source = (
        "{% macro item(x) %}[{{ x }}]{% endmacro %}"
        "{% for x in xs if x > 1 %}{{ item(x) }}{{ ',' if not loop.last }}{% endfor %} "
        "{{ '%-5s|' % 'ab' }}{{ '{:>4}'.format(7) }} {{ 'a' ~ 'b' }} {{ xs|length }}"
    )
    out = renderer.render(renderer.compile(renderer.parse(source)), {"xs": [1, 2, 3]})
    assert out == "[2],[3] ab   |   7 ab 3"
