"""Publishing a release: build, check, upload to an index, install by version from it.

The release is built the way ``.github/workflows/release.yml`` builds it: its ``run:`` steps,
read from the working tree's workflow, run in a ``git clone --depth 1`` of this repository
(committed files only). The index is a real pypiserver on 127.0.0.1 with an htpasswd user;
twine uploads to it, and a fresh virtual environment installs the release from it by
version, with its dependencies from the project's ``.wheelhouse/`` (``make wheelhouse``).
Then ``docs/consumers.md`` is run as written: every fenced block it marks with
``<!-- guide-test: ROLE -->``, in a clone of its own, against a pypiserver started with the
guide's own command.

Nothing here reaches the network. Every subprocess runs with no pip configuration file, no
inherited ``PIP_*`` variable, and HTTP proxies pointing at a closed port on 127.0.0.1, so a
request meant for PyPI fails instead of leaving the machine; pypiserver runs with
``--disable-fallback`` (it would otherwise redirect unknown names to PyPI). ``python -m
build`` installs its isolated build backend from wheels repackaged from the hatchling this
test environment already has.

The version is ``[project] version`` of the committed ``pyproject.toml`` (the one the clone
builds).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import html
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import Distribution, distribution
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO, WHEELHOUSE, fresh_venv, run_checked

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
GUIDE = REPO / "docs" / "consumers.md"
EXAMPLE = REPO / "examples" / "downstream"
# The folder of this interpreter's venv: python, pip, build, twine and pypi-server.
TOOLS = Path(sys.executable).parent
# Nothing listens on the discard port of 127.0.0.1: a request sent through this proxy fails
# at once, where a request that escaped the test would have gone to PyPI.
DEAD_PROXY = "http://127.0.0.1:9"
USER, PASSWORD = "publisher", "test-password"


def _env(home: Path, path: list[Path], **extra: str) -> dict[str, str]:
    """The environment of a subprocess: hermetic pip and twine, ``path`` first on PATH."""
    dropped = ("PIP_", "TWINE_", "GITHUB_", "PROMPTLIB_", "VIRTUAL_ENV", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env = {k: v for k, v in env.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env.update(
        {
            "HOME": str(home),
            "PATH": os.pathsep.join([*map(str, path), os.environ.get("PATH", os.defpath)]),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            # Byte-compiling every installed module is half of an install's time (numpy,
            # nltk); Python compiles what it imports anyway. (pip reads PIP_NO_COMPILE=1 as
            # "compile": PIP_COMPILE=0 is the way to say --no-compile.)
            "PIP_COMPILE": "0",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "TWINE_NON_INTERACTIVE": "1",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "200",
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "no_proxy": "127.0.0.1",
            "NO_PROXY": "127.0.0.1",
        }
    )
    env.update(extra)
    return env


def _text(result: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr as one line of words, without colours (twine's rich wraps and colours
    its messages even in a pipe)."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout + result.stderr)
    return " ".join(html.unescape(text).split())


def _bash(script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    # GitHub's `run:` shell for bash; -x puts each command in stderr, to read a failure.
    args = ["bash", "--noprofile", "--norc", "-euxo", "pipefail", "-c", script]
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def _passed(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        pytest.fail(f"{what} exited {result.returncode}\n{result.stdout}\n{result.stderr}")


def _project_version(project: Path) -> str:
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def _clone(target: Path) -> Path:
    run_checked(["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", target])
    return target


# --- the build backend, offline ----------------------------------------------------------


def _requirements_closure(name: str) -> list[Distribution]:
    """``name`` and everything it requires, as installed here."""
    found: dict[str, Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in found:
            continue
        found[key] = dist = distribution(key)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _repackage(dist: Distribution, out: Path) -> Path:
    """A wheel of an installed pure-Python distribution: its files as the RECORD lists them.

    Scripts (outside site-packages), bytecode and the installer's own files are left out;
    pip writes them again when it installs the wheel.
    """
    files = [f for f in dist.files or [] if f.parts[0] != ".." and "__pycache__" not in f.parts]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    wheel_meta = dist.read_text("WHEEL") or ""
    assert "Root-Is-Purelib: true" in wheel_meta, (dist.metadata["Name"], wheel_meta)
    tags = re.findall(r"^Tag: (\S+)$", wheel_meta, re.M)
    assert tags, wheel_meta
    skip = {f"{info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    path = out / f"{name}-{dist.version}-{tags[0]}.whl"
    record = io.StringIO()
    rows = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            arcname = file.as_posix()
            if arcname in skip:
                continue
            data = Path(str(file.locate())).read_bytes()
            archive.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rows.writerow([arcname, f"sha256={digest.decode()}", len(data)])
        rows.writerow([f"{info}/RECORD", "", ""])
        archive.writestr(f"{info}/RECORD", record.getvalue())
    return path


@dataclass(frozen=True)
class Maintainer:
    """A maintainer's shell: build, twine and pypiserver, and wheels instead of an index.

    ``bin`` is a venv that sees this venv's packages (a .pth file) but installs into itself:
    a ``python -m pip install`` the workflow or the guide runs finds build and twine already
    there, and whatever else it might install cannot change the venv running the tests.
    """

    bin: Path
    wheels: Path  # hatchling and its requirements, for build's isolated environment

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        links = f"{self.wheels} {WHEELHOUSE}"
        return _env(home, [self.bin, TOOLS], PIP_NO_INDEX="1", PIP_FIND_LINKS=links, **extra)


@pytest.fixture(scope="module")
def maintainer(tmp_path_factory: pytest.TempPathFactory) -> Maintainer:
    where = tmp_path_factory.mktemp("maintainer")
    wheels = where / "wheels"
    wheels.mkdir()
    for dist in _requirements_closure("hatchling"):
        _repackage(dist, wheels)
    venv = where / "venv"
    run_checked([sys.executable, "-m", "venv", "--without-pip", venv])
    purelib = run_checked(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    ).stdout.strip()
    ours = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    Path(purelib, "_maintainer_tools.pth").write_text("".join(f"{p}\n" for p in ours))
    return Maintainer(venv / "bin", wheels)


# --- pypiserver --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Index:
    url: str  # http://127.0.0.1:PORT/
    packages: Path
    log: Path


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """True once ``url`` answers; False if the server exited first."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with opener.open(f"{url}health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    pytest.fail(f"pypiserver did not answer at {url} within 30 s:\n{log.read_text()}")


