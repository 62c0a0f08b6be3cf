"""Avro single-object encoding over every schema in ``schemas/``.

Wire format (Avro spec, "Single-object encoding"): ``C3 01`` + the 8-byte CRC-64-AVRO
fingerprint of the writer schema's parsing canonical form (little-endian) + the Avro
binary body. The fingerprint picks the writer schema; fastavro resolves it to the
reader schema, so events written with an older schema version are read with the
current one. fastavro is on the hot path (~10x the ``avro`` package, docs/design.md), and
its fingerprints follow the spec for logical types where ``avro`` 1.12 does not.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from workers.core.reasons import CORRUPT, UNKNOWN_SCHEMA
from workers.errors import RecordError, SchemaError

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10  # magic (2) + fingerprint (8)


def schema_fingerprint(parsed: Any) -> bytes:
    """CRC-64-AVRO of the parsing canonical form, as the 8 bytes that go on the wire."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


# Date/time logical types are decoded as their plain int/long: a datetime per event costs
# time on the hot path and overflows on absurd values; the core works in epoch millis.
_PLAIN_LOGICAL_TYPES = {
    "timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros",
    "time-millis", "time-micros", "date",
}


def _without_time_logical_types(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_without_time_logical_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _without_time_logical_types(v) for k, v in schema.items()
           if not (k == "logicalType" and v in _PLAIN_LOGICAL_TYPES)}
    return out


@dataclass(frozen=True)
class StoredSchema:
    path: str  # relative to the schemas directory, e.g. "fraud/transaction.v2.avsc"
    name: str  # the record's full name
    parsed: Any  # as written: the fingerprint is computed from this
    fingerprint: bytes
    plain: Any  # the same schema with date/time logical types read as numbers (same binary encoding)
    personal: frozenset[str] = frozenset()  # fields marked "personal": true
    definition: Any = None  # the JSON definition as written (what a schema registry is given)


    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.parsed["fields"]]


class SchemaStore:
    """Every ``.avsc`` under a directory, addressable by path and by fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SchemaError(f"schema directory not found: {self.root}")
        self._by_path: dict[str, StoredSchema] = {}
        self._by_fingerprint: dict[bytes, StoredSchema] = {}
        for file in sorted(self.root.rglob("*.avsc")):
            self.add(file)

    def add(self, file: Path) -> StoredSchema:
        try:
            raw = json.loads(file.read_text())
        except ValueError as exc:
            raise SchemaError(f"cannot parse Avro schema {file}: {exc}") from exc
        rel = file.relative_to(self.root).as_posix() if file.is_relative_to(self.root) else str(file)
        return self.add_definition(raw, rel)

    def add_definition(self, raw: Any, rel: str) -> StoredSchema:
        """A schema given as its JSON definition (the project's own, built-in contracts)."""
        stored = self._parse(raw, rel)
        self._by_path[rel] = stored
        self._by_fingerprint[stored.fingerprint] = stored
        return stored

    def parse_definition(self, raw: Any, rel: str) -> StoredSchema:
        """A schema from its JSON definition, not added to the store (e.g. a registry's writer schema);
        one that the store holds already (same fingerprint) is returned as the stored one."""
        stored = self._parse(raw, rel)
        return self._by_fingerprint.get(stored.fingerprint, stored)

    @staticmethod
    def _parse(raw: Any, rel: str) -> StoredSchema:
        try:
            parsed = fastavro.parse_schema(raw)
            plain = fastavro.parse_schema(_without_time_logical_types(raw))
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SchemaError(f"cannot parse Avro schema {rel}: {exc}") from exc
        name = parsed.get("name", rel) if isinstance(parsed, dict) else rel
        personal = frozenset(f["name"] for f in raw.get("fields", []) if isinstance(f, dict) and f.get("personal")) \
            if isinstance(raw, dict) else frozenset()
        return StoredSchema(rel, name, parsed, schema_fingerprint(parsed), plain, personal, raw)

    def get(self, path: str) -> StoredSchema:
        try:
            return self._by_path[path]
        except KeyError:
            raise SchemaError(f"schema {path!r} not found under {self.root}") from None

    def by_fingerprint(self, fp: bytes) -> StoredSchema | None:
        return self._by_fingerprint.get(fp)

    def __iter__(self):
        return iter(self._by_path.values())


class SingleObjectCodec:
    """Encode with one schema, decode any known writer schema into one reader schema."""

    __slots__ = ("_header", "_store", "reader")

    def __init__(self, store: SchemaStore, reader: StoredSchema) -> None:
        self._store = store
        self.reader = reader
        self._header = MAGIC + reader.fingerprint

    @property
    def header(self) -> bytes:
        """What precedes the Avro body of a record encoded with the reader schema."""
        return self._header

    def encode(self, record: dict[str, Any], writer: StoredSchema | None = None) -> bytes:
        """Encode ``record`` with the reader schema (or an explicit older ``writer``)."""
        schema = writer or self.reader
        out = io.BytesIO()
        out.write(MAGIC + schema.fingerprint if writer else self._header)
        fastavro.schemaless_writer(out, schema.plain, record)
        return out.getvalue()

    def decode(self, payload: bytes | None) -> tuple[dict[str, Any], StoredSchema]:
        """Return the record read with the reader schema, and the writer schema.

        Raises ``RecordError`` with reason ``corrupt`` or ``unknown_schema`` (``read_body``).
        """
        if not payload:
            raise RecordError(CORRUPT, "empty payload")
        if payload[:2] != MAGIC or len(payload) < HEADER_SIZE:
            raise RecordError(CORRUPT, "not Avro single-object encoding (bad magic or short header)")
        writer = self._store.by_fingerprint(payload[2:HEADER_SIZE])
        if writer is None:
            raise RecordError(UNKNOWN_SCHEMA, f"unknown writer schema fingerprint {payload[2:HEADER_SIZE].hex()}")
        return read_body(payload, HEADER_SIZE, writer, self.reader), writer


_BUFFER_REPR = re.compile(r" from <_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def _without_buffer(exc: Exception) -> str:
    """fastavro's message without the repr of our buffer (a memory address: noise in a dead letter)."""
    return _BUFFER_REPR.sub("", str(exc))


def read_body(payload: bytes, start: int, writer: StoredSchema, reader: StoredSchema) -> dict[str, Any]:
    """The Avro binary body at ``payload[start:]``, written with ``writer``, read as ``reader``.

    Any exception fastavro raises on bad bytes (EOFError, UnicodeDecodeError, IndexError, ...)
    becomes a ``RecordError`` (``corrupt``, or ``unknown_schema`` when the schemas do not
    resolve), never propagated.
    """
    body = io.BytesIO(payload)
    body.seek(start)
    try:
        if writer.fingerprint == reader.fingerprint:
            record = fastavro.schemaless_reader(body, reader.plain, None)
        else:
            record = fastavro.schemaless_reader(body, writer.plain, reader.plain)
    except fastavro.read.SchemaResolutionError as exc:
        raise RecordError(UNKNOWN_SCHEMA, f"writer schema {writer.path} cannot be read as "
                          f"{reader.path}: {exc}") from exc
    except Exception as exc:  # fastavro's errors on bad bytes have no common base
        raise RecordError(CORRUPT, f"undecodable Avro body ({type(exc).__name__}: {_without_buffer(exc)})") from exc
    if body.tell() != len(payload):
        raise RecordError(CORRUPT, f"{len(payload) - body.tell()} trailing bytes after the Avro record")
    if not isinstance(record, dict):
        raise RecordError(CORRUPT, "Avro body is not a record")
    return record
