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


def test_training_regenerates_the_second_version_with_its_hyper_parameters(tmp_path):
    committed = json.loads((REPO / "models" / "fraud" / "1.1.0" / "manifest.json").read_text())
    subprocess.run([sys.executable, str(REPO / "scripts" / "train_fraud.py"), "--out", str(tmp_path),
                    "--version", "1.1.0", "--param", "max_iter=200", "--param", "learning_rate=0.05",
                    "--param", "max_leaf_nodes=15"], check=True, capture_output=True)
    fresh = json.loads((tmp_path / "fraud" / "1.1.0" / "manifest.json").read_text())
    assert fresh["parameters"] == committed["parameters"] != COMMITTED["parameters"]
    assert fresh["training"]["data_fingerprint"] == COMMITTED["training"]["data_fingerprint"]  # same data
    for metric, value in committed["metrics"].items():
        assert fresh["metrics"][metric] == pytest.approx(value, abs=0.01), metric


def test_an_unknown_hyper_parameter_is_refused(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "train_fraud.py"), "--out", str(tmp_path),
                             "--param", "max_depth=3"], capture_output=True, text=True)
    assert result.returncode == 2 and "NAME one of" in result.stderr
