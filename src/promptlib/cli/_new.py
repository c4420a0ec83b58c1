"""new prompt, new suite, init: commented skeletons that validate once their TODOs are done.

Contracts:

* ``new prompt ID`` writes ``prompts/<segments>.yaml`` (``a.b`` -> ``prompts/a/b.yaml``, the
  path the loader requires for that id). It validates as written.
* ``new suite NAME --dataset PATH [--prompt ID]...`` writes ``evals/suites/NAME.yaml``. Its
  ``inputs`` map each input of the chosen prompts to the dataset column of the same name
  (ignoring case and underscores), or to the one column of a family of usual names for the
  user's text (``message``, ``text``, ``utterance``, ...), marked as guessed; an input with
  no column is left as a commented TODO. ``references`` is the first column named like a
  reference (label, answer, reference, summary, ...). When nothing is left to do, the
  suite passes ``promptlib validate``.
* ``init [DIR]`` writes a project that validates and evaluates offline with the default
  ``retrieval`` provider. Its dataset is 5 rows copied unchanged from the Banking77 test
  split (CC BY 4.0, attributed in its README): an example of the format, not a benchmark.

No command overwrites a file: an existing target (or a non-empty ``init`` folder) is a
usage error (exit 2), as is a bad id, name or dataset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ConfigError
from ..settings import Settings
from ._app import app, handle_errors, state

if TYPE_CHECKING:
    from ..library.prompt import Prompt

new_app = typer.Typer(
    help="Write a commented skeleton prompt or suite file to start from.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(new_app, name="new")

_SUITE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
# Words YAML 1.1 reads as booleans or null: a column called `yes` must be quoted.
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
# Column names that usually hold the expected answer, in order of preference.
REFERENCE_COLUMNS = (
    "label",
    "labels",
    "answer",
    "answers",
    "reference",
    "references",
    "summary",
    "target",
    "expected",
    "output",
    "response",
    "intent",
    "category",
)
# Names under which datasets and prompts call the user's text; an input named one of these
# is proposed the one column of the family when there is exactly one.
_TEXT_FAMILY = (
    "message",
    "text",
    "utterance",
    "query",
    "question",
    "input",
    "instruction",
    "prompt",
    "document",
    "content",
)
_METRIC_FOR_OUTPUT = {"label": "accuracy", "json": "json_valid", "text": "rougeL"}
# Rows read to learn a dataset's columns: a column missing from the first rows is rare, and
# reading a large file whole would make `new suite` slow for nothing.
_ROWS_SAMPLED = 50


def _settings() -> Settings:
    return Settings.resolve(state.project)


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when that reads back as the same string."""
    if _PLAIN.match(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


def _create(path: Path, text: str) -> None:
    """Write a new file; ``ConfigError`` if it exists (nothing is ever overwritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise ConfigError(
            f"{path}: the file exists already; edit it, or pick another name"
        ) from None


def _schema_line(folder: Path, root: Path, name: str) -> str:
    """The editor's schema comment, when the project keeps a copy of the schema."""
    target = root / "schema" / name
    if not target.is_file():
        return ""
    up = "../" * len(folder.relative_to(root).parts)
    return f"# yaml-language-server: $schema={up}schema/{name}\n"


# --- new prompt ---------------------------------------------------------------------------


def prompt_skeleton(prompt_id: str, schema_line: str = "") -> str:
    """A commented prompt file holding ``prompt_id``; it validates as written."""
    return f"""{schema_line}# A promptlib prompt. Its id is its path under prompts/ (move both
# together).
# `promptlib validate` checks it, `promptlib render {prompt_id} --example 0` shows it.
id: {prompt_id}
# Semantic version; `promptlib diff` says which bump a change needs.
version: 0.1.0
description: "TODO: what this prompt does, in one sentence."
tags: []
# owner: your-team
# Typed inputs: string, integer, number, boolean, array or object; optional ones set
# `required: false` (and a `default` if the template prints them).
inputs:
  message:
    type: string
    description: "TODO: what the caller passes, e.g. the customer's message as typed."
# Chat messages (or one `template:` text instead), Jinja2 in a sandbox. Every variable
# must be a declared input; {{% include 'NAME.j2' %}} reads prompts/_partials/.
messages:
  - role: system
    content: |
      TODO: the instructions.
  - role: user
    content: |
      <message>
      {{{{ message | trim }}}}
      </message>
# Default generation parameters; a suite's `params` override them.
model: {{temperature: 0}}
# text, json (with `schema:`) or label (with `labels: [...]`).
output: {{format: text}}
# Rendered by `promptlib validate`: each one must be valid for the inputs above.
examples:
  - inputs: {{message: "TODO: a typical input"}}
"""


@new_app.command("prompt")
@handle_errors
def new_prompt(
    prompt_id: Annotated[
        str, typer.Argument(metavar="ID", help="The new prompt's id, e.g. support.answer.refund.")
    ],
) -> None:
    """Write a skeleton prompt file at the path its id implies (prompts/a/b.yaml for a.b)."""
    from ..library.model import ID_PATTERN

    root = _settings().require_root()
    if not re.match(ID_PATTERN, prompt_id):
        raise ConfigError(
            f"{prompt_id!r} is not a prompt id: use dot-separated lowercase segments, each "
            "a letter then letters, digits or _ (e.g. support.answer.refund)"
        )
    path = root / "prompts" / Path(*prompt_id.split(".")).with_suffix(".yaml")
    if path.with_suffix(".yml").exists():
        raise ConfigError(f"{path.with_suffix('.yml')}: the prompt {prompt_id} exists already")
    _create(path, prompt_skeleton(prompt_id, _schema_line(path.parent, root, "prompt.schema.json")))
    typer.echo(
        f"wrote {path.relative_to(root).as_posix()}; fill in its TODOs, then run "
        "`promptlib validate`"
    )


# --- new suite ----------------------------------------------------------------------------


def _key(name: str) -> str:
    return name.lower().replace("_", "")


def propose_inputs(
    inputs: Sequence[str], columns: Sequence[str]
) -> dict[str, tuple[str | None, bool]]:
    """Each input -> (column, guessed): same name first, then the family of text names."""
    by_key = {_key(c): c for c in columns}
    family = [c for c in columns if _key(c) in _TEXT_FAMILY]
    out: dict[str, tuple[str | None, bool]] = {}
    for name in inputs:
        if _key(name) in by_key:
            out[name] = (by_key[_key(name)], False)
        elif _key(name) in _TEXT_FAMILY and len(family) == 1:
            out[name] = (family[0], True)
        else:
            out[name] = (None, False)
    return out


def propose_reference(columns: Sequence[str]) -> str | None:
    """The first column named like an expected answer (label, answer, summary, ...)."""
    by_key = {_key(c): c for c in columns}
    return next((by_key[k] for k in REFERENCE_COLUMNS if k in by_key), None)


def suite_skeleton(
    dataset: str, columns: Sequence[str], prompts: Sequence[Prompt], schema_line: str = ""
) -> tuple[str, int]:
    """The commented suite file and how many TODOs it leaves."""
    todos = 0
    shown_columns = ", ".join(columns)
    lines = [
        f"{schema_line}# An eval suite: which prompts run on which dataset rows, scored how.",
        "# docs/suites.md describes every key; `promptlib validate` checks the suite against",
        "# the prompts it selects and the dataset.",
        'description: "TODO: what this suite measures, on which data."',
        f"dataset: {_scalar(dataset)}",
    ]
    if prompts:
        lines.append(f"prompts: [{', '.join(_scalar(p.id) for p in prompts)}]")
    else:
        todos += 1
        lines += [
            "# TODO: the ids (or globs such as support.answer.*) of the prompts to score.",
            'prompts: ["TODO.*"]',
        ]
    names: list[str] = []
    for prompt in prompts:
        names += [n for n in prompt.inputs if n not in names]
    proposal = propose_inputs(names, columns)
    lines.append(f"# Prompt input -> dataset column (columns: {shown_columns}).")
    entries: list[str] = []
    for name, (column, guessed) in proposal.items():
        if column is None:
            todos += 1
            entries.append(f"  # TODO {_scalar(name)}: <column>   # no column of that name")
        else:
            note = "   # guessed from the name: check it" if guessed else ""
            entries.append(f"  {_scalar(name)}: {_scalar(column)}{note}")
    if any(column is not None for column, _ in proposal.values()):
        lines += ["inputs:", *entries]
    else:
        lines += ["inputs: {}", *entries]
    reference = propose_reference(columns)
    kinds = sorted({p.output.format for p in prompts}) or ["text"]
    metrics = [_METRIC_FOR_OUTPUT.get(k, "rougeL") for k in kinds]
    if reference is not None:
        lines += ["# The column holding the expected answer.", f"references: {_scalar(reference)}"]
    elif any(m != "json_valid" for m in metrics):
        todos += 1
        lines += ["# TODO: the column holding the expected answer.", "# references: <column>"]
    lines += [
        "# accuracy for label outputs; json_valid or json_schema for json; rougeL (rouge1,",
        "# rouge2, rougeLsum) for text.",
        f"metrics: [{', '.join(dict.fromkeys(metrics))}]",
        "# Optional: gates: {accuracy: 0.5} fails `promptlib eval` below a mean; `group: COLUMN`",
        "# names rows that are not independent; `where`, `match` and `limit` select rows.",
    ]
    return "\n".join(lines) + "\n", todos


def _columns(path: Path, root: Path) -> list[str]:
    """The dataset's columns, in the order the first rows show them (``id`` excluded)."""
    from ..evals.dataset import load_dataset

    dataset = load_dataset(path, root)
    columns: dict[str, None] = {}
    for row in dataset.rows[:_ROWS_SAMPLED]:
        columns.update(dict.fromkeys(k for k in row if k != "id"))
    return list(columns)


@new_app.command("suite")
@handle_errors
def new_suite(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The suite's name (its file name).")],
    dataset: Annotated[
        Path, typer.Option("--dataset", help="The JSONL or CSV dataset, inside the project.")
    ],
    prompt_ids: Annotated[
        list[str] | None,
        typer.Option("--prompt", metavar="ID", help="A prompt the suite scores (repeatable)."),
    ] = None,
) -> None:
    """Write evals/suites/NAME.yaml, its inputs and references proposed from the dataset's
    columns and the prompts' inputs; what it cannot propose is left as a commented TODO."""
    from ..library.collection import load

    settings = _settings()
    root = settings.require_root()
    if not _SUITE_NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a suite name: use a lowercase letter, then letters, digits or _"
        )
    path = root / "evals" / "suites" / f"{name}.yaml"
    if path.with_suffix(".yml").exists():
        raise ConfigError(f"{path.with_suffix('.yml')}: the suite {name} exists already")
    absolute = dataset.resolve()
    if not absolute.is_relative_to(root):
        raise ConfigError(f"--dataset {dataset}: the dataset must be inside the project {root}")
    columns = _columns(absolute, root)
    prompts: list[Prompt] = []
    if prompt_ids:
        library = load(root / "prompts", strict=False)
        for prompt_id in prompt_ids:
            if prompt_id not in library:
                raise ConfigError(
                    f"--prompt {prompt_id}: no such prompt (or it does not load); "
                    "`promptlib list` shows the ids"
                )
            prompts.append(library[prompt_id])
    text, todos = suite_skeleton(
        absolute.relative_to(root).as_posix(),
        columns,
        prompts,
        _schema_line(path.parent, root, "suite.schema.json"),
    )
    _create(path, text)
    shown = path.relative_to(root).as_posix()
    if todos:
        typer.echo(f"wrote {shown} with {todos} TODO(s) to fill in; then run `promptlib validate`")
    else:
        typer.echo(f"wrote {shown}; `promptlib validate` checks it, `promptlib eval` runs it")


