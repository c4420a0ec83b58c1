"""Sandboxed Jinja rendering with bounded work.

Contract (changing any of this changes what prompts render to, so it is pinned by golden
tests):

* ``jinja2.sandbox.ImmutableSandboxedEnvironment``: no access to private or internal
  attributes (``__class__``, ``__globals__``, ``mro``, ...), no mutation of lists, dicts or
  sets, ``str.format`` sandboxed (including through ``|attr`` and stored references).
* ``StrictUndefined``: using a variable or attribute that does not exist is an error,
  never an empty string.
* Autoescape off (prompts are text, not HTML).
* Whitespace: ``trim_blocks=True`` (a newline after a block tag is removed) and
  ``lstrip_blocks=True`` (spaces before a block tag on its line are removed), so that
  ``{% if %}``/``{% for %}`` lines leave no blank lines or stray indentation;
  ``keep_trailing_newline=True`` for partials, so that ``{% include %}`` on a line of its
  own inserts the partial's text exactly as written, final newline included; a prompt's own
  message or template drops one trailing newline (so a YAML ``|`` block renders without
  a final newline); newlines are ``\\n``.
* ``tojson`` sorts keys and keeps non-ASCII characters as they are.
* Globals: only ``range`` (at most 100,000 items), ``dict`` and ``namespace``. ``lipsum``,
  ``cycler`` and ``joiner`` are removed: prompts do not need them and they are the usual
  handles of template-injection payloads.
* ``{% include %}``, ``{% import %}`` and ``{% from %}`` resolve only names in the partials
  mapping (the files under ``prompts/_partials/``), written as string literals;
  ``{% extends %}`` is not supported.
* Parsing checks what Jinja itself checks only when a branch runs: every filter and test
  named anywhere in a template or the partials it includes (also in ``{% if %}`` branches,
  ``a if c else b`` expressions and by name in ``select``, ``reject``, ``selectattr``,
  ``rejectattr`` and ``map``) must exist, and no method that modifies a list, dict or set
  (``.append()``, ``.update()``, ...) may be called. Every such problem is reported.
* An optional input the caller did not give and that declares no default is passed as
  ``not_given(name)``: false in ``{% if %}``, replaced by ``default``, not ``defined``, and
  an error naming the input when printed, iterated or looked into.
* Bounded work (``RenderLimits``): template source size, rendered output size (also for
  text captured by macros and ``{% set %}`` blocks; text printed inside loops and macros
  may total at most four times the output limit, counted each time it is produced), the
  size of any string or list built
  by ``*``, ``+``, ``~``, ``%``, ``replace``, ``center``, ``indent``, ``format`` or a string
  method, padding widths in format specs, and wall-clock render time, checked on every
  loop iteration and every call. Exceeding a limit raises ``UnsafeTemplateError``.

Caller values are data: they are passed to templates as variables and are never compiled.
"""

from __future__ import annotations

import difflib
import functools
import io
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.idtracking import VAR_LOAD_RESOLVE
from jinja2.sandbox import ImmutableSandboxedEnvironment, _mutable_spec
from jinja2.visitor import NodeTransformer

from ..errors import RenderError, UnsafeTemplateError

__all__ = [
    "DEFAULT_LIMITS",
    "ParsedTemplate",
    "RenderLimits",
    "Renderer",
    "TemplateProblem",
    "not_given",
]


@dataclass(frozen=True)
class RenderLimits:
    """Upper bounds on the work one render may do."""

    max_source_chars: int = 100_000
    max_output_chars: int = 1_000_000
    max_width: int = 10_000
    max_seconds: float = 2.0


DEFAULT_LIMITS = RenderLimits()


class TemplateProblem(Exception):
    """A problem found while parsing a template; ``lineno`` is 1-based within the template.

    ``also`` holds the other problems found in the same pass, in template order: the
    checks of filters, tests and method calls report all they find at once.
    """

    def __init__(self, message: str, lineno: int = 0, also: Sequence[TemplateProblem] = ()) -> None:
        self.message = message
        self.lineno = lineno
        self.also = tuple(also)
        super().__init__(message)

    @property
    def every(self) -> tuple[TemplateProblem, ...]:
        """This problem and the others found with it."""
        return (self, *self.also)


