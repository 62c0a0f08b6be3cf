"""`workers pipeline new` and `pipeline check` on scikit-learn's bundled data sets, models trained here."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.byom_data import cancer, diabetes, dump, project, wine, write_schema
from tests.factories import load_test_pipeline
from workers.cli import main
from workers.core.records import InputRecord
from workers.errors import EXIT_CONFIG


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    schemas, models = project(tmp_path)
    monkeypatch.setenv("WORKERS_SCHEMAS_DIR", str(schemas))
    monkeypatch.setenv("WORKERS_MODELS_DIR", str(models))
    return tmp_path


@pytest.fixture
def cli(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workers: error: "), err
    return lines[0]


@pytest.fixture
def cancer_files(workspace):
    x, y = cancer()
    schema = write_schema(workspace / "tumour.v1.avsc", "Tumour", x.columns)
    reference = workspace / "reference.csv"
    x.assign(diagnosis=y).to_csv(reference, index=False)
    return x, y, schema, reference


def _new_cancer(cli, workspace, model, schema, reference, *extra, positive_class="1"):
    return cli("pipeline", "new", "--pipeline", "cancer", "--model", dump(model, workspace / "model.joblib"),
               "--schema", schema, "--reference", reference, "--key-field", "patient",
               "--positive-class", positive_class, *extra)


def _labels_from_the_worker(pipeline, x) -> np.ndarray:
    """Each row of ``x`` encoded as an event and run through the worker's core: the predictions' labels."""
    now_ms = int(time.time() * 1000)
    records = [InputRecord(value=pipeline.input_codec.encode({"event_id": f"row-{i}", "patient": f"patient-{i}",
                                                              "event_time": now_ms, **row}),
                           topic=pipeline.topics.events, partition=0, offset=i)
               for i, row in enumerate(x.to_dict("records"))]
    outputs = pipeline.process(records, now_ms=now_ms).outputs
    assert [o.reason for o in outputs if o.is_dead_letter] == []
    return np.array([pipeline.prediction_codec.decode(o.value)[0]["label"] for o in outputs])


def test_a_dataframe_model_becomes_a_pipeline_the_worker_loads_scores_and_labels_like_the_model(
        cli, workspace, cancer_files):
    """The README's example: classes named as the data set names them (class 0 is malignant, 1 benign),
    the score is P(malignant), and --labels names a score below the threshold, then one at/above it."""
    x, y, schema, _ = cancer_files
    diagnosis = y.map(dict(enumerate(load_breast_cancer().target_names)))
    reference = workspace / "train.csv"
    x.assign(diagnosis=diagnosis).to_csv(reference, index=False)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x, diagnosis)
    code, out, err = _new_cancer(cli, workspace, model, schema, reference, "--labels", "benign,malignant",
                                 "--target", "diagnosis", positive_class="malignant")
    assert code == 0, err
    assert "from the model's feature_names_in_" in out and "checked 569 rows" in out
    assert "score = probability of class 'malignant'; label 'malignant' from 0.5 up, else 'benign'" in out

    directory = workspace / "models" / "cancer" / "1.0.0"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert [f["name"] for f in manifest["features"]] == list(x.columns)
    assert manifest["features"][0] == {"name": "mean_radius", "kind": "numeric", "min": float(x.mean_radius.min()),
                                       "max": float(x.mean_radius.max())}
    assert manifest["positive_class"] == "malignant" and manifest["labels"] == ["benign", "malignant"]
    assert manifest["input_schema"] == "cancer/tumour.v1.avsc"
    assert (workspace / "schemas" / "cancer" / "tumour.v1.avsc").read_text() == schema.read_text()
    assert set(manifest["reference_profile"]["features"]) == set(x.columns)
    assert manifest["training"]["feature_order"] == "the model's feature_names_in_"
    assert manifest["metrics"]["reference_accuracy"] > 0.95

    pipeline = load_test_pipeline("cancer", workspace / "schemas", workspace / "models")
    rows = np.array([pipeline.features.row(r, []) for r in x.to_dict("records")])
    scores, failures = pipeline.scorer.score(rows)
    assert failures == {}
    probabilities = model.predict_proba(x)
    classes = list(model.classes_)
    np.testing.assert_allclose(scores, probabilities[:, classes.index("malignant")], rtol=0, atol=1e-12)

    # every prediction is labelled with the class the model itself predicts: swapped --labels fail here
    labels = _labels_from_the_worker(pipeline, x)
    np.testing.assert_array_equal(labels, model.predict(x))
    benign = probabilities[:, classes.index("benign")]
    assert labels[benign.argmax()] == "benign" and labels[benign.argmin()] == "malignant"

    code, out, err = cli("pipeline", "check", "--pipeline", "cancer")  # the recorded reference file
    assert code == 0, err
    assert "checked 569 rows" in out


def test_an_array_model_needs_its_column_order_given(cli, workspace, cancer_files):
    x, y, schema, reference = cancer_files
    model = LogisticRegression(max_iter=5000).fit(x.to_numpy(), y)
    code, _, err = _new_cancer(cli, workspace, model, schema, reference)
    assert code == EXIT_CONFIG
    assert "does not know its column order: give it with --features" in _one_error_line(err)
    assert not (workspace / "models" / "cancer").exists()


def test_the_numpy_order_trap_is_refused_when_the_reference_has_labels(cli, workspace, cancer_files):
    """Fitted on an array in the file's order, wired in reversed: every label would flip."""
    x, y, schema, reference = cancer_files
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x.to_numpy(), y)
    reversed_order = ",".join(reversed(x.columns))
    code, _, err = _new_cancer(cli, workspace, model, schema, reference, "--features", reversed_order,
                               "--target", "diagnosis")
    assert code == EXIT_CONFIG
    assert "no better than a constant on the reference rows" in _one_error_line(err)
    assert not (workspace / "models" / "cancer").exists()

    code, out, err = _new_cancer(cli, workspace, model, schema, reference, "--features", ",".join(x.columns),
                                 "--target", "diagnosis")
    assert code == 0, err
    assert "from --features" in out and "column order is not checked" not in out


