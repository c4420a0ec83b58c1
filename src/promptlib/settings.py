"""Where the project is, and its configuration, resolved once into one ``Settings`` object.

A *project* is the nearest folder, walking up from the starting directory, that holds a
``pyproject.toml`` and a ``prompts/`` folder (the way git finds its repository).
Configuration is read from ``[tool.promptlib]`` in its ``pyproject.toml``, or from a
``promptlib.toml`` beside it (whose top-level table is the same thing); having both is an
error that says which to keep. Personal settings (a provider's key variable, a local
server, retries) go in a git-ignored ``promptlib.local.toml`` beside them, or in
``PROMPTLIB_*`` variables; they may set only ``default-provider``, ``providers``, ``retry``
and ``mlflow`` (the comparison rule is the team's, in the committed file).

Values resolve in a fixed order, each layer overriding the one below key by key (tables
merge; a provider's options merge one by one): command-line flag, ``PROMPTLIB_*``
environment variable, ``promptlib.local.toml``, project file, default. Each layer is
checked on its own first, so that a bad value names its file or variable and key. Library
functions take the resolved values as arguments and never read the environment
themselves. See docs/configuration.md.
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "CompareSettings",
    "FlakySettings",
    "MlflowSettings",
    "RetryPolicy",
    "Settings",
    "config_source",
    "find_project",
    "read_config",
]


def find_project(start: Path | None = None) -> Path | None:
    """The nearest ancestor of ``start`` (default: cwd) with pyproject.toml and prompts/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "prompts").is_dir():
            return folder
    return None


def config_source(root: Path) -> Path:
    """The file that configures the project at ``root``: promptlib.toml, else pyproject.toml."""
    standalone = root / "promptlib.toml"
    return standalone if standalone.is_file() else root / "pyproject.toml"


LOCAL_FILE = "promptlib.local.toml"
# What personal settings may override: how to reach a provider, not how results are judged.
PERSONAL_KEYS = ("default-provider", "providers", "retry", "mlflow")
# PROMPTLIB_PROVIDERS__LOCAL__BASE_URL, PROMPTLIB_RETRY__MAX_ATTEMPTS: a table, then keys.
_ENV_PREFIX = "PROMPTLIB_"
_ENV_SEPARATOR = "__"


