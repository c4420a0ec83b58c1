"""No command reads a file outside the project: symlinks and ``..`` that lead out are refused.

The table crosses every payload (a way out of the project planted in a small project:
symlinked partial, prompt, suite, dataset and folder, ``..`` in a suite's dataset, ``..``
in an include) with every command that reads project files, run through the CLI. Each
cell gives the exit code: a command that reads the payload refuses it, naming the link (or
path) and where it leads; a command that never reads that kind of file works as before.
In every cell the secret the payload points at appears in no output and in no file of
the project (ledger, lock, caches, CHANGELOG). Then: links that stay inside the project
work, the ``_paths`` helpers, the loader on its own, and a real wheel build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO, write
from promptlib._paths import escape, inside, links_outside
from promptlib.cli import app
from promptlib.errors import ConfigError, DatasetError
from promptlib.evals.dataset import load_dataset
from promptlib.evals.suite import load_suites
from promptlib.library import collection
from promptlib.library.loader import scan

SECRET = "SECRET_TOKEN_5f0c1e7a9b"
PASSWD = Path("/etc/passwd")
PASSWD_LINE = (
    PASSWD.read_text(encoding="utf-8", errors="replace").splitlines()[0] if PASSWD.is_file() else ""
)

PYPROJECT = """\
[project]
name = "demo-prompts"
version = "1.0.0"

[tool.promptlib]
default-provider = "retrieval"
"""

SENTIMENT = """\
id: demo.sentiment
version: 1.0.0
description: The sentiment of a product review.
inputs:
  text: {type: string, description: The review.}
messages:
  - role: system
    content: |-
      {% include 'voice.j2' %}
      Answer with one label.
      positive: love, great, excellent, happy, perfect
      negative: hate, awful, broken, terrible, refund
  - role: user
    content: "<review>{{ text }}</review>"
output: {format: label, labels: [positive, negative]}
examples:
  - inputs: {text: I love it}
"""

SUITE = """\
dataset: evals/datasets/reviews.jsonl
prompts: [demo.sentiment]
inputs: {text: text}
references: sentiment
metrics: [accuracy]
"""

MANIFEST = """\
library: "promptlib>=0.1"
prompts:
  demo.sentiment: "^1.0.0"
"""


def rows(text: str = "") -> str:
    return (
        json.dumps({"id": "r1", "text": f"I love this phone {text}", "sentiment": "positive"})
        + "\n"
        + json.dumps(
            {"id": "r2", "text": f"Awful, it arrived broken {text}", "sentiment": "negative"}
        )
        + "\n"
    )


def make_project(root: Path) -> Path:
    write(root / "pyproject.toml", PYPROJECT)
    write(root / "prompts" / "demo" / "sentiment.yaml", SENTIMENT)
    write(root / "prompts" / "_partials" / "voice.j2", "Be kind and brief.\n")
    write(root / "evals" / "datasets" / "reviews.jsonl", rows())
    write(root / "evals" / "suites" / "sentiment.yaml", SUITE)
    write(root / "CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n")
    write(root / "prompt_manifest.yaml", MANIFEST)
    return root


def make_outside(folder: Path) -> Path:
    """Files outside the project, each holding the secret."""
    write(folder / "secret.txt", f"api_key={SECRET}\n")
    write(
        folder / "leak.yaml",
        SENTIMENT.replace("demo.sentiment", "demo.leak").replace(
            "{% include 'voice.j2' %}", SECRET
        ),
    )
    write(folder / "prompts" / "leak.yaml", (folder / "leak.yaml").read_text("utf-8"))
    write(folder / "suite.yaml", f"description: {SECRET}\n{SUITE}")
    write(folder / "reviews.jsonl", rows(SECRET))
    return folder


def link(path: Path, target: Path) -> None:
    """Make ``path`` a symlink to ``target``, replacing the file or folder there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_file():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- the payloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """One way out of the project: ``plant(project, outside)`` makes it; ``named`` is the
    link (or path) every refusal must name, ``says`` what it must say, ``secret`` the text
    that must never show."""

    name: str
    plant: Callable[[Path, Path], None]
    named: str
    says: str
    secret: str = SECRET


SYMLINK = "is a symlink to a"

