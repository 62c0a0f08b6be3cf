"""Bring your own model, the whole path on a real broker: train (diabetes regression, wine
classification), `pipeline new`, `pipeline check`, a worker, `produce --from` a file,
predictions equal to the model's own."""
from __future__ import annotations

import json

import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.byom_data import diabetes, dump, project, wine, write_schema
from tests.integration.workers_harness import collect, pipeline_settings, worker_env
from workers.cli import main
from workers.dev.processes import start_worker, stop_worker

pytestmark = pytest.mark.integration


def _produce_from_and_score(settings, records, count: int, capsys, tmp_path):
    """`workers produce --from` the file, then a worker scores it: every event predicted, none dead-lettered."""
    capsys.readouterr()
    assert main(["produce", "--pipeline", settings.pipeline, "--from", str(records), "--bootstrap-servers",
                 settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix]) == 0, capsys.readouterr().err
    assert f"sent {count} events" in capsys.readouterr().out
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log, worker_env(settings))
    try:
        out = collect(settings, count, worker=worker)
    finally:
        assert stop_worker(worker) == 0, log.read_text()[-3000:]
    assert out.dead_letters == [] and len(out.predictions) == count
    return out


def test_a_model_brought_by_its_user_streams_and_scores_as_it_does_offline(kafka_bootstrap, unique_name, tmp_path,
                                                                          monkeypatch, capsys):
    schemas, models = project(tmp_path)
    monkeypatch.setenv("WORKERS_SCHEMAS_DIR", str(schemas))
    monkeypatch.setenv("WORKERS_MODELS_DIR", str(models))
    x, y = diabetes()
    train, live = x.iloc[:350], x.iloc[350:]
    model = HistGradientBoostingRegressor(max_iter=60, random_state=0).fit(train.to_numpy(), y.iloc[:350])
    reference = tmp_path / "train.csv"
    train.assign(progression=y.iloc[:350]).to_csv(reference, index=False)
    assert main(["pipeline", "new", "--pipeline", "diabetes", "--model", str(dump(model, tmp_path / "m.joblib")),
                 "--schema", str(write_schema(tmp_path / "visit.v1.avsc", "Visit", x.columns)),
                 "--reference", str(reference), "--key-field", "patient", "--features-from-reference",
                 "--target", "progression", "--no-bounds"]) == 0, capsys.readouterr().err
    assert main(["pipeline", "check", "--pipeline", "diabetes"]) == 0, capsys.readouterr().err

    prefix = unique_name("byom") + "-"
    settings = pipeline_settings(kafka_bootstrap, prefix, pipeline="diabetes", schemas_dir=schemas, models_dir=models)
    records = tmp_path / "visits.jsonl"
    with open(records, "w") as f:
        for i, row in enumerate(live.to_dict("records")):
            f.write(json.dumps({"event_id": f"visit-{i}", "patient": f"p-{i % 7}", **row}) + "\n")
    out = _produce_from_and_score(settings, records, len(live), capsys, tmp_path)
    offline = dict(zip([f"visit-{i}" for i in range(len(live))], model.predict(live.to_numpy()), strict=True))
    for prediction in out.predictions:
        assert prediction["model_name"] == "diabetes" and prediction["label"] is None
        assert prediction["score"] == pytest.approx(offline[prediction["event_id"]], rel=0, abs=1e-9)


def test_a_classifier_brought_by_its_user_labels_events_as_it_does_offline(kafka_bootstrap, unique_name, tmp_path,
                                                                         monkeypatch, capsys):
    """Wine as a binary question (is it cultivar 0?), a scaled logistic regression fitted on a
    DataFrame (the column order comes from the model), events produced from a CSV file."""
    schemas, models = project(tmp_path)
    monkeypatch.setenv("WORKERS_SCHEMAS_DIR", str(schemas))
    monkeypatch.setenv("WORKERS_MODELS_DIR", str(models))
    x, y = wine()
    cultivar = (y == 0).map({True: "barolo", False: "other"})
    order = x.sample(frac=1.0, random_state=3).index  # the data set is sorted by class
    train, live = x.loc[order[:140]], x.loc[order[140:]]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(train, cultivar.loc[train.index])
    reference = tmp_path / "train.csv"
    train.assign(cultivar=cultivar.loc[train.index]).to_csv(reference, index=False)
    assert main(["pipeline", "new", "--pipeline", "wine", "--model", str(dump(model, tmp_path / "m.joblib")),
                 "--schema", str(write_schema(tmp_path / "bottle.v1.avsc", "Bottle", x.columns, key="cellar")),
                 "--reference", str(reference), "--key-field", "cellar", "--target", "cultivar", "--no-bounds",
                 "--positive-class", "barolo", "--labels", "other,barolo"]) == 0, capsys.readouterr().err
    assert main(["pipeline", "check", "--pipeline", "wine"]) == 0, capsys.readouterr().err

    prefix = unique_name("byom-wine") + "-"
    settings = pipeline_settings(kafka_bootstrap, prefix, pipeline="wine", schemas_dir=schemas, models_dir=models)
    records = tmp_path / "bottles.csv"
    ids = [f"bottle-{i}" for i in range(len(live))]
    live.assign(event_id=ids, cellar=[f"c-{i % 5}" for i in range(len(live))]).to_csv(records, index=False)
    out = _produce_from_and_score(settings, records, len(live), capsys, tmp_path)
    positive = list(model.classes_).index("barolo")
    scores = dict(zip(ids, model.predict_proba(live)[:, positive], strict=True))
    labels = dict(zip(ids, model.predict(live), strict=True))
    assert {"barolo", "other"} <= set(labels.values())  # both answers occur, so a swapped label would show
    for prediction in out.predictions:
        assert prediction["model_name"] == "wine"
        assert prediction["score"] == pytest.approx(scores[prediction["event_id"]], rel=0, abs=1e-9)
        assert prediction["label"] == labels[prediction["event_id"]]
