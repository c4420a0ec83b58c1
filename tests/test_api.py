"""The public surface, import cost and the direction of imports between layers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import promptlib

SRC = Path(promptlib.__file__).parent

# Lower layers never import higher ones (see STYLE: errors -> model -> loader -> library
# -> harness -> compare -> cli). A module missing here fails the test: place it on purpose.
LAYERS: dict[str, int] = {
    "errors": 0,
    "_canonical": 0,
    "_rouge": 0,
    "_git": 1,
    "_yaml": 1,
    "versioning": 1,
    "model": 2,
    "render": 2,
    "settings": 2,
    "schema": 3,
    "prompt": 3,
    "dataset": 3,
    "metrics": 3,
    "ledger": 3,
    "loader": 4,
    "suite": 4,
    "providers": 4,
    "library": 5,
    "cache": 5,
    "stats": 1,
    "harness": 6,
    "releases": 6,
    "diff": 7,
    "evaluation": 7,
    "manifest": 6,
    "api": 7,
    "release": 8,
    "compare": 8,
    "__init__": 9,
    "cli": 10,
}


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert promptlib.__all__ == sorted(promptlib.__all__)
    for name in promptlib.__all__:
        assert getattr(promptlib, name) is not None, name
    assert set(promptlib.__all__) <= set(dir(promptlib))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        promptlib.nope  # noqa: B018


def test_errors_subclass_the_builtins_callers_catch() -> None:
    assert issubclass(promptlib.LoadError, ValueError)
    assert issubclass(promptlib.NotFoundError, LookupError)
    assert issubclass(promptlib.InputError, promptlib.RenderError)
    assert issubclass(promptlib.ProviderError, RuntimeError)
    for name in promptlib.__all__:
        value = getattr(promptlib, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, promptlib.PromptlibError)


FORBIDDEN = ("typer", "click", "rich", "httpx", "openai", "aiohttp", "numpy", "scipy", "bm25s")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "code",
    ["import promptlib", "import promptlib; promptlib.load().values()", "import promptlib.errors"],
)
def test_import_pulls_in_no_cli_or_provider_dependency(code: str) -> None:
    loaded = _modules_after(code)
    heavy = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert heavy == []


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = path.relative_to(SRC).parts
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - node.level])
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(target[0].removesuffix(".py"))
            else:
                for alias in node.names:
                    is_module = (SRC / f"{alias.name}.py").exists() or (SRC / alias.name).is_dir()
                    found.add(alias.name if is_module else "__init__")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("promptlib.")
        ):
            found.add(node.module.split(".")[1])
    return found


def _layer(module: str) -> int:
    assert module in LAYERS, f"module {module!r} has no layer in tests/test_api.py"
    return LAYERS[module]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_only_go_down_the_layers(path: Path) -> None:
    owner = path.relative_to(SRC).parts[0].removesuffix(".py")
    mine = _layer(owner)
    for imported in _imports_of(path):
        if imported == owner:
            continue
        assert _layer(imported) <= mine, (
            f"{owner} (layer {mine}) imports {imported} (layer {_layer(imported)})"
        )
