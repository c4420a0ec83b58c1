"""Where the project is, and its configuration, resolved once into one ``Settings`` object.

A *project* is the nearest folder, walking up from the starting directory, that holds a
``pyproject.toml`` and a ``prompts/`` folder (the way git finds its repository).
Configuration is read from ``[tool.promptlib]`` in its ``pyproject.toml``, or from a
``promptlib.toml`` beside it (whose top-level table is the same thing); having both is an
error. Values resolve in a fixed order: command-line flag, ``PROMPTLIB_*`` environment
variable, project file, default. Library functions take the resolved values as arguments
and never read the environment themselves.
"""

from __future__ import annotations

import os
import random
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
                f"{pyproject}; keep one of the two"
            )
        table = _read_toml(standalone)
    else:
        table = from_pyproject
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.promptlib] must be a table")
    return table


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


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about where it runs, resolved once."""

    root: Path | None
    config: Mapping[str, Any] = field(default_factory=dict)
    default_provider: str = "retrieval"
    compare: CompareSettings = field(default_factory=CompareSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cache_dir: Path | None = None

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
        compare = CompareSettings.from_table(_table(config, "compare", where), where)
        retry = RetryPolicy.from_table(_table(config, "retry", where), where)
        _table(config, "providers", where)
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
            cache_dir=cache_dir,
        )
