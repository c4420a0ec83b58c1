"""Filters and tests from installed packages (``promptlib.filters``/``promptlib.tests``).

Each test builds a real distribution in a temporary folder: a module and a ``*.dist-info``
folder with ``METADATA`` and ``entry_points.txt``, found by ``importlib.metadata`` on
``sys.path`` (in process) or ``PYTHONPATH`` (for the CLI in a subprocess).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write
from promptlib._canonical import sha256_of
from promptlib.errors import LedgerError, RenderError, UnsafeTemplateError
from promptlib.ledger import open as open_ledger
from promptlib.library import plugins
from promptlib.library.loader import ValidationCache, scan
from promptlib.library.prompt import Prompt
from promptlib.versioning.diff import diff_prompt
from promptlib.versioning.history import latest_release
from promptlib.versioning.snapshot import PromptState, Snapshot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PROMPTLIB = Path(sys.executable).parent / "promptlib"

SHOUT = """
def shout(value, times=1):
    return str(value).upper() + "!" * times


def is_question(value):
    return str(value).rstrip().endswith("?")
"""

PROMPT = """\
id: demo.loud
version: 1.0.0
description: Says the message loudly.
inputs:
  message: {type: string, description: The message.}
messages:
  - role: user
    content: |
      {{ message | shout(2) }}
      {% if message is question %}(a question){% endif %}
examples:
  - inputs: {message: where is it?}
"""

PLAIN = """\
id: demo.plain
version: 1.0.0
description: Repeats the message.
inputs:
  message: {type: string, description: The message.}
template: "{{ message | upper }}"
examples:
  - inputs: {message: hello}
"""


def make_dist(
    site: Path,
    dist: str,
    module: str,
    source: str,
    filters: dict[str, str] | None = None,
    tests: dict[str, str] | None = None,
) -> Path:
    """Install distribution ``dist`` (module ``module``) into the folder ``site``."""
    write(site / f"{module}.py", source)
    info = site / f"{dist}-1.0.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    groups = []
    for group, entries in (("promptlib.filters", filters), ("promptlib.tests", tests)):
        if entries:
            lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
            groups.append(f"[{group}]\n{lines}")
    write(info / "entry_points.txt", "\n".join(groups))
    return site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` to install distributions into; a unique module name."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    plugins.clear_cache()
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("plfilt_"):
            del sys.modules[name]
    plugins.clear_cache()


@pytest.fixture
def module() -> str:
    # A module name no other test imports: a module stays in sys.modules once imported.
    return f"plfilt_{uuid.uuid4().hex[:12]}"


def project(root: Path, *files: tuple[str, str]) -> Path:
    write(root / "pyproject.toml", "[project]\nname = 'demo'\nversion = '1.0.0'\n")
    for path, text in files:
        write(root / "prompts" / path, text)
    return root


def install_shout(site: Path, module: str, source: str = SHOUT) -> None:
    make_dist(
        site,
        "loud-helpers",
        module,
        source,
        filters={"shout": f"{module}:shout"},
        tests={"question": f"{module}:is_question"},
    )


def cli(root: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [str(PROMPTLIB), *args], cwd=root, capture_output=True, text=True, env=env, timeout=120
    )


def test_a_template_renders_with_a_plugin_filter_and_test(
    site: Path, module: str, tmp_path: Path
) -> None:
    install_shout(site, module)
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT))
    result = scan(root / "prompts")
    assert not result.problems
    prompt = result.prompts["demo.loud"]
    assert prompt.render(message="where is it?")[0].content == "WHERE IS IT?!!\n(a question)"
    assert prompt.render(message="hi")[0].content == "HI!!\n"
    assert [(p.kind, p.name, p.target) for p in prompt.plugins] == [
        ("filter", "shout", f"{module}:shout"),
        ("test", "question", f"{module}:is_question"),
    ]
    behaviour = prompt.behaviour()
    assert behaviour["filters"] == {
        "shout": {"entry_point": f"{module}:shout", "sha256": prompt.plugins[0].sha256}
    }
    assert behaviour["tests"]["question"]["entry_point"] == f"{module}:is_question"


def test_a_plugin_named_by_select_and_map_is_found(site: Path, module: str, tmp_path: Path) -> None:
    install_shout(site, module)
    text = PLAIN.replace(
        '"{{ message | upper }}"',
        "\"{{ [message, 'ok?'] | select('question') | map('shout') | join(',') }}\"",
    )
    root = project(tmp_path / "p", ("demo/plain.yaml", text))
    result = scan(root / "prompts")
    assert not result.problems
    prompt = result.prompts["demo.plain"]
    assert prompt.render(message="why?")[0].content == "WHY?!,OK?!"
    assert {p.name for p in prompt.plugins} == {"question", "shout"}


def test_a_plugin_used_in_a_partial_is_part_of_the_prompt(
    site: Path, module: str, tmp_path: Path
) -> None:
    install_shout(site, module)
    text = PLAIN.replace('"{{ message | upper }}"', "\"{% include 'loud.j2' %}\"")
    root = project(
        tmp_path / "p", ("demo/plain.yaml", text), ("_partials/loud.j2", "{{ message|shout }}")
    )
    prompt = scan(root / "prompts").prompts["demo.plain"]
    assert prompt.render(message="a")[0].content == "A!"
    assert "filters" in prompt.behaviour()


def test_builtin_filters_win_over_a_plugin_of_the_same_name(
    site: Path, module: str, tmp_path: Path
) -> None:
    make_dist(
        site,
        "bad-upper",
        module,
        "def upper(value):\n    return 'hijacked'\n",
        filters={"upper": f"{module}:upper"},
    )
    root = project(tmp_path / "p", ("demo/plain.yaml", PLAIN))
    prompt = scan(root / "prompts").prompts["demo.plain"]
    assert prompt.render(message="hi")[0].content == "HI"
    assert prompt.plugins == ()
    assert module not in sys.modules


# -- the sandbox still holds ---------------------------------------------------------------

ESCAPES = """
import os


