"""The committed reference model is what scripts/train_fraud.py makes."""
import json
import subprocess
import sys

import numpy as np
import pytest
import sklearn

from tests.factories import REPO

COMMITTED = json.loads((REPO / "models" / "fraud" / "1.0.0" / "manifest.json").read_text())


def test_training_regenerates_the_committed_model(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "train_fraud.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    fresh = json.loads((tmp_path / "fraud" / "1.0.0" / "manifest.json").read_text())
    assert fresh["training"]["data_fingerprint"] == COMMITTED["training"]["data_fingerprint"]
    for metric, value in COMMITTED["metrics"].items():
        assert fresh["metrics"][metric] == pytest.approx(value, abs=0.01), metric
    same_stack = (COMMITTED["training"]["scikit_learn"], COMMITTED["training"]["numpy"]) == (
        sklearn.__version__, np.__version__)
    if same_stack:  # byte-for-byte where the library versions match
        assert fresh["artifact_sha256"] == COMMITTED["artifact_sha256"]


def test_committed_model_is_good_enough_to_demo():
    assert COMMITTED["metrics"]["roc_auc"] > 0.85
    assert 0.005 < COMMITTED["training"]["fraud_rate"] < 0.05
