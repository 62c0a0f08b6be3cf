"""The model's own predictions, computed the way its user would, without the worker.

Rows are built from the manifest's rules as docs/manifest.md states them (numbers as
floats, booleans as 1/0, a category as its index in ``categories``, a null as
``impute_value``), independently of the worker's ``FeatureBuilder``, so comparing the two
checks the manifest, the codec and the scorer together. A model fitted on a DataFrame is
given a DataFrame with its column names when pandas is installed (it was, to fit it).
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workers.core.manifest import FeatureSpec, Manifest
from workers.core.named_features import UNNAMED_ROWS_WARNING, fitted_with_names
from workers.core.scoring import positive_column
from workers.errors import ConfigError


def encode(record: Mapping[str, Any], features: Sequence[FeatureSpec]) -> list[float]:
    """One model row from a record whose values already have their Avro types."""
    row = []
    for spec in features:
        value = record.get(spec.name)
        if value is None:
            if spec.missing != "impute":
                raise ConfigError(f"feature {spec.name!r} is empty")
            value = spec.impute_value
        if spec.kind == "categorical":
            if value not in spec.categories:
                raise ConfigError(f"feature {spec.name!r}: {value!r} is not one of its categories {spec.categories}")
            row.append(float(spec.categories.index(value)))
        elif spec.kind == "boolean":
            row.append(1.0 if value else 0.0)
        else:
            row.append(float(value))  # type: ignore[arg-type]  # a number: the schema's type, checked
    return row


def model_input(model: Any, matrix: np.ndarray) -> Any:
    """``matrix`` as the model was fitted: a DataFrame with its column names, if it has them."""
    if not fitted_with_names(model):
        return matrix
    try:
        import pandas
    except ImportError:  # the registry checked the order against feature_names_in_: an array is the same input
        return matrix
    return pandas.DataFrame(matrix, columns=list(model.feature_names_in_))


def predict(model: Any, manifest: Manifest, matrix: np.ndarray) -> np.ndarray:
    """The score as the worker defines it: the positive class's probability, or the prediction."""
    x = model_input(model, matrix)
    with warnings.catch_warnings():  # an array for a named model when pandas is absent
        warnings.filterwarnings("ignore", message=UNNAMED_ROWS_WARNING, category=UserWarning)
        if manifest.is_classifier:
            return np.asarray(model.predict_proba(x), dtype=np.float64)[:, positive_column(manifest, model)]
        return np.asarray(model.predict(x), dtype=np.float64).reshape(-1)


def predict_labels(model: Any, matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=UNNAMED_ROWS_WARNING, category=UserWarning)
        return np.asarray(model.predict(model_input(model, matrix)))