@contextlib.contextmanager
def _serve(
    command: list[str], cwd: Path, env: Mapping[str, str], packages: Path
) -> Iterator[Index]:
    """Run ``command``, a ``pypi-server run`` with ``{port}`` for its port, until the block ends."""
    for _ in range(3):
        port = _free_port()
        log = cwd / f"pypiserver-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [a.replace("{port}", str(port)) for a in command],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}/"
        try:
            if _wait_ready(process, url, log):
                yield Index(url, packages, log)
                return
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # It exited before answering: most likely another process took the port between
        # _free_port() and the server's bind. Try another one.
    pytest.fail(f"pypiserver would not start:\n{log.read_text()}")


def _htpasswd(path: Path, user: str, password: str, env: Mapping[str, str]) -> None:
    # In a subprocess: passlib imports the deprecated `crypt` module, and this test session
    # turns warnings into errors.
    code = (
        "import sys\n"
        "from passlib.apache import HtpasswdFile\n"
        "f = HtpasswdFile(sys.argv[1], new=True)\n"
        "f.set_password(sys.argv[2], sys.argv[3])\n"
        "f.save()\n"
    )
    run_checked([sys.executable, "-c", code, path, user, password], env=env)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """A pypiserver on 127.0.0.1: uploads need USER's password, downloads nothing."""
    where = tmp_path_factory.mktemp("index")
    env = _env(where, [TOOLS])
    _htpasswd(where / "htpasswd.txt", USER, PASSWORD, env)
    packages = where / "packages"
    packages.mkdir()
    command = [
        *("pypi-server", "run", "-v", "-i", "127.0.0.1", "-p", "{port}"),
        *("-P", "htpasswd.txt", "-a", "update", "--disable-fallback", str(packages)),
    ]
    with _serve(command, where, env, packages) as served:
        yield served


# --- the release workflow ----------------------------------------------------------------


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _runs() -> list[tuple[str, str]]:
    """(name, script) of each ``run:`` step of the build job, in order."""
    steps = _workflow()["jobs"]["build"]["steps"]
    return [(step.get("name", step["run"]), step["run"]) for step in steps if "run" in step]


