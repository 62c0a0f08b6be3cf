"""The strongest simple alternative: the batch loop a competent engineer writes with confluent-kafka.

Only the benchmark runs it (``python -m workers.dev.handwritten``), as the contender the
worker must beat. It is written the way one would without this project: ``consume(500,
timeout=0.1)``, decode each event with fastavro (skipping the single-object header), build
the rows from the manifest, one public ``predict_proba`` per batch, produce one Avro
prediction per event, ``flush``, then a synchronous commit (at-least-once). Bad records are
skipped and counted: no dead letters, no lineage, no metrics. It reads nothing of the
project's core but the manifest and schema files; its connection (TLS, SASL) comes from the
same ``WORKERS_*`` settings as every other client, so it runs wherever the bench runs.
"""
from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import fastavro
import joblib
import numpy as np
from confluent_kafka import Consumer, Producer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from workers.kafka.connection import librdkafka_options
from workers.settings import Settings

HEADER = 10  # C3 01 + 8-byte fingerprint


def main() -> None:
    env = os.environ
    models, schemas = env["WORKERS_MODELS_DIR"], env["WORKERS_SCHEMAS_DIR"]
    pipeline, prefix = env.get("WORKERS_PIPELINE", "fraud"), env.get("WORKERS_TOPIC_PREFIX", "")
    current = Path(f"{models}/{pipeline}/CURRENT")  # the version served by default, as the worker does
    version = current.read_text().strip() if current.exists() else sorted(os.listdir(f"{models}/{pipeline}"))[-1]
    manifest = json.loads(Path(f"{models}/{pipeline}/{version}/manifest.json").read_text())
    model = joblib.load(f"{models}/{pipeline}/{version}/{manifest['artifact']}")
    reader = fastavro.parse_schema(json.loads(Path(f"{schemas}/{manifest['input_schema']}").read_text()))
    writer = fastavro.parse_schema(json.loads(Path(f"{schemas}/{manifest['prediction_schema']}").read_text()))
    # (name, category codes, value when missing)
    features = [(f["name"], {c: i for i, c in enumerate(f.get("categories", []))}, f.get("impute_value"))
                for f in manifest["features"]]
    positive = list(model.classes_).index(manifest["positive_class"])
    negative_label, positive_label = manifest["labels"]
    threshold = manifest["threshold"]
    # predictions in the same contract as the worker's (single-object encoding), so that the
    # bench's downstream consumer reads both alike
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(writer), "CRC-64-AVRO"))

    source = env.get("WORKERS_INPUT_TOPIC") or f"{prefix}{pipeline}.events"
    sink = f"{prefix}{pipeline}.predictions"
    connection = librdkafka_options(Settings())
    consumer = Consumer({**connection, "group.id": f"{prefix}{pipeline}-handwritten",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({**connection, "acks": "all", "linger.ms": 5, "enable.idempotence": True})
    consumer.subscribe([source])
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    skipped = 0
    while running[0]:
        messages = consumer.consume(500, timeout=0.1)
        if not messages:
            continue
        events: list[dict[str, Any]] = []
        good = []
        for m in messages:
            if m.error():
                continue
            try:
                body = io.BytesIO(m.value() or b"")
                body.seek(HEADER)
                events.append(fastavro.schemaless_reader(body, reader))  # type: ignore[arg-type]
                good.append(m)
            except Exception:
                skipped += 1
        if events:
            rows = np.array([[codes[e[name]] if codes else float(fill if e[name] is None else e[name])
                              for name, codes, fill in features] for e in events], dtype=np.float64)
            scores = model.predict_proba(rows)[:, positive]
            now = int(time.time() * 1000)
            for event, m, score in zip(events, good, scores, strict=True):
                out = io.BytesIO()
                out.write(header)
                fastavro.schemaless_writer(out, writer, {
                    "event_id": event["event_id"], "key": event["account_id"], "score": float(score),
                    "label": positive_label if score >= threshold else negative_label,
                    "model_name": pipeline, "model_version": version,
                    "model_sha256": manifest["artifact_sha256"], "input_schema_fingerprint": "",
                    "source_topic": source, "source_partition": m.partition(), "source_offset": m.offset(),
                    "event_time": event["event_time"], "scored_at": now, "flags": []})
                producer.produce(sink, key=m.key(), value=out.getvalue())
        producer.flush()
        consumer.commit(asynchronous=False)
    consumer.close()


if __name__ == "__main__":
    main()