PAYLOADS = [
    Payload(
        "partial_to_etc_passwd",
        lambda root, out: link(root / "prompts/_partials/voice.j2", PASSWD),
        "prompts/_partials/voice.j2",
        f"{SYMLINK} file outside the project ({PASSWD})",
        PASSWD_LINE,
    ),
    Payload(
        "partial_to_secret_file",
        lambda root, out: link(root / "prompts/_partials/voice.j2", out / "secret.txt"),
        "prompts/_partials/voice.j2",
        f"{SYMLINK} file outside the project",
    ),
    Payload(
        "prompt_file",
        lambda root, out: link(root / "prompts/demo/leak.yaml", out / "leak.yaml"),
        "prompts/demo/leak.yaml",
        f"{SYMLINK} file outside the project",
    ),
    Payload(
        "suite_file",
        lambda root, out: link(root / "evals/suites/leak.yaml", out / "suite.yaml"),
        "evals/suites/leak.yaml",
        f"{SYMLINK} file outside the project",
    ),
    Payload(
        "dataset_file",
        lambda root, out: link(root / "evals/datasets/reviews.jsonl", out / "reviews.jsonl"),
        "evals/datasets/reviews.jsonl",
        f"{SYMLINK} file outside the project",
    ),
    Payload(
        "prompts_folder",
        lambda root, out: link(root / "prompts/evil", out / "prompts"),
        "prompts/evil",
        f"{SYMLINK} folder outside the project",
    ),
    Payload(
        "dataset_dotdot",
        lambda root, out: edit(
            root / "evals/suites/sentiment.yaml",
            "evals/datasets/reviews.jsonl",
            "../../outside/reviews.jsonl",
        ),
        "dataset '../../outside/reviews.jsonl'",
        "is outside the project",
    ),
    Payload(
        "include_dotdot",
        lambda root, out: edit(
            root / "prompts/demo/sentiment.yaml", "'voice.j2'", "'../../../outside/secret.txt'"
        ),
        "include '../../../outside/secret.txt'",
        "is not a file in prompts/_partials/",
    ),
]


# -- the entry points -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A command; ``before`` runs on the clean project first (a release to diff against)."""

    name: str
    args: tuple[str, ...]
    before: tuple[str, ...] = ()


LOCK = ("manifest", "lock", "--manifest", "prompt_manifest.yaml")
ENTRIES = [
    Entry("validate", ("validate",)),
    Entry("list", ("list",)),
    Entry("show", ("show", "demo.sentiment")),
    Entry("render", ("render", "demo.sentiment", "--example", "0")),
    Entry("eval", ("eval",)),
    Entry("release", ("release",)),
    Entry("diff", ("diff",), before=("release",)),
    Entry("check", ("check",), before=("release",)),
    Entry("manifest_lock", LOCK),
    Entry("manifest_check", ("manifest", "check", "--manifest", "prompt_manifest.yaml"), LOCK),
]

# Exit codes, one column per entry point above. 2: the input is refused (a path leaves the
# project); 1: validate and check report it as a located problem, or a prompt with a bad
# include does not load; 0: the command never reads that kind of file (list, show, render,
# diff and the manifest read prompts only) and works as before.
#                          validate list show render eval release diff check lock mcheck
EXPECTED: dict[str, tuple[int, ...]] = {
    "partial_to_etc_passwd":  (1,   2,   2,   2,     2,   2,      2,   1,    2,   2),
    "partial_to_secret_file": (1,   2,   2,   2,     2,   2,      2,   1,    2,   2),
    "prompt_file":            (1,   2,   2,   2,     2,   2,      2,   1,    2,   2),
    "suite_file":             (1,   0,   0,   0,     2,   2,      0,   1,    0,   0),
    "dataset_file":           (1,   0,   0,   0,     2,   2,      0,   1,    0,   0),
    "prompts_folder":         (1,   2,   2,   2,     2,   2,      2,   1,    2,   2),
    "dataset_dotdot":         (1,   0,   0,   0,     2,   2,      0,   1,    0,   0),
    "include_dotdot":         (1,   0,   1,   1,     1,   1,      1,   1,    1,   1),
}  # fmt: skip


