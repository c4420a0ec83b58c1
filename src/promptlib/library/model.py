"""The prompt file format, as pydantic models (the second stage of the two-stage parse).

A prompt file is one YAML mapping. Unknown keys are errors everywhere. The models here only
check shape and types; cross-field rules that need templates (undeclared variables,
includes, rendering the examples) live in ``promptlib.loader``.

The JSON Schema that ``promptlib schema`` prints is generated from ``PromptFile``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

__all__ = [
    "ID_PATTERN",
    "INPUT_TYPES",
    "RESERVED_INPUT_NAMES",
    "ExampleSpec",
    "InputSpec",
    "MessageSpec",
    "ModelParams",
    "OutputSpec",
    "PromptFile",
]

ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
# Any ASCII identifier, so that an input can carry the name of a dataset field as it is
# (``answerKey``).
INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
INPUT_TYPES = ("string", "integer", "number", "boolean", "array", "object")
# Names a template cannot use for an input: Jinja keywords and literals (``True``,
# ``False`` and ``None`` are literals too), the sandbox's globals and the names Jinja
# binds inside loops and macros.
RESERVED_INPUT_NAMES = frozenset(
    {
        "False", "None", "True",
        "and", "as", "block", "caller", "dict", "elif", "else", "endfor", "endif",
        "extends", "false", "for", "from", "if", "import", "in", "include", "is",
        "kwargs", "loop", "macro", "namespace", "none", "not", "or", "range", "recursive",
        "self", "set", "true", "varargs", "with", "without",
    }
)  # fmt: skip
_INPUT_NAME = re.compile(INPUT_NAME_PATTERN)

InputType = Literal["string", "integer", "number", "boolean", "array", "object"]


def _input_name(name: str) -> str:
    if not _INPUT_NAME.fullmatch(name):
        raise ValueError(
            f"input name {name!r} is not valid: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    if name in RESERVED_INPUT_NAMES:
        raise ValueError(
            f"input name {name!r} is reserved by the template language; rename the input"
        )
    return name


# Checked one name at a time, so that every bad name is reported at its own line.
InputName = Annotated[str, AfterValidator(_input_name)]
# The same rule for editors, in the JSON Schema of ``inputs``.
_INPUT_NAMES_SCHEMA: dict[str, JsonValue] = {
    "pattern": INPUT_NAME_PATTERN,
    "not": {"enum": [*sorted(RESERVED_INPUT_NAMES)]},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class InputSpec(_Strict):
    """One declared input of a prompt."""

    type: InputType = Field(description="The JSON type of the value.")
    description: str = Field("", description="What the caller should pass (documentation only).")
    required: bool = Field(True, description="Whether a render must supply it.")
    default: Any = Field(None, description="Value used when an optional input is not supplied.")
    enum: list[Any] | None = Field(None, description="The only values allowed.", min_length=1)

    @model_validator(mode="after")
    def _default_only_when_optional(self) -> InputSpec:
        if "default" in self.model_fields_set and self.required:
            raise ValueError("an input with a default must set required: false")
        return self


class MessageSpec(_Strict):
    """One chat message; ``content`` is a Jinja template."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class ModelParams(_Strict):
    """Default generation parameters, passed to the provider unless a suite overrides them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, strict=True)
    stop: list[str] | None = Field(None, max_length=4)
    seed: int | None = Field(None, strict=True)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)

    @field_validator("temperature", "top_p", "presence_penalty", "frequency_penalty", mode="before")
    @classmethod
    def _numbers_not_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int | float)):
            raise ValueError("must be a number")
        return value


class OutputSpec(_Strict):
    """What the prompt asks the model to produce."""

    format: Literal["text", "json", "label"] = "text"
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    labels: list[str] | None = Field(None, min_length=2)

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> OutputSpec:
        if self.format == "label" and not self.labels:
            raise ValueError("format 'label' needs a list of labels")
        if self.format != "label" and self.labels is not None:
            raise ValueError(f"labels are only allowed with format 'label', not {self.format!r}")
        if self.format != "json" and self.json_schema is not None:
            raise ValueError(f"a schema is only allowed with format 'json', not {self.format!r}")
        if self.labels is not None:
            seen: set[str] = set()
            for label in self.labels:
                if label in seen:
                    raise ValueError(f"label {label!r} is listed twice")
                seen.add(label)
        return self


class ExampleSpec(_Strict):
    """A set of inputs that renders, taken from the prompt's dataset."""

    inputs: dict[str, Any] = Field(description="Render arguments, by input name.")
    source: str | None = Field(
        None,
        description="Where the values come from: dataset file#row id.",
    )


class PromptFile(_Strict):
    """One prompt file. ``id`` must equal the file's path under ``prompts/``."""

    id: str = Field(pattern=ID_PATTERN, description="Dotted lowercase id; equals the file path.")
    version: str = Field(description="Semantic version of this prompt, e.g. 1.2.0.")
    description: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    owner: str | None = None
    inputs: dict[InputName, InputSpec] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": _INPUT_NAMES_SCHEMA}
    )
    messages: list[MessageSpec] | None = Field(None, min_length=1)
    template: str | None = Field(None, min_length=1)
    model: ModelParams = Field(default_factory=ModelParams)
    output: OutputSpec = Field(default_factory=OutputSpec)
    examples: list[ExampleSpec] = Field(default_factory=list)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        from ..versions import parse_version

        parse_version(value)
        return value

    @model_validator(mode="after")
    def _messages_or_template(self) -> PromptFile:
        if (self.messages is None) == (self.template is None):
            raise ValueError("a prompt has exactly one of 'messages' or 'template'")
        return self
