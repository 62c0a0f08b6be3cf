"""The manifest's features drafted from the model, the input schema and the reference data.

**Column order.** A model knows its column order only if it was fitted on a DataFrame
(``feature_names_in_``); fitted on an array it takes whatever columns it is given, and a
wrong order scores every event wrongly without an error. So the order is never guessed:

* a model with ``feature_names_in_``: that order; ``--features``, if given, must equal it;
* a model without: ``--features a,b,c`` (the order it was fitted with), or
  ``--features-from-reference``, the user's statement that the reference file's columns
  (less the target and the event id, key and time fields) are in the model's order;
* either way the count must equal ``n_features_in_``, and every feature must be a column
  of the reference data and a field of the input schema.

What no file can tell, a wrong ``--features`` for an array-fitted model, is caught when the
reference data has labels (``--target``, see ``new.quality_gate``).

**Kinds** follow the Avro types: numbers are ``numeric`` (bounded by the reference data's
min and max unless bounds are off), ``boolean`` is ``boolean``, ``enum`` and ``string`` are
``categorical``. A category's code is its index, which must be the code the model was
fitted with: an enum's symbols give that order, a string field needs it named
(``--categories FIELD=a,b,c``) or the sorted distinct values of the reference column asked
for (``--sorted-categories``, the order of OrdinalEncoder and pandas.Categorical).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.byom.offline import encode
from workers.byom.tables import Table
from workers.core.avro_values import ValueMismatch, base_types, coerce, type_name
from workers.core.codec import StoredSchema
from workers.core.manifest import FeatureSpec
from workers.errors import ConfigError

NUMERIC = {"int", "long", "float", "double"}


@dataclass(frozen=True)
class FeatureOptions:
    features: list[str] | None = None  # --features
    from_reference: bool = False  # --features-from-reference
    target: str | None = None  # --target: a label column of the reference data, never a feature
    not_features: Sequence[str] = ()  # the event id, key and time fields
    categories: dict[str, list[str]] = field(default_factory=dict)  # --categories FIELD=a,b,c
    sorted_categories: bool = False  # --sorted-categories
    bounds: bool = True  # min/max from the reference data


@dataclass(frozen=True)
class Draft:
    features: list[FeatureSpec]
    order_source: str  # how the column order was established, for the summary and the lineage
    records: list[dict[str, Any]]  # the reference rows' feature values, of their Avro types
    matrix: np.ndarray  # the reference rows as model rows


FROM_THE_MODEL = "the model's feature_names_in_"  # the one order source that needs no other check


def feature_order(model: Any, table: Table, options: FeatureOptions) -> tuple[list[str], str]:
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None:
        order, source = [str(n) for n in fitted], FROM_THE_MODEL
        if options.features is not None and options.features != order:
            raise ConfigError(f"--features {options.features} differ from the columns the model was fitted on, "
                              f"in their order: {order}")
    elif options.features is not None:
        order, source = options.features, "--features"
    elif options.from_reference:
        skipped = {options.target, *options.not_features}
        order, source = [c for c in table.columns if c not in skipped], f"the columns of {table.path.name}"
    else:
        raise ConfigError("the model was fitted on an array, so it does not know its column order: give it with "
                          "--features a,b,c, or --features-from-reference if the reference file's columns are in "
                          "the model's order")
    duplicates = sorted({n for n in order if order.count(n) > 1})
    if duplicates:
        raise ConfigError(f"features named twice: {duplicates}")
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and n_in != len(order):
        hint = " (a label column is named with --target, and is not a feature)" if options.from_reference else ""
        raise ConfigError(f"the model takes {n_in} columns, but {source} gives {len(order)}: {order}{hint}")
    if options.target in order:
        raise ConfigError(f"the target column {options.target!r} cannot be a feature")
    missing = [n for n in order if n not in table.columns]
    if missing:
        raise ConfigError(f"features {missing} are not columns of the reference data {table.path} "
                          f"(its columns: {table.columns})")
    return order, source


def draft_features(model: Any, schema: StoredSchema, table: Table, options: FeatureOptions) -> Draft:
    order, source = feature_order(model, table, options)
    fields = {f["name"]: f["type"] for f in schema.parsed["fields"]}
    unknown = sorted(set(options.categories) - set(order))
    if unknown:
        raise ConfigError(f"--categories names {unknown}, which are not features ({order})")
    records = _reference_records(table, order, fields, schema)
    specs = []
    for name in order:
        values = [r[name] for r in records]
        specs.append(_spec(name, fields[name], values, options))
    matrix = np.array([encode(r, specs) for r in records], dtype=np.float64).reshape(len(records), len(specs))
    return Draft(specs, source, records, matrix)


def _reference_records(table: Table, order: list[str], fields: dict[str, Any],
                       schema: StoredSchema) -> list[dict[str, Any]]:
    for name in order:
        if name not in fields:
            raise ConfigError(f"feature {name!r} is not a field of the input schema {schema.path}")
    records = []
    for row in table.rows:
        record = {}
        for name in order:
            value = row.values.get(name)
            if value is None:
                raise ConfigError(f"{table.at(row)}: feature {name!r} is empty; the reference rows must be complete")
            try:
                record[name] = coerce(value, fields[name])
            except ValueMismatch as exc:
                raise ConfigError(f"{table.at(row)}: feature {name!r}: {exc}") from None
        records.append(record)
    return records


def _spec(name: str, field_type: Any, values: list[Any], options: FeatureOptions) -> FeatureSpec:
    kinds = {type_name(t) for t in base_types(field_type)} - {"null"}
    if kinds <= NUMERIC:
        bounds = {"min": float(min(values)), "max": float(max(values))} if options.bounds else {}
        return FeatureSpec(name=name, kind="numeric", **bounds)
    if kinds == {"boolean"}:
        return FeatureSpec(name=name, kind="boolean")
    if kinds == {"string"} or kinds == {"enum"}:
        categories = _categories(name, field_type, values, options)
        unknown = sorted({str(v) for v in values} - set(categories))
        if unknown:
            raise ConfigError(f"feature {name!r}: the reference data has values {unknown} that are not among its "
                              f"categories {categories}")
        return FeatureSpec(name=name, kind="categorical", categories=categories)
    raise ConfigError(f"feature {name!r} has the Avro type {sorted(kinds)}: a feature is a number, a boolean, "
                      "a string or an enum")


def _categories(name: str, field_type: Any, values: list[Any], options: FeatureOptions) -> list[str]:
    if name in options.categories:
        return options.categories[name]
    enum = next((t for t in base_types(field_type) if type_name(t) == "enum"), None)
    if enum is not None:
        return list(enum["symbols"])
    if options.sorted_categories:
        return sorted({str(v) for v in values})
    raise ConfigError(f"feature {name!r} is a string: the model sees each value as a code, so name its categories "
                      f"in code order with --categories {name}=a,b,c, or --sorted-categories for the sorted "
                      "distinct values of the reference data (OrdinalEncoder's order)")

