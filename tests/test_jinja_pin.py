"""The Jinja internals promptlib's sandbox relies on, named so that an upgrade is checked.

``pyproject.toml`` pins ``Jinja2<3.2``. Before widening the pin, run this file against the
new release: every name below must still exist and behave as used in
``promptlib/library/render.py``.
"""

from __future__ import annotations

import inspect

import jinja2
import jinja2.compiler
import jinja2.idtracking
import jinja2.sandbox
import jinja2.utils
from packaging.version import Version

from promptlib.library.render import Renderer


def test_the_installed_jinja_is_within_the_pin() -> None:
    assert Version("3.1.6") <= Version(jinja2.__version__) < Version("3.2")


def test_the_private_names_the_sandbox_uses_exist() -> None:
    # Underscored names.
    spec = jinja2.sandbox._mutable_spec
    assert any("append" in names for _kind, names in spec)
    assert hasattr(jinja2.utils._PassArg, "eval_context")
    assert callable(jinja2.Environment._parse)
    assert callable(jinja2.Environment._compile)
    # Undocumented internals.
    parameters = list(inspect.signature(jinja2.compiler.CodeGenerator.__init__).parameters)
    assert parameters[:7] == [
        "self",
        "environment",
        "name",
        "filename",
        "stream",
        "defer_init",
        "optimized",
    ]
    for method in ("enter_frame", "visit"):
        assert callable(getattr(jinja2.compiler.CodeGenerator, method))
    assert hasattr(jinja2.compiler, "Frame")
    assert isinstance(jinja2.idtracking.VAR_LOAD_RESOLVE, str)
    assert callable(jinja2.Template.from_code)
    assert callable(jinja2.Template.from_module_dict)
    sandbox = jinja2.sandbox.ImmutableSandboxedEnvironment
    for name in ("intercepted_binops", "call_binop", "wrap_str_format", "concat"):
        assert hasattr(sandbox, name), name
    assert "*" in sandbox().binop_table  # set per instance from default_binop_table


def test_the_sandbox_still_renders_and_refuses_through_them() -> None:
    renderer = Renderer({"p.j2": "{{ x }}!"})
    parsed = renderer.parse("{% include 'p.j2' %} {{ '%s' % y }} {{ items|sort|join(',') }}")
    template = renderer.compile(parsed)
    assert renderer.render(template, {"x": "hi", "y": "a", "items": [2, 1]}) == "hi! a 1,2"
    assert template.root_render_func is not None  # type: ignore[attr-defined]
