"""Build a whole new pipeline (schema + model + manifest) in a directory: no project code changes.

Used to prove that adding a pipeline is files only, and to give unit tests a tiny model.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import Ridge

REPO = Path(__file__).resolve().parent.parent

SENSOR_SCHEMA = {
    "type": "record",
    "name": "Reading",
    "namespace": "io.example.sensors",
    "fields": [
        {"name": "reading_id", "type": "string"},
        {"name": "device", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "temperature_c", "type": "float"},
        {"name": "load_pct", "type": "double"},
        {"name": "vibration_mm_s", "type": ["null", "double"], "default": None},
        {"name": "site", "type": {"type": "enum", "name": "Site", "symbols": ["north", "south", "east"]}},
    ],
}
SENSOR_FEATURES = [
    {"name": "temperature_c", "kind": "numeric", "min": -50, "max": 150},
    {"name": "load_pct", "kind": "numeric", "min": 0, "max": 100},
    {"name": "vibration_mm_s", "kind": "numeric", "min": 0, "missing": "impute", "impute_value": 1.0},
    {"name": "site", "kind": "categorical", "categories": ["north", "south", "east"]},
]


def sensor_rows(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    temperature = rng.normal(40, 10, n).astype(np.float32)
    load = rng.uniform(0, 100, n)
    vibration = rng.gamma(2.0, 1.0, n)
    site = rng.integers(0, 3, n)
    x = np.column_stack([temperature, load, vibration, site]).astype(np.float64)
    y = 1000 - 4 * x[:, 0] - 3 * x[:, 1] - 20 * x[:, 2] + 15 * x[:, 3] + rng.normal(0, 5, n)
    records = [
        {
            "reading_id": f"r-{seed}-{i}",
            "device": f"dev-{i % 17}",
            "ts": 0,
            "temperature_c": float(temperature[i]),
            "load_pct": float(load[i]),
            "vibration_mm_s": float(vibration[i]),
            "site": ["north", "south", "east"][site[i]],
        }
        for i in range(n)
    ]
    return records, y


def make_sensor_pipeline(root: Path, version: str = "3") -> tuple[Path, Path]:
    """schemas/ (with the shared prediction schema) and models/sensor/<version>/ under ``root``."""
    schemas, models = root / "schemas", root / "models"
    (schemas / "sensor").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "schemas" / "prediction.v1.avsc", schemas / "prediction.v1.avsc")
    (schemas / "sensor" / "reading.v1.avsc").write_text(json.dumps(SENSOR_SCHEMA))
    records, y = sensor_rows(2000, seed=3)
    x = np.array([[r["temperature_c"], r["load_pct"], r["vibration_mm_s"], ["north", "south", "east"].index(r["site"])]
                  for r in records])
    model = Ridge(alpha=1.0).fit(x, y)
    target = models / "sensor" / version
    target.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, target / "ridge.joblib")
    manifest = {
        "name": "sensor",
        "version": version,
        "task": "regression",
        "artifact": "ridge.joblib",
        "artifact_sha256": hashlib.sha256((target / "ridge.joblib").read_bytes()).hexdigest(),
        "input_schema": "sensor/reading.v1.avsc",
        "prediction_schema": "prediction.v1.avsc",
        "event_id_field": "reading_id",
        "key_field": "device",
        "event_time_field": "ts",
        "features": SENSOR_FEATURES,
        "policies": {"max_lateness_s": None, "max_future_s": 60},
    }
    (target / "manifest.json").write_text(json.dumps(manifest))
    return schemas, models


def load_test_pipeline(name: str = "fraud", schemas: Path = REPO / "schemas", models: Path = REPO / "models",
                       **settings: object):
    """A pipeline loaded the way a worker loads it, from the given directories."""
    from workers.pipelines import load_pipeline
    from workers.settings import Settings

    return load_pipeline(Settings(pipeline=name, schemas_dir=schemas, models_dir=models, **settings))


def payload_of_kind(kind: str, event: dict, pipeline, now_ms: int) -> bytes:
    """``event`` encoded for ``pipeline`` as ``kind`` says: "good", "old_schema" (written with
    transaction.v1, without the field v2 added) or one of ``workers.dev.bad_inputs.BAD_KINDS``."""
    from workers.dev.bad_inputs import corrupt_variant

    codec = pipeline.input_codec
    if kind == "good":
        return codec.encode(event)
    if kind == "old_schema":
        old = codec._store.get("fraud/transaction.v1.avsc")
        return codec.encode({k: v for k, v in event.items() if k != "device_trust_score"}, writer=old)
    return corrupt_variant(kind, event, codec, pipeline.manifest, bytes(range(64)), now_ms)


class FakeClock:
    """A monotonic clock the test moves by hand (``clock.now += 10``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