# --- init ---------------------------------------------------------------------------------

# Five rows copied byte for byte from evals/datasets/banking77/test.jsonl of the promptlib
# repository (tests/test_new.py checks it).
INIT_ROWS = (
    '{"id":"banking77-test-0001","text":"How do I locate my card?","label":"card_arrival"}',
    '{"id":"banking77-test-0014","text":"still waiting on my new card","label":"card_arrival"}',
    '{"id":"banking77-test-0093","text":"Can you explain your exchange rate policy to me?",'
    '"label":"exchange_rate"}',
    '{"id":"banking77-test-0106","text":"How much will I get with the exchange rate?",'
    '"label":"exchange_rate"}',
    '{"id":"banking77-test-0452","text":"How do I report my card stolen?",'
    '"label":"lost_or_stolen_card"}',
)

_INIT_DATASET_README = """\
# Example data: 5 rows of Banking77

An example of the dataset format, **not a benchmark**: five rows cannot measure a prompt,
so do not report or compare scores on it. Replace it with your own data.

Each line is one JSON object with a unique string `id`; `text` is a customer's message to
a bank and `label` its intent.

## Source and license

The rows are copied unchanged from the test split of Banking77 (PolyAI), repository
`PolyAI-LDN/task-specific-datasets`, file `banking_data/test.csv` (as converted to JSONL
by promptlib), row ids `banking77-test-0001`, `-0014`, `-0093`, `-0106` and `-0452`.

Banking77 is licensed under Creative Commons Attribution 4.0 International (CC BY 4.0):
https://creativecommons.org/licenses/by/4.0/ . Citation: Casanueva et al., "Efficient
Intent Detection with Dual Sentence Encoders", NLP4ConvAI workshop at ACL 2020
(arXiv 2003.04807).
"""

