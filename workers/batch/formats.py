"""Input and output files of ``workers score``: Avro container files, JSON lines, Parquet.

Readers stream: they hand out rows in batches (a JSON line at a time, Avro blocks, Parquet
record batches), so memory holds one batch and one output row group, whatever the file's
size. Each row becomes an ``InputRecord`` for ``Pipeline.process``: a JSON line goes in as
its text (the core parses it, so a line that is not a JSON object is ``corrupt`` like an
undecodable Avro payload); an Avro or Parquet row goes in as the dict its library read
(the core checks it against the input schema, ``workers.core.rows``).

A file that cannot be read at all (missing, not in its format, a corrupt Avro block or
Parquet page) is an ``InputFileError`` naming the file and the row reached, not a dead letter:
the rows after it cannot be told apart.
"""
from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import fastavro
from fastavro.write import Writer as AvroWriter

from workers.core.codec import StoredSchema
from workers.core.deadletter import HEADER_PREFIX
from workers.core.pipeline import JSON
from workers.core.records import InputRecord, OutputRecord
from workers.errors import ConfigError, InputFileError

AVRO, JSONL, PARQUET = "avro", "jsonl", "parquet"
FORMATS = (AVRO, JSONL, PARQUET)
OUTPUT_FORMATS = (AVRO, PARQUET, JSONL)
_SUFFIXES = {".avro": AVRO, ".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL, ".parquet": PARQUET, ".pq": PARQUET}
PARQUET_ROW_GROUP = 16_384  # predictions buffered per Parquet row group


def _pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError("Parquet needs pyarrow: pip install 'kafka-inference-workers[parquet]'") from None


def format_of(path: Path, given: str | None, what: str) -> str:
    found = given or _SUFFIXES.get(path.suffix.lower())
    if found == PARQUET:
        _pyarrow()
    if given:
        return given
    if found is None:
        raise ConfigError(f"cannot tell the format of {what} {path} from its name: use .avro, .jsonl or .parquet, "
                          f"or give --{what}-format")
    return found


@dataclass(slots=True)
class Row:
    index: int  # 0-based position of the record in the file
    original: Any  # what the file held: a JSON line's text, an Avro or Parquet row's fields
    record: InputRecord
    line: int | None = None  # JSON lines: 1-based line number


class Reader:
    """Rows of one input file, in batches."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self.source = f"file:{path.name}"  # the predictions' source_topic
        self.rows_read = 0
        if not path.is_file():
            raise InputFileError(f"input file {path} does not exist")
        self._size = max(1, path.stat().st_size)
        self._file: IO[bytes] | None = None
        self._total_rows: int | None = None

    def progress(self) -> float:
        """The share of the file read so far (0..1)."""
        if self._total_rows is not None:
            return self.rows_read / max(1, self._total_rows)
        if self._file is None or self._file.closed:
            return 1.0
        return min(1.0, self._file.tell() / self._size)

    def batches(self, size: int) -> Iterator[list[Row]]:
        rows = {AVRO: self._avro, JSONL: self._jsonl, PARQUET: self._parquet}[self.format]()
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _record(self, **kwargs: Any) -> InputRecord:
        index = self.rows_read
        self.rows_read += 1
        return InputRecord(None, None, self.source, 0, index, None, [], **kwargs)

    def _jsonl(self) -> Iterator[Row]:
        with self.path.open("rb") as self._file:
            for number, line in enumerate(self._file, start=1):
                text = line.strip()
                if not text:
                    continue  # blank lines separate nothing: skipped, as JSON-lines readers do
                index = self.rows_read
                record = self._record(value_format=JSON)
                record.value = text
                yield Row(index, text.decode("utf-8", "replace"), record, number)

    def _avro(self) -> Iterator[Row]:
        with self.path.open("rb") as self._file:
            try:
                reader = fastavro.reader(self._file)
            except Exception as exc:  # fastavro raises ValueError and others on a non-Avro header
                raise InputFileError(f"{self.path} is not an Avro container file ({exc})") from None
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except Exception as exc:
                    raise InputFileError(f"{self.path}: corrupt Avro data after row {self.rows_read} "
                                         f"({type(exc).__name__}: {exc})") from None
                index = self.rows_read
                yield Row(index, row, self._record(decoded=row if isinstance(row, dict) else {"": row}))

    def _parquet(self) -> Iterator[Row]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            # pre_buffer (pyarrow's default) reads every row group's pages at the first batch: the whole file
            parquet = pq.ParquetFile(self.path, pre_buffer=False)
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(f"{self.path} is not a Parquet file ({exc})") from None
        self._total_rows = parquet.metadata.num_rows
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    index = self.rows_read
                    yield Row(index, row, self._record(decoded=row))
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(f"{self.path}: corrupt Parquet data after row {self.rows_read} ({exc})") from None
        finally:
            parquet.close()


# ---------------------------------------------------------------- outputs


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return str(value)


def to_json(value: Any) -> str:
    """One JSON line; NaN and infinities as JSON text cannot hold them: null, with the original kept as text."""
    try:
        return json.dumps(value, default=_json_default, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), default=_json_default, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": kept visible, not silently dropped
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class PredictionWriter:
    """Predictions in the prediction schema's contract: an Avro container file, Parquet, or JSON lines."""

    def __init__(self, path: Path, fmt: str, schema: StoredSchema) -> None:
        self.path, self.format, self.count = path, fmt, 0
        try:
            self._file: IO[Any] = path.open("w" if fmt == JSONL else "wb")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
        self._avro: AvroWriter | None = None
        self._parquet: Any = None
        self._buffer: list[dict[str, Any]] = []
        if fmt == AVRO:
            self._avro = AvroWriter(self._file, schema.parsed, codec="deflate")
        elif fmt == PARQUET:
            import pyarrow.parquet as pq

            self._arrow_schema = arrow_schema(schema.parsed)
            self._parquet = pq.ParquetWriter(self._file, self._arrow_schema, compression="zstd")

    def write(self, predictions: list[dict[str, Any]]) -> None:
        self.count += len(predictions)
        if self._avro is not None:
            for p in predictions:
                self._avro.write(p)
        elif self._parquet is not None:
            self._buffer.extend(predictions)
            if len(self._buffer) >= PARQUET_ROW_GROUP:
                self._flush_parquet()
        else:
            self._file.write("".join(to_json(p) + "\n" for p in predictions))

    def _flush_parquet(self) -> None:
        import pyarrow as pa

        if self._buffer:
            self._parquet.write_table(pa.Table.from_pylist(self._buffer, schema=self._arrow_schema))
            self._buffer = []

    def close(self) -> None:
        if self._avro is not None:
            self._avro.flush()
        if self._parquet is not None:
            self._flush_parquet()
            self._parquet.close()
        self._file.close()


def arrow_schema(avro_schema: dict[str, Any]) -> Any:
    """The Arrow schema of a flat Avro record schema (the prediction schema)."""
    import pyarrow as pa

    def arrow_type(t: Any) -> tuple[Any, bool]:
        if isinstance(t, list):
            branches = [b for b in t if b != "null"]
            if len(branches) != 1:
                raise ConfigError(f"no Parquet type for the Avro union {t}")
            return arrow_type(branches[0])[0], True
        if isinstance(t, dict):
            if t.get("logicalType") == "timestamp-millis":
                return pa.timestamp("ms", tz="UTC"), False
            if t["type"] == "array":
                return pa.list_(arrow_type(t["items"])[0]), False
            return arrow_type(t["type"])
        simple = {"string": pa.string(), "double": pa.float64(), "float": pa.float32(), "int": pa.int32(),
                  "long": pa.int64(), "boolean": pa.bool_(), "bytes": pa.binary()}
        if t not in simple:
            raise ConfigError(f"no Parquet type for the Avro type {t}")
        return simple[t], False

    fields = []
    for f in avro_schema["fields"]:
        kind, nullable = arrow_type(f["type"])
        fields.append(pa.field(f["name"], kind, nullable=nullable))
    return pa.schema(fields)


class DeadLetterWriter:
    """Dead letters as JSON lines: the row, its reason and error as the dead-letter topic's headers say them,
    and the original record."""

    def __init__(self, path: Path) -> None:
        self.path, self.count = path, 0
        try:
            self._file = path.open("w")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}") from None

    def write(self, row: Row, letter: OutputRecord) -> None:
        self.count += 1
        entry: dict[str, Any] = {"row": row.index}
        if row.line is not None:
            entry["line"] = row.line
        for name, value in letter.headers:
            if name.startswith(HEADER_PREFIX):
                entry[name[len(HEADER_PREFIX):]] = value.decode("utf-8", "replace")
        entry["record"] = row.original
        self._file.write(to_json(entry) + "\n")

    def close(self) -> None:
        self._file.close()
