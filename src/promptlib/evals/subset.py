"""A deterministic subset of each suite's rows: ``eval --limit N`` and ``--sample N --seed S``.

The subset is taken from the rows a suite scores a prompt on (after its ``where``,
``match`` and ``limit``), separately for each (suite, prompt) job:

* ``limit``: the first N rows, in file order;
* ``sample``: the N rows whose ``sha256(seed, row id)`` is smallest, kept in file order.
  A row's rank depends only on its id and the seed, never on its position or on the other
  rows: adding rows to a dataset changes the sample only by the added rows that rank
  among the N smallest (each displaces one), and a removed row is replaced by the next.

Both sides of a comparison select the same rows (the baseline prompt has the same id, so
the same suite rows), so the pairs stay paired. A subset that drops rows is part of the
job's run key (``identity``), like a suite's own ``limit:``, so a subset run is never
taken for a full run; it is also never written to the ledger (see ``run.evaluate``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Subset"]


@dataclass(frozen=True)
class Subset:
    """At most ``size`` rows of each job: the first ones, or a sample seeded by ``seed``."""

    size: int
    seed: int | None = None

    @property
    def sampled(self) -> bool:
        return self.seed is not None

    @classmethod
    def parse(cls, limit: int | None, sample: int | None, seed: int | None) -> Subset | None:
        """The subset the options ask for, or None; ``ConfigError`` for a bad combination."""
        if limit is not None and sample is not None:
            raise ConfigError(
                "--limit and --sample are exclusive: --limit N takes the first N rows of each "
                "suite, --sample N --seed S a seeded sample of N rows; give one of them"
            )
        if seed is not None and sample is None:
            raise ConfigError("--seed only applies to --sample; add --sample N or drop --seed")
        for name, value in (("--limit", limit), ("--sample", sample)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (got {value})")
        if sample is not None:
            if seed is None:
                raise ConfigError(
                    "--sample needs --seed S: the seed decides which rows are sampled, and "
                    "naming it makes the run repeatable (any integer, e.g. --seed 7)"
                )
            return cls(sample, seed)
        return cls(limit) if limit is not None else None

    def apply(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The rows of the subset, in their original order."""
        if len(rows) <= self.size:
            return list(rows)
        if not self.sampled:
            return list(rows[: self.size])
        ranked = sorted(range(len(rows)), key=lambda i: self._rank(str(rows[i]["id"])))
        return [rows[i] for i in sorted(ranked[: self.size])]

    def _rank(self, row_id: str) -> tuple[bytes, str]:
        digest = hashlib.sha256(f"{self.seed}\x00{row_id}".encode()).digest()
        return digest, row_id

    def identity(self) -> dict[str, Any]:
        """What the run key records of a subset that dropped rows."""
        if self.sampled:
            return {"sample": self.size, "seed": self.seed}
        return {"limit": self.size}

    @property
    def option(self) -> str:
        """The command-line options that ask for this subset."""
        if self.sampled:
            return f"--sample {self.size} --seed {self.seed}"
        return f"--limit {self.size}"

    def describe(self, kept: int, total: int) -> str:
        """``sampled 200 of 3,080 rows (seed 7)`` or ``the first 50 of 3,080 rows``."""
        if kept >= total:
            return f"all {total:,} rows ({self.option} keeps every row)"
        if self.sampled:
            return f"sampled {kept:,} of {total:,} rows (seed {self.seed})"
        return f"the first {kept:,} of {total:,} rows (--limit {self.size})"