class Thing:
    secret = "s"

    def run(self):
        return os.getcwd()


class Text(str):
    def run(self):
        return os.getcwd()


def give_module(value):
    return os


def give_function(value):
    return os.system


def give_object(value):
    return Thing()


def give_text_subclass(value):
    return Text(value)


def give_nested(value):
    return {"ok": [1, 2, (os,)]}


def give_data(value):
    return {"items": [value, 1.5, None, True]}


def boom(value):
    raise KeyError("no such thing")
"""


@pytest.mark.parametrize(
    ("template", "error", "message"),
    [
        ("{{ (x|give_module).system('id') }}", UnsafeTemplateError, "returned a module"),
        ("{{ x|give_function }}", UnsafeTemplateError, "returned a builtin_function_or_method"),
        ("{{ (x|give_object).run() }}", UnsafeTemplateError, "returned a Thing"),
        ("{{ (x|give_text_subclass).run() }}", UnsafeTemplateError, "returned a Text"),
        ("{{ x|give_nested }}", UnsafeTemplateError, "returned a module"),
        (
            "{{ (x|give_data).__class__.__mro__ }}",
            UnsafeTemplateError,
            "access to attribute '__class__' of 'dict' object is unsafe",
        ),
        (
            "{{ (x|give_data)['items'].__class__.__base__.__subclasses__() }}",
            UnsafeTemplateError,
            "unsafe",
        ),
        ("{{ (x|give_data)['items'].append(1) }}", None, "would modify a value"),
        ("{{ x|boom }}", RenderError, "KeyError: 'no such thing'"),
    ],
)
def test_a_plugin_cannot_open_the_sandbox(
    site: Path,
    module: str,
    tmp_path: Path,
    template: str,
    error: type[Exception] | None,
    message: str,
) -> None:
    names = [
        "give_module",
        "give_function",
        "give_object",
        "give_text_subclass",
        "give_nested",
        "give_data",
        "boom",
    ]
    make_dist(site, "escapes", module, ESCAPES, filters={n: f"{module}:{n}" for n in names})
    text = f"""\
