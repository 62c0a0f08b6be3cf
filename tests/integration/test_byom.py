"""Bring your own model, the whole path on a real broker: train on diabetes, `pipeline new`,
`pipeline check`, a worker, `produce --from` a file, predictions equal to the model's own."""
from __future__ import annotations

import json

import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from tests.byom_data import diabetes, dump, project, write_schema
from tests.integration.workers_harness import collect, pipeline_settings, worker_env
from workers.cli import main
from workers.dev.processes import start_worker, stop_worker

pytestmark = pytest.mark.integration


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
    capsys.readouterr()
    assert main(["produce", "--pipeline", "diabetes", "--from", str(records), "--bootstrap-servers", kafka_bootstrap,
                 "--topic-prefix", prefix]) == 0, capsys.readouterr().err
    assert f"sent {len(live)} events" in capsys.readouterr().out

    log = tmp_path / "worker.log"
    worker = start_worker(settings, log, worker_env(settings))
    try:
        out = collect(settings, len(live), worker=worker)
    finally:
        assert stop_worker(worker) == 0, log.read_text()[-3000:]
    assert out.dead_letters == [] and len(out.predictions) == len(live)
    offline = dict(zip([f"visit-{i}" for i in range(len(live))], model.predict(live.to_numpy()), strict=True))
    for prediction in out.predictions:
        assert prediction["model_name"] == "diabetes" and prediction["label"] is None
        assert prediction["score"] == pytest.approx(offline[prediction["event_id"]], rel=0, abs=1e-9)
