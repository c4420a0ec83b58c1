"""Evaluation datasets: JSONL (or CSV) files of rows with a stable ``id``.

A dataset's version is the sha256 of its file's bytes. When ``<file>.dvc`` exists beside
it (the file is tracked by DVC), the md5 that DVC recorded is kept too, so a run can be
tied to the DVC-tracked version. Every row must be an object with a non-empty string
``id``, unique within the file; problems are reported with file and line.

A suite refuses a dataset path that leads outside the project before it gets here
(``promptlib.evals.suite``); ``load_dataset`` itself refuses a ``.dvc`` file that is a
symlink leading out of the project (or, for a dataset outside it, out of the dataset's
folder), naming the link and where it goes without opening it (``promptlib._paths``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .._canonical import sha256_hex
from .._paths import escape
from ..errors import DatasetError

__all__ = ["Dataset", "load_dataset"]


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: rows in file order, and the identity of the file."""

    path: Path
    relative: str
    sha256: str
    rows: tuple[Mapping[str, Any], ...]
    dvc_md5: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.rows)

    def identity(self) -> dict[str, Any]:
        """What a ledger run records about its dataset."""
        out: dict[str, Any] = {"path": self.relative, "sha256": self.sha256, "rows": len(self)}
        if self.dvc_md5:
            out["dvc_md5"] = self.dvc_md5
        return out


def _dvc_md5(path: Path, boundary: Path) -> str | None:
    dvc = path.with_name(path.name + ".dvc")
    left = escape(boundary, dvc)
    if left is not None:
        raise DatasetError(str(left))
    if not dvc.is_file():
        return None
    try:
        data = yaml.safe_load(dvc.read_text(encoding="utf-8"))
        outs = data.get("outs", []) if isinstance(data, dict) else []
        for out in outs:
            if isinstance(out, dict) and out.get("md5"):
                return str(out["md5"])
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{dvc}: cannot read the DVC file: {exc}") from None
    return None


def _rows_jsonl(text: str, shown: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # JSON Lines separates records with "\n" only: U+2028 and friends may appear in strings.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{shown}:{number}: not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{shown}:{number}: each line must be a JSON object")
        row["__line__"] = number
        rows.append(row)
    return rows


def _rows_csv(text: str, shown: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict[str, Any]] = []
    if reader.fieldnames is None:  # reading the header now keeps line_num in step below
        raise DatasetError(f"{shown}: empty CSV file (a header row with an 'id' column is needed)")
    while True:
        start = reader.line_num + 1  # the line the next row starts on
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"{shown}:{reader.line_num}: invalid CSV: {exc}") from None
        record: dict[str, Any] = dict(row)
        record["__line__"] = start
        rows.append(record)
    return rows


@lru_cache(maxsize=32)
def _load(path: Path, relative: str, mtime_ns: int, size: int, boundary: Path) -> Dataset:
    shown = relative
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{shown}: cannot read the dataset: {exc.strerror}") from None
    try:
        # "utf-8-sig" drops the byte-order mark that spreadsheet programs write.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{shown}:{line}: not UTF-8 text ({exc.reason})") from None
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        raw = _rows_jsonl(text, shown)
    elif suffix == ".csv":
        raw = _rows_csv(text, shown)
    else:
        raise DatasetError(f"{shown}: datasets are .jsonl or .csv files")
    seen: dict[str, int] = {}
    rows: list[Mapping[str, Any]] = []
    for row in raw:
        number = row.pop("__line__")
        row_id = row.get("id")
        if not isinstance(row_id, str) or not row_id:
            raise DatasetError(f"{shown}:{number}: every row needs a non-empty string 'id'")
        if row_id in seen:
            raise DatasetError(
                f"{shown}:{number}: duplicate id {row_id!r} (first on line {seen[row_id]})"
            )
        seen[row_id] = number
        rows.append(row)
    if not rows:
        raise DatasetError(
            f"{shown}: the dataset has no rows; add rows (one JSON object per line, each with "
            "an 'id') or point the suite at another file"
        )
    return Dataset(path, relative, sha256_hex(data), tuple(rows), _dvc_md5(path, boundary))


def load_dataset(path: Path, root: Path | None = None) -> Dataset:
    """Load (and memoise, keyed by path, size and mtime) the dataset at ``path``.

    ``root`` is the project folder: the dataset is recorded by its path relative to it
    (absolute when it is elsewhere), and its ``.dvc`` file must not lead outside it.
    """
    try:
        stat = path.stat()
    except OSError:
        raise DatasetError(f"{path}: dataset file not found") from None
    relative = path.as_posix()
    if root is not None:
        try:
            relative = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            relative = path.as_posix()
    resolved = path.resolve()
    boundary = resolved.parent
    if root is not None and resolved.is_relative_to(root.resolve()):
        boundary = root.resolve()
    return _load(resolved, relative, stat.st_mtime_ns, stat.st_size, boundary)