def _together(problems: Sequence[TemplateProblem]) -> TemplateProblem:
    """One exception for several problems, the first in template order leading."""
    ordered = sorted(problems, key=lambda problem: problem.lineno)
    first = ordered[0]
    return TemplateProblem(first.message, first.lineno, ordered[1:])


class _NotGiven(jinja2.StrictUndefined):
    """An optional input that was not given: false in tests, an error when used as a value.

    ``StrictUndefined`` refuses ``bool()`` too, which would make ``{% if x %}`` fail for an
    input the prompt itself declares optional.
    """

    __slots__ = ()

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


def not_given(name: str) -> jinja2.Undefined:
    """The value a template sees for optional input ``name`` when the caller left it out."""
    return _NotGiven(
        hint=f"optional input {name!r} was not given; write {{{{ {name} | default('...') }}}} "
        f"or {{% if {name} %}}...{{% endif %}}",
        name=name,
    )


@dataclass(frozen=True)
class ParsedTemplate:
    """A parsed, checked template: its source, AST, the variables it reads, its partials.

    ``text`` is set when the template is plain text (no tag or expression outside
    ``{% raw %}``): what it renders to. ``code`` is the Python source Jinja generated for
    ``tree`` while its variables were found, so compiling does not generate it again. Both
    are derived from ``tree`` and only save work; without them (a template built by hand)
    ``Renderer.compile`` generates the code itself.
    """

    source: str
    tree: nodes.Template
    variables: frozenset[str]
    partials: frozenset[str]
    text: str | None = field(default=None, compare=False, repr=False)
    code: str | None = field(default=None, compare=False, repr=False)


_state = threading.local()
# The nodes ``Renderer._analyse`` looks at: stores, extends, references to partials, and
# the filters, tests and calls it checks.
_ANALYSED = (
    nodes.Name,
    nodes.Extends,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Filter,
    nodes.Test,
    nodes.Call,
)
# The methods the immutable sandbox refuses to call because they modify a list, dict, set
# or deque, taken from Jinja's own table (``jinja2.sandbox._mutable_spec``, which
# ``modifies_known_mutable`` reads) so that the check at parse time and the refusal at
# render time cannot disagree.
_MUTATING = frozenset(name for _kind, names in _mutable_spec for name in names)
# What to write instead, for the methods templates reach for most.
_INSTEAD = {
    "append": "xs + [item]",
    "extend": "xs + more",
    "insert": "[item] + xs",
    "sort": "xs|sort",
    "reverse": "xs|reverse",
    "update": "dict(d, key=value)",
}
# Filters that take the name of a test or filter as an argument, and its position.
_NAMED_IN_ARGUMENT = {
    "select": (0, "test"),
    "reject": (0, "test"),
    "selectattr": (1, "test"),
    "rejectattr": (1, "test"),
    "map": (0, "filter"),
}
_BUILTIN_LISTS = "https://jinja.palletsprojects.com/en/stable/templates/#list-of-builtin-{}s"
_WIDTH_IN_SPEC = re.compile(r"(\d+)")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# Shared by the many plain-text templates of a library (fewer objects to keep and collect).
_NOTHING: frozenset[str] = frozenset()
# Line breaks as Jinja's lexer recognises them (``jinja2.lexer.newline_re``).
_NEWLINES = re.compile(r"(\r\n|\r|\n)")


def _count_output(value: Any) -> str:
    text = str(value)
    produced = getattr(_state, "produced", 0) + len(text)
    _state.produced = produced
    if produced > _state.max_produced:
        raise UnsafeTemplateError(
            f"loops and macros produced over {_state.max_produced:,} characters; "
            "the template repeats too much text"
        )
    return text


def _budget_deadline() -> float:
    return getattr(_state, "deadline", float("inf"))


def _tick() -> None:
    if time.monotonic() > _budget_deadline():
        raise UnsafeTemplateError(
            f"rendering took longer than {_state.max_seconds:g} s; "
            "simplify the template's loops or pass less data"
        )


def _sized(value: Any, limit: int, what: str) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > limit:
        raise UnsafeTemplateError(
            f"{what} would produce {len(value):,} items, over the limit of {limit:,}"
        )
    return value


