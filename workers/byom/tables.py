"""Rows with named columns from a file: CSV, JSON lines, Avro container or Parquet.

Each row keeps where it came from (``line 12``, ``record 3``, ``row 7``) so that an error
about it can name it. An empty CSV cell is read as a missing value.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.errors import ConfigError

FORMATS = ".csv, .jsonl (or .ndjson), .avro, .parquet"


@dataclass(frozen=True)
class Row:
    where: str  # "line 12", "record 3", "row 7"
    values: dict[str, Any]


@dataclass(frozen=True)
class Table:
    path: Path
    columns: list[str]  # in the file's order
    rows: list[Row]

    def at(self, row: Row) -> str:
        """``data.csv line 12``: how an error names a row."""
        return f"{self.path} {row.where}"


def read_table(path: Path) -> Table:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    readers = {".csv": _csv, ".jsonl": _jsonl, ".ndjson": _jsonl, ".avro": _avro, ".parquet": _parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"{path}: unknown format {path.suffix!r}; use one of {FORMATS}")
    try:
        columns, rows = reader(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return Table(path, columns, rows)


def _csv(path: Path) -> tuple[list[str], list[Row]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ConfigError(f"{path} has no header line (the column names)")
        duplicates = sorted({c for c in header if header.count(c) > 1})
        if duplicates:
            raise ConfigError(f"{path}: duplicate columns {duplicates}")
        for cells in reader:
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                raise ConfigError(f"{path} line {reader.line_num} has {len(cells)} cells, the header {len(header)}")
            values = {name: (cell if cell != "" else None) for name, cell in zip(header, cells, strict=True)}
            rows.append(Row(f"line {reader.line_num}", values))
    return header, rows


def _jsonl(path: Path) -> tuple[list[str], list[Row]]:
    columns: dict[str, None] = {}  # first-seen order
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{path} line {number} is not JSON: {exc}") from None
            if not isinstance(values, dict):
                raise ConfigError(f"{path} line {number} is not a JSON object")
            columns.update(dict.fromkeys(values))
            rows.append(Row(f"line {number}", values))
    return list(columns), rows


def _avro(path: Path) -> tuple[list[str], list[Row]]:
    import fastavro

    with open(path, "rb") as f:
        try:
            reader = fastavro.reader(f)
            schema = reader.writer_schema
            rows = [Row(f"record {i}", dict(r)) for i, r in enumerate(reader, start=1)]  # type: ignore[arg-type]
        except Exception as exc:  # fastavro's errors on bad files have no common base
            raise ConfigError(f"{path} is not a readable Avro container file: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ConfigError(f"{path}: the Avro file's schema is not a record")
    return [field["name"] for field in schema["fields"]], rows


def _parquet(path: Path) -> tuple[list[str], list[Row]]:
    try:
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow "
                          "(pip install 'kafka-inference-workers[parquet]')") from None
    try:
        table = pyarrow.parquet.read_table(path)
    except Exception as exc:  # pyarrow's errors on bad files (ArrowInvalid, ...)
        raise ConfigError(f"{path} is not a readable Parquet file: {exc}") from None
    return list(table.column_names), [Row(f"row {i}", r) for i, r in enumerate(table.to_pylist(), start=1)]