def read_config(root: Path) -> dict[str, Any]:
    """The promptlib configuration table of the project at ``root`` (empty if none)."""
    standalone = root / "promptlib.toml"
    pyproject = root / "pyproject.toml"
    table: Any = {}
    from_pyproject: Any = {}
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool", {})
        from_pyproject = tool.get("promptlib", {}) if isinstance(tool, dict) else {}
    if standalone.is_file():
        if from_pyproject:
            raise ConfigError(
                f"{standalone}: promptlib is configured both here and in [tool.promptlib] of "
                f"{pyproject}, and reads only one project file: move the keys of one into "
                f"the other and delete it (personal settings that must not be committed go "
                f"in {LOCAL_FILE}, which overrides either)"
            )
        table = _read_toml(standalone)
    else:
        table = from_pyproject
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.promptlib] must be a table")
    return table


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` applied key by key; tables merge, other values replace."""
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = _merge(below, value)
        else:
            out[key] = value
    return out


def read_local_config(root: Path) -> dict[str, Any]:
    """The personal settings in ``promptlib.local.toml`` beside the project file (or {})."""
    path = root / LOCAL_FILE
    if not path.is_file():
        return {}
    table = _read_toml(path)
    _check_personal(table, str(path))
    return table


def _env_value(raw: str) -> Any:
    """A variable's value read as a TOML value (``5``, ``true``, ``"x"``), else as text."""
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def read_env_config(environ: Mapping[str, str], below: Mapping[str, Any]) -> dict[str, Any]:
    """Settings from ``PROMPTLIB_<TABLE>__<KEY>`` and ``PROMPTLIB_PROVIDERS__<NAME>__<KEY>``.

    Names are case-insensitive: a provider or option is matched to one the layers ``below``
    already define when only case (and ``_`` for ``-``) differ, else taken in lowercase.
    ``PROMPTLIB_PROVIDER`` (the default provider) is read by ``Settings.resolve``.
    """
    out: dict[str, Any] = {}
    for variable in sorted(environ):
        if not variable.startswith(_ENV_PREFIX) or _ENV_SEPARATOR not in variable:
            continue
        parts = variable[len(_ENV_PREFIX) :].split(_ENV_SEPARATOR)
        table = parts[0].lower()
        depth = 3 if table == "providers" else 2
        if table not in PERSONAL_KEYS or table == "default-provider" or len(parts) != depth:
            raise ConfigError(
                f"{variable}: not a promptlib setting; the variables are "
                "PROMPTLIB_PROVIDERS__<NAME>__<OPTION>, PROMPTLIB_RETRY__<KEY> and "
                "PROMPTLIB_MLFLOW__<KEY> (and PROMPTLIB_PROVIDER); the comparison rule is "
                "set in the project file only"
            )
        known: Any = below.get(table, {})
        path = [table]
        for part in parts[1:]:
            candidates = list(known) if isinstance(known, Mapping) else []
            wanted = part.lower()
            match = next(
                (c for c in candidates if str(c).lower().replace("-", "_") == wanted), None
            )
            if match is None and table != "providers":
                match = wanted.replace("_", "-")  # retry and mlflow keys are kebab-case
            key = str(match) if match is not None else wanted
            path.append(key)
            known = known.get(key, {}) if isinstance(known, Mapping) else {}
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = _env_value(environ[variable])
        _check_personal({table: _nested(path[1:], node[path[-1]])}, variable)
    return out


def _nested(path: list[str], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def _check_personal(table: Mapping[str, Any], where: str) -> None:
    """Refuse keys personal settings may not set; check the values they set, naming ``where``."""
    refused = sorted(set(table) - set(PERSONAL_KEYS))
    if refused:
        raise ConfigError(
            f"{where}: {', '.join(refused)} cannot be set here; personal settings may set "
            f"{', '.join(PERSONAL_KEYS)} (the rest is the team's, in the project file)"
        )
    _check_layer(table, where)


def _check_layer(config: Mapping[str, Any], where: str) -> None:
    """Check one layer's own values, so that an error names the layer that set them."""
    RetryPolicy.from_table(_table(config, "retry", where), where)
    MlflowSettings.from_table(_table(config, "mlflow", where), where, {})
    providers = _table(config, "providers", where)
    for name, options in providers.items():
        if not isinstance(options, Mapping):
            raise ConfigError(
                f"{where} [providers.{name}]: must be a table of options, not "
                f"{type(options).__name__} {options!r}"
            )
    configured = config.get("default-provider", "retrieval")
    if not isinstance(configured, str) or not configured:
        raise ConfigError(f"{where}: default-provider must be a provider name, not {configured!r}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None


def _table(config: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: [{name}] must be a table of settings, not {type(value).__name__} {value!r}"
        )
    return value


def _number(
    table: Mapping[str, Any], key: str, default: float, where: str, *, integer: bool
) -> Any:
    """``table[key]`` as an int or float; ``ConfigError`` naming the file and key otherwise."""
    value = table.get(key, default)
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key} must be {kind}, not {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{where}: {key} must be {kind}, not {value!r}")
    return int(value) if integer else float(value)


def _min_kappa(table: Mapping[str, Any], where: str) -> float:
    """``[judges] min-kappa`` (default 0.4), a number in [-1, 1]."""
    at = f"{where} [judges]"
    unknown = sorted(set(table) - {"min-kappa"})
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; known: min-kappa")
    value = _number(table, "min-kappa", 0.4, at, integer=False)
    if not -1 <= value <= 1:
        raise ConfigError(f"{at}: min-kappa must be between -1 and 1, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class CompareSettings:
    """The verdict rule of ``eval --against`` (see docs/comparing.md)."""

    alpha: float = 0.05
    min_effect: float = 0.02
    power: float = 0.8
    resamples: int = 10_000
    seed: int = 20_240_601
    # "lenient": an inconclusive comparison passes (and says what n would decide it);
    # "strict": a gated comparison must show non-inferiority (or better) to pass.
    mode: str = "lenient"

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str) -> CompareSettings:
        """Read ``[compare]``; ``where`` names the file (``pyproject.toml [tool.promptlib]``)."""
        known = {"alpha", "min-effect", "power", "resamples", "seed", "mode"}
        unknown = sorted(set(table) - known)
        at = f"{where} [compare]"
        if unknown:
            raise ConfigError(
                f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = cls(
            alpha=_number(table, "alpha", cls.alpha, at, integer=False),
            min_effect=_number(table, "min-effect", cls.min_effect, at, integer=False),
            power=_number(table, "power", cls.power, at, integer=False),
            resamples=_number(table, "resamples", cls.resamples, at, integer=True),
            seed=_number(table, "seed", cls.seed, at, integer=True),
            mode=table.get("mode", cls.mode),
        )
        if values.mode not in ("lenient", "strict"):
            raise ConfigError(f"{at}: mode must be 'lenient' or 'strict', not {values.mode!r}")
        if not 0 < values.alpha < 1:
            raise ConfigError(f"{at}: alpha must be between 0 and 1, not {values.alpha!r}")
        if not 0 < values.power < 1:
            raise ConfigError(f"{at}: power must be between 0 and 1, not {values.power!r}")
        if values.min_effect <= 0:
            raise ConfigError(f"{at}: min-effect must be positive, not {values.min_effect!r}")
        if values.resamples < 100:
            raise ConfigError(f"{at}: resamples must be at least 100, not {values.resamples!r}")
        return values


@dataclass(frozen=True)
class FlakySettings:
    """When a prompt evaluated with ``--repeats`` is flaky (see docs/repeats.md).

    A prompt is flaky when, for some metric, the share of examples whose repeats disagree
    exceeds ``threshold`` (a suite's ``flaky:`` key overrides it); ``gate`` makes a flaky
    prompt fail the gate (exit 1) instead of only being reported.
    """

    threshold: float = 0.1
    gate: bool = False

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str) -> FlakySettings:
        """Read ``[flaky]``; ``where`` names the file (``pyproject.toml [tool.promptlib]``)."""
        known = {"threshold", "gate"}
        at = f"{where} [flaky]"
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        threshold = _number(table, "threshold", cls.threshold, at, integer=False)
        if not 0 <= threshold < 1:
            raise ConfigError(
                f"{at}: threshold must be at least 0 and below 1 (a share of examples), "
                f"not {threshold!r}"
            )
        gate = table.get("gate", cls.gate)
        if not isinstance(gate, bool):
            raise ConfigError(f"{at}: gate must be true or false, not {gate!r}")
        return cls(threshold=threshold, gate=gate)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with full-jitter exponential backoff, honouring Retry-After."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str) -> RetryPolicy:
        """Read ``[retry]``; ``where`` names the file (``pyproject.toml [tool.promptlib]``)."""
        keys = {
            "max-attempts": "max_attempts",
            "base-delay": "base_delay",
            "max-delay": "max_delay",
            "max-retry-after": "max_retry_after",
        }
        at = f"{where} [retry]"
        unknown = sorted(set(table) - set(keys))
        if unknown:
            raise ConfigError(
                f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(keys))}"
            )
        defaults = cls()
        policy = cls(
            max_attempts=_number(table, "max-attempts", defaults.max_attempts, at, integer=True),
            base_delay=_number(table, "base-delay", defaults.base_delay, at, integer=False),
            max_delay=_number(table, "max-delay", defaults.max_delay, at, integer=False),
            max_retry_after=_number(
                table, "max-retry-after", defaults.max_retry_after, at, integer=False
            ),
        )
        delays = (policy.base_delay, policy.max_delay, policy.max_retry_after)
        if policy.max_attempts < 1 or min(delays) < 0:
            raise ConfigError(f"{at}: max-attempts must be >= 1 and delays >= 0")
        return policy

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        if retry_after is not None:
            return min(max(retry_after, backoff), self.max_retry_after)
        return backoff


def _text(table: Mapping[str, Any], key: str, default: str | None, where: str) -> str | None:
    """``table[key]`` as a non-empty string (or ``default`` when absent)."""
    value = table.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{where}: {key} must be a non-empty string, not {value!r}")
    return value


# MLflow's rule for alias names, less the names it reserves ("latest", "v1", "V2", ...).
_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")
_RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class MlflowSettings:
    """Where ``--mlflow`` and ``promptlib export mlflow`` log runs and register prompts.

    ``tracking_uri`` comes from ``MLFLOW_TRACKING_URI``, else ``tracking-uri`` in
    ``[mlflow]``; None when neither is set (the export then asks for one). ``alias`` is the
    moving alias every release also sets on each prompt (``production``), if any.
    """

    tracking_uri: str | None = None
    experiment: str = "promptlib"
    alias: str | None = None

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], where: str, environ: Mapping[str, str]
    ) -> MlflowSettings:
        """Read ``[mlflow]``; ``where`` names the file (``pyproject.toml [tool.promptlib]``)."""
        known = {"tracking-uri", "experiment", "alias"}
        at = f"{where} [mlflow]"
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        configured = _text(table, "tracking-uri", None, at)
        experiment = _text(table, "experiment", cls.experiment, at)
        alias = _text(table, "alias", None, at)
        if alias is not None and (not _ALIAS.match(alias) or _RESERVED_ALIAS.match(alias)):
            raise ConfigError(
                f"{at}: alias {alias!r} is not a name MLflow accepts: use letters, digits, _ "
                "and -, and not 'latest' or a version alias such as 'v2'"
            )
        assert experiment is not None
        return cls(
            tracking_uri=environ.get("MLFLOW_TRACKING_URI") or configured,
            experiment=experiment,
            alias=alias,
        )


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about where it runs, resolved once."""

    root: Path | None
    config: Mapping[str, Any] = field(default_factory=dict)
    default_provider: str = "retrieval"
    compare: CompareSettings = field(default_factory=CompareSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    flaky: FlakySettings = field(default_factory=FlakySettings)
    cache_dir: Path | None = None
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    # [judges] min-kappa: a judge metric warns when its judge's latest calibration has a
    # lower Cohen's kappa (or when it has none).
    min_kappa: float = 0.4

    @property
    def prompts_dir(self) -> Path | None:
        return self.root / "prompts" if self.root else None

    @property
    def evals_dir(self) -> Path | None:
        return self.root / "evals" if self.root else None

    @property
    def ledger_dir(self) -> Path | None:
        """The schema-2 ledger folder: ``evals/ledger/``."""
        return self.root / "evals" / "ledger" if self.root else None

    @property
    def ledger_v1_path(self) -> Path | None:
        """Where a schema-1 ledger lives (read-only): ``evals/ledger.jsonl``."""
        return self.root / "evals" / "ledger.jsonl" if self.root else None

    def require_root(self) -> Path:
        if self.root is None:
            raise ConfigError(
                "not inside a promptlib project (no folder above holds pyproject.toml and "
                "prompts/); run from a project or pass --project DIR"
            )
        return self.root

    @classmethod
    def resolve(
        cls,
        project: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        provider: str | None = None,
    ) -> Settings:
        """Find the project and resolve settings: flag, environment, file, default."""
        env = os.environ if environ is None else environ
        if project is not None:
            root: Path | None = project.resolve()
            if not (project / "prompts").is_dir():
                raise ConfigError(f"{project}: not a promptlib project (it has no prompts/ folder)")
        else:
            start = env.get("PROMPTLIB_PROJECT")
            root = find_project(Path(start) if start else None)
        config = read_config(root) if root else {}
        if root is None:
            where = "defaults"
        else:
            source = config_source(root)
            where = f"{source}" + (" [tool.promptlib]" if source.name == "pyproject.toml" else "")
            config = _merge(config, read_local_config(root))
        config = _merge(config, read_env_config(env, config))
        compare = CompareSettings.from_table(_table(config, "compare", where), where)
        retry = RetryPolicy.from_table(_table(config, "retry", where), where)
        flaky = FlakySettings.from_table(_table(config, "flaky", where), where)
        mlflow = MlflowSettings.from_table(_table(config, "mlflow", where), where, env)
        _table(config, "providers", where)
        min_kappa = _min_kappa(_table(config, "judges", where), where)
        configured = config.get("default-provider", "retrieval")
        if not isinstance(configured, str) or not configured:
            raise ConfigError(
                f"{where}: default-provider must be a provider name, not {configured!r}"
            )
        default_provider = provider or env.get("PROMPTLIB_PROVIDER") or configured
        cache = env.get("PROMPTLIB_CACHE_DIR")
        cache_dir = Path(cache) if cache else (root / ".promptlib" if root else None)
        return cls(
            root=root,
            config=config,
            default_provider=default_provider,
            compare=compare,
            retry=retry,
            flaky=flaky,
            cache_dir=cache_dir,
            mlflow=mlflow,
            min_kappa=min_kappa,
        )