class _Guarded:
    """An iterable that checks the render deadline while a ``{% for %}`` loop runs."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        deadline = _budget_deadline()
        for index, item in enumerate(self._items):
            if not index & 63 and time.monotonic() > deadline:
                _tick()
            yield item

    def __len__(self) -> int:
        return len(self._items)  # type: ignore[arg-type]


class _PartialLoader(jinja2.BaseLoader):
    """Resolves includes from a fixed mapping of partial name -> source, nothing else."""

    def __init__(self, partials: Mapping[str, str]) -> None:
        self.partials = dict(partials)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        try:
            return self.partials[template], None, lambda: True
        except KeyError:
            raise jinja2.TemplateNotFound(template) from None

    def list_templates(self) -> list[str]:
        return sorted(self.partials)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, partials: Mapping[str, str], limits: RenderLimits) -> None:
        super().__init__(
            loader=_PartialLoader(partials),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            newline_sequence="\n",
            auto_reload=False,
            cache_size=-1,
        )
        self.limits = limits
        # tojson keeps non-ASCII text readable for the model (still escapes <, >, &, ').
        self.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)
        self.filters["_promptlib_guard"] = _Guarded
        self.filters["_promptlib_sized"] = lambda value: _sized(
            value, limits.max_output_chars, "joining text with ~"
        )
        self.filters["_promptlib_out"] = _count_output
        self._wrap_filters()

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict: the environment's, then ``d``'s.

        Jinja returns a ``ChainMap`` over the environment's globals so that later changes to
        them show through; this environment's globals are final once ``__init__`` returns,
        so a copy holds the same names and values. Every render copies its template's
        globals into a new context, which is about ten times faster from a dict.
        """
        return {**self.globals, **(d or {})}

    # -- size checks on the operations that can build large values -------------------

    def concat(self, pieces: Iterable[str]) -> str:
        """Join captured output (macros, set blocks) after checking its total size."""
        pieces = list(pieces)
        total = sum(map(len, pieces))
        if total > self.limits.max_output_chars:
            raise UnsafeTemplateError(
                f"captured output of {total:,} characters is over the limit of "
                f"{self.limits.max_output_chars:,}"
            )
        return "".join(pieces)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self.limits.max_output_chars
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > limit
                ):
                    raise UnsafeTemplateError(
                        f"repeating a value {count:,} times would exceed the limit of "
                        f"{limit:,} items"
                    )
        elif operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and left.bit_length() * right > 10_000
            ):
                raise UnsafeTemplateError("exponent too large for a template")
        elif operator == "%" and isinstance(left, str):
            self._check_percent(left)
        elif (
            operator == "+"
            and isinstance(left, str | list | tuple)
            and isinstance(right, str | list | tuple)
            and len(left) + len(right) > limit
        ):
            raise UnsafeTemplateError(f"joining values would exceed the limit of {limit:,} items")
        return self.binop_table[operator](left, right)

    def _check_width(self, width: Any, what: str) -> None:
        if isinstance(width, int) and width > self.limits.max_width:
            raise UnsafeTemplateError(
                f"{what} width {width:,} is over the limit of {self.limits.max_width:,}"
            )

    def _check_percent(self, fmt: str) -> None:
        for match in _PERCENT_SPEC.finditer(fmt):
            for part in match.groups():
                if part == "*":
                    raise UnsafeTemplateError("'*' widths in % formats are not allowed")
                if part:
                    self._check_width(int(part), "format")

    def _check_format_string(self, fmt: str) -> None:
        try:
            parsed = list(string.Formatter().parse(fmt))
        except ValueError as exc:
            raise UnsafeTemplateError(f"invalid format string: {exc}") from None
        for _literal, _field, spec, _conversion in parsed:
            if not spec:
                continue
            if "{" in spec:
                raise UnsafeTemplateError("nested fields in format specs are not allowed")
            for number in _WIDTH_IN_SPEC.findall(spec):
                self._check_width(int(number), "format")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__
        self._check_format_string(fmt)
        limit = self.limits.max_output_chars

        def bounded(*args: Any, **kwargs: Any) -> str:
            return _sized(wrapper(*args, **kwargs), limit, "str.format")  # type: ignore[no-any-return]

        return bounded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() > _budget_deadline():
            _tick()
        name = getattr(__obj, "__name__", None)
        if name in _SIZED_METHODS and isinstance(getattr(__obj, "__self__", None), str):
            for arg in (*args, *kwargs.values()):
                __self._check_width(arg, f"str.{name}")
        elif name == "replace" and isinstance(getattr(__obj, "__self__", None), str):
            _check_replace(__obj.__self__, *args[:2], limit=__self.limits.max_output_chars)
        result = super().call(__context, __obj, *args, **kwargs)
        return _sized(result, __self.limits.max_output_chars, f"calling {name or 'a function'}")

    def _wrap_filters(self) -> None:
        filters = self.filters
        limit = self.limits.max_output_chars
        center, indent, fmt, replace = (
            filters["center"],
            filters["indent"],
            filters["format"],
            filters["replace"],
        )
        batch, slice_ = filters["batch"], filters["slice"]

        def safe_center(value: Any, width: int = 80) -> str:
            self._check_width(width, "center")
            return center(value, width)  # type: ignore[no-any-return]

        def safe_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> str:
            self._check_width(width if isinstance(width, int) else len(str(width)), "indent")
            return _sized(indent(value, width, *args, **kwargs), limit, "indent")  # type: ignore[no-any-return]

        def safe_format(value: Any, *args: Any, **kwargs: Any) -> str:
            self._check_percent(str(value))
            return _sized(fmt(value, *args, **kwargs), limit, "format")  # type: ignore[no-any-return]

        def safe_replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> str:
            _check_replace(str(value), old, new, limit=limit)
            return replace(eval_ctx, value, old, new, count)  # type: ignore[no-any-return]

        def safe_batch(value: Any, linecount: int, *args: Any) -> Any:
            self._check_width(linecount, "batch")
            return batch(value, linecount, *args)

        def safe_slice(value: Any, slices: int, *args: Any) -> Any:
            self._check_width(slices, "slice")
            return slice_(value, slices, *args)

        safe_replace.jinja_pass_arg = jinja2.utils._PassArg.eval_context  # type: ignore[attr-defined]
        filters.update(
            center=safe_center,
            indent=safe_indent,
            format=safe_format,
            replace=safe_replace,
            batch=safe_batch,
            slice=safe_slice,
        )

    # -- parsing: every loop gets a deadline check --------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        if len(source) > self.limits.max_source_chars:
            raise UnsafeTemplateError(
                f"template source of {len(source):,} characters is over the limit of "
                f"{self.limits.max_source_chars:,}"
            )
        if self._is_plain_text(source):
            return self._text_tree(source)
        tree = super()._parse(source, name, filename)
        if _static_text(tree) is not None:
            return tree  # plain text: no loop, expression or ``~`` to bound
        bounded = _Bounded()
        tree = bounded.visit(tree)
        # Jinja's parser gave every node of the tree this environment; the guards added
        # around them are the only nodes without one.
        for node in bounded.added:
            node.environment = self
        return tree  # type: ignore[no-any-return]

    def _is_plain_text(self, source: str) -> bool:
        """True when Jinja's lexer would read ``source`` as one piece of text: no tag,
        expression or comment can start in it and no extension may rewrite it."""
        if self.extensions or self.line_statement_prefix or self.line_comment_prefix:
            return False
        return not any(
            start in source
            for start in (
                self.block_start_string,
                self.variable_start_string,
                self.comment_start_string,
            )
        )

    def _text_tree(self, source: str) -> nodes.Template:
        """The tree Jinja's parser builds for plain text, built without lexing it.

        The lexer makes every line break ``\\n`` (dropping a final one unless
        ``keep_trailing_newline``), then turns template data's line breaks into
        ``newline_sequence``; the parser puts non-empty data in one ``Output`` on line 1.
        """
        lines = _NEWLINES.split(source)[::2]
        if not self.keep_trailing_newline and lines[-1] == "":
            del lines[-1]
        text = self.newline_sequence.join(lines)
        body: list[nodes.Node] = []
        if text:
            body.append(nodes.Output([nodes.TemplateData(text, lineno=1)], lineno=1))
        tree = nodes.Template(body, lineno=1)
        tree.set_environment(self)
        return tree