@dataclass(frozen=True)
class Release:
    clone: Path
    version: str
    steps: list[tuple[str, subprocess.CompletedProcess[str]]]

    @property
    def dist(self) -> list[Path]:
        return sorted((self.clone / "dist").iterdir())


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, maintainer: Maintainer) -> Release:
    """A clean clone in which the workflow's build job ran, as on a pushed tag."""
    where = tmp_path_factory.mktemp("release")
    clone = _clone(where / "clone")
    version = _project_version(clone)
    env = maintainer.env(where, GITHUB_REF_NAME=f"v{version}")
    steps = []
    for name, run in _runs():
        result = _bash(run, cwd=clone, env=env)
        _passed(result, f"release.yml step {name!r}")
        steps.append((name, result))
    return Release(clone, version, steps)


def _twine_upload(
    release: Release, index: Index, password: str, *, verbose: bool = False
) -> subprocess.CompletedProcess[str]:
    dist = [p.relative_to(release.clone).as_posix() for p in release.dist]
    args = ["twine", "upload", "--repository-url", index.url, "-u", USER, "-p", password]
    return subprocess.run(
        [*args, *(["--verbose"] if verbose else []), *dist],
        cwd=release.clone,
        env=_env(release.clone.parent, [TOOLS]),
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def published(release: Release, index: Index) -> Release:
    """The release, uploaded to the index."""
    _passed(_twine_upload(release, index, PASSWORD), "twine upload")
    stored = sorted(index.packages.iterdir())
    assert [p.name for p in stored] == [p.name for p in release.dist]
    assert [p.read_bytes() for p in stored] == [p.read_bytes() for p in release.dist]
    return release


def test_the_release_workflow_publishes_version_tags_with_trusted_publishing() -> None:
    data = _workflow()
    trigger = data.get("on", data.get(True))  # YAML 1.1 reads the key `on` as true
    assert trigger == {"push": {"tags": ["v*"]}}
    assert data["permissions"] == {"contents": "read"}
    build = data["jobs"]["build"]
    assert build["steps"][0]["uses"].startswith("actions/checkout@")
    assert build["steps"][1]["uses"].startswith("actions/setup-python@")
    assert build["steps"][1]["with"]["python-version"] == "3.11"
    runs = [run for _, run in _runs()]
    assert "$GITHUB_REF_NAME" in runs[0]
    assert runs[1:] == [
        "python -m pip install build twine",
        "python -m build",
        "twine check --strict dist/*",
    ]
    assert "permissions" not in build  # only the publish job may mint an OIDC token
    publish = data["jobs"]["publish"]
    assert publish["needs"] == "build"
    assert publish["environment"] == {"name": "pypi"}
    assert publish["permissions"] == {"id-token": "write"}
    [upload] = [s for s in publish["steps"] if "gh-action-pypi-publish" in s.get("uses", "")]
    assert upload["uses"] == "pypa/gh-action-pypi-publish@release/v1"
    assert not {"user", "password"} & set(upload.get("with", {}))  # trusted publishing: no token


def test_its_build_steps_build_and_check_the_release_in_a_clean_clone(release: Release) -> None:
    version = release.version
    assert [p.name for p in release.dist] == [
        f"promptlib-{version}-py3-none-any.whl",
        f"promptlib-{version}.tar.gz",
    ]
    name, checked = release.steps[-1]
    assert name.startswith("Check the metadata")
    for path in release.dist:
        assert f"Checking dist/{path.name}: PASSED" in _text(checked)
    names = zipfile.ZipFile(release.dist[0]).namelist()
    assert "promptlib/_bundled/prompts/support/answer/cancel_order.yaml" in names


def test_a_tag_naming_another_version_stops_the_release(
    release: Release, maintainer: Maintainer, tmp_path: Path
) -> None:
    name, run = _runs()[0]
    assert name.startswith("Check that the tag names the version")
    result = _bash(run, cwd=release.clone, env=maintainer.env(tmp_path, GITHUB_REF_NAME="v0.0.1"))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"::error::the tag v0.0.1 does not name the version in pyproject.toml "
        f"({release.version}): tag the release commit v{release.version}"
    )


