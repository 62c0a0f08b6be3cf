"""Decoded record -> one row of floats in the manifest's feature order, checked on the way.

Checks are per feature: null (reject or impute), NaN/inf, declared range, known
category. A failing record raises ``RecordError`` with its dead-letter reason.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.core.manifest import FeatureSpec
from workers.core.reasons import INVALID_VALUE, MISSING_FIELD
from workers.errors import RecordError

if TYPE_CHECKING:
    from workers.core.columnar_avro import Columns

IMPUTED = "imputed"


_LARGEST = 1.7976931348623157e308  # an "unbounded" range still refuses inf (and NaN fails every comparison)
_EXACT = 2**53  # ints up to this have an exact float: compared as floats, they compare as ints


def _ordinary(kind: str, low: float, high: float, codes: dict[str, float], value: Any) -> bool:
    """Would ``row``'s fast path take ``value`` for a feature of this kind?"""
    if kind == "numeric":
        return (value.__class__ is float or value.__class__ is int) and low <= value <= high
    if kind == "categorical":
        return value.__class__ is str and value in codes
    return value is not None


class FeatureBuilder:
    """Compiled once per model version; ``row()`` runs once per event on the hot path.

    ``row`` is a function generated for the manifest's features: one straight-line
    expression that accepts a record whose every value is present, of the right type and in
    range (the common case). Anything else (a null to impute, a wrong type, NaN, a value out
    of range, an unknown category) goes to ``checked_row``, which handles it one feature at a
    time and raises the dead-letter reason: the generated code only decides *that* a record
    is ordinary, never *why* one is not, so both paths give the same rows and errors.
    """

    __slots__ = ("_personal", "_plan", "names", "row")

    def __init__(self, features: Sequence[FeatureSpec], personal: frozenset[str] = frozenset()) -> None:
        self._personal = personal  # their values never appear in an error message (dead-letter headers)
        self.names = [f.name for f in features]
        # (name, kind, min, max, category codes, impute value or None)
        self._plan = [
            (
                f.name,
                f.kind,
                f.minimum,
                f.maximum,
                {c: float(i) for i, c in enumerate(f.categories)},
                f.impute_value if f.missing == "impute" else None,
            )
            for f in features
        ]
        self.row = self._compile()

    def _compile(self) -> Any:
        """The fast path as Python source, compiled once (as ``dataclasses`` builds ``__init__``)."""
        namespace: dict[str, Any] = {"checked_row": self.checked_row, "IMPUTED": IMPUTED}
        reads, checks, values = [], [], []
        for i, (name, kind, lo, hi, codes, impute) in enumerate(self._plan):
            reads.append(f"v{i} = get({name!r})")
            if impute is not None:  # a null takes the impute value, then is checked like any value
                namespace[f"impute{i}"] = impute
                reads += [f"if v{i} is None:", f"    v{i} = impute{i}",
                          "    if IMPUTED not in flags:", "        flags.append(IMPUTED)"]
            if kind == "numeric":
                namespace[f"lo{i}"], namespace[f"hi{i}"] = max(lo, -_LARGEST), min(hi, _LARGEST)
                checks.append(f"(v{i}.__class__ is float or v{i}.__class__ is int) and lo{i} <= v{i} <= hi{i}")
                values.append(f"float(v{i})")
            elif kind == "categorical":
                namespace[f"codes{i}"] = codes
                checks.append(f"v{i}.__class__ is str and (c{i} := codes{i}.get(v{i})) is not None")
                values.append(f"c{i}")
            else:  # boolean: any present value
                checks.append(f"v{i} is not None")
                values.append(f"(1.0 if v{i} else 0.0)")
        source = "\n".join([
            "def row(record, flags):",
            "    get = record.get",
            *(f"    {line}" for line in reads),
            f"    if {' and '.join(checks) or 'True'}:",
            f"        return [{', '.join(values)}]",
            "    return checked_row(record, flags)",
        ])
        exec(compile(source, f"<features of {', '.join(self.names)[:60]}>", "exec"), namespace)
        return namespace["row"]

    def matrix(self, columns: Columns) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows of a whole batch at once, and which records had a value imputed, when every
        record is ordinary: each feature present or imputed, a number in range (an int column
        only up to 2**53, where its float is exact) or a known category. None otherwise: then
        ``row`` takes each record and says what is wrong with which. The same floats and flags
        as ``row``, a column at a time."""
        n = len(columns.good)
        out = np.empty((n, len(self._plan)), dtype=np.float64)
        imputed = np.zeros(n, dtype=np.bool_)
        for j, (name, kind, lo, hi, codes, impute) in enumerate(self._plan):
            nulls = columns.nulls(name)
            if nulls is not None:
                if impute is None or not _ordinary(kind, max(lo, -_LARGEST), min(hi, _LARGEST), codes, impute):
                    return None
                imputed |= nulls
            if kind == "numeric":
                integers, reals = columns.integers(name), columns.reals(name)
                if integers is not None:
                    if not ((integers >= -_EXACT) & (integers <= _EXACT)).all():
                        return None
                    values = integers.astype(np.float64)
                elif reals is not None:
                    values = reals
                elif nulls is not None and nulls.all():  # the schema lacks the field: imputed throughout
                    values = np.zeros(n)
                else:  # a string, boolean, bytes or enum field: not a number
                    return None
                if nulls is not None:
                    values = np.where(nulls, float(impute), values)  # type: ignore[arg-type]
                if not ((values >= max(lo, -_LARGEST)) & (values <= min(hi, _LARGEST))).all():  # NaN fails both
                    return None
                out[:, j] = values
                continue
            present = columns.values(name)
            if nulls is not None:
                present = [impute if v is None else v for v in present]
            if kind == "categorical":
                coded = [codes.get(v) if v.__class__ is str else None for v in present]
                if None in coded:
                    return None
                out[:, j] = coded
            else:  # boolean: any present value
                out[:, j] = [1.0 if v else 0.0 for v in present]
        return out, imputed

    def checked_row(self, record: dict[str, Any], flags: list[str]) -> list[float]:
        """One feature at a time: imputes, or raises ``RecordError`` with the dead-letter reason."""
        out: list[float] = []
        append = out.append
        isfinite = math.isfinite
        for name, kind, lo, hi, codes, impute in self._plan:
            value: Any = record.get(name)
            if value is None:
                if impute is None:
                    raise RecordError(MISSING_FIELD, f"required feature {name!r} is missing or null")
                value = impute
                if IMPUTED not in flags:
                    flags.append(IMPUTED)
            if kind == "numeric":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RecordError(INVALID_VALUE, f"feature {name!r} is not a number")
                number = float(value)
                if not isfinite(number):
                    raise RecordError(INVALID_VALUE, f"feature {name!r} is {number}")
                if number < lo or number > hi:
                    shown = "(personal: not shown)" if name in self._personal else number
                    raise RecordError(INVALID_VALUE, f"feature {name!r}={shown} is outside [{lo}, {hi}]")
                append(number)
            elif kind == "categorical":
                code = codes.get(value) if isinstance(value, str) else None
                if code is None:
                    shown = "(personal: not shown)" if name in self._personal else repr(value)
                    raise RecordError(INVALID_VALUE, f"feature {name!r} has unknown category {shown}")
                append(code)
            else:  # boolean
                append(1.0 if value else 0.0)
        return out