class _Bounded(NodeTransformer):
    """Rewrites a template so that its work is bounded.

    Loops check the deadline on every iteration; ``~`` checks the size of what it builds;
    and every expression printed inside a loop or macro body counts its characters, so that
    text captured by ``{% set %}`` blocks and macros cannot grow without limit before it is
    joined.
    """

    def __init__(self) -> None:
        self.repeating = 0
        self.added: list[nodes.Node] = []

    def _guard(self, node: nodes.Node, name: str, lineno: int | None = None) -> nodes.Filter:
        line = node.lineno if lineno is None else lineno
        guard = nodes.Filter(node, name, [], [], None, None, lineno=line)
        self.added.append(guard)
        return guard

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node.iter = self.visit(node.iter)
        self.repeating += 1
        node.body = [self.visit(child) for child in node.body]
        node.else_ = [self.visit(child) for child in node.else_]
        self.repeating -= 1
        if node.test is not None:
            node.test = self.visit(node.test)
        node.iter = self._guard(node.iter, "_promptlib_guard", node.lineno)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self.repeating += 1
        self.generic_visit(node)
        self.repeating -= 1
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        if self.repeating:
            node.nodes = [
                child
                if isinstance(child, nodes.TemplateData)
                else self._guard(child, "_promptlib_out")
                for child in node.nodes
            ]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._guard(node, "_promptlib_sized")


