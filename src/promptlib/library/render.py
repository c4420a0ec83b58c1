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
* A filter or test that is not built in may come from an installed package that
  registers it under the ``promptlib.filters`` or ``promptlib.tests`` entry point
  (``promptlib.library.plugins``): it is imported when a template first names it, runs
  within the same limits as a built-in filter, and must return plain data; ``select``,
  ``map`` and the like reach it only by a string literal, never through a variable.
* An optional input the caller did not give and that declares no default is passed as
  ``not_given(name)``: false in ``{% if %}``, replaced by ``default``, not ``defined``, and
  an error naming the input when printed, iterated or looked into.
* Bounded work (``RenderLimits``): template source size; rendered output size (also for
  text captured by macros and ``{% set %}`` blocks; text printed inside loops and macros
  may total at most four times the output limit, counted each time it is produced); the
  size of every value a template builds: text at most the output limit, lists, tuples,
  dicts and sets at most ``max_items`` items, integers at most ``max_int_bits`` bits.
  Where an operation could multiply what it is given, the size is checked *before* the
  value is built: ``*``, ``+``, ``~``, ``%``, ``**``, ``str.format``, printing or
  converting a container to text, the filters ``center``, ``format``, ``indent``,
  ``join``, ``pprint``, ``replace``, ``sum``, ``tojson``, ``urlize`` and ``wordwrap``,
  and the methods ``center``, ``expandtabs``, ``join``, ``ljust``, ``replace``,
  ``rjust``, ``to_bytes``, ``translate`` and ``zfill``; padding widths are at most
  ``max_width``. A filter goes through at most ``max_items`` items. All the values one
  render builds may hold at most ``max_built_bytes`` of memory, counted as they are built
  (loops, literals and macros defined in loops included), so that a loop cannot keep
  what it builds. Wall-clock render time is checked on every loop iteration, filter call,
  operator and call. Exceeding a limit raises ``UnsafeTemplateError``.

Caller values are data: they are passed to templates as variables and are never compiled.
"""

from __future__ import annotations

import difflib
import functools
import io
import math
import pprint
import re
import string
import sys
import threading
import time
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
    Sized,
)
from dataclasses import dataclass, field
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.idtracking import VAR_LOAD_RESOLVE
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, _mutable_spec
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from ..errors import ConfigError, RenderError, UnsafeTemplateError
from . import plugins
from ._bounds import line_breaks, owned_size, text_size, translated_size
from .plugins import Kind, Plugin

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
    """Upper bounds on the work one render may do, and on what it is given.

    ``max_input_size`` (characters and items) and ``max_input_depth`` bound the inputs of
    one render together (``promptlib.library.prompt.check_inputs``); ``max_file_bytes`` is
    the size of a prompt file, refused before its YAML is parsed.
    """

    max_source_chars: int = 100_000
    max_output_chars: int = 1_000_000
    max_width: int = 10_000
    max_seconds: float = 2.0
    max_items: int = 100_000
    max_int_bits: int = 10_000
    max_built_bytes: int = 64 * 1024 * 1024
    max_input_size: int = 2_000_000
    max_input_depth: int = 32
    max_file_bytes: int = 1_000_000


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

    ``plugins`` holds the filters and tests from installed packages (``plugins``) that
    the template and its partials use, as ``(kind, name)``.

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
    plugins: frozenset[tuple[Kind, str]] = frozenset()
    text: str | None = field(default=None, compare=False, repr=False)
    code: str | None = field(default=None, compare=False, repr=False)


# The render in progress on this thread: its deadline, the characters its loops and macros
# produced and the bytes of the values it built, with their limits (set by
# ``Renderer.render``, and removed after it). Outside a render they are absent: parsing
# folds constant expressions by calling filters; there is no deadline then, and what
# counts output or memory fails, so Jinja leaves that expression to run at render time.
_state = threading.local()
# Filter calls so far, in every thread: filters check the deadline every 16th call.
_calls = 0
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
_NAMED_IN_ARGUMENT: dict[str, tuple[int, Kind]] = {
    "select": (0, "test"),
    "reject": (0, "test"),
    "selectattr": (1, "test"),
    "rejectattr": (1, "test"),
    "map": (0, "filter"),
}
_BUILTIN_LISTS = "https://jinja.palletsprojects.com/en/stable/templates/#list-of-builtin-{}s"
_WIDTH_IN_SPEC = re.compile(r"(\d+)")
_PERCENT_SPEC = re.compile(r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?([a-zA-Z%])")
_FIELD_NAME = re.compile(r"[^.\[]*")
_SPACES = re.compile(r"\s+")
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# Methods whose arguments ``_Sandbox.call`` checks before the call (see ``_checked_call``).
_CHECKED_METHODS = _SIZED_METHODS | {"replace", "join", "translate", "to_bytes", "fromkeys"}
# Filters that turn their value into text first: a container's text is checked before.
_TEXT_FILTERS = frozenset(
    {
        "capitalize",
        "center",
        "e",
        "escape",
        "forceescape",
        "format",
        "indent",
        "lower",
        "pprint",
        "replace",
        "safe",
        "string",
        "striptags",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "urlize",
        "wordcount",
        "wordwrap",
        "xmlattr",
    }
)
# Filters that go through their value item by item: at most ``max_items`` items.
_ITEM_FILTERS = frozenset(
    {
        "batch",
        "dictsort",
        "groupby",
        "items",
        "list",
        "map",
        "max",
        "min",
        "reject",
        "rejectattr",
        "reverse",
        "select",
        "selectattr",
        "slice",
        "sort",
        "sum",
        "unique",
    }
)
# Filters and methods that return one of the values they are given (or an item of it):
# nothing new to check or count.
_RETURNS_ITEM = frozenset(
    {"attr", "cycle", "d", "default", "first", "get", "last", "max", "min", "random"}
)
# Text shorter than this is not charged to the memory budget when a filter, call or
# operator returns it: it is either dropped soon, or kept in a list, dict or namespace,
# which counts it (``owned_size``).
_SMALL = 1024
# Values whose text needs no check when printed: text is checked when it is built, and
# these others are short (as are integers below 2**64).
_SHORT_TEXT = frozenset({str, float, bool, type(None)})
# Memory charged for objects that nothing else counts: a loop (its context and iterator)
# and a macro, caller or imported module defined anew on every pass of a loop or macro.
_LOOP_BYTES = 512
_DEFINITION_BYTES = 2048
_MB = 1024 * 1024
# Jinja's parser and code generator recurse once per level of nesting (about 60 levels fit).
_TOO_DEEP = "the template nests expressions too deeply; split it with {% set %} or a macro"
# The global that holds the plugins a compiled template may use by name (as (kind, name)).
_PLUGINS_USED = "_promptlib_plugins"
# Shared by the many plain-text templates of a library (fewer objects to keep and collect).
_NOTHING: frozenset[str] = frozenset()
# Line breaks as Jinja's lexer recognises them (``jinja2.lexer.newline_re``).
_NEWLINES = re.compile(r"(\r\n|\r|\n)")


def _budget_deadline() -> float:
    return getattr(_state, "deadline", math.inf)


def _tick() -> None:
    if time.monotonic() > _budget_deadline():
        raise UnsafeTemplateError(
            f"rendering took longer than {_state.max_seconds:g} s; "
            "simplify the template's loops or pass less data"
        )


def _charge(size: int) -> None:
    """Count ``size`` bytes against the memory budget of the render in progress."""
    built = _state.built + size
    _state.built = built
    if built > _state.max_built:
        raise UnsafeTemplateError(
            f"the template built values of over {_state.max_built / _MB:,.0f} MB in one "
            "render; build or keep less in its loops and macros"
        )


@jinja2.pass_context
def _charge_definition(context: Any, size: int) -> None:
    """``_charge`` from a statement the template runs (context-passing, so that Jinja's
    optimiser never calls it while compiling)."""
    _charge(size)


class _Guarded:
    """An iterable that checks the render deadline while a ``{% for %}`` loop runs."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any]) -> None:
        _charge(_LOOP_BYTES)
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        deadline = _budget_deadline()
        for index, item in enumerate(self._items):
            if not index & 63 and time.monotonic() > deadline:
                _tick()
            yield item

    def __len__(self) -> int:
        return len(self._items)  # type: ignore[arg-type]