def test_a_published_release_installs_by_version_from_the_index(
    published: Release, index: Index, tmp_path: Path
) -> None:
    version = published.version
    bin_dir = fresh_venv(tmp_path / "venv")
    env = _env(tmp_path, [bin_dir], VIRTUAL_ENV=str(bin_dir.parent))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    command: list[str | Path] = [
        *(bin_dir / "pip", "install", f"promptlib=={version}"),
        *("--index-url", f"{index.url}simple/", "--find-links", WHEELHOUSE),
    ]
    install = run_checked(command, cwd=outside, env=env)
    # From the index (the wheelhouse has no promptlib), its dependencies from the wheelhouse.
    assert re.search(
        rf"Downloading \S*promptlib-{re.escape(version)}-py3-none-any\.whl", install.stdout
    )
    assert f"/packages/promptlib-{version}-py3-none-any.whl" in index.log.read_text()
    code = (
        "import json, promptlib\n"
        "from importlib.metadata import version\n"
        "print(json.dumps({'version': version('promptlib'), 'file': promptlib.__file__, "
        "'prompts': len(promptlib.load())}))\n"
    )
    imported = json.loads(
        run_checked([bin_dir / "python", "-c", code], cwd=outside, env=env).stdout
    )
    assert imported["version"] == version
    assert Path(imported["file"]).is_relative_to(bin_dir.parent)
    assert imported["prompts"] >= 50
    # The downstream example's committed lock holds against the published release.
    project = tmp_path / "downstream"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    run_checked([bin_dir / "promptlib", "manifest", "check"], cwd=project, env=env)
    load = "import promptlib\nprint(len(promptlib.load(manifest='prompt_manifest.yaml')))"
    pinned = yaml.safe_load((project / "prompt_manifest.yaml").read_text(encoding="utf-8"))
    loaded = run_checked([bin_dir / "python", "-c", load], cwd=project, env=env)
    assert int(loaded.stdout) == len(pinned["prompts"])


def test_uploading_the_same_version_again_is_refused(published: Release, index: Index) -> None:
    before = {p.name: p.read_bytes() for p in index.packages.iterdir()}
    result = _twine_upload(published, index, PASSWORD, verbose=True)
    assert result.returncode == 1
    text = _text(result)
    # pypiserver answers twine 400, as PyPI does (twine issue 1265); others, and pypiserver
    # before 2.4, 409 Conflict.
    assert re.search(
        rf"HTTPError: (400 Bad Request|409 Conflict) from {re.escape(index.url)}", text
    ), text
    wheel = f"promptlib-{published.version}-py3-none-any.whl"
    assert f"Package '{wheel}' already exists!" in text
    assert {p.name: p.read_bytes() for p in index.packages.iterdir()} == before


def test_an_upload_without_the_password_is_refused(release: Release, index: Index) -> None:
    result = _twine_upload(release, index, "not-the-password")
    assert result.returncode == 1
    assert f"HTTPError: 403 Forbidden from {index.url}" in _text(result)


# --- docs/consumers.md, run as written ---------------------------------------------------

# The guide's commands name this version and this index; the test puts in the version being
# built and its own pypiserver.
GUIDE_VERSION = "2.1.0"
GUIDE_INDEX = "https://pypi.internal.example/"
ROLES = {
    "index": "sh",  # a local pypiserver: the last line starts it, the others prepare it
    "release": "sh",  # the maintainer, in the release checkout
    "install-wheelhouse": "sh",  # a fresh venv, in the release checkout
    "install-index": "sh",  # the same venv, without promptlib
    "consumer": "sh python",  # the consumer's project, with promptlib installed
    "manifest": "yaml",  # the consumer's prompt_manifest.yaml
}


@dataclass(frozen=True)
class Block:
    role: str | None
    lang: str
    text: str
    line: int