id: demo.escape
version: 1.0.0
description: Tries to leave the sandbox.
inputs:
  x: {{type: string, description: Anything.}}
template: {json.dumps(template)}
"""
    root = project(tmp_path / "p", ("demo/escape.yaml", text))
    result = scan(root / "prompts")
    if error is None:
        # Refused when the file is checked, before anything runs.
        assert any(message in p.message for p in result.problems), result.problems
        return
    assert not result.problems, result.problems
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        result.prompts["demo.escape"].render(x="v")
    assert "Traceback" not in str(caught.value)


def test_plugin_results_that_are_data_render(site: Path, module: str, tmp_path: Path) -> None:
    make_dist(site, "escapes", module, ESCAPES, filters={"give_data": f"{module}:give_data"})
    text = PLAIN.replace('"{{ message | upper }}"', "\"{{ (message|give_data)['items'] }}\"")
    root = project(tmp_path / "p", ("demo/plain.yaml", text))
    prompt = scan(root / "prompts").prompts["demo.plain"]
    assert prompt.render(message="m")[0].content == "['m', 1.5, None, True]"


UNFIT = """
import jinja2


class Shout:
    def __call__(self, value):
        return value


shout_object = Shout()


@jinja2.pass_context
def with_context(context, value):
    return value


def unsafe(value):
    return value


