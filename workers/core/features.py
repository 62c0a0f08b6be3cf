"""Decoded record -> one row of floats in the manifest's feature order, checked on the way.

Checks are per feature: null (reject or impute), NaN/inf, declared range, known
category. A failing record raises ``RecordError`` with its dead-letter reason.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from workers.core.manifest import FeatureSpec
from workers.core.reasons import INVALID_VALUE, MISSING_FIELD
from workers.errors import RecordError

IMPUTED = "imputed"


class FeatureBuilder:
    """Compiled once per model version; ``row()`` runs once per event on the hot path."""

    __slots__ = ("_personal", "_plan", "names")

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

    def row(self, record: dict[str, Any], flags: list[str]) -> list[float]:
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
                code = codes.get(value)
                if code is None:
                    shown = "(personal: not shown)" if name in self._personal else repr(value)
                    raise RecordError(INVALID_VALUE, f"feature {name!r} has unknown category {shown}")
                append(code)
            else:  # boolean
                append(1.0 if value else 0.0)
        return out