def _blocks() -> list[Block]:
    """The guide's fenced blocks, each with the role its ``<!-- guide-test: ROLE -->`` gives."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = []
    for fence in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        mark = re.search(r"<!-- guide-test: ([\w-]+) -->\n\Z", text[: fence.start()])
        line = text.count("\n", 0, fence.start()) + 2
        blocks.append(Block(mark.group(1) if mark else None, fence.group(1), fence.group(2), line))
    return blocks


def test_every_command_of_the_guide_is_run_by_its_test() -> None:
    blocks = _blocks()
    unmarked = [(b.line, b.lang) for b in blocks if b.role is None and b.lang != "json"]
    assert unmarked == [], "mark each block with <!-- guide-test: ROLE -->; ROLES lists them"
    assert {b.role for b in blocks if b.role} == set(ROLES)
    assert [
        (b.line, b.lang) for b in blocks if b.role and b.lang not in ROLES[b.role].split()
    ] == []
    assert len([b for b in blocks if b.role == "manifest"]) == 1
    [index_block] = [b for b in blocks if b.role == "index"]
    assert index_block.text.splitlines()[-1].startswith("pypi-server run ")
    assert "--disable-fallback" in index_block.text
    assert GUIDE_VERSION in GUIDE.read_text(encoding="utf-8")


def _guide_step(block: Block, result: subprocess.CompletedProcess[str]) -> None:
    _passed(result, f"docs/consumers.md:{block.line} ({block.role} {block.lang} block)")


def test_the_guide_works_as_written(tmp_path: Path, maintainer: Maintainer) -> None:
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.skip(f"no dependency wheels in {WHEELHOUSE}: `make wheelhouse` builds them")
    blocks = _blocks()
    clone = _clone(tmp_path / "clone")
    version = _project_version(clone)
    tools = maintainer.env(tmp_path)

    [index_block] = [b for b in blocks if b.role == "index"]
    *prepare, serve = index_block.text.splitlines()
    credentials = re.search(r'set_password\("([^"]+)", "([^"]+)"\)', index_block.text)
    assert credentials, index_block.text
    user, password = credentials.groups()
    where = tmp_path / "index"
    where.mkdir()
    _guide_step(index_block, _bash("\n".join(prepare), cwd=where, env=tools))
    words = shlex.split(serve)
    words[words.index("-p") + 1] = "{port}"
    with _serve(words, where, tools, where / "packages") as index:

        def adapt(text: str) -> str:
            return text.replace(GUIDE_INDEX, index.url).replace(GUIDE_VERSION, version)

        upload = {**tools, "TWINE_USERNAME": user, "TWINE_PASSWORD": password}
        for block in [b for b in blocks if b.role == "release"]:
            _guide_step(block, _bash(adapt(block.text), cwd=clone, env=upload))
        dist = sorted(p.name for p in (clone / "dist").iterdir())
        assert sorted(p.name for p in index.packages.iterdir()) == dist
        assert f"promptlib-{version}-py3-none-any.whl" in dist

        bin_dir = fresh_venv(tmp_path / "venv")
        env = _env(tmp_path, [bin_dir], VIRTUAL_ENV=str(bin_dir.parent))
        # From the wheelhouse alone: promptlib and every dependency.
        for block in [b for b in blocks if b.role == "install-wheelhouse"]:
            _guide_step(block, _bash(adapt(block.text), cwd=clone, env=env))
        # From the index, into the same venv without promptlib (its dependencies stay).
        # The guide's index serves the dependencies too (a proxy of PyPI); this pypiserver
        # holds only promptlib, so pip finds any it would need in the wheelhouse.
        run_checked([bin_dir / "python", "-m", "pip", "uninstall", "--yes", "promptlib"], env=env)
        env_index = {**env, "PIP_FIND_LINKS": str(WHEELHOUSE)}
        for block in [b for b in blocks if b.role == "install-index"]:
            result = _bash(adapt(block.text), cwd=clone, env=env_index)
            _guide_step(block, result)
            assert re.search(rf"Downloading \S*promptlib-{re.escape(version)}-py3", result.stdout)

    project = tmp_path / "project"
    project.mkdir()
    outputs = []
    for block in [b for b in blocks if b.role in ("consumer", "manifest")]:
        if block.role == "manifest":
            (project / "prompt_manifest.yaml").write_text(block.text, encoding="utf-8")
            continue
        if block.lang == "python":
            result = subprocess.run(
                [bin_dir / "python", "-c", block.text],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
            )
        else:
            result = _bash(adapt(block.text), cwd=project, env=env)
        _guide_step(block, result)
        outputs.append(result.stdout)
    assert outputs[0].startswith(f"promptlib {version}\n")
    lock = json.loads((project / "prompt_manifest.lock").read_text(encoding="utf-8"))
    assert lock["library"] == {"name": "promptlib", "version": version}