class _Generator(CodeGenerator):
    """Jinja's code generator that also records the names the template looks up in its
    context: the set ``jinja2.meta.find_undeclared_variables`` reports, which it computes
    by running this same generator with its output thrown away. Keeping the output lets
    one pass both analyse a template and produce the code that ``compile`` needs.
    """

    def __init__(self, environment: jinja2.Environment) -> None:
        self.output = io.StringIO()
        # The arguments ``Environment.compile`` passes for a template without a name.
        super().__init__(environment, None, None, self.output, False, environment.optimized)
        self.undeclared: set[str] = set()

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for action, name in frame.symbols.loads.values():
            if action == VAR_LOAD_RESOLVE and name not in self.environment.globals:
                self.undeclared.add(name)


def _static_text(tree: nodes.Template) -> str | None:
    """The text a template renders to when it is only text (no tag or expression outside
    ``{% raw %}``; comments are gone by now), else None."""
    pieces: list[str] = []
    for node in tree.body:
        if type(node) is not nodes.Output:
            return None
        for child in node.nodes:
            if type(child) is not nodes.TemplateData:
                return None
            pieces.append(child.data)
    return "".join(pieces)


class _StaticTemplate(jinja2.Template):
    """A compiled template that is only text: rendering it yields ``text``.

    Jinja would compile such a template into a function that yields the same text (with
    autoescape off and no ``finalize``, template data is output as it is); building the
    function directly skips generating and compiling Python code for it, which is most of
    the cost of loading a few-shot prompt, whose example turns are plain text.
    """

    text: str

    @classmethod
    def create(
        cls, environment: jinja2.Environment, globals: MutableMapping[str, Any], text: str
    ) -> _StaticTemplate:
        """``globals`` may be shared by many static templates: they never read it.

        A library keeps every compiled template alive, so each object saved per plain-text
        message is one the garbage collector does not walk again and again.
        """
        namespace: dict[str, Any] = {
            "name": None,
            "__file__": "<template>",
            "blocks": {},
            "root": functools.partial(_yield_text, text),
            "debug_info": "",
        }
        template = cast("_StaticTemplate", cls.from_module_dict(environment, namespace, globals))
        template.text = text
        return template


def _yield_text(text: str, context: Any) -> Iterator[str]:
    """The render function of a static template (``context`` is not needed)."""
    if text:
        yield text


def _mutation(method: str) -> str:
    """The message for a call of a method that modifies its list, dict or set."""
    instead = _INSTEAD.get(method)
    return (
        f"`.{method}()` would modify a value; templates cannot change data (the sandbox "
        "refuses it at render time): build a new value with filters instead"
        + (f", e.g. `{instead}`" if instead else "")
    )


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    """The message for a filter or test that does not exist, with the nearest real name."""
    public = [k for k in known if not k.startswith("_")]
    # Stricter than difflib's default, which offers unrelated names (frobnicate: truncate).
    close = difflib.get_close_matches(name, public, n=1, cutoff=0.75)
    if close:
        return f"unknown {kind} {name!r} (did you mean {close[0]!r}?)"
    return (
        f"unknown {kind} {name!r}: templates can use Jinja's built-in {kind}s "
        f"({_BUILTIN_LISTS.format(kind)})"
    )


def _check_replace(value: str, old: Any, new: Any, *, limit: int) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        count = len(value) + 1 if not old else value.count(old)
        if len(value) + count * (len(new) - len(old)) > limit:
            raise UnsafeTemplateError(f"replace would build a string over the limit of {limit:,}")