def test_the_table_covers_every_payload_and_entry_point() -> None:
    assert set(EXPECTED) == {p.name for p in PAYLOADS}
    assert all(len(codes) == len(ENTRIES) for codes in EXPECTED.values())


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A project two folders below ``tmp_path``, files outside it, and the project's
    prompts standing in for the installed library (what the manifest commands read)."""
    root = make_project(tmp_path / "work" / "project")
    outside = make_outside(tmp_path / "outside")
    monkeypatch.setattr(collection, "bundled_prompts_dir", lambda: root / "prompts")
    monkeypatch.chdir(root)
    return root, outside


def cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.stdout + result.stderr


def files_holding(folder: Path, text: str) -> list[str]:
    """The regular files under ``folder`` that contain ``text`` (links are not followed)."""
    found = []
    for where, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not Path(where, d).is_symlink()]
        for name in files:
            path = Path(where, name)
            if not path.is_symlink() and text.encode() in path.read_bytes():
                found.append(path.relative_to(folder).as_posix())
    return found


CELLS = [
    pytest.param(payload, entry, EXPECTED[payload.name][i], id=f"{payload.name}-{entry.name}")
    for payload in PAYLOADS
    for i, entry in enumerate(ENTRIES)
]


@pytest.mark.parametrize(("payload", "entry", "code"), CELLS)
def test_no_command_reads_outside_the_project(
    places: tuple[Path, Path], payload: Payload, entry: Entry, code: int
) -> None:
    if not payload.secret:
        pytest.skip(f"no {PASSWD} on this system")
    root, outside = places
    if entry.before:
        before, output = cli(root, *entry.before)
        assert before == 0, output
    payload.plant(root, outside)
    got, output = cli(root, *entry.args)
    assert got == code, output
    assert "Traceback" not in output
    assert payload.secret not in output
    if code:
        assert payload.named in output
        assert payload.says in output
    assert files_holding(root, payload.secret) == []
    assert files_holding(Path(os.environ["HOME"]), payload.secret) == []


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="no /proc/self/environ")
def test_the_reported_exploit_a_partial_linked_to_the_environment(
    places: tuple[Path, Path],
) -> None:
    """The report: a partial linked to /proc/self/environ put the API key in the ledger."""
    import subprocess

    root, _ = places
    link(root / "prompts/_partials/voice.j2", Path("/proc/self/environ"))
    main = "from promptlib.cli import main; main()"
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    for command in (["validate"], ["release"], ["render", "demo.sentiment", "--example", "0"]):
        done = subprocess.run(
            [sys.executable, "-c", main, "--project", str(root), *command],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == (1 if command == ["validate"] else 2), output
        assert (
            f"voice.j2: {SYMLINK} file outside the project (/proc/self/environ); "
            "promptlib reads no file outside the project" in output
        )
        assert SECRET not in output
    assert files_holding(root, SECRET) == []


def test_the_planted_link_would_leak_without_the_check(places: tuple[Path, Path]) -> None:
    """The payload is real: the file behind the link holds the secret."""
    root, outside = places
    PAYLOADS[1].plant(root, outside)
    assert SECRET in (root / "prompts" / "_partials" / "voice.j2").read_text("utf-8")


# -- links that stay inside the project -----------------------------------------------------


def test_links_inside_the_project_work_everywhere(places: tuple[Path, Path]) -> None:
    root, _ = places
    shared = root / "shared"
    write(shared / "voice.j2", "Be kind and brief. SHARED_VOICE\n")
    link(root / "prompts/_partials/voice.j2", Path("../../shared/voice.j2"))
    (shared / "reviews.jsonl").write_text(rows(), encoding="utf-8")
    link(root / "evals/datasets/reviews.jsonl", Path("../../shared/reviews.jsonl"))
    shutil.move(root / "evals/suites/sentiment.yaml", shared / "sentiment.yaml")
    link(root / "evals/suites/sentiment.yaml", Path("../../shared/sentiment.yaml"))
    # A folder linked inside the project is not walked for prompts (as before), and fine.
    link(root / "prompts/alias", Path("demo"))
    code, output = cli(root, "validate")
    assert code == 0, output
    assert "1 file checked: 1 valid prompts, 0 errors" in output
    code, output = cli(root, "render", "demo.sentiment", "--example", "0")
    assert code == 0, output
    assert "SHARED_VOICE" in output
    for args in (("eval",), ("release",), ("diff",), ("check",), LOCK, ("list",)):
        code, output = cli(root, *args)
        assert code == 0, (args, output)


def test_a_project_reached_through_a_symlink_works(places: tuple[Path, Path]) -> None:
    root, _ = places
    alias = root.parent / "alias"
    alias.symlink_to(root)
    code, output = cli(alias, "validate")
    assert code == 0, output
    assert cli(alias, "eval")[0] == 0


# -- promptlib._paths -----------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp_path/project`` with links of every kind, and ``tmp_path/outside``."""
    root = tmp_path / "project"
    write(root / "a" / "file.txt", "inside")
    write(tmp_path / "outside" / "file.txt", SECRET)
    (root / "in_file").symlink_to("a/file.txt")
    (root / "in_folder").symlink_to("a")
    (root / "out_file").symlink_to(tmp_path / "outside" / "file.txt")
    (root / "out_folder").symlink_to(tmp_path / "outside")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "chain").symlink_to("in_folder/../out_file")
    (root / "a" / "up").symlink_to("../../outside/file.txt")
    return root


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/file.txt", None),
        ("in_file", None),
        ("in_folder/file.txt", None),
        ("a/../a/file.txt", None),
        ("out_file", ("out_file", "file", True)),
        ("out_folder", ("out_folder", "folder", True)),
        ("out_folder/file.txt", ("out_folder", "folder", True)),
        ("in_folder/up", ("in_folder/up", "file", True)),
        ("a/up", ("a/up", "file", True)),
        ("chain", ("chain", "file", True)),
        ("dangling", ("dangling", "path", True)),
        ("../outside/file.txt", ("../outside/file.txt", "file", False)),
        ("a/../../outside/file.txt", ("a/../../outside/file.txt", "file", False)),
        ("/etc", ("/etc", "folder", False)),
    ],
)
def test_escape(tree: Path, path: str, expected: tuple[str, str, bool] | None) -> None:
    left = escape(tree, Path(path))
    if expected is None:
        assert left is None
        assert inside(tree, Path(path)).is_relative_to(tree.resolve())
        return
    assert left is not None
    assert (left.shown, left.kind, left.link) == expected
    assert not left.target.is_relative_to(tree.resolve())
    with pytest.raises(ConfigError) as raised:
        inside(tree, Path(path))
    assert str(raised.value) == f"{left.shown}: {left.reason}"
    assert SECRET not in str(raised.value)