def _counted(items: Iterator[Any], limit: int, what: str) -> Iterator[Any]:
    """``items``, refusing to go past ``limit`` of them, checking the deadline as it goes."""
    deadline = _budget_deadline()
    for index, item in enumerate(items):
        if index >= limit:
            raise UnsafeTemplateError(
                f"{what} would go through over {limit:,} items; filter or slice the data first"
            )
        if not index & 1023 and time.monotonic() > deadline:
            _tick()
        yield item


class _Concatenation:
    """The start of ``sum(items, start=[])``: each ``+`` extends one list in place.

    Python's ``sum`` would copy the growing list at every step (quadratic time); this
    gives the same result, and the same ``TypeError`` for an item of another type.
    """

    __slots__ = ("_items", "_kind", "_limit")

    def __init__(self, start: list[Any] | tuple[Any, ...], limit: int) -> None:
        self._kind = type(start)
        self._items = list(start)
        self._limit = limit

    def __add__(self, other: Any) -> _Concatenation:
        if not isinstance(other, self._kind):
            kind = self._kind.__name__
            raise TypeError(f'can only concatenate {kind} (not "{type(other).__name__}") to {kind}')
        if len(self._items) + len(other) > self._limit:
            raise UnsafeTemplateError(
                f"sum would build a list of over {self._limit:,} items; sum fewer items"
            )
        self._items.extend(other)
        return self

    @property
    def value(self) -> list[Any] | tuple[Any, ...]:
        return tuple(self._items) if issubclass(self._kind, tuple) else self._items