_INIT_PYPROJECT = """\
# promptlib finds the project by this file and the prompts/ folder beside it.
[tool.promptlib]
# The provider suites use unless they name one: `retrieval` runs offline, with no key.
default-provider = "retrieval"

# A model behind an OpenAI-compatible API (see promptlib's README, "Evaluating"):
# [tool.promptlib.providers.local]
# type = "openai"
# model = "llama-3.1-8b-instruct"
# base_url = "http://127.0.0.1:8080/v1"
# Personal overrides (a key, a local server) go in promptlib.local.toml, which git ignores.
"""

_INIT_PROMPT = """\
{schema}# A label prompt: the model answers with one label of `output.labels`.
id: bank.intent
version: 0.1.0
description: "Classifies a bank customer's message into one of three example intents."
tags: [example, classification]
inputs:
  message:
    type: string
    description: "The customer's message, as typed."
messages:
  - role: system
    content: |
      You classify messages sent to a bank's support assistant. Answer with one label:
      - card_arrival: a card that was ordered has not arrived yet
      - exchange_rate: questions about exchange rates
      - lost_or_stolen_card: the card was lost or stolen
  - role: user
    content: |
      {{{{ message | trim }}}}
model: {{temperature: 0}}
output:
  format: label
  labels: [card_arrival, exchange_rate, lost_or_stolen_card]
examples:
  - inputs: {{message: "my card still has not come"}}
"""