def test_escape_names_the_target_and_what_to_do(tree: Path) -> None:
    left = escape(tree, Path("out_file"))
    assert left is not None
    target = tree.parent / "outside" / "file.txt"
    assert str(left) == (
        f"out_file is a symlink to a file outside the project ({target}); "
        "promptlib reads no file outside the project: copy the file into the project, or "
        "remove the link"
    )
    # A relative link is shown by where it resolves.
    left = escape(tree, Path("a/up"))
    assert left is not None
    assert f"({target.resolve()});" in str(left)


def test_links_outside_lists_every_way_out_once_and_follows_inside_links(tree: Path) -> None:
    found = [(e.shown, e.kind) for e in links_outside(tree, tree)]
    # a/up is also in_folder/up: it is named once, by the path without a link in it.
    assert found == [
        ("a/up", "file"),
        ("chain", "file"),
        ("dangling", "path"),
        ("out_file", "file"),
        ("out_folder", "folder"),
    ]
    # Reached only through an inside link, a way out is found all the same.
    (tree / "a" / "up").rename(tree / "up")
    (tree / "b").mkdir()
    (tree / "b" / "up").symlink_to("../../outside/file.txt")
    (tree / "a" / "b").symlink_to("../b")
    top = [(e.shown, e.kind) for e in links_outside(tree, tree / "a")]
    assert top == [("a/b/up", "file")]


def test_links_outside_survives_a_link_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.txt", "x")
    (tmp_path / "a" / "loop").symlink_to("..")
    assert links_outside(tmp_path, tmp_path) == []


# -- the loader, suites and datasets on their own -------------------------------------------


@pytest.mark.parametrize(
    ("plant", "named", "kind"),
    [
        (lambda root, out: link(root / "prompts", out / "prompts"), "prompts", "folder"),
        (lambda root, out: link(root / "prompts/_partials", out), "prompts/_partials", "folder"),
        (
            lambda root, out: link(root / "prompts/_partials/sub", out),
            "prompts/_partials/sub",
            "folder",
        ),
        (lambda root, out: link(root / "prompts/_drafts", out), "prompts/_drafts", "folder"),
        (
            lambda root, out: link(root / "prompts/notes.txt", out / "secret.txt"),
            "prompts/notes.txt",
            "file",
        ),
    ],
    ids=["prompts_folder", "partials_folder", "partials_subfolder", "skipped_folder", "other_file"],
)
def test_every_link_out_of_the_library_fails_every_load(
    places: tuple[Path, Path], plant: Callable[[Path, Path], None], named: str, kind: str
) -> None:
    root, outside = places
    plant(root, outside)
    result = scan(root / "prompts")
    assert [p.path for p in result.outside] == [named]
    assert result.outside[0].message.startswith(f"{SYMLINK} {kind} outside the project (")
    assert set(result.outside) <= set(result.problems)
    assert SECRET not in "".join(result.partials.values())
    for strict in (True, False):
        with pytest.raises(ConfigError, match=f"^{named}: {SYMLINK} {kind}"):
            collection.load(root, strict=strict)


def test_validate_of_one_linked_file_refuses_it(places: tuple[Path, Path]) -> None:
    root, outside = places
    PAYLOADS[2].plant(root, outside)
    code, output = cli(root, "validate", "prompts/demo/leak.yaml")
    assert code == 1
    assert output.startswith(f"prompts/demo/leak.yaml: {SYMLINK} file outside the project")
    assert SECRET not in output
    code, output = cli(root, "validate", "prompts/demo/sentiment.yaml")
    assert code == 0, output


