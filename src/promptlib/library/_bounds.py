"""Measuring values without building them: text sizes, owned memory, input sizes, excerpts.

The sandbox (``render``) and input validation (``prompt``) bound what a template may build
and what a caller may pass. Every function here does work proportional to the bound it is
given, never to the size of the value it looks at: a 10 MB mapping or a list holding a
million references to one megabyte of text costs as little to measure as a small one.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from jinja2.runtime import Undefined
from jinja2.utils import Namespace

__all__ = [
    "excerpt",
    "input_size",
    "line_breaks",
    "owned_size",
    "text_size",
    "translated_size",
]

# Characters ``str.splitlines`` breaks at, besides "\n" (``indent`` splits lines that way).
_OTHER_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
# A decimal digit carries log2(10) bits: digits <= bits * 3 // 10 + 1.
_SEQUENCES = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)
# What an object that is not plain data (a macro, a loop, a generator, a range) costs, as
# text (its repr) and as memory: its own size plus the small objects it keeps alive.
_OBJECT_TEXT = 200
_OBJECT_BYTES = 1024
_END = object()


def _namespace_attrs(value: Namespace) -> dict[str, Any]:
    attrs: dict[str, Any] = object.__getattribute__(value, "_Namespace__attrs")
    return attrs


def text_size(value: Any, limit: int, indent: int = 0) -> int:
    """About ``len(str(value))``; once the count passes ``limit`` it stops and returns it.

    Strings count their length, numbers their digits, containers their items as ``repr``
    writes them (quotes and separators included), so the work is at most about ``limit``
    steps whatever the value holds. With an ``indent`` (``json.dumps``), every item also
    starts a line indented by its depth. Escapes ``repr`` or JSON may add are not counted:
    callers check the text they build against the same limit afterwards.
    """
    if isinstance(value, str):
        return len(value)
    total = 0
    # Iterators over the items still to count, with their depth and whether each item
    # starts a line when indented (a mapping's values follow their keys).
    stack: list[tuple[Iterator[Any], int, bool]] = [(iter((value,)), 0, False)]
    while stack:
        items, depth, starts_line = stack[-1]
        item = next(items, _END)
        if item is _END:
            stack.pop()
            continue
        if indent and starts_line:
            total += 1 + indent * depth
        if isinstance(item, str):
            total += len(item) + 2
        elif item is None or isinstance(item, bool):
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 2
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, bytes | bytearray):
            total += 4 * len(item) + 3
        elif isinstance(item, Mapping | Namespace):
            attrs = _namespace_attrs(item) if isinstance(item, Namespace) else item
            total += 14 + 4 * len(attrs) + (1 + indent * depth if indent else 0)
            stack.append((iter(attrs.keys()), depth + 1, True))
            stack.append((iter(attrs.values()), depth + 1, False))
        elif isinstance(item, _SEQUENCES):
            total += 2 + 2 * len(item) + (1 + indent * depth if indent else 0)
            stack.append((iter(item), depth + 1, True))
        elif not isinstance(item, Undefined):
            total += _OBJECT_TEXT
        if total > limit:
            break
    return total


def _items(container: Any) -> Iterator[Any]:
    if isinstance(container, dict):
        yield from container.keys()
        yield from container.values()
    else:
        yield from container


def _refcount_when_owned() -> int:
    """What ``sys.getrefcount`` reports, in ``owned_size``'s loop, for an item that only
    its container refers to (the loop variable and the call's argument add theirs)."""
    for item in _items([object()]):
        return sys.getrefcount(item)
    raise AssertionError("unreachable")  # pragma: no cover


_OWNED = _refcount_when_owned()


def owned_size(container: Any, *, literal: bool = False) -> int:
    """Bytes of memory ``container`` holds: its own, plus each item only it refers to.

    An item something else also refers to (a caller's input, a string held by a variable)
    was counted when it was built, or is not the template's to count. For a ``literal``
    (a list, tuple or dict written in the template), numbers and objects that are not data
    (macros, loops, modules) always count: they are what a loop would keep alive in a
    chain of literals, and the variables of the loop still refer to them.
    """
    if isinstance(container, Namespace):
        attrs = _namespace_attrs(container)
        return sys.getsizeof(container) + owned_size(attrs, literal=literal)
    size = sys.getsizeof(container)
    for item in _items(container):
        if item is None or isinstance(item, bool):
            continue
        if sys.getrefcount(item) <= _OWNED:
            size += sys.getsizeof(item)
        elif literal:
            if isinstance(item, int | float):
                size += sys.getsizeof(item)
            elif not isinstance(item, str | bytes | list | tuple | dict | set | frozenset):
                size += _OBJECT_BYTES
    return size


def input_size(value: Any, limit: int, max_depth: int) -> tuple[int, int]:
    """The size of an input value in characters and items, and its depth of nesting.

    Text counts its length, an integer its digits, every other value one, and containers
    also their items (and a mapping its keys' lengths). Counting stops as soon as the size
    passes ``limit`` or the depth passes ``max_depth``, so a huge value costs no more to
    refuse than a small one.
    """
    if isinstance(value, str):
        return len(value), 0
    size = 0
    deepest = 0
    stack: list[tuple[Iterator[Any], int]] = [(iter((value,)), 0)]
    while stack:
        items, depth = stack[-1]
        item = next(items, _END)
        if item is _END:
            stack.pop()
            continue
        deepest = max(deepest, depth)
        if isinstance(item, str | bytes):
            size += len(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            size += 1 + item.bit_length() * 3 // 10  # its digits
        elif isinstance(item, Mapping | list | tuple | set | frozenset):
            size += 1 + len(item)
            if item and depth >= max_depth:
                return size, depth + 1
            if isinstance(item, Mapping):
                stack.append((iter(item.values()), depth + 1))
                stack.append((iter(item.keys()), depth + 1))
            else:
                stack.append((iter(item), depth + 1))
        else:
            size += 1
        if size > limit:
            break
    return size, deepest


def excerpt(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to at most ``width`` characters, without building the whole repr.

    Containers show their first items, text its start; a cut is marked with ``...``.
    """
    pieces: list[str] = []
    _excerpt(value, pieces, width + 1, 0)
    text = "".join(pieces)
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _excerpt(value: Any, out: list[str], room: int, depth: int) -> int:
    """Append the start of ``repr(value)`` to ``out``, at most ``room`` characters more or
    less; return the room left."""
    if room <= 0:
        return room
    if isinstance(value, str):
        piece = repr(value[:room])
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        piece = f"<integer of {value.bit_length() * 3 // 10 + 1:,} digits>"
    elif isinstance(value, dict | list | tuple | set | frozenset) and value:
        if depth >= 8:
            piece = "[...]"
        else:
            brackets = {dict: "{}", list: "[]", tuple: "()"}.get(type(value), "{}")
            opening, closing = brackets[0], brackets[1]
            out.append(opening)
            room -= 1
            pairs = value.items() if isinstance(value, dict) else value
            for index, item in enumerate(pairs):
                if room <= 0:
                    break
                if index:
                    out.append(", ")
                    room -= 2
                if isinstance(value, dict):
                    room = _excerpt(item[0], out, room, depth + 1)
                    out.append(": ")
                    room = _excerpt(item[1], out, room - 2, depth + 1)
                else:
                    room = _excerpt(item, out, room, depth + 1)
            piece = "," + closing if type(value) is tuple and len(value) == 1 else closing
    else:
        piece = repr(value)[:room]
    out.append(piece)
    return room - len(piece)


def line_breaks(text: str) -> int:
    """How many line breaks ``text.splitlines()`` would split at (at most; "\\r\\n" is one
    break but counts two)."""
    return text.count("\n") + sum(text.count(mark) for mark in _OTHER_BREAKS)


def translated_size(text: str, table: Any, limit: int) -> int:
    """The length of ``text.translate(table)``, counted per distinct character; it stops
    once the count passes ``limit``."""
    total = len(text)
    for char, count in Counter(text).items():
        try:
            replacement = table[ord(char)]
        except LookupError:
            continue
        if isinstance(replacement, str):
            total += count * (len(replacement) - 1)
        elif replacement is None:
            total -= count
        if total > limit:
            break
    return total
