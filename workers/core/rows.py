"""Events that arrive already read (a file's row, an HTTP request's tensors) checked against the input schema.

An Avro-encoded event cannot hold a string where the schema says ``double``; a JSON line,
a Parquet row or a tensor can. ``RowReader.read`` makes such a row what decoding an Avro
payload would have given (the reader schema's fields, defaults filled in, ints promoted to
floats, timestamps as epoch millis) or raises ``RecordError`` with a dead-letter reason:

* a field that is absent or null where the schema allows no null and has no default:
  ``missing_field``;
* a value of the wrong type (a string for a number, a float for a boolean, an int out of
  the 32-bit range of an Avro ``int``, a symbol not in an enum): ``invalid_value``;
* a line that is not a JSON object: ``corrupt``.

Then the same feature builder and event-time checks run as for decoded Avro, so a value
that Avro could carry gets the same reason and the same message on every path. Messages
name the field and the type, never the value (a field may hold personal data).
"""
from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import fastavro.validation

from workers.core.codec import StoredSchema
from workers.core.reasons import CORRUPT, INVALID_VALUE, MISSING_FIELD
from workers.errors import RecordError

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_EPOCH_DATE = date(1970, 1, 1)
_ABSENT = object()


class _Mismatch(Exception):
    pass


def _utf8(text: str) -> bool:
    """Can Avro carry it? JSON's escapes allow a lone surrogate, which has no UTF-8 form."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _got(value: Any) -> str:
    if isinstance(value, str) and not _utf8(value):
        return "str with a lone surrogate, not UTF-8 text"
    return type(value).__name__


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_type_name(s) for s in schema)
    if isinstance(schema, dict):
        if schema["type"] == "enum":
            return f"one of {', '.join(schema['symbols'])}"
        logical = schema.get("logicalType")
        return f"{schema['type']} ({logical})" if logical else str(schema.get("name") or schema["type"])
    return str(schema).rpartition(".")[2]


def _time_number(value: Any, logical: str) -> int:
    """A datetime (or an ISO 8601 text) as the number Avro stores for ``logical``."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "time" in logical else date.fromisoformat(value)
        except ValueError:
            raise _Mismatch from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # a naive timestamp (Parquet without zone) is UTC
        seconds = value.timestamp()
        return round(seconds * 1000) if logical.endswith("millis") else round(seconds * 1_000_000)
    if isinstance(value, date) and logical == "date":
        return (value - _EPOCH_DATE).days
    raise _Mismatch


def conform(value: Any, schema: Any) -> Any:
    """``value`` as an Avro decoder would give it for ``schema`` (a parsed schema), or ``_Mismatch``."""
    if isinstance(schema, list):  # a union: the first branch that takes the value
        for branch in schema:
            try:
                return conform(value, branch)
            except _Mismatch:
                continue
        raise _Mismatch
    kind, logical = (schema, None) if isinstance(schema, str) else (schema["type"], schema.get("logicalType"))
    if kind == "null":
        if value is None:
            return None
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind in ("int", "long"):
        if logical is not None and not isinstance(value, int | float):
            value = _time_number(value, logical)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            lo, hi = INT32 if kind == "int" else INT64
            if lo <= value <= hi:
                return value
    elif kind in ("float", "double"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind == "string":
        if isinstance(value, str) and _utf8(value):
            return value
    elif kind == "bytes":
        if isinstance(value, bytes | bytearray):
            return bytes(value)
    elif kind == "enum":
        if isinstance(value, str) and value in schema["symbols"]:
            return value
    elif isinstance(schema, dict) and fastavro.validation.validate(value, schema, raise_errors=False):
        return value  # fixed, array, map, record: fastavro's own check
    raise _Mismatch


class RowReader:
    """Compiled once per input schema; ``read()`` runs once per row."""

    __slots__ = ("_plan", "schema")

    def __init__(self, schema: StoredSchema) -> None:
        self.schema = schema
        # (name, field schema, default or _ABSENT, whether null is allowed)
        self._plan = []
        for f in schema.parsed["fields"]:
            field_type = f["type"]
            nullable = field_type == "null" or (isinstance(field_type, list) and "null" in field_type)
            self._plan.append((f["name"], field_type, f.get("default", _ABSENT), nullable))

    def read(self, row: Any) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise RecordError(CORRUPT, f"a record must be an object of fields, got {type(row).__name__}")
        out: dict[str, Any] = {}
        for name, field_type, default, nullable in self._plan:
            value = row.get(name, _ABSENT)
            if value is _ABSENT:
                value = default
            if value is _ABSENT or (value is None and not nullable):
                raise RecordError(MISSING_FIELD, f"required field {name!r} is missing or null")
            try:
                out[name] = conform(value, field_type)
            except _Mismatch:
                raise RecordError(INVALID_VALUE, f"field {name!r} is not {_type_name(field_type)} "
                                  f"(got {_got(value)})") from None
        return out

    def read_json(self, text: bytes | str | None) -> dict[str, Any]:
        """One JSON object (a line of a JSON-lines file)."""
        if not text:
            raise RecordError(CORRUPT, "empty record")
        try:
            row = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError(CORRUPT, f"not JSON ({type(exc).__name__}: {exc})") from None
        return self.read(row)