def test_a_suites_folder_leading_out_is_refused(places: tuple[Path, Path]) -> None:
    root, outside = places
    shutil.rmtree(root / "evals" / "suites")
    link(root / "evals/suites", outside)
    with pytest.raises(ConfigError, match=f"^evals/suites: {SYMLINK} folder outside"):
        load_suites(root)


def test_a_dvc_file_leading_out_is_refused(places: tuple[Path, Path]) -> None:
    root, outside = places
    link(root / "evals/datasets/reviews.jsonl.dvc", outside / "secret.txt")
    with pytest.raises(DatasetError) as raised:
        load_dataset(root / "evals/datasets/reviews.jsonl", root)
    assert str(raised.value).startswith(
        f"evals/datasets/reviews.jsonl.dvc {SYMLINK} file outside the project"
    )
    assert SECRET not in str(raised.value)
    code, output = cli(root, "validate")
    assert code == 1
    assert "reviews.jsonl.dvc is a symlink" in output
    assert SECRET not in output


# -- the wheel ------------------------------------------------------------------------------


def copy_repo(target: Path) -> Path:
    """What a build of this repository reads, copied to ``target``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "src", target / "src", ignore=ignore)
    shutil.copytree(REPO / "prompts", target / "prompts", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copyfile(REPO / name, target / name)
    return target


def build(source: Path, out: Path, kind: str) -> tuple[int, str]:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "build", kind, "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["--wheel", "--sdist"])
def test_a_build_refuses_a_link_out_of_the_project(tmp_path: Path, kind: str) -> None:
    """hatchling follows symlinks, so the build hook (src/hatch_build.py) must refuse them."""
    source = copy_repo(tmp_path / "source")
    outside = make_outside(tmp_path / "outside")
    link(source / "prompts/_partials/env.j2", outside / "secret.txt")
    link(source / "prompts/_partials/inside.j2", Path("support_voice.j2"))
    code, output = build(source, tmp_path / "dist", kind)
    assert code != 0
    assert f"prompts/_partials/env.j2 -> {(outside / 'secret.txt').resolve()}" in output
    assert "inside.j2" not in output
    assert SECRET not in output
    assert not list((tmp_path / "dist").glob("promptlib-*"))


def test_a_build_follows_links_inside_the_project(tmp_path: Path) -> None:
    import zipfile

    source = copy_repo(tmp_path / "source")
    link(source / "prompts/_partials/inside.j2", Path("support_voice.j2"))
    code, output = build(source, tmp_path / "dist", "--wheel")
    assert code == 0, output
    [wheel] = list((tmp_path / "dist").glob("promptlib-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "promptlib/_bundled/prompts/_partials/inside.j2" in names


# --- writes and git refs ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CHANGELOG.md", "pyproject.toml"])
def test_release_never_reads_or_writes_a_file_linked_outside(
    places: tuple[Path, Path], name: str
) -> None:
    root, outside = places
    target = outside / name
    shutil.copy(root / name, target)
    before = target.read_bytes()
    link(root / name, target)
    code, out = cli(root, "release")
    assert code == 2, out
    assert f"{name}: is a symlink to a file outside the project" in out
    assert "Traceback" not in out
    assert target.read_bytes() == before
    assert (root / name).is_symlink()
    assert not (root / "evals" / "ledger").exists()  # nothing recorded


def test_eval_never_writes_a_ledger_linked_outside(places: tuple[Path, Path]) -> None:
    root, outside = places
    (outside / "ledger").mkdir()
    link(root / "evals" / "ledger", outside / "ledger")
    code, out = cli(root, "eval")
    assert code == 2, out
    assert "evals/ledger: is a symlink to a folder outside the project" in out
    assert list((outside / "ledger").iterdir()) == []


def test_a_git_ref_holding_a_link_outside_is_refused_not_a_crash(
    places: tuple[Path, Path],
) -> None:
    root, outside = places
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=root,
            check=True,
        )
    link(root / "prompts" / "_partials" / "voice.j2", outside / "secret.txt")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "l"],
        cwd=root,
        check=True,
    )
    (root / "prompts" / "_partials" / "voice.j2").unlink()
    write(root / "prompts" / "_partials" / "voice.j2", "Be kind and brief.\n")
    code, out = cli(root, "diff", "HEAD")
    assert code == 2, out
    assert "is a link leading outside the project" in out
    assert SECRET not in out
