"""Values from files (CSV text, JSON, Parquet, Avro) fitted to an Avro record schema.

A CSV cell is text and a JSON number has no width, so each value is converted to its
field's Avro type here, and refused with the field's name when it cannot be: ``"3.5"``
is not an ``int``, ``"maybe"`` is not a ``boolean``, a value outside an enum's symbols is
not that enum. Nothing is guessed past that: a string field takes only text.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from workers.core.codec import StoredSchema
from workers.errors import ConfigError

INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
TRUE_TEXT = {"true", "1", "yes"}
FALSE_TEXT = {"false", "0", "no"}


class ValueMismatch(ValueError):
    """A value that its field's Avro type cannot hold (the message says why)."""


def base_types(field_type: Any) -> list[Any]:
    """The branches of a field's type: a union's members, or the type alone."""
    return list(field_type) if isinstance(field_type, list) else [field_type]


def type_name(avro_type: Any) -> str:
    """``double``, ``long`` (also for ``timestamp-millis``), ``enum``, ``null``, ..."""
    return str(avro_type.get("type")) if isinstance(avro_type, dict) else str(avro_type)


def is_nullable(field_type: Any) -> bool:
    return any(type_name(t) == "null" for t in base_types(field_type))


def coerce(value: Any, field_type: Any) -> Any:
    """``value`` as the Avro type (a union tries its branches in order); ``ValueMismatch`` if none fits."""
    if value is None:
        if is_nullable(field_type):
            return None
        raise ValueMismatch("is empty, and the field is not nullable")
    errors = []
    for branch in base_types(field_type):
        if type_name(branch) == "null":
            continue
        try:
            return _coerce_one(value, branch)
        except ValueMismatch as exc:
            errors.append(str(exc))
    raise ValueMismatch("; ".join(errors) or f"{value!r} fits no branch of {field_type}")


def _coerce_one(value: Any, avro_type: Any) -> Any:
    name = type_name(avro_type)
    if name == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if isinstance(value, str | int) and text in TRUE_TEXT | FALSE_TEXT:
            return text in TRUE_TEXT
        raise ValueMismatch(f"{value!r} is not a boolean (true/false, 1/0, yes/no)")
    if name in INT_RANGE:
        number = _number(value, name)
        if not float(number).is_integer():
            raise ValueMismatch(f"{value!r} is not a whole number ({name})")
        whole = int(number)
        low, high = INT_RANGE[name]
        if not low <= whole <= high:
            raise ValueMismatch(f"{value!r} is outside the range of {name}")
        return whole
    if name in ("float", "double"):
        return float(_number(value, name))
    if name == "string":
        if not isinstance(value, str):
            raise ValueMismatch(f"{value!r} is not text (string)")
        return value
    if name == "enum":
        symbols = avro_type.get("symbols", [])
        if value not in symbols:
            raise ValueMismatch(f"{value!r} is not one of the enum's symbols {symbols}")
        return value
    return value  # records, arrays, maps, bytes: as read (JSON, Parquet and Avro files give them whole)


def _number(value: Any, name: str) -> int | float:
    if isinstance(value, bool):
        raise ValueMismatch(f"{value!r} is a boolean, not a number ({name})")
    if isinstance(value, int | float):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return _number(value.item(), name)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            pass
    raise ValueMismatch(f"{value!r} is not a number ({name})")


def fit_record(raw: Mapping[str, Any], schema: StoredSchema,
               generated: Mapping[str, Callable[[], Any]] | None = None) -> dict[str, Any]:
    """A record with every field of ``schema``, each value of its Avro type.

    A field absent from ``raw`` (or empty where it may not be) takes a ``generated`` value
    (e.g. a fresh event id), else the schema's default, else it is an error. Fields of
    ``raw`` that the schema does not have are left out: the caller says so.
    """
    generated = generated or {}
    out: dict[str, Any] = {}
    for field in schema.parsed["fields"]:
        name, field_type = field["name"], field["type"]
        value = raw.get(name)
        if value is None and not (name in raw and is_nullable(field_type)):
            if name in generated:
                out[name] = generated[name]()
                continue
            if "default" in field:
                out[name] = field["default"]
                continue
            raise ConfigError(f"no value for field {name!r} (the schema gives it no default)")
        try:
            out[name] = coerce(value, field_type)
        except ValueMismatch as exc:
            raise ConfigError(f"field {name!r}: {exc}") from None
    return out