class Renderer:
    """Parses, checks, compiles and renders templates against one set of partials."""

    GLOBALS = frozenset({"range", "dict", "namespace"})

    def __init__(
        self, partials: Mapping[str, str] | None = None, limits: RenderLimits = DEFAULT_LIMITS
    ) -> None:
        self.partials: Mapping[str, str] = dict(partials or {})
        self.limits = limits
        self._env = _Sandbox(self.partials, limits)
        self._partial_info: dict[str, ParsedTemplate] = {}
        self._static_globals = self._env.make_globals(None)

    def parse(self, source: str) -> ParsedTemplate:
        """Parse and check a template; raise ``TemplateProblem`` for the first problem.

        The variables a template reads include those read by the partials it includes,
        transitively; ``partials`` is the transitive set of partial names.
        """
        tree = self._parse_tree(source[:-1] if source.endswith("\n") else source)
        text = _static_text(tree)
        if text is not None:
            # Plain text reads no variable and includes nothing: there is nothing to analyse.
            return ParsedTemplate(source, tree, _NOTHING, _NOTHING, text=text)
        generator = _Generator(self._env)
        try:
            variables, partials = self._analyse(tree, stack=(), generator=generator)
        except jinja2.TemplateError as exc:  # e.g. a block defined twice
            lineno = getattr(exc, "lineno", 0) or 0
            raise TemplateProblem(f"template error: {exc.message or exc}", lineno) from None
        return ParsedTemplate(
            source,
            tree,
            frozenset(variables),
            frozenset(partials),
            code=generator.output.getvalue(),
        )

    def _parse_tree(self, source: str) -> nodes.Template:
        try:
            return self._env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno) from None
        except UnsafeTemplateError as exc:
            raise TemplateProblem(str(exc)) from None

    def _analyse(
        self,
        tree: nodes.Template,
        stack: tuple[str, ...],
        generator: _Generator | None = None,
    ) -> tuple[set[str], set[str]]:
        """The variables and partials of ``tree``; with a ``generator``, which finds the
        variables by generating the template's code, that code is kept in it."""
        # One walk collects what the checks below need, in document order.
        extends: nodes.Extends | None = None
        assigned: set[str] = set()
        references: list[nodes.Node] = []
        problems: list[TemplateProblem] = []
        for node in tree.find_all(_ANALYSED):
            if isinstance(node, nodes.Name):
                if node.ctx == "store":
                    assigned.add(node.name)
            elif isinstance(node, nodes.Filter | nodes.Test | nodes.Call):
                problems.extend(
                    TemplateProblem(message, node.lineno) for message in self._refusals(node)
                )
            elif isinstance(node, nodes.Extends):
                if extends is None:
                    extends = node
            else:
                references.append(node)
        if extends is not None:
            problems.append(
                TemplateProblem(
                    "{% extends %} is not supported; use {% include %} with a partial",
                    extends.lineno,
                )
            )
        if problems:
            # Before generating code: Jinja's generator stops at the first unknown filter
            # outside a condition, with a message of its own.
            raise _together(problems)
        if generator is None:
            variables = set(meta.find_undeclared_variables(tree)) - self.GLOBALS
        else:
            try:
                generator.visit(tree)
            except jinja2.TemplateSyntaxError:
                # Raise exactly what ``find_undeclared_variables`` raises (its generator
                # names the template "<introspection>" in the message).
                meta.find_undeclared_variables(tree)
                raise
            variables = generator.undeclared - self.GLOBALS
        partials: set[str] = set()
        for node in references:
            name_node = getattr(node, "template", None)
            if not isinstance(name_node, nodes.Const) or not isinstance(name_node.value, str):
                raise TemplateProblem(
                    "include names must be string literals, e.g. {% include 'tone.j2' %}",
                    node.lineno,
                )
            name = name_node.value
            if name not in self.partials:
                known = ", ".join(sorted(self.partials)) or "none"
                raise TemplateProblem(
                    f"include {name!r} is not a file in prompts/_partials/ (available: {known})",
                    node.lineno,
                )
            if name in stack:
                raise TemplateProblem(
                    f"partials include each other in a cycle: {' -> '.join((*stack, name))}",
                    node.lineno,
                )
            try:
                info = self._partial(name, stack)
            except TemplateProblem as exc:
                # Problems inside a partial are shown at the line that includes it.
                raise _together(
                    [TemplateProblem(p.message, p.lineno or node.lineno) for p in exc.every]
                ) from None
            partials.add(name)
            partials |= info.partials
            variables |= set(info.variables) - assigned
        return variables, partials

    def _refusals(self, node: nodes.Filter | nodes.Test | nodes.Call) -> Iterator[str]:
        """What is wrong with one filter, test or call: the names Jinja would only look up
        when the expression runs, and the method calls the sandbox would refuse then."""
        env = self._env
        if isinstance(node, nodes.Call):
            method = node.node
            if isinstance(method, nodes.Getattr) and method.attr in _MUTATING:
                yield _mutation(method.attr)
            return
        if isinstance(node, nodes.Filter):
            if node.name not in env.filters:
                yield _unknown("filter", node.name, env.filters)
            if node.name == "attr" and node.args:
                # ``xs|attr('append')`` reaches the same method by name.
                name = node.args[0]
                if isinstance(name, nodes.Const) and name.value in _MUTATING:
                    yield _mutation(name.value)
            named = _NAMED_IN_ARGUMENT.get(node.name)
            if named is not None:
                position, kind = named
                argument = node.args[position] if len(node.args) > position else None
                if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
                    known = env.tests if kind == "test" else env.filters
                    if argument.value not in known:
                        yield _unknown(kind, argument.value, known)
        elif node.name not in env.tests:
            yield _unknown("test", node.name, env.tests)

    def _partial(self, name: str, stack: tuple[str, ...]) -> ParsedTemplate:
        info = self._partial_info.get(name)
        if info is None:
            try:
                tree = self._parse_tree(self.partials[name])
                try:
                    variables, partials = self._analyse(tree, (*stack, name))
                except jinja2.TemplateError as error:
                    lineno = getattr(error, "lineno", 0) or 0
                    raise TemplateProblem(
                        f"template error: {error.message or error}", lineno
                    ) from None
            except TemplateProblem as exc:
                raise _together(
                    [
                        TemplateProblem(
                            f"in partial {name!r}"
                            + (f" line {p.lineno}" if p.lineno else "")
                            + f": {p.message}"
                        )
                        for p in exc.every
                    ]
                ) from None
            info = ParsedTemplate(
                self.partials[name], tree, frozenset(variables), frozenset(partials)
            )
            self._partial_info[name] = info
        return info

    def compile(self, parsed: ParsedTemplate) -> jinja2.Template:
        """Compile a parsed template into something ``render`` can run."""
        env = self._env
        if parsed.text is not None:
            return _StaticTemplate.create(env, self._static_globals, parsed.text)
        if parsed.code is not None:
            code = env._compile(parsed.code, "<template>")
        else:
            code = env.compile(parsed.tree)
        return env.template_class.from_code(env, code, env.make_globals(None), None)

    def render(self, template: jinja2.Template, variables: Mapping[str, Any]) -> str:
        """Render within the limits; raise ``RenderError``/``UnsafeTemplateError``."""
        limits = self.limits
        if isinstance(template, _StaticTemplate):
            # Plain text: no code runs, so only the output limit applies.
            if len(template.text) > limits.max_output_chars:
                raise UnsafeTemplateError(
                    f"rendered output is over the limit of {limits.max_output_chars:,} characters"
                )
            return template.text
        previous = getattr(_state, "deadline", None)
        _state.deadline = time.monotonic() + limits.max_seconds
        _state.max_seconds = limits.max_seconds
        _state.produced = 0
        _state.max_produced = 4 * limits.max_output_chars
        try:
            context = template.new_context(dict(variables))
            pieces: list[str] = []
            total = 0
            for piece in template.root_render_func(context):
                total += len(piece)
                if total > limits.max_output_chars:
                    raise UnsafeTemplateError(
                        "rendered output is over the limit of "
                        f"{limits.max_output_chars:,} characters"
                    )
                pieces.append(piece)
            return "".join(pieces)
        except (UnsafeTemplateError, RenderError):
            raise
        except SecurityError as exc:
            raise UnsafeTemplateError(f"the sandbox refused: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"undefined value: {exc.message}") from None
        except RecursionError:
            raise UnsafeTemplateError("template recursion is too deep") from None
        except OverflowError as exc:
            raise UnsafeTemplateError(f"the sandbox refused: {exc}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {exc}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from None
        finally:
            if previous is None:
                del _state.deadline
            else:
                _state.deadline = previous
