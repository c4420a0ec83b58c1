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


# The layers of STYLE.md, lowest first. A module may import from its own unit (top-level
# module or subpackage) and from units of strictly lower layers, never from a unit of its
# own layer or above. The table is the architecture, not today's imports: a new unit gets
# a place here on purpose before it gets code.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("_canonical", "_git", "_paths", "_yaml", "versions"),
    ("settings",),
    ("ledger",),
    ("library",),
    ("providers",),
    ("evals",),
    ("consumers",),
    ("versioning",),
    ("compare",),
    ("reports",),
    ("integrations", "importers"),
    ("api",),
    ("__init__",),
    ("cli",),
]
LAYER_OF = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["promptlib", *parts])


def _imports_of(path: Path, name: str | None = None) -> set[str]:
    """Every promptlib module ``path`` (the module ``name``) imports, absolute, whether by
    ``import x`` or ``from x import y`` (relative or absolute), at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (name or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "promptlib")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] != "promptlib":
                continue
            # ``from P import x`` imports the submodule P.x when there is one, else names
            # defined in P itself.
            for alias in node.names:
                found.add(
                    f"{module}.{alias.name}" if _is_module(f"{module}.{alias.name}") else module
                )
    return found


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (SRC / relative).with_suffix(".py").exists() or (SRC / relative).is_dir()


def _unit(module: str) -> str:
    """The layered unit of an absolute module name (``promptlib.evals.run`` -> evals)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    unit = parts[1]
    if not (SRC / f"{unit}.py").exists() and not (SRC / unit).is_dir():
        return "__init__"  # a name defined in promptlib/__init__.py, e.g. __version__
    return unit


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(path)) for path in SOURCES}
    assert units <= set(LAYER_OF), f"place these in LAYERS: {sorted(units - set(LAYER_OF))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_only_go_down_the_layers(path: Path) -> None:
    owner = _unit(_module_name(path))
    for module in sorted(_imports_of(path)):
        unit = _unit(module)
        if unit == owner:
            continue
        assert LAYER_OF[unit] < LAYER_OF[owner], (
            f"{_module_name(path)} ({owner}, layer {LAYER_OF[owner]}) imports {module} "
            f"({unit}, layer {LAYER_OF[unit]}): only strictly lower layers may be imported"
        )


def test_the_layer_check_sees_every_import_form(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "import promptlib.cli\n"
        "from promptlib.reports import render\n"
        "from ..versioning import gate\n"
        "def later():\n"
        "    from .. import compare\n"
    )
    found = _imports_of(source, "promptlib.ledger.probe")
    assert {
        "promptlib.cli",
        "promptlib.reports",
        "promptlib.versioning.gate",
        "promptlib.compare",
    } <= found
    assert {_unit(m) for m in found} == {"cli", "reports", "versioning", "compare"}


def test_messages_is_a_leaf_and_providers_never_load_jinja() -> None:
    assert _imports_of(SRC / "library" / "messages.py") == set()
    for code in ("import promptlib.providers", "import promptlib.library.messages"):
        loaded = _modules_after(code)
        assert "jinja2" not in loaded, code
