"""The same records through the stream worker, ``workers score`` and ``workers serve``: the same answers.

Good events, events written with the previous schema version (a feature imputed), and every
bad kind that a row can carry as well as an Avro payload (a null required feature, NaN, a
value out of range, an unknown category, late, in the future): identical scores (to the
bit), labels, flags and dead-letter reasons and messages on all three paths.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pyarrow.parquet as pq
import pytest

from tests.integration.workers_harness import collect, free_port, pipeline_settings, worker_env
from workers.core.codec import SchemaStore
from workers.core.deadletter import headers_dict
from workers.dev import fraud_data as fraud
from workers.dev.processes import start_worker, stop_worker
from workers.kafka.producer import EventProducer
from workers.pipelines import load_pipeline

pytestmark = pytest.mark.integration

SPOILED = {
    "missing": ({"distance_from_home_km": None}, "missing_field"),
    "nan": ({"amount": math.nan}, "invalid_value"),
    "range": ({"account_age_days": -4}, "invalid_value"),
    "category": ({"merchant_category": "zoo"}, "invalid_value"),
    "late": ({"event_time": -7_200_000}, "late"),  # relative to now
    "future": ({"event_time": 7_200_000}, "future_timestamp"),
}


def _plan(now: int, n: int = 240) -> list[tuple[str, dict]]:
    events, _ = fraud.generate(n, seed=31, start_ms=now - 20_000, span_ms=10_000)
    kinds = ["good", "good", "old_schema", *SPOILED]
    plan = []
    for i, event in enumerate(events):
        kind = kinds[i % len(kinds)]
        if kind == "old_schema":
            event = {k: v for k, v in event.items() if k != "device_trust_score"}
        elif kind in SPOILED:
            change = dict(SPOILED[kind][0])
            if "event_time" in change:
                change["event_time"] += now
            event = {**event, **change}
        plan.append((kind, event))
    return plan


def _serve_answers(port: int, plan: list[tuple[str, dict]], types: dict[str, str]) -> dict[str, tuple]:
    out = {}
    for _, event in plan:
        body = {"id": event["event_id"], "inputs": [
            {"name": name, "shape": [1], "datatype": types[name], "data": [value]} for name, value in event.items()]}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/fraud/infer",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read())
            assert exc.code == 422, answer
            rejected = answer["rejected"][0]
            out[event["event_id"]] = ("dead", rejected["reason"], rejected["message"])
            continue
        tensors = {o["name"]: o["data"][0] for o in answer["outputs"]}
        out[event["event_id"]] = ("scored", tensors["score"], tensors["label"],
                                  sorted(filter(None, tensors["flags"].split(","))))
    return out


def test_stream_batch_and_http_give_the_same_answers(kafka_bootstrap, unique_name, tmp_path):
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    pipeline = load_pipeline(settings)
    store = SchemaStore(settings.schemas_dir)
    old_schema = store.get(fraud.OLD_SCHEMA)
    now = int(time.time() * 1000)
    plan = _plan(now)
    env = {**os.environ, **worker_env(settings)}

    # 1. the stream worker
    with EventProducer(settings, pipeline.manifest, store, settings.topics.events) as producer:
        for kind, event in plan:
            producer.send_event(event, writer=old_schema if kind == "old_schema" else None)
    worker = start_worker(settings, tmp_path / "worker.log", worker_env(settings))
    try:
        out = collect(settings, len(plan), worker=worker)
    finally:
        stop_worker(worker)
    stream = {p["event_id"]: ("scored", p["score"], p["label"], sorted(p["flags"])) for p in out.predictions}
    for letter in out.dead_letters:
        headers = headers_dict(letter.headers)
        event_id = _event_id_of_dead_letter(letter, pipeline)
        stream[event_id] = ("dead", headers["dlq.reason"], headers["dlq.error.message"])
    assert len(stream) == len(plan)

    # 2. workers score, JSON lines in, Parquet out
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for _, e in plan))
    result = subprocess.run([sys.executable, "-m", "workers.cli", "score", str(source), str(tmp_path / "p.parquet")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    batch = {p["event_id"]: ("scored", p["score"], p["label"], sorted(p["flags"]))
             for p in pq.read_table(tmp_path / "p.parquet").to_pylist()}
    for line in (tmp_path / "p.dlq.jsonl").read_text().splitlines():
        letter = json.loads(line)
        event_id = json.loads(letter["record"])["event_id"]
        batch[event_id] = ("dead", letter["reason"], letter["error.message"])

    # 3. workers serve, one request per record
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "workers.cli", "serve", "--port", str(port)], env=env,
                              stdout=(tmp_path / "serve.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, server)
        meta = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/fraud", timeout=5).read())
        types = {i["name"]: i["datatype"] for i in meta["inputs"]}
        http = _serve_answers(port, plan, types)
    finally:
        server.terminate()
        server.wait(20)

    # messages of late and future events name how far off the clock was when each path scored them
    assert _timeless(batch) == _timeless(stream)
    assert _timeless(http) == _timeless(stream)
    kinds = {kind: stream[e["event_id"]] for kind, e in plan}
    assert kinds["old_schema"][3] == ["imputed"]
    assert {kinds[k][1] for k in SPOILED} == {reason for _, reason in SPOILED.values()}
    assert sum(1 for v in stream.values() if v[0] == "scored") == sum(1 for k, _ in plan if k not in SPOILED)


def _timeless(answers: dict[str, tuple]) -> dict[str, tuple]:
    return {k: (v[0], v[1], re.sub(r"\d+\.\ds ", "N s ", v[2])) if v[0] == "dead" else v for k, v in answers.items()}


def _event_id_of_dead_letter(letter, pipeline) -> str:
    """A dead letter's value is the original Avro payload: decode it (without the checks) for its event id."""
    event, _ = pipeline.input_codec.decode(letter.value)
    return str(event["event_id"])


def _wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "workers serve exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("workers serve not ready")
