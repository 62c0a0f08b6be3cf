"""Deliberately bad model versions for rollout tests and `workers demo --rollout`, built into a
models directory (never committed, never under the repository's models/).

Each passes every check a worker makes before serving (sha256, model and schema contract), and
misbehaves only when it scores: ``shift`` adds a constant to every fraud score, ``fail_above``
raises on the rows whose amount is above a bound (a slice of the stream: those rows are dead-
lettered as inference errors). They are what a canary's guards have to catch.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np

AMOUNT = 0  # the column of `amount` in the reference fraud model's rows


class Misbehaving:
    """A fitted classifier's answers, shifted and/or refused on a slice of rows."""

    def __init__(self, model: Any, shift: float = 0.0, fail_above: float | None = None) -> None:
        self.model, self.shift, self.fail_above = model, shift, fail_above
        self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.fail_above is not None and np.any(x[:, AMOUNT] > self.fail_above):
            raise ValueError(f"cannot score an amount above {self.fail_above}")
        proba = self.model.predict_proba(x)
        fraud = np.clip(proba[:, 1] + self.shift, 0.0, 1.0)
        return np.column_stack([1.0 - fraud, fraud])


def write_bad_version(models: Path, version: str, *, base: str = "1.1.0", shift: float = 0.0,
                      fail_above: float | None = None) -> Path:
    """``models/fraud/<version>``: ``base``'s model wrapped in ``Misbehaving``, with a manifest whose
    sha256 matches (unsigned: a worker with trusted keys refuses it for that alone)."""
    source, target = models / "fraud" / base, models / "fraud" / version
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    joblib.dump(Misbehaving(joblib.load(source / "model.joblib"), shift, fail_above), target / "model.joblib")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(version=version, artifact_sha256=hashlib.sha256((target / "model.joblib").read_bytes()).hexdigest(),
                    description=f"{manifest['description']} DELIBERATELY BAD (tests): shift {shift}, "
                                f"fails above amount {fail_above}")
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target
