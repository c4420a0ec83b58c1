"""A loaded prompt: validated inputs, sandboxed rendering and its fingerprint.

The *behaviour* of a prompt is everything that changes what a model receives or is asked
for: its messages or template (with the source of every partial they include), its inputs
(type, required, default, enum), its model parameters and its output spec, and the
identity of each filter or test from an installed package that its templates use
(``promptlib.library.plugins``). Metadata (description, tags, owner, input descriptions,
examples) is not behaviour.

The ``filters`` and ``tests`` keys of the behaviour are present only when the prompt uses
such plugins, so the fingerprint of a prompt that uses none is what it always was.

The fingerprint is ``sha256:`` over the canonical JSON of the behaviour
(``promptlib._canonical``). It is the identity the ledger, the response cache and manifest
locks use, so its format is pinned by golden tests and only ever changes with a new
``FINGERPRINT_FORMAT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
from pydantic import ConfigDict, TypeAdapter, ValidationError

from .._canonical import sha256_of
from ..errors import InputError, RenderError
from ..versions import Version, parse_version
from ._bounds import excerpt, input_size
from .messages import Message
from .model import ExampleSpec, InputSpec, MessageSpec, ModelParams, OutputSpec, PromptFile
from .plugins import Plugin
from .render import DEFAULT_LIMITS, ParsedTemplate, Renderer, RenderLimits, not_given

__all__ = ["FINGERPRINT_FORMAT", "Message", "Prompt", "check_inputs"]

FINGERPRINT_FORMAT = 1


_STRICT = ConfigDict(strict=True)
_ADAPTERS: dict[str, TypeAdapter[Any]] = {}
_PYTHON_TYPES = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
}


def _adapter(kind: str) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(_PYTHON_TYPES[kind], config=_STRICT)
    return adapter


def _show(value: Any) -> str:
    """A short excerpt of ``repr(value)``: a message never quotes a large value whole."""
    return excerpt(value, 60)


def check_value(name: str, spec: InputSpec, value: Any) -> str | None:
    """The problem with ``value`` for input ``name``, or None when it is valid."""
    try:
        _adapter(spec.type).validate_python(value)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        got = f"{type(value).__name__} {_show(value)}"
        return f"input {name!r}: {message[0].lower()}{message[1:]} ({spec.type}), got {got}"
    if spec.enum is not None and value not in spec.enum:
        allowed = ", ".join(_show(v) for v in spec.enum)
        return f"input {name!r}: {_show(value)} is not one of the allowed values ({allowed})"
    return None


def _size_problem(name: str, value: Any, room: int, limits: RenderLimits) -> tuple[str | None, int]:
    """The problem with the size of input ``name`` when the inputs so far left ``room``
    (characters and items), and its size."""
    size, depth = input_size(value, room, limits.max_input_depth)
    if depth > limits.max_input_depth:
        return (
            f"input {name!r} is nested more than {limits.max_input_depth} levels deep; "
            "pass flatter data",
            size,
        )
    if size > room:
        return (
            f"input {name!r} is too large: the inputs of one render may hold at most "
            f"{limits.max_input_size:,} characters and items together; pass less data",
            size,
        )
    return None, size


def check_inputs(
    inputs: Mapping[str, InputSpec],
    values: Mapping[str, Any],
    limits: RenderLimits = DEFAULT_LIMITS,
) -> tuple[dict[str, Any], list[str]]:
    """Validate render arguments against declared inputs (pydantic, strict types).

    Returns the variables to render with (declared defaults applied, ``default: null``
    included; an optional input that declares no default is left out, so that it is
    undefined in the template) and one message per problem: unknown names, missing
    required inputs, values too large or too deeply nested (``limits``: checked first, in
    time proportional to the limit, not to the value), wrong types and values outside
    ``enum``.
    """
    problems: list[str] = []
    for name in values:
        if name not in inputs:
            declared = ", ".join(sorted(inputs)) or "none"
            problems.append(f"unknown input {name!r} (declared inputs: {declared})")
    variables: dict[str, Any] = {}
    room = limits.max_input_size
    for name, spec in inputs.items():
        if name in values:
            value = values[name]
            problem, size = _size_problem(name, value, room, limits)
            if problem is None:
                room -= size
                problem = check_value(name, spec, value)
            if problem:
                problems.append(problem)
            variables[name] = value
        elif spec.required:
            problems.append(f"missing required input {name!r} ({spec.type})")
        elif "default" in spec.model_fields_set:
            variables[name] = spec.default
    return variables, problems


def _input_behaviour(spec: InputSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": spec.type, "required": spec.required}
    if "default" in spec.model_fields_set:
        out["default"] = spec.default
    if spec.enum is not None:
        out["enum"] = list(spec.enum)
    return out


class Prompt:
    """One prompt of a library: read-only data, ``render()`` and ``fingerprint``."""

    __slots__ = (
        "_compiled",
        "_not_given",
        "_parsed",
        "_renderer",
        "description",
        "examples",
        "fingerprint",
        "id",
        "inputs",
        "messages",
        "model",
        "output",
        "owner",
        "partials",
        "path",
        "plugins",
        "tags",
        "template",
        "variables",
        "version",
    )

    id: str
    version: Version
    description: str
    tags: tuple[str, ...]
    owner: str | None
    inputs: Mapping[str, InputSpec]
    messages: tuple[MessageSpec, ...] | None
    template: str | None
    model: ModelParams
    output: OutputSpec
    examples: tuple[ExampleSpec, ...]
    path: Path | None
    partials: Mapping[str, str]
    variables: frozenset[str]
    plugins: tuple[Plugin, ...]
    fingerprint: str
    _renderer: Renderer
    _parsed: tuple[ParsedTemplate, ...]
    _compiled: list[jinja2.Template]
    _not_given: tuple[str, ...]

    def __init__(
        self,
        spec: PromptFile,
        *,
        renderer: Renderer,
        parsed: Sequence[ParsedTemplate],
        path: Path | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "id", spec.id)
        set_(self, "version", parse_version(spec.version))
        set_(self, "description", spec.description)
        set_(self, "tags", tuple(spec.tags))
        set_(self, "owner", spec.owner)
        set_(self, "inputs", MappingProxyType(dict(spec.inputs)))
        set_(self, "messages", tuple(spec.messages) if spec.messages is not None else None)
        set_(self, "template", spec.template)
        set_(self, "model", spec.model)
        set_(self, "output", spec.output)
        set_(self, "examples", tuple(spec.examples))
        set_(self, "path", path)
        set_(self, "_renderer", renderer)
        set_(self, "_parsed", tuple(parsed))
        set_(self, "_compiled", [])
        set_(
            self,
            "_not_given",
            tuple(
                name
                for name, item in spec.inputs.items()
                if not item.required and "default" not in item.model_fields_set
            ),
        )
        names: set[str] = set()
        variables: set[str] = set()
        used: set[tuple[Any, str]] = set()
        for item in parsed:
            names |= item.partials
            variables |= item.variables
            used |= item.plugins
        set_(self, "partials", MappingProxyType({n: renderer.partials[n] for n in sorted(names)}))
        set_(self, "variables", frozenset(variables))
        set_(self, "plugins", tuple(renderer.plugin(kind, name) for kind, name in sorted(used)))
        set_(self, "fingerprint", sha256_of(self.behaviour()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Prompt is read-only; cannot set {name!r}")

    def __repr__(self) -> str:
        return f"<Prompt {self.id} {self.version} {self.fingerprint[:19]}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        return (self.id, self.version, self.fingerprint) == (
            other.id,
            other.version,
            other.fingerprint,
        )

    def __hash__(self) -> int:
        return hash((self.id, self.fingerprint))

    @property
    def is_chat(self) -> bool:
        """True for ``messages`` prompts, False for ``template`` prompts."""
        return self.messages is not None

    def behaviour(self) -> dict[str, Any]:
        """The behaviour content that the fingerprint covers, as plain JSON data."""
        out: dict[str, Any] = {"format": FINGERPRINT_FORMAT}
        if self.messages is not None:
            out["messages"] = [{"role": m.role, "content": m.content} for m in self.messages]
        else:
            out["template"] = self.template
        out["partials"] = dict(self.partials)
        out["inputs"] = {name: _input_behaviour(spec) for name, spec in sorted(self.inputs.items())}
        out["model"] = self.model.model_dump(exclude_none=True)
        out["output"] = self.output.model_dump(exclude_none=True, by_alias=True)
        for kind, key in (("filter", "filters"), ("test", "tests")):
            identities = {p.name: p.identity() for p in self.plugins if p.kind == kind}
            if identities:
                out[key] = identities
        return out

    def metadata(self) -> dict[str, Any]:
        """What is not behaviour: description, tags, owner, input descriptions, examples."""
        return {
            "description": self.description,
            "tags": list(self.tags),
            "owner": self.owner,
            "inputs": {n: s.description for n, s in sorted(self.inputs.items())},
            "examples": [e.model_dump(exclude_none=True) for e in self.examples],
        }

    def check_inputs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``values`` against the declared inputs; ``InputError`` lists every problem."""
        variables, problems = check_inputs(self.inputs, values, self._renderer.limits)
        if problems:
            raise InputError(problems, prompt_id=self.id)
        return variables

    def _templates(self) -> list[jinja2.Template]:
        if not self._compiled:
            self._compiled.extend(self._renderer.compile(p) for p in self._parsed)
        return self._compiled

    def render(self, **inputs: Any) -> list[Message]:
        """Render the chat messages; a ``template`` prompt renders as one user message.

        An optional input that was not given and declares no default is undefined: false
        in ``{% if %}``, replaced by ``default``, an error when printed.
        """
        variables = self.check_inputs(inputs)
        for name in self._not_given:
            if name not in variables:
                variables[name] = not_given(name)
        templates = self._templates()
        try:
            if self.messages is None:
                return [Message("user", self._renderer.render(templates[0], variables))]
            return [
                Message(spec.role, self._renderer.render(template, variables))
                for spec, template in zip(self.messages, templates, strict=True)
            ]
        except RenderError as exc:
            raise type(exc)(str(exc), prompt_id=self.id) from None

    def render_text(self, **inputs: Any) -> str:
        """Render a ``template`` prompt to text; chat prompts use ``render()``."""
        if self.messages is not None:
            raise RenderError(
                "is a chat prompt (messages); use render() for its messages", prompt_id=self.id
            )
        return self.render(**inputs)[0].content

    @classmethod
    def from_behaviour(
        cls,
        prompt_id: str,
        version: str,
        behaviour: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Prompt:
        """Rebuild a prompt from recorded behaviour content (e.g. a release record).

        Raises ``RenderError`` if a template no longer parses, and ``ValueError`` if the
        recorded content is not a valid prompt.
        """
        meta = dict(metadata or {})
        descriptions = meta.get("inputs") or {}
        inputs = {
            name: {**spec, "description": descriptions.get(name, "")}
            for name, spec in behaviour.get("inputs", {}).items()
        }
        data: dict[str, Any] = {
            "id": prompt_id,
            "version": version,
            "description": meta.get("description") or f"{prompt_id} (from a recorded release)",
            "tags": list(meta.get("tags") or []),
            "owner": meta.get("owner"),
            "inputs": inputs,
            "model": behaviour.get("model", {}),
            "output": behaviour.get("output", {}),
            "examples": list(meta.get("examples") or []),
        }
        if "messages" in behaviour:
            data["messages"] = behaviour["messages"]
        else:
            data["template"] = behaviour["template"]
        spec = PromptFile.model_validate(data)
        renderer = Renderer(behaviour.get("partials", {}))
        sources = [m.content for m in spec.messages] if spec.messages else [spec.template or ""]
        try:
            parsed = [renderer.parse(source) for source in sources]
        except Exception as exc:
            raise RenderError(
                f"recorded template does not parse: {exc}", prompt_id=prompt_id
            ) from None
        return cls(spec, renderer=renderer, parsed=parsed)
