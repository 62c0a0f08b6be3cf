"""scikit-learn's bundled data sets as a new user brings them: a model file, an Avro schema, reference rows."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from tests.factories import REPO


def project(root: Path) -> tuple[Path, Path]:
    """Empty models/ and schemas/ (with the shared prediction schema) under ``root``."""
    schemas, models = root / "schemas", root / "models"
    schemas.mkdir(parents=True, exist_ok=True)
    models.mkdir(exist_ok=True)
    shutil.copy(REPO / "schemas" / "prediction.v1.avsc", schemas / "prediction.v1.avsc")
    return schemas, models


def frame(loader) -> tuple[pd.DataFrame, pd.Series]:
    """Features with Avro-friendly names (no spaces, slashes), and the target."""
    data = loader(as_frame=True)
    x = data.data.rename(columns=lambda c: c.replace(" ", "_").replace("/", "_"))
    return x, data.target


def cancer() -> tuple[pd.DataFrame, pd.Series]:
    return frame(load_breast_cancer)


def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    return frame(load_diabetes)


def wine() -> tuple[pd.DataFrame, pd.Series]:
    return frame(load_wine)


def write_schema(path: Path, name: str, columns, types: dict[str, object] | None = None,
                 key: str = "patient") -> Path:
    """An input schema: event_id, a key, event_time, then one double per column (or the given type)."""
    types = types or {}
    fields = [{"name": "event_id", "type": "string"}, {"name": key, "type": "string"},
              {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}}]
    fields += [{"name": c, "type": types.get(c, "double")} for c in columns]
    path.write_text(json.dumps({"type": "record", "name": name, "namespace": "example", "fields": fields}))
    return path


def dump(model, path: Path) -> Path:
    joblib.dump(model, path)
    return path