_INIT_SUITE = """\
{schema}# Scores bank.intent on the example rows; docs/suites.md describes every key.
description: Example suite on 5 Banking77 rows (a format example, not a benchmark).
dataset: evals/datasets/example/banking77.jsonl
prompts: [bank.intent]
inputs: {{message: text}}
references: label
metrics: [accuracy]
"""

_GITIGNORE = """\
# promptlib's caches (validation results, model answers)
.promptlib/
# personal settings: keys, local servers (see promptlib's docs/configuration.md)
promptlib.local.toml
"""

_GITATTRIBUTES = """\
# Concurrent branches each append runs to the ledger index: keep both sides' lines.
evals/ledger/index.jsonl merge=union
"""


def init_workflow() -> str:
    """The pull-request check of this repository, installing promptlib from the index."""
    try:
        installed = version("promptlib")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        installed = "0"
    return _WORKFLOW.replace("{requirement}", f"promptlib[html]>={installed}").replace(
        "{report_options}", "--output prompt-eval.md --html prompt-eval.html"
    )


# The repository's .github/workflows/prompt-check.yml, except that a project installs
# promptlib rather than itself (tests/test_new.py keeps the two in step).
_WORKFLOW = """\
# The pull-request check for prompt changes. It runs on the default shallow, tagless
# checkout: releases are resolved from the ledger (evals/ledger/), not from git tags.
name: prompt-check

on:
  pull_request:
    paths:
      - "prompts/**"
      - "evals/suites/**"
      - "evals/datasets/**"
      - "pyproject.toml"
      - "CHANGELOG.md"

permissions:
  contents: read

jobs:
  prompt-check:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
          cache: pip
      - name: Install promptlib (with the charting library of the HTML report)
        run: python -m pip install "{requirement}"
      - name: Validate prompt files
        run: promptlib validate
      - name: Check version bumps and the changelog
        run: promptlib check
      - name: Compare with the latest release
        # Appends the Markdown report (with the top flipped examples) to
        # $GITHUB_STEP_SUMMARY and writes the HTML report (every flipped example with both
        # answers, charts, history); exits 1 on a significant regression or a failed gate,
        # 3 if the provider failed beyond the error budget.
        run: promptlib eval --against latest --format markdown {report_options}
      - name: Keep the reports (the HTML one opens from the downloaded artifact)
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: prompt-eval
          path: |
            prompt-eval.md
            prompt-eval.html
          if-no-files-found: ignore
"""