unsafe.unsafe_callable = True
"""


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("Shout", "is a type, not a plain function"),
        ("shout_object", "is a Shout, not a plain function"),
        ("with_context", "asks Jinja for its context or environment"),
        ("unsafe", "is marked unsafe to call from templates"),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_a_plugin_that_is_not_a_plain_function_is_refused(
    site: Path, module: str, tmp_path: Path, attr: str, message: str
) -> None:
    make_dist(site, "unfit-helpers", module, UNFIT, filters={"helper": f"{module}:{attr}"})
    text = PLAIN.replace("upper", "helper")
    root = project(tmp_path / "p", ("demo/plain.yaml", text))
    result = scan(root / "prompts")
    [problem] = result.problems
    assert (problem.line, problem.key) == (6, "template")
    assert problem.message.startswith(
        f"filter 'helper' (entry point '{module}:{attr}' in promptlib.filters of unfit-helpers)"
    )
    assert message in problem.message


# -- identity and fingerprint --------------------------------------------------------------


def _fingerprints(root: Path, site: Path) -> dict[str, str]:
    out = {}
    for prompt_id in ("demo.loud", "demo.plain"):
        result = cli(root, site, "show", prompt_id, "--format", "json")
        assert result.returncode == 0, result.stderr
        out[prompt_id] = json.loads(result.stdout)["fingerprint"]
    return out


def test_the_fingerprint_follows_the_plugin_source_and_nothing_else(
    site: Path, module: str, tmp_path: Path
) -> None:
    install_shout(site, module)
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT), ("demo/plain.yaml", PLAIN))
    first = _fingerprints(root, site)
    assert _fingerprints(root, site) == first
    # Another distribution, of another module, changes nothing.
    make_dist(
        site,
        "other",
        f"{module}_other",
        "def x(v):\n    return v\n",
        filters={"other": f"{module}_other:x"},
    )
    assert _fingerprints(root, site) == first
    # Editing the plugin's source changes the prompt that uses it, only that one.
    write(site / f"{module}.py", SHOUT.replace('"!" * times', '"!!" * times'))
    second = _fingerprints(root, site)
    assert second["demo.plain"] == first["demo.plain"]
    assert second["demo.loud"] != first["demo.loud"]
    # Without any plugin installed, a prompt that uses none has the same fingerprint.
    result = subprocess.run(
        [str(PROMPTLIB), "show", "demo.plain", "--format", "json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(result.stdout)["fingerprint"] == first["demo.plain"]


def test_show_lists_the_plugins_a_prompt_uses(site: Path, module: str, tmp_path: Path) -> None:
    install_shout(site, module)
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT), ("demo/plain.yaml", PLAIN))
    result = cli(root, site, "show", "demo.loud")
    assert result.returncode == 0, result.stderr
    assert "plugins:\n" in result.stdout
    assert f"  filter shout: {module}:shout from loud-helpers (sha256:" in result.stdout
    assert f"  test question: {module}:is_question from loud-helpers (sha256:" in result.stdout
    plain = cli(root, site, "show", "demo.plain")
    assert "plugins:" not in plain.stdout
    data = json.loads(cli(root, site, "show", "demo.loud", "--format", "json").stdout)
    assert [p["name"] for p in data["plugins"]] == ["shout", "question"]
    rendered = cli(root, site, "render", "demo.loud", "--var", "message=ok?")
    assert rendered.returncode == 0, rendered.stderr
    assert "OK?!!" in rendered.stdout


def _state(behaviour: dict[str, object], fingerprint: str) -> PromptState:
    return PromptState("demo.loud", "1.0.0", fingerprint, behaviour, {})


@pytest.mark.parametrize(
    ("old", "new", "change"),
    [
        (
            {"shout": {"entry_point": "m:shout", "sha256": "sha256:aa"}},
            {"shout": {"entry_point": "m:shout", "sha256": "sha256:bb"}},
            "plugin filter 'shout' changed (source changed): its output may differ",
        ),
        (
            {"shout": {"entry_point": "m:shout", "sha256": "sha256:aa"}},
            {"shout": {"entry_point": "n:shout", "sha256": "sha256:aa"}},
            "plugin filter 'shout' changed (entry point m:shout -> n:shout): its output may differ",
        ),
        (
            None,
            {"shout": {"entry_point": "m:shout", "sha256": "sha256:aa"}},
            "plugin filter 'shout' now used",
        ),
        (
            {"shout": {"entry_point": "m:shout", "sha256": "sha256:aa"}},
            None,
            "plugin filter 'shout' no longer used",
        ),
    ],
)
def test_a_plugin_identity_change_is_a_minor_change(
    old: dict[str, object] | None, new: dict[str, object] | None, change: str
) -> None:
    base: dict[str, object] = {"template": "{{ m|shout }}", "inputs": {}, "model": {}, "output": {}}
    before = {**base, **({"filters": old} if old else {})}
    after = {**base, **({"filters": new} if new else {})}
    diff = diff_prompt("demo.loud", _state(before, "sha256:1"), _state(after, "sha256:2"))
    assert [(str(c.bump), c.what) for c in diff.changes] == [("minor", change)]
    assert str(diff.bump) == "minor"


def test_released_fingerprints_are_unchanged() -> None:
    """Every prompt of the last release in the ledger rebuilds, from the content recorded
    there, with the fingerprint recorded there; bundled prompts whose content did not
    change since keep it too."""
    snapshot = latest_release(open_ledger(REPO))
    assert snapshot is not None
    library = scan(REPO / "prompts").prompts
    unchanged = 0
    for prompt_id, state in snapshot.prompts.items():
        assert snapshot.prompt(prompt_id).fingerprint == state.fingerprint
        assert "filters" not in state.behaviour
        assert "tests" not in state.behaviour
        current = library.get(prompt_id)
        if current is not None and current.behaviour() == dict(state.behaviour):
            assert current.fingerprint == state.fingerprint
            unchanged += 1
    assert unchanged > 0


def test_golden_fingerprints_are_unchanged() -> None:
    expected = json.loads((REPO / "tests" / "golden" / "expected.json").read_text("utf-8"))
    prompts = scan(REPO / "tests" / "golden" / "prompts").prompts
    assert {pid: p.fingerprint for pid, p in prompts.items()} == {
        pid: item["fingerprint"] for pid, item in expected.items()
    }
    assert all(p.plugins == () for p in prompts.values())


# -- errors ----------------------------------------------------------------------------------


def test_a_missing_plugin_is_a_located_validation_error(site: Path, tmp_path: Path) -> None:
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT))
    result = cli(root, site, "validate")
    assert result.returncode == 1
    assert (
        "prompts/demo/loud.yaml:9: messages[0].content: unknown filter 'shout': templates can "
        "use Jinja's built-in filters" in result.stdout + result.stderr
    )
    assert "register a function under the 'promptlib.filters' entry point" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_plugin_that_fails_to_import_names_its_distribution(
    site: Path, module: str, tmp_path: Path
) -> None:
    install_shout(site, module, source="import no_such_module_here\n" + SHOUT)
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT))
    result = cli(root, site, "validate")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert (
        f"prompts/demo/loud.yaml:9: messages[0].content: filter 'shout' (entry point "
        f"'{module}:shout' in promptlib.filters of loud-helpers): cannot import {module}: "
        "ModuleNotFoundError: No module named 'no_such_module_here'; reinstall loud-helpers"
    ) in output
    assert "Traceback" not in output
    shown = cli(root, site, "show", "demo.loud")
    assert shown.returncode == 1
    assert "loud-helpers" in shown.stderr + shown.stdout
    assert "Traceback" not in shown.stderr


def test_the_validation_cache_sees_a_plugin_installed_or_edited(
    site: Path, module: str, tmp_path: Path
) -> None:
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT))
    cache_file = tmp_path / "cache.json"

    def problems() -> list[str]:
        plugins.clear_cache()
        sys.modules.pop(module, None)
        cache = ValidationCache(cache_file)
        return [p.message for p in scan(root / "prompts", cache=cache).problems]

    assert any("unknown filter 'shout'" in m for m in problems())
    install_shout(site, module)
    assert problems() == []
    assert problems() == []  # from the cache
    # The example stops rendering once the plugin raises on it.
    write(
        site / f"{module}.py",
        SHOUT.replace("return str(value).upper()", "raise ValueError('x')\n    return 1"),
    )
    assert [m.split(":")[0] for m in problems()] == ["does not render"]


def test_from_behaviour_uses_the_installed_plugin(site: Path, module: str, tmp_path: Path) -> None:
    install_shout(site, module)
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT))
    prompt = scan(root / "prompts").prompts["demo.loud"]
    rebuilt = Prompt.from_behaviour("demo.loud", "1.0.0", prompt.behaviour())
    assert rebuilt.fingerprint == prompt.fingerprint


def test_a_release_made_with_other_plugin_source_says_so(
    site: Path, module: str, tmp_path: Path
) -> None:
    install_shout(site, module)
    root = project(tmp_path / "p", ("demo/loud.yaml", PROMPT))
    behaviour = scan(root / "prompts").prompts["demo.loud"].behaviour()
    behaviour["filters"]["shout"]["sha256"] = "sha256:" + "0" * 64
    recorded = PromptState("demo.loud", "1.0.0", sha256_of(behaviour), behaviour, {})
    snapshot = Snapshot("v1.0.0", "release", "1.0.0", {"demo.loud": recorded})
    with pytest.raises(LedgerError, match="uses plugin filter 'shout', whose installed entry"):
        snapshot.prompt("demo.loud")


def test_a_library_without_plugins_never_looks_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up cost: no entry point is read while the bundled library loads and renders."""

    def refuse(**kwargs: object) -> object:
        raise AssertionError(f"entry points read: {kwargs}")

    plugins.clear_cache()
    monkeypatch.setattr(plugins.metadata, "entry_points", refuse)
    result = scan(REPO / "prompts")
    assert not result.problems
    assert len(result.prompts) > 10


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_example_of_the_docs_works_as_written(site: Path, module: str, tmp_path: Path) -> None:
    docs = (REPO / "docs" / "filters.md").read_text("utf-8")
    [source] = _blocks(docs, "python")
    registration = tomllib.loads(_blocks(docs, "toml")[0])["project"]["entry-points"]
    template = _blocks(docs, "jinja")[0]
    # The docs' module path, installed under this test's own module name.
    documented = "acme_prompt_helpers.filters"
    groups = {
        group: {name: target.replace(documented, module) for name, target in entries.items()}
        for group, entries in registration.items()
    }
    make_dist(
        site,
        "acme-prompt-helpers",
        module,
        source,
        filters=groups["promptlib.filters"],
        tests=groups["promptlib.tests"],
    )
    text = PLAIN.replace('"{{ message | upper }}"', json.dumps(template))
    root = project(tmp_path / "p", ("demo/plain.yaml", text))
    result = scan(root / "prompts")
    assert not result.problems, result.problems
    rendered = result.prompts["demo.plain"].render(message="Is a@b.example my address?")
    assert rendered[0].content == "Is [hidden] my address?\nAnswer the question."


