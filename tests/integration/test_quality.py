"""Ground truth on a real broker: labels sent after the predictions are joined to them, and the
live ROC-AUC (``workers quality``) equals the offline ROC-AUC on the same events."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from sklearn.metrics import roc_auc_score

from tests.factories import REPO, load_test_pipeline
from tests.integration.workers_harness import collect, free_port, get, metrics, pipeline_settings, start_observed_worker
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud
from workers.dev.processes import stop_worker
from workers.kafka.producer import EventProducer
from workers.kafka.quality import measure, send_labels
from workers.pipelines import load_manifest

pytestmark = pytest.mark.integration


def test_live_roc_auc_equals_the_offline_one(kafka_bootstrap, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("q") + "-")
    events, truth = fraud.generate(4000, seed=21, start_ms=int(time.time() * 1000) - 1000, span_ms=1000)
    manifest, store = load_manifest(settings)
    with EventProducer(settings, manifest, store, settings.topics.events) as producer:
        for event in events:
            producer.send_event(event)
    worker, worker_port = start_observed_worker(settings, tmp_path / "worker.log", {"WORKERS_LIVE_QUALITY": "true"})
    try:
        out = collect(settings, len(events), worker=worker)
        assert len(out.predictions) == len(events)
        # the labels come later, in another order, with one for an event that was never scored
        labels = [{"event_id": e["event_id"], "label": "fraud" if y else "legit"}
                  for e, y in zip(events, truth, strict=True)]
        send_labels(settings, [*labels[::-1], {"event_id": "no-such-event", "label": "fraud"}])
        deadline = time.monotonic() + 60
        while True:  # the worker joins them to the predictions it made itself
            in_worker = (json.loads(get(worker_port, "/status.json")[1]) or {}).get("live_quality") or {}
            if in_worker.get("counts", {}).get("joined") == len(events) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        auc_sample = f"workers_quality_figure{{figure=roc_auc,model_version={manifest.version}}}"
        pairs_sample = f"workers_quality_figure{{figure=pairs,model_version={manifest.version}}}"
        while (worker_metrics := metrics(worker_port)).get(pairs_sample) != len(events) \
                and time.monotonic() < deadline:
            time.sleep(0.5)  # gauges follow the status within a heartbeat (1 s)
    finally:
        assert stop_worker(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    report = measure(settings, idle_timeout_s=3)

    pipeline = load_test_pipeline(schemas=REPO / "schemas", models=REPO / "models")
    offline = pipeline.process([InputRecord(pipeline.input_codec.encode(e), None, "in", 0, i)
                                for i, e in enumerate(events)])
    scores = [o.prediction["score"] for o in offline.outputs]
    figures = report["by_model_version"][manifest.version]
    assert report["counts"]["joined"] == len(events) and report["pending"] == {"predictions": 0, "labels": 1}
    assert figures["pairs"] == len(events) and figures["positives"] == int(truth.sum())
    assert figures["roc_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert in_worker["by_model_version"][manifest.version]["roc_auc"] == figures["roc_auc"]
    assert in_worker["pending"] == {"predictions": 0, "labels": 1}
    assert worker_metrics[auc_sample] == pytest.approx(figures["roc_auc"])

    # the same through the CLI, from a file
    (tmp_path / "more.jsonl").write_text(json.dumps({"event_id": "x-1", "value": 1.0}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERS_")}
    common = ["--bootstrap-servers", kafka_bootstrap, "--topic-prefix", settings.topic_prefix]
    sent = subprocess.run([sys.executable, "-m", "workers.cli", "labels", "send", "--from",
                           str(tmp_path / "more.jsonl"), *common], capture_output=True, text=True, env=env, timeout=60)
    assert sent.returncode == 0 and "sent 1 labels" in sent.stdout, sent.stderr
    shown = subprocess.run([sys.executable, "-m", "workers.cli", "quality", "--json", "--idle-timeout", "2", *common],
                           capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    again = json.loads(shown.stdout)
    assert again["by_model_version"][manifest.version]["roc_auc"] == figures["roc_auc"]
    assert again["pending"]["labels"] == 2

    # and live: metrics and a status page, until SIGTERM
    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "workers.cli", "quality", "--port", str(port), *common],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            code, body = get(port, "/status.json")
            live = json.loads(body) if code == 200 else {}
            if live.get("counts", {}).get("joined") == len(events) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert live["by_model_version"][manifest.version]["roc_auc"] == figures["roc_auc"]
        samples = metrics(port)
        assert samples[f"workers_quality_figure{{figure=roc_auc,model_version={manifest.version}}}"] == pytest.approx(
            figures["roc_auc"])
        assert samples["workers_label_join_records{outcome=joined}"] == len(events)
        assert b"Live quality" in get(port, "/")[1]
    finally:
        service.terminate()
        assert service.wait(30) == 0, service.stdout.read() if service.stdout else ""