class _BoundedText(io.StringIO):
    """A text buffer that refuses to grow past ``limit`` characters and checks the render
    deadline as it is written (pretty-printing is Python code that can run long)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit
        self._room = limit + 1  # and the final newline of ``PrettyPrinter.pprint``

    def write(self, text: str) -> int:
        if time.monotonic() > _state.deadline:
            _tick()
        self._room -= len(text)
        if self._room < 0:
            raise UnsafeTemplateError(
                f"pprint would build over {self._limit:,} characters; print less data"
            )
        return super().write(text)


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
        # The plugins added so far (``add_plugin``), as (kind, name).
        self.plugin_names: set[tuple[Kind, str]] = set()
        # tojson keeps non-ASCII text readable for the model (still escapes <, >, &, ').
        self.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)
        self._wrap_filters()
        self.filters.update(
            _promptlib_guard=_Guarded,
            _promptlib_concat=self._concat,
            _promptlib_print=self._print,
            _promptlib_out=self._count_output,
            _promptlib_literal=self._literal,
            _promptlib_slice=lambda value: self._built(value, "slicing"),
            _promptlib_charge=_charge_definition,
        )

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict: the environment's, then ``d``'s.

        Jinja returns a ``ChainMap`` over the environment's globals so that later changes to
        them show through; this environment's globals are final once ``__init__`` returns,
        so a copy holds the same names and values. Every render copies its template's
        globals into a new context, which is about ten times faster from a dict.
        """
        return {**self.globals, **(d or {})}

    # -- the size of what a template builds ---------------------------------------------

    def _check_text(self, value: Any, what: str) -> None:
        """Refuse to turn ``value`` into text that would pass the output limit."""
        limit = self.limits.max_output_chars
        if text_size(value, limit) > limit:
            raise UnsafeTemplateError(
                f"{what} would write out over {limit:,} characters; "
                "print or join fewer or shorter items"
            )

    def _built(self, value: Any, what: str) -> Any:
        """Check the size of a value ``what`` built, and count the memory it holds."""
        limits = self.limits
        if isinstance(value, str | bytes | bytearray):
            if len(value) > limits.max_output_chars:
                raise UnsafeTemplateError(
                    f"{what} would build {len(value):,} characters, over the limit of "
                    f"{limits.max_output_chars:,}"
                )
            if len(value) >= _SMALL:
                _charge(sys.getsizeof(value))
        elif isinstance(value, list | tuple | dict | set | frozenset):
            if len(value) > limits.max_items:
                raise UnsafeTemplateError(
                    f"{what} would build {len(value):,} items, over the limit of "
                    f"{limits.max_items:,}"
                )
            _charge(owned_size(value))
        elif isinstance(value, int):
            if value.bit_length() > limits.max_int_bits:
                raise UnsafeTemplateError(
                    f"{what} would build an integer of {value.bit_length():,} bits, over the "
                    f"limit of {limits.max_int_bits:,}"
                )
        elif isinstance(value, Namespace):
            _charge(owned_size(value))
        return value

    def _print(self, value: Any) -> Any:
        """A value printed by ``{{ }}``, checked before ``str()`` writes it out."""
        kind = type(value)
        if kind not in _SHORT_TEXT and not (kind is int and value.bit_length() < 64):
            self._check_text(value, "printing a value")
        return value

    def _count_output(self, value: Any) -> str:
        """A value printed inside a loop or macro: checked, written out and counted each
        time it is produced."""
        text = value if type(value) is str else str(self._print(value))
        state = _state
        produced = state.produced + len(text)
        state.produced = produced
        if produced > state.max_produced:
            raise UnsafeTemplateError(
                f"loops and macros produced over {state.max_produced:,} characters; "
                "the template repeats too much text"
            )
        return text

    def _concat(self, parts: tuple[Any, ...]) -> str:
        """``a ~ b ~ ...``: the parts joined as text, once their total size is checked."""
        limit = self.limits.max_output_chars
        total = 0
        for part in parts:
            total += len(part) if type(part) is str else text_size(part, limit - total)
            if total > limit:
                raise UnsafeTemplateError(
                    f"joining text with ~ would build over {limit:,} characters"
                )
        return self._built("".join([str(part) for part in parts]), "joining text with ~")  # type: ignore[no-any-return]

    def _literal(self, value: Any) -> Any:
        """A list, tuple or dict written in the template, evaluated (counted each time)."""
        _charge(owned_size(value, literal=True))
        return value

    def concat(self, pieces: Iterable[str]) -> str:
        """Join captured output (macros, set blocks) after checking its total size."""
        pieces = list(pieces)
        total = sum(map(len, pieces))
        if total > self.limits.max_output_chars:
            raise UnsafeTemplateError(
                f"captured output of {total:,} characters is over the limit of "
                f"{self.limits.max_output_chars:,}"
            )
        text = "".join(pieces)
        _charge(sys.getsizeof(text))
        return text

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if time.monotonic() > _state.deadline:
            _tick()
        limits = self.limits
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int):
                    most = (
                        limits.max_output_chars
                        if isinstance(seq, str | bytes)
                        else limits.max_items
                    )
                    if len(seq) * count > most:
                        raise UnsafeTemplateError(
                            f"repeating a value {count:,} times would exceed the limit of "
                            f"{most:,} items"
                        )
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > limits.max_int_bits + 1
            ):
                raise UnsafeTemplateError(
                    "multiplying would build an integer of about "
                    f"{left.bit_length() + right.bit_length():,} bits, over the limit of "
                    f"{limits.max_int_bits:,}"
                )
        elif operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and left.bit_length() * right > limits.max_int_bits
            ):
                raise UnsafeTemplateError("exponent too large for a template")
        elif operator == "%" and isinstance(left, str):
            self._check_percent(left, right)
        elif (
            operator == "+"
            and isinstance(left, str | bytes | list | tuple)
            and isinstance(right, str | bytes | list | tuple)
        ):
            most = limits.max_output_chars if isinstance(left, str | bytes) else limits.max_items
            if len(left) + len(right) > most:
                raise UnsafeTemplateError(
                    f"joining values would exceed the limit of {most:,} items"
                )
        return self._built(self.binop_table[operator](left, right), f"the {operator} operator")

    def _check_width(self, width: Any, what: str) -> None:
        if isinstance(width, int) and width > self.limits.max_width:
            raise UnsafeTemplateError(
                f"{what} width {width:,} is over the limit of {self.limits.max_width:,}"
            )

    def _check_percent(self, fmt: str, args: Any = ()) -> None:
        """Widths in a ``%`` format, then the size of ``fmt % args``, before it is built."""
        limit = self.limits.max_output_chars
        positional = args if isinstance(args, tuple) else (args,)
        mapping = args if isinstance(args, Mapping) else None
        index = 0
        total = len(fmt)
        for match in _PERCENT_SPEC.finditer(fmt):
            key, width, precision, conversion = match.groups()
            for part in (width, precision):
                if part == "*":
                    raise UnsafeTemplateError("'*' widths in % formats are not allowed")
                if part:
                    self._check_width(int(part), "format")
            if conversion == "%":
                continue
            if key is not None:
                value = mapping.get(key) if mapping is not None else None
            else:
                value = positional[index] if index < len(positional) else None
                index += 1
            total += text_size(value, limit - total) + int(width or 0) + int(precision or 0)
            if total > limit:
                raise UnsafeTemplateError(
                    f"formatting with % would build over {limit:,} characters"
                )

    def _format_fields(self, fmt: str) -> list[tuple[str, str]]:
        """The replacement fields of a ``str.format`` string (name, spec), checked."""
        try:
            parsed = list(string.Formatter().parse(fmt))
        except ValueError as exc:
            raise UnsafeTemplateError(f"invalid format string: {exc}") from None
        fields: list[tuple[str, str]] = []
        for _literal, name, spec, _conversion in parsed:
            if spec:
                if "{" in spec:
                    raise UnsafeTemplateError("nested fields in format specs are not allowed")
                for number in _WIDTH_IN_SPEC.findall(spec):
                    self._check_width(int(number), "format")
            if name is not None:
                fields.append((name, spec or ""))
        return fields

    def _check_format(
        self, fmt: str, fields: list[tuple[str, str]], args: Sequence[Any], kwargs: Any
    ) -> None:
        """The size of ``fmt.format(*args, **kwargs)``, before it is built."""
        limit = self.limits.max_output_chars
        total = len(fmt)
        automatic = 0
        for reference, spec in fields:
            name = _FIELD_NAME.match(reference).group()  # type: ignore[union-attr]
            key: int | str
            if not name:
                key, automatic = automatic, automatic + 1
            else:
                key = int(name) if name.isdigit() else name
            try:
                value = args[key] if isinstance(key, int) else kwargs[key]
            except (LookupError, TypeError):
                continue  # the call itself reports it
            total += text_size(value, limit - total)
            total += sum(int(number) for number in _WIDTH_IN_SPEC.findall(spec))
            if total > limit:
                raise UnsafeTemplateError(f"str.format would build over {limit:,} characters")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__
        fields = self._format_fields(fmt)
        mapping = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if mapping and len(args) == 1 and not kwargs:
                self._check_format(fmt, fields, (), args[0])
            else:
                self._check_format(fmt, fields, args, kwargs)
            return self._built(wrapper(*args, **kwargs), "str.format")  # type: ignore[no-any-return]

        return bounded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() > _state.deadline:
            _tick()
        name = getattr(__obj, "__name__", None)
        if name in _CHECKED_METHODS:
            args = __self._checked_call(name, getattr(__obj, "__self__", None), args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if name in _RETURNS_ITEM:
            return result
        return __self._built(result, f"calling {name or 'a function'}")

    def _checked_call(
        self, name: str, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, ...]:
        """Check the arguments of a method that can build a large value from small ones;
        return the arguments to call it with (an iterable to join, read once)."""
        limits = self.limits
        limit = limits.max_output_chars
        if not isinstance(owner, str | bytes | bytearray):
            if name == "to_bytes" and isinstance(owner, int):
                length = args[0] if args else kwargs.get("length", 1)
                if isinstance(length, int) and length > limit:
                    raise UnsafeTemplateError(
                        f"int.to_bytes length {length:,} is over the limit of {limit:,}"
                    )
            elif (
                name == "fromkeys"
                and args
                and isinstance(args[0], Sized)
                and len(args[0]) > limits.max_items
            ):
                raise UnsafeTemplateError(
                    f"dict.fromkeys would build {len(args[0]):,} items, over the limit "
                    f"of {limits.max_items:,}"
                )
            return args
        if name in _SIZED_METHODS:
            for arg in (*args, *kwargs.values()):
                self._check_width(arg, f"str.{name}")
            if name == "expandtabs":
                size = (args or (kwargs.get("tabsize", 8),))[0]
                tab = "\t" if isinstance(owner, str) else b"\t"
                if isinstance(size, int) and len(owner) + owner.count(tab) * size > limit:  # type: ignore[arg-type]
                    raise UnsafeTemplateError(
                        f"str.expandtabs would build over {limit:,} characters"
                    )
        elif name == "replace":
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            _check_replace(owner, *args[:2], limit=limit, count=count)
        elif name == "join" and args:
            items = list(args[0])
            sep = len(owner) * max(len(items) - 1, 0)
            total = sep
            for item in items if sep <= limit else ():
                total += len(item) if isinstance(item, str | bytes) else text_size(item, limit)
                if total > limit:
                    break
            if total > limit:
                raise UnsafeTemplateError(f"str.join would build over {limit:,} characters")
            return (items, *args[1:])
        elif (
            name == "translate"
            and isinstance(owner, str)
            and args
            and translated_size(owner, args[0], limit) > limit
        ):
            raise UnsafeTemplateError(f"str.translate would build over {limit:,} characters")
        return args

    def _wrap_filters(self) -> None:
        """Every filter checks the deadline and the size of what it builds; the filters
        that can build more than they are given check the size first."""
        filters = self.filters
        limits = self.limits
        limit = limits.max_output_chars
        original = dict(filters)

        def center(value: Any, width: int = 80) -> str:
            self._check_width(width, "center")
            return original["center"](value, width)  # type: ignore[no-any-return]

        def indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> str:
            step = width if isinstance(width, int) else len(str(width))
            self._check_width(step, "indent")
            text = value if isinstance(value, str) else str(value)
            if len(text) + (line_breaks(text) + 2) * step > limit:
                raise UnsafeTemplateError(
                    f"indent would build over {limit:,} characters; indent less text"
                )
            return original["indent"](value, width, *args, **kwargs)  # type: ignore[no-any-return]

        def format_(value: Any, *args: Any, **kwargs: Any) -> str:
            self._check_percent(str(value), kwargs or args)
            return original["format"](value, *args, **kwargs)  # type: ignore[no-any-return]

        @jinja2.pass_eval_context
        def replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> str:
            _check_replace(str(value), old, new, limit=limit, count=count)
            return original["replace"](eval_ctx, value, old, new, count)  # type: ignore[no-any-return]

        def batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
            self._check_width(linecount, "batch")
            return original["batch"](value, linecount, fill_with)

        @jinja2.pass_eval_context
        def slice_(eval_ctx: Any, value: Any, slices: int, fill_with: Any = None) -> Any:
            self._check_width(slices, "slice")
            return original["slice"](eval_ctx, value, slices, fill_with)

        @jinja2.pass_eval_context
        def join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> str:
            if attribute is not None:
                value = map(make_attrgetter(eval_ctx.environment, attribute), value)
            items = list(value)
            total = text_size(d, limit) * max(len(items) - 1, 0)
            for item in items if total <= limit else ():
                total += len(item) if type(item) is str else text_size(item, limit - total)
                if total > limit:
                    break
            if total > limit:
                raise UnsafeTemplateError(
                    f"join would build over {limit:,} characters; join fewer or shorter items"
                )
            return original["join"](eval_ctx, items, d)  # type: ignore[no-any-return]

        @jinja2.pass_environment
        def sum_(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
            if isinstance(start, list | tuple):
                total = original["sum"](
                    environment, iterable, attribute, _Concatenation(start, limits.max_items)
                )
                return total.value if isinstance(total, _Concatenation) else total
            return original["sum"](environment, iterable, attribute, start)

        @jinja2.pass_eval_context
        def tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
            step = indent if isinstance(indent, int) else len(indent or "")
            self._check_width(step, "tojson indent")
            if text_size(value, limit, indent=step) > limit:
                raise UnsafeTemplateError(
                    f"tojson would build over {limit:,} characters; pass less data"
                )
            return original["tojson"](eval_ctx, value, indent)

        def pprint_(value: Any) -> str:
            stream = _BoundedText(limit)
            pprint.PrettyPrinter(stream=stream).pprint(value)
            return stream.getvalue()[:-1]

        @jinja2.pass_environment
        def wordwrap(
            environment: Any,
            value: Any,
            width: int = 79,
            break_long_words: bool = True,
            wrapstring: Any = None,
            break_on_hyphens: bool = True,
        ) -> str:
            text = value if isinstance(value, str) else str(value)
            if isinstance(width, int) and width > 0:
                joint = environment.newline_sequence if wrapstring is None else wrapstring
                lines = line_breaks(text) + 2 + 2 * len(text) // width
                if len(text) + lines * text_size(joint, limit) > limit:
                    raise UnsafeTemplateError(
                        f"wordwrap would build over {limit:,} characters; wrap less text"
                    )
            return original["wordwrap"](  # type: ignore[no-any-return]
                environment, value, width, break_long_words, wrapstring, break_on_hyphens
            )

        @jinja2.pass_eval_context
        def urlize(eval_ctx: Any, value: Any, *args: Any, **kwargs: Any) -> str:
            text = value if isinstance(value, str) else str(value)
            words = len(_SPACES.findall(text)) + 1
            if words > limits.max_items:
                raise UnsafeTemplateError(
                    f"urlize would go through {words:,} words, over the limit of "
                    f"{limits.max_items:,}"
                )
            extra = sum(text_size(arg, limit) for arg in (*args, *kwargs.values()))
            if len(text) + words * extra > limit:
                raise UnsafeTemplateError(f"urlize would build over {limit:,} characters")
            return original["urlize"](eval_ctx, value, *args, **kwargs)  # type: ignore[no-any-return]

        special: dict[str, Callable[..., Any]] = {
            "batch": batch,
            "center": center,
            "format": format_,
            "indent": indent,
            "join": join,
            "pprint": pprint_,
            "replace": replace,
            "slice": slice_,
            "sum": sum_,
            "tojson": tojson,
            "urlize": urlize,
            "wordwrap": wordwrap,
        }
        for name, func in original.items():
            filters[name] = self._guard_filter(name, special.get(name, func))

    def add_plugin(self, plugin: Plugin) -> None:
        """Make a plugin filter or test available to templates.

        The plugin runs with the checks of a built-in filter (deadline, size of what it
        returns); what it returns must be plain data, so that it cannot give a template an
        object whose attributes lead to code; an exception it raises is a render error
        that names it.
        """
        self.plugin_names.add((plugin.kind, plugin.name))
        function = plugin.function
        what = f"the {plugin.kind} {plugin.name!r} ({plugin.target} from {plugin.distribution})"
        most = self.limits.max_items

        def called(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except (RenderError, SecurityError):
                raise
            except Exception as exc:
                raise RenderError(f"{what} failed: {type(exc).__name__}: {exc}") from None

        if plugin.kind == "filter":

            def checked(*args: Any, **kwargs: Any) -> Any:
                result = called(*args, **kwargs)
                if args and result is args[0]:
                    # The template's own value, given back: nothing new to look at.
                    return result
                return plugins.check_data(result, what, most)

            self.filters[plugin.name] = self._guard_filter(plugin.name, checked)
            return

        def test(*args: Any, **kwargs: Any) -> bool:
            # Only the truth of a test's result reaches the template.
            global _calls
            _calls += 1
            if not _calls & 15:
                _tick()
            try:
                return bool(called(*args, **kwargs))
            except (RenderError, SecurityError):
                raise
            except Exception as exc:
                raise RenderError(f"{what} failed: {type(exc).__name__}: {exc}") from None

        self.tests[plugin.name] = test

    def _filter_test_common(
        self,
        name: Any,
        value: Any,
        args: Any,
        kwargs: Any,
        context: Any,
        eval_ctx: Any,
        is_filter: bool,
    ) -> Any:
        """A filter or test looked up by name when the template runs (``select``, ``map``,
        ...): a plugin only when the template names it with a literal, so that it is one
        of the plugins its fingerprint covers (``_PLUGINS_USED`` in its globals)."""
        kind: Kind = "filter" if is_filter else "test"
        if type(name) is str and (kind, name) in self.plugin_names:
            used = context.parent.get(_PLUGINS_USED, ()) if context is not None else ()
            if (kind, name) not in used:
                raise UnsafeTemplateError(
                    f"the {kind} {name!r} of an installed package is named by a variable; "
                    f"name it with a string literal (e.g. map('{name}')) so that it is part "
                    "of the prompt's fingerprint"
                )
        return super()._filter_test_common(name, value, args, kwargs, context, eval_ctx, is_filter)

    def _guard_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` checking the deadline, the size of its value (a filter that makes it
        text, or goes through its items) and of what it returns.

        Filters run thousands of times per render in loops: the common case (text in,
        short text out) costs a counter, two type checks and a length, and looks at the
        clock every 16th call; any other result is checked, and the clock looked at, each
        time.
        """
        pass_arg = getattr(func, "jinja_pass_arg", None)
        at = 0 if pass_arg is None else 1
        quiet = name in _RETURNS_ITEM
        built, check_text = self._built, self._check_text
        what = f"the {name} filter"

        def returned(args: tuple[Any, ...], result: Any) -> Any:
            # Anything but short text may have taken long to build: check the clock now.
            _tick()
            if quiet or (len(args) > at and result is args[at]):
                return result
            return built(result, what)

        if name in _TEXT_FILTERS:

            def guarded(*args: Any, **kwargs: Any) -> Any:
                global _calls
                _calls += 1
                if not _calls & 15:
                    _tick()
                if type(args[at]) is not str:
                    check_text(args[at], what)
                result = func(*args, **kwargs)
                if type(result) is str and len(result) < _SMALL:
                    return result
                return returned(args, result)

        elif name in _ITEM_FILTERS:
            checked = self._item_check(name, at)

            def guarded(*args: Any, **kwargs: Any) -> Any:
                global _calls
                _calls += 1
                if not _calls & 15:
                    _tick()
                args = checked(args)
                return returned(args, func(*args, **kwargs))

        else:

            def guarded(*args: Any, **kwargs: Any) -> Any:
                global _calls
                _calls += 1
                if not _calls & 15:
                    _tick()
                result = func(*args, **kwargs)
                if type(result) is str and len(result) < _SMALL:
                    return result
                return returned(args, result)

        if pass_arg is not None:
            guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
        return guarded

    def _item_check(self, name: str, at: int) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        """What checks the value (argument ``at``) of a filter that goes through its items,
        before the filter runs; it returns the arguments to call the filter with."""
        what = f"the {name} filter"
        most = self.limits.max_items

        def checked(args: tuple[Any, ...]) -> tuple[Any, ...]:
            value = args[at] if len(args) > at else None
            if isinstance(value, Iterator):
                # Read lazily, as the filter would, but at most ``most`` items.
                return (*args[:at], _counted(value, most, what), *args[at + 1 :])
            if (
                isinstance(value, Sized)
                and not isinstance(value, Undefined)
                and len(value) > most
                and not (name == "reverse" and isinstance(value, str))
            ):
                raise UnsafeTemplateError(
                    f"{what} would go through {len(value):,} items, over the limit of "
                    f"{most:,}; filter or slice the data first"
                )
            return args

        return checked

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

    Loops check the deadline on every iteration; ``~`` checks the size of what it would
    build before joining; every expression printed inside a loop or macro body counts its
    characters, so that text captured by ``{% set %}`` blocks and macros cannot grow
    without limit before it is joined. Lists, tuples and dicts written in the template,
    slices, and macros, callers and modules defined inside a loop or macro count the
    memory they hold, so that a loop cannot keep an ever longer chain of them.
    """

    def __init__(self) -> None:
        self.repeating = 0
        self.added: list[nodes.Node] = []

    def _guard(self, node: nodes.Node, name: str, lineno: int | None = None) -> nodes.Filter:
        line = node.lineno if lineno is None else lineno
        guard = nodes.Filter(node, name, [], [], None, None, lineno=line)
        self.added.append(guard)
        return guard

    def _visit_all(self, children: list[nodes.Node]) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for child in children:
            visited = self.visit(child)
            if isinstance(visited, list):
                out.extend(visited)
            else:
                out.append(visited)
        return out

    def _charged(self, node: nodes.Node) -> nodes.Node | list[nodes.Node]:
        """``node``, a definition; run anew on every pass of a loop or macro, it is
        preceded by a statement that charges what it keeps alive."""
        if not self.repeating:
            return node
        size = nodes.Const(_DEFINITION_BYTES, lineno=node.lineno)
        charge = nodes.ExprStmt(self._guard(size, "_promptlib_charge"), lineno=node.lineno)
        self.added.extend((size, charge))
        return [charge, node]

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node.iter = self.visit(node.iter)
        self.repeating += 1
        node.body = self._visit_all(node.body)
        node.else_ = self._visit_all(node.else_)
        self.repeating -= 1
        if node.test is not None:
            node.test = self.visit(node.test)
        node.iter = self._guard(node.iter, "_promptlib_guard", node.lineno)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node | list[nodes.Node]:
        charged = self._charged(node)
        self.repeating += 1
        self.generic_visit(node)
        self.repeating -= 1
        return charged

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node | list[nodes.Node]:
        charged = self._charged(node)
        self.repeating += 1
        self.generic_visit(node)
        self.repeating -= 1
        return charged

    def visit_Import(self, node: nodes.Import) -> nodes.Node | list[nodes.Node]:
        return self._charged(self.generic_visit(node))

    def visit_FromImport(self, node: nodes.FromImport) -> nodes.Node | list[nodes.Node]:
        return self._charged(self.generic_visit(node))

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        guard = "_promptlib_out" if self.repeating else "_promptlib_print"
        node.nodes = [
            child if isinstance(child, nodes.TemplateData) else self._guard(child, guard)
            for child in node.nodes
        ]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.Tuple(node.nodes, "load", lineno=node.lineno)
        self.added.append(parts)
        return self._guard(parts, "_promptlib_concat")

    def _literal(self, node: nodes.List | nodes.Tuple | nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node, nodes.Tuple) and node.ctx != "load":
            return node
        return self._guard(node, "_promptlib_literal")

    visit_List = visit_Tuple = visit_Dict = _literal

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node.arg, nodes.Slice) and node.ctx == "load":
            return self._guard(node, "_promptlib_slice")
        return node


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


def _unknown(kind: Kind, name: str, known: Iterable[str]) -> str:
    """The message for a filter or test that does not exist, with the nearest real name
    (built in or installed), else how to install or register it."""
    public = [k for k in known if not k.startswith("_")]
    # Stricter than difflib's default, which offers unrelated names (frobnicate: truncate).
    close = difflib.get_close_matches(name, public, n=1, cutoff=0.75)
    if close:
        return f"unknown {kind} {name!r} (did you mean {close[0]!r}?)"
    return (
        f"unknown {kind} {name!r}: templates can use Jinja's built-in {kind}s "
        f"({_BUILTIN_LISTS.format(kind)}) and {kind}s of installed packages; "
        + plugins.registration_hint(kind)
    )


def _check_replace(value: Any, old: Any, new: Any, *, limit: int, count: Any = -1) -> None:
    """The size of ``value.replace(old, new, count)``, before it is built."""
    if (
        isinstance(value, str | bytes | bytearray)
        and isinstance(old, str | bytes)
        and isinstance(new, str | bytes)
        and len(new) > len(old)
    ):
        found = len(value) + 1 if not old else value.count(old)  # type: ignore[arg-type]
        if isinstance(count, int) and count >= 0:
            found = min(found, count)
        if len(value) + found * (len(new) - len(old)) > limit:
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
        self._plugins: dict[tuple[Kind, str], Plugin] = {}
        # Every name looked up among the plugins, with ``plugins.state``: a validation
        # cache keeps them with a file's result (the caller clears it between files).
        self.looked_up: dict[tuple[Kind, str], str | None] = {}

    def plugin(self, kind: Kind, name: str) -> Plugin:
        """A plugin that a template parsed by this renderer uses (see ``ParsedTemplate``)."""
        return self._plugins[kind, name]

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
            variables, partials, used = self._analyse(tree, stack=(), generator=generator)
        except jinja2.TemplateError as exc:  # e.g. a block defined twice
            lineno = getattr(exc, "lineno", 0) or 0
            raise TemplateProblem(f"template error: {exc.message or exc}", lineno) from None
        except RecursionError:
            raise TemplateProblem(_TOO_DEEP) from None
        return ParsedTemplate(
            source,
            tree,
            frozenset(variables),
            frozenset(partials),
            frozenset(used),
            code=generator.output.getvalue(),
        )

    def _parse_tree(self, source: str) -> nodes.Template:
        try:
            return self._env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno) from None
        except UnsafeTemplateError as exc:
            raise TemplateProblem(str(exc)) from None
        except RecursionError:
            raise TemplateProblem(_TOO_DEEP) from None

    def _analyse(
        self,
        tree: nodes.Template,
        stack: tuple[str, ...],
        generator: _Generator | None = None,
    ) -> tuple[set[str], set[str], set[tuple[Kind, str]]]:
        """The variables, partials and plugins of ``tree``; with a ``generator``, which
        finds the variables by generating the template's code, that code is kept in it."""
        # One walk collects what the checks below need, in document order.
        extends: nodes.Extends | None = None
        assigned: set[str] = set()
        references: list[nodes.Node] = []
        problems: list[TemplateProblem] = []
        used: set[tuple[Kind, str]] = set()
        for node in tree.find_all(_ANALYSED):
            if isinstance(node, nodes.Name):
                if node.ctx == "store":
                    assigned.add(node.name)
            elif isinstance(node, nodes.Filter | nodes.Test | nodes.Call):
                problems.extend(
                    TemplateProblem(message, node.lineno) for message in self._refusals(node, used)
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
            used |= info.plugins
        return variables, partials, used

    def _known(self, kind: Kind, name: str, used: set[tuple[Kind, str]]) -> str | None:
        """None when filter or test ``name`` exists (built in, or a plugin, which is then
        loaded and recorded in ``used``), else the problem with it."""
        table = self._env.filters if kind == "filter" else self._env.tests
        key = (kind, name)
        if key in self._plugins:
            used.add(key)
            self.looked_up[key] = plugins.state(kind, name)
            return None
        if name in table:
            return None
        try:
            plugin = plugins.load(kind, name) if not name.startswith("_") else None
        except ConfigError as exc:
            self.looked_up[key] = f"error: {exc}"
            return str(exc)
        self.looked_up[key] = plugins.state(kind, name)
        if plugin is None:
            public = [*table, *plugins.available(kind)]
            return _unknown(kind, name, public)
        self._env.add_plugin(plugin)
        self._plugins[key] = plugin
        used.add(key)
        return None

    def _refusals(
        self, node: nodes.Filter | nodes.Test | nodes.Call, used: set[tuple[Kind, str]]
    ) -> Iterator[str]:
        """What is wrong with one filter, test or call: the names Jinja would only look up
        when the expression runs, and the method calls the sandbox would refuse then.
        The plugins it names are added to ``used``."""
        if isinstance(node, nodes.Call):
            method = node.node
            if isinstance(method, nodes.Getattr) and method.attr in _MUTATING:
                yield _mutation(method.attr)
            return
        if isinstance(node, nodes.Filter):
            problem = self._known("filter", node.name, used)
            if problem is not None:
                yield problem
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
                    problem = self._known(kind, argument.value, used)
                    if problem is not None:
                        yield problem
        else:
            problem = self._known("test", node.name, used)
            if problem is not None:
                yield problem

    def _partial(self, name: str, stack: tuple[str, ...]) -> ParsedTemplate:
        info = self._partial_info.get(name)
        if info is None:
            try:
                tree = self._parse_tree(self.partials[name])
                try:
                    variables, partials, used = self._analyse(tree, (*stack, name))
                except jinja2.TemplateError as error:
                    lineno = getattr(error, "lineno", 0) or 0
                    raise TemplateProblem(
                        f"template error: {error.message or error}", lineno
                    ) from None
                except RecursionError:
                    raise TemplateProblem(_TOO_DEEP) from None
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
                self.partials[name],
                tree,
                frozenset(variables),
                frozenset(partials),
                frozenset(used),
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
        extra = {_PLUGINS_USED: parsed.plugins} if parsed.plugins else None
        return env.template_class.from_code(env, code, env.make_globals(extra), None)

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
        state = _state
        previous = state.__dict__.copy()
        state.deadline = time.monotonic() + limits.max_seconds
        state.max_seconds = limits.max_seconds
        state.produced = 0
        state.max_produced = 4 * limits.max_output_chars
        state.built = 0
        state.max_built = limits.max_built_bytes
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
        except MemoryError:
            # Only when the process itself is short of memory: every value a template
            # builds is bounded well below what a render may use.
            raise UnsafeTemplateError("rendering ran out of memory") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {exc}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from None
        finally:
            state.__dict__.clear()
            state.__dict__.update(previous)