def test_an_order_nothing_could_check_is_said_to_be_unchecked(cli, workspace, cancer_files):
    """Without labels the reversed order cannot be caught: the summary must not sound as if it was."""
    x, y, schema, reference = cancer_files
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x.to_numpy(), y)
    code, out, err = _new_cancer(cli, workspace, model, schema, reference, "--features", ",".join(reversed(x.columns)))
    assert code == 0, err
    assert "the column order is not checked: the model has no feature names and no --target was given" in out


def test_reference_columns_give_the_order_only_when_asked_and_only_if_they_fit(cli, workspace, cancer_files):
    x, y, schema, reference = cancer_files
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x.to_numpy(), y)
    code, _, err = _new_cancer(cli, workspace, model, schema, reference, "--features-from-reference")
    assert code == EXIT_CONFIG  # the label column is not a feature: 31 columns for 30 inputs
    assert "the model takes 30 columns" in _one_error_line(err) and "--target" in err
    code, out, err = _new_cancer(cli, workspace, model, schema, reference, "--features-from-reference",
                                 "--target", "diagnosis")
    assert code == 0, err
    assert "from the columns of reference.csv" in out


def test_a_dataframe_model_refuses_another_order(cli, workspace, cancer_files):
    x, y, schema, reference = cancer_files
    model = LogisticRegression(max_iter=5000).fit(x, y)
    code, _, err = _new_cancer(cli, workspace, model, schema, reference, "--features", ",".join(reversed(x.columns)))
    assert code == EXIT_CONFIG
    assert "differ from the columns the model was fitted on" in _one_error_line(err)


@pytest.mark.parametrize(("positive", "expected"), [(None, "name it with --positive-class"),
                                                    ("malignant", "is not one of the model's classes [0, 1]")])
def test_a_classifier_needs_its_positive_class_named(cli, workspace, cancer_files, positive, expected):
    x, y, schema, reference = cancer_files
    model = dump(LogisticRegression(max_iter=5000).fit(x, y), workspace / "model.joblib")
    extra = ["--positive-class", positive] if positive else []
    code, _, err = cli("pipeline", "new", "--pipeline", "cancer", "--model", model, "--schema", schema,
                       "--reference", reference, "--key-field", "patient", *extra)
    assert code == EXIT_CONFIG
    assert expected in _one_error_line(err)


def test_an_existing_version_is_never_overwritten(cli, workspace, cancer_files):
    x, y, schema, reference = cancer_files
    model = LogisticRegression(max_iter=5000).fit(x, y)
    assert _new_cancer(cli, workspace, model, schema, reference)[0] == 0
    manifest = (workspace / "models" / "cancer" / "1.0.0" / "manifest.json").read_bytes()
    code, _, err = _new_cancer(cli, workspace, LogisticRegression(C=0.01, max_iter=5000).fit(x, y), schema,
                               reference)
    assert code == EXIT_CONFIG and "is never overwritten" in _one_error_line(err)
    assert (workspace / "models" / "cancer" / "1.0.0" / "manifest.json").read_bytes() == manifest


def test_a_multiclass_model_is_refused_with_the_reason(cli, workspace):
    x, y = wine()
    schema = write_schema(workspace / "wine.v1.avsc", "Wine", x.columns)
    reference = workspace / "wine.csv"
    x.to_csv(reference, index=False)
    model = dump(LogisticRegression(max_iter=5000).fit(x, y), workspace / "wine.joblib")
    code, _, err = cli("pipeline", "new", "--pipeline", "wine", "--model", model, "--schema", schema,
                       "--reference", reference, "--key-field", "patient", "--positive-class", "1")
    assert code == EXIT_CONFIG
    assert "the model has 3 classes" in _one_error_line(err)


