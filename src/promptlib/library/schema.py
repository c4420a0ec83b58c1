"""The JSON Schema of prompt files, generated from the pydantic model.

Editors (e.g. VS Code with the YAML extension) read it through the comment at the top of
each prompt file: ``# yaml-language-server: $schema=<relative path>/prompt.schema.json``.
The committed copy in ``schema/prompt.schema.json`` must equal ``promptlib schema``.
"""

from __future__ import annotations

from typing import Any

from .model import PromptFile

__all__ = ["SCHEMA_ID", "prompt_file_schema"]

SCHEMA_ID = "https://promptlib.dev/schema/prompt-file-1.json"


def prompt_file_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one prompt file."""
    schema = PromptFile.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "promptlib prompt file",
        **{k: v for k, v in schema.items() if k != "title"},
    }