def test_diff_against_a_release_names_a_plugin_change_as_minor(
    site: Path, module: str, tmp_path: Path
) -> None:
    install_shout(site, module)
    root = tmp_path / "bank"
    root.mkdir()
    assert cli(root, site, "init").returncode == 0
    intent = root / "prompts" / "bank" / "intent.yaml"
    text = intent.read_text("utf-8")
    assert "{{ message | trim }}" in text
    intent.write_text(text.replace("{{ message | trim }}", "{{ message | shout(0) }}"), "utf-8")
    with (root / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write('\n[project]\nname = "bank"\nversion = "0.1.0"\n')
    released = cli(root, site, "release")
    assert released.returncode == 0, released.stdout + released.stderr
    same = cli(root, site, "diff", "v0.1.0")
    assert same.returncode == 0, same.stderr
    assert "plugin" not in same.stdout
    write(site / f"{module}.py", SHOUT + "\n# louder\n")
    changed = cli(root, site, "diff", "v0.1.0")
    assert changed.returncode == 0, changed.stderr
    assert "required bump minor" in changed.stdout
    assert (
        "  [minor] plugin filter 'shout' changed (source changed): its output may differ"
        in changed.stdout
    )
    check = cli(root, site, "check")
    assert check.returncode == 1
    assert "the minor change needs at least 0.2.0" in check.stdout + check.stderr


LENIENT = """
import re


def same(value):
    return value


def has_digits(value):
    return re.search(r"[0-9]", str(value))
"""


def test_a_filter_may_give_back_its_value_and_a_test_may_return_any_truth(
    site: Path, module: str, tmp_path: Path
) -> None:
    make_dist(
        site,
        "lenient",
        module,
        LENIENT,
        filters={"same": f"{module}:same"},
        tests={"digits": f"{module}:has_digits"},
    )
    text = f"""\
id: demo.lenient
version: 1.0.0
description: Passes values through.
inputs:
  message: {{type: string, description: The message.}}
  note: {{type: string, description: A note., required: false}}
template: {json.dumps("{{ message|same }} {{ note|same|default('none') }} {{ message is digits }}")}
"""
    root = project(tmp_path / "p", ("demo/lenient.yaml", text))
    result = scan(root / "prompts")
    assert not result.problems, result.problems
    prompt = result.prompts["demo.lenient"]
    assert prompt.render(message="a1")[0].content == "a1 none True"
    assert prompt.render(message="ab", note="n")[0].content == "ab n False"


def test_a_plugin_named_by_a_variable_is_refused(site: Path, module: str, tmp_path: Path) -> None:
    """Its use would not be part of the fingerprint: a plugin is named with a literal."""
    install_shout(site, module)
    dynamic = f"""\
id: demo.dynamic
version: 1.0.0
description: Applies the filter it is told to.
inputs:
  message: {{type: string, description: The message.}}
  how: {{type: string, description: A filter name.}}
template: {json.dumps("{{ [message] | map(how) | join }}")}
"""
    partial = PLAIN.replace('"{{ message | upper }}"', "\"{% include 'loud.j2' %}\"")
    root = project(
        tmp_path / "p",
        ("demo/loud.yaml", PROMPT),
        ("demo/dynamic.yaml", dynamic),
        ("demo/plain.yaml", partial),
        ("_partials/loud.j2", "{{ [message] | map('shout') | join }}"),
    )
    result = scan(root / "prompts")
    assert not result.problems, result.problems
    prompt = result.prompts["demo.dynamic"]
    assert prompt.render(message="a", how="upper")[0].content == "A"
    with pytest.raises(UnsafeTemplateError, match="the filter 'shout' of an installed package"):
        prompt.render(message="a", how="shout")
    assert result.prompts["demo.plain"].render(message="b")[0].content == "B!"