def test_a_float32_schema_field_fails_the_check_and_leaves_nothing_behind(cli, workspace, cancer_files):
    x, y, _, reference = cancer_files
    schema = write_schema(workspace / "tumour.v1.avsc", "Tumour", x.columns, {"mean_area": "float"})
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x, y)
    code, _, err = _new_cancer(cli, workspace, model, schema, reference)
    line = _one_error_line(err)
    assert code == EXIT_CONFIG
    assert "pipeline check: " in line and "reference.csv line " in line and "max difference" in line
    assert "['mean_area'] are Avro floats" in line
    assert not (workspace / "models" / "cancer").exists()
    assert not (workspace / "schemas" / "cancer").exists()


def test_a_regression_model_from_parquet_reference_data(cli, workspace):
    x, y = diabetes()
    schema = write_schema(workspace / "visit.v1.avsc", "Visit", x.columns)
    reference = workspace / "reference.parquet"
    x.assign(progression=y).to_parquet(reference)
    model = dump(HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x.to_numpy(), y),
                 workspace / "hgb.joblib")
    code, out, err = cli("pipeline", "new", "--pipeline", "diabetes", "--model", model, "--schema", schema,
                         "--reference", reference, "--key-field", "patient", "--features-from-reference",
                         "--target", "progression")
    assert code == 0, err
    assert "regression: score = the model's prediction" in out and "R²" in out
    manifest = json.loads((workspace / "models" / "diabetes" / "1.0.0" / "manifest.json").read_text())
    assert manifest["task"] == "regression" and "positive_class" not in manifest
    score = manifest["reference_profile"]["score"]
    assert len(score["bin_fractions"]) == len(score["bin_edges"]) + 1 == 10  # deciles of the predictions
    assert min(score["bin_fractions"]) > 0.05
    pipeline = load_test_pipeline("diabetes", workspace / "schemas", workspace / "models")
    assert pipeline.scorer.path == "lean-hgb"


def test_a_string_feature_needs_its_category_order(cli, workspace):
    x, y = diabetes()
    x = x.assign(sex=np.where(x.sex > 0, "m", "f"))
    schema = write_schema(workspace / "visit.v1.avsc", "Visit", x.columns, {"sex": "string"})
    reference = workspace / "reference.jsonl"
    x.to_json(reference, orient="records", lines=True)
    coded = x.assign(sex=(x.sex == "m").astype(float))  # f=0, m=1
    model = dump(Ridge().fit(coded.to_numpy(), y), workspace / "ridge.joblib")
    argv = ["pipeline", "new", "--pipeline", "diabetes", "--model", model, "--schema", schema, "--reference",
            reference, "--key-field", "patient", "--features-from-reference"]
    code, _, err = cli(*argv)
    assert code == EXIT_CONFIG and "--categories sex=a,b,c" in _one_error_line(err)
    code, _, err = cli(*argv, "--categories", "sex=f,m")
    assert code == 0, err
    manifest = json.loads((workspace / "models" / "diabetes" / "1.0.0" / "manifest.json").read_text())
    sex = next(f for f in manifest["features"] if f["name"] == "sex")
    assert sex == {"name": "sex", "kind": "categorical", "categories": ["f", "m"]}


def test_a_skops_model_needs_its_untrusted_types_named(cli, workspace):
    import skops.io

    x, y = diabetes()
    schema = write_schema(workspace / "visit.v1.avsc", "Visit", x.columns)
    reference = workspace / "reference.csv"
    x.to_csv(reference, index=False)
    model = workspace / "hgb.skops"
    skops.io.dump(HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(x, y), model)
    argv = ["pipeline", "new", "--pipeline", "diabetes", "--model", model, "--schema", schema, "--reference",
            reference, "--key-field", "patient"]
    code, _, err = cli(*argv)
    assert code == EXIT_CONFIG and "needs types skops does not trust by default" in _one_error_line(err)
    needed = skops.io.get_untrusted_types(file=model)
    code, _, err = cli(*argv, *[a for t in needed for a in ("--trusted-type", t)])
    assert code == 0, err
    manifest = json.loads((workspace / "models" / "diabetes" / "1.0.0" / "manifest.json").read_text())
    assert manifest["artifact"] == "model.skops" and manifest["trusted_types"] == sorted(needed)


def test_pipeline_new_can_sign_and_a_worker_with_the_key_loads_it(cli, workspace, cancer_files, monkeypatch):
    from tests.factories import REPO

    x, y, schema, reference = cancer_files
    key = REPO / "tests" / "keys" / "reference-test.key.pem"
    model = LogisticRegression(max_iter=5000).fit(x, y)
    monkeypatch.setenv("WORKERS_TRUSTED_KEYS", str(REPO / "models" / "trusted-keys" / "reference-test.pub.pem"))
    code, out, err = _new_cancer(cli, workspace, model, schema, reference, "--sign-key", key)
    assert code == 0, err
    assert "manifest.json.sig signed by" in out