def init_files() -> dict[str, str]:
    """Every file of a new project, by path relative to its folder."""
    from ..evals.suite import suite_file_schema
    from ..library.schema import prompt_file_schema

    def dump(schema: dict[str, Any]) -> str:
        return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"

    return {
        "pyproject.toml": _INIT_PYPROJECT,
        ".gitignore": _GITIGNORE,
        ".gitattributes": _GITATTRIBUTES,
        ".github/workflows/prompt-check.yml": init_workflow(),
        "schema/prompt.schema.json": dump(prompt_file_schema()),
        "schema/suite.schema.json": dump(suite_file_schema()),
        "prompts/bank/intent.yaml": _INIT_PROMPT.format(
            schema="# yaml-language-server: $schema=../../schema/prompt.schema.json\n"
        ),
        "evals/datasets/example/banking77.jsonl": "\n".join(INIT_ROWS) + "\n",
        "evals/datasets/example/README.md": _INIT_DATASET_README,
        "evals/suites/bank_intent.yaml": _INIT_SUITE.format(
            schema="# yaml-language-server: $schema=../../schema/suite.schema.json\n"
        ),
    }


@app.command()
@handle_errors
def init(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="The new project's folder (created if missing)."),
    ] = Path("."),
) -> None:
    """Create a promptlib project in DIR (an empty or new folder): an example prompt,
    dataset and suite, its CI workflow and git settings. It validates and evaluates
    offline as created: run `promptlib validate`, then `promptlib eval`."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: not a folder; name a new or empty folder")
    if directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(
            f"{directory}: the folder is not empty; `promptlib init` only writes into a new or "
            "empty folder (to add promptlib to an existing project, use `promptlib new prompt` "
            "and `promptlib new suite` there, after adding [tool.promptlib] to pyproject.toml "
            "and a prompts/ folder)"
        )
    files = init_files()
    for relative, text in files.items():
        _create(directory / relative, text)
    typer.echo(
        f"created a promptlib project in {directory} ({len(files)} files); next: "
        f"cd {directory} && promptlib validate && promptlib eval"
    )
