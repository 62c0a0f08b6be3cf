#!/usr/bin/env python3
"""Train the reference fraud model and write models/fraud/<version>/ (artifact + manifest).

Reproducible: fixed seed, synthetic data from workers.dev.fraud_data, deterministic
training (no early-stopping split). With the same numpy/scikit-learn versions the
artifact is byte-identical; across versions, the holdout metrics match closely.

    .venv/bin/python scripts/train_fraud.py [--version 1.0.0] [--out models] [--rows 60000]
        [--param NAME=VALUE ...]

The second reference version, 1.1.0, is the same data with other hyper-parameters:

    .venv/bin/python scripts/train_fraud.py --version 1.1.0 --param max_iter=200 \
        --param learning_rate=0.05 --param max_leaf_nodes=15
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workers.core.features import FeatureBuilder  # noqa: E402
from workers.core.manifest import FeatureSpec  # noqa: E402
from workers.core.profile import feature_profile, score_profile  # noqa: E402
from workers.dev.fraud_data import CHANNELS, MERCHANT_CATEGORIES, generate  # noqa: E402

SEED = 20261125
FEATURES = [
    {"name": "amount", "kind": "numeric", "min": 0.0, "max": 1_000_000.0},
    {"name": "merchant_category", "kind": "categorical", "categories": list(MERCHANT_CATEGORIES)},
    {"name": "channel", "kind": "categorical", "categories": list(CHANNELS)},
    {"name": "card_present", "kind": "boolean"},
    {"name": "foreign_country", "kind": "boolean"},
    {"name": "account_age_days", "kind": "numeric", "min": 0, "max": 36_500},
    {"name": "txn_count_1h", "kind": "numeric", "min": 0, "max": 10_000},
    {"name": "avg_amount_30d", "kind": "numeric", "min": 0.0, "max": 1_000_000.0},
    {"name": "distance_from_home_km", "kind": "numeric", "min": 0.0, "max": 25_000.0},
    {"name": "device_trust_score", "kind": "numeric", "min": 0.0, "max": 1.0,
     "missing": "impute", "impute_value": 0.5},
]
PARAMS = {"max_iter": 120, "learning_rate": 0.1, "max_leaf_nodes": 31, "l2_regularization": 1.0,
          "early_stopping": False, "random_state": SEED}


def matrix(events: list[dict], builder: FeatureBuilder) -> np.ndarray:
    return np.array([builder.row(e, []) for e in events], dtype=np.float64)


def train(out_dir: Path, version: str, rows: int, overrides: dict | None = None) -> Path:
    params = {**PARAMS, **(overrides or {})}
    events, labels = generate(rows, SEED)
    holdout = rows // 5
    manifest_features = tuple(FeatureSpec.model_validate(f) for f in FEATURES)
    builder = FeatureBuilder(manifest_features)
    x = matrix(events, builder)
    x_train, y_train, x_test, y_test = x[holdout:], labels[holdout:], x[:holdout], labels[:holdout]
    categorical = [i for i, f in enumerate(FEATURES) if f["kind"] == "categorical"]
    model = HistGradientBoostingClassifier(categorical_features=categorical, **params)
    model.fit(x_train, y_train)
    proba = model.predict_proba(x_test)[:, 1]

    target = out_dir / "fraud" / version
    target.mkdir(parents=True, exist_ok=True)
    artifact = target / "model.joblib"
    joblib.dump(model, artifact, compress=3)
    manifest = _manifest_stub()
    manifest.update(
        version=version,
        artifact_sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
        parameters={**params, "categorical_features": categorical, "estimator": "HistGradientBoostingClassifier"},
        training={
            "generator": "workers.dev.fraud_data.generate",
            "seed": SEED,
            "rows": rows,
            "holdout_rows": holdout,
            "data_fingerprint": hashlib.sha256(x.tobytes() + labels.tobytes()).hexdigest(),
            "fraud_rate": round(float(labels.mean()), 5),
            "scikit_learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        metrics={
            "roc_auc": round(float(roc_auc_score(y_test, proba)), 4),
            "average_precision": round(float(average_precision_score(y_test, proba)), 4),
            "log_loss": round(float(log_loss(y_test, proba)), 4),
            "brier": round(float(brier_score_loss(y_test, proba)), 5),
        },
        reference_profile={
            "features": feature_profile(x_train, manifest_features),
            "score": score_profile(model.predict_proba(x_train)[:, 1]),
        },
    )
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return target


def _manifest_stub() -> dict:
    return {
        "name": "fraud",
        "version": "0",
        "task": "binary_classification",
        "owner": "fraud-ml@example.com",
        "description": "Card-transaction fraud probability (reference pipeline).",
        "artifact": "model.joblib",
        "artifact_sha256": "",
        "input_schema": "fraud/transaction.v2.avsc",
        "prediction_schema": "prediction.v1.avsc",
        "event_id_field": "event_id",
        "key_field": "account_id",
        "event_time_field": "event_time",
        "features": FEATURES,
        "policies": {"max_lateness_s": 3600, "late_action": "dead_letter", "max_future_s": 300},
        "threshold": 0.5,
        "labels": ["legit", "fraud"],
        "positive_class": 1,
    }


TUNABLE = {"max_iter": int, "learning_rate": float, "max_leaf_nodes": int, "l2_regularization": float}


def _param(text: str) -> tuple[str, int | float]:
    name, _, value = text.partition("=")
    if name not in TUNABLE or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {sorted(TUNABLE)}: {text!r}")
    try:
        return name, TUNABLE[name](value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} needs a {TUNABLE[name].__name__}: {value!r}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--out", type=Path, default=REPO / "models")
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--param", action="append", default=[], type=_param, metavar="NAME=VALUE",
                        help=f"a hyper-parameter other than the default ({', '.join(TUNABLE)})")
    args = parser.parse_args()
    target = train(args.out, args.version, args.rows, dict(args.param))
    manifest = json.loads((target / "manifest.json").read_text())
    print(f"wrote {target}: sha256 {manifest['artifact_sha256'][:16]}..., metrics {manifest['metrics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
