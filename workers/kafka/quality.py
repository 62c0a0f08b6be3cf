"""Ground truth on Kafka: ``workers labels send`` writes labels, ``workers quality`` joins them.

``workers quality`` reads ``<pipeline>.predictions`` and ``<pipeline>.labels`` from
``window_s`` ago (offsets by time) on every partition, with no consumer group and nothing
committed: a restart rebuilds the same join state from the topics. It joins by event id
(``workers.core.quality``) and reports live quality per model version: once, when the topics
have been idle for ``idle_timeout_s``, or continuously as metrics and a status page
(``--port``). Records it cannot decode are counted, never fatal.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.quality import DEFAULT_WINDOW_S, LABEL_SCHEMA, LABEL_SCHEMA_NAME, LabelJoin, Quality
from workers.errors import ConfigError, DeliveryError
from workers.kafka import clients
from workers.pipelines import load_manifest
from workers.settings import Settings
from workers.tail import prediction_codec

ACK_TIMEOUT_S = 30


def label_codec(settings: Settings) -> SingleObjectCodec:
    store = SchemaStore(settings.schemas_dir)
    return SingleObjectCodec(store, store.add_definition(LABEL_SCHEMA, LABEL_SCHEMA_NAME))


def send_labels(settings: Settings, rows: Iterable[dict[str, Any]]) -> int:
    """Each row: ``event_id`` and ``label`` (a class) or ``value`` (a number), optionally ``label_time``
    (epoch ms; default now). Keyed by event id; acknowledged (acks=all) before this returns."""
    codec, topic = label_codec(settings), settings.topics.labels
    producer = clients.producer(settings, acks="all", client_id="workers-labels")
    sent = 0
    try:
        futures = []
        for row in rows:
            if not row.get("event_id") or (row.get("label") is None) == (row.get("value") is None):
                raise ConfigError(f"a label needs event_id and one of label or value, got {row!r}")
            event_id = str(row["event_id"])
            record: dict[str, Any] = {"event_id": event_id,
                      "label": None if row.get("label") is None else str(row["label"]),
                      "value": None if row.get("value") is None else float(row["value"]),
                      "label_time": int(row.get("label_time") or time.time() * 1000)}
            futures.append(producer.send(topic, key=event_id.encode(), value=codec.encode(record)))
            sent += 1
        producer.flush()
        for future in futures:
            future.get(timeout=ACK_TIMEOUT_S)
    except ConfigError:
        raise
    except Exception as exc:
        raise DeliveryError(f"cannot WRITE labels to topic {topic}: {type(exc).__name__}: {exc} "
                            "(create it with `workers topics create`; the principal needs WRITE on it)") from None
    finally:
        producer.close()
    return sent


def read_label_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (JSON lines: one label per line)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{n}: not a JSON object: {exc}") from None
    return rows


def measure(settings: Settings, window_s: float = DEFAULT_WINDOW_S, idle_timeout_s: float | None = 5.0,
            on_report: Callable[[dict[str, Any]], None] | None = None, report_every_s: float = 1.0,
            stop: threading.Event | None = None) -> dict[str, Any]:
    """Join what the two topics hold from ``window_s`` ago, until they were idle ``idle_timeout_s``
    (None: until ``stop`` is set, handing ``on_report`` the report every ``report_every_s``); the report."""
    from kafka import TopicPartition

    manifest = load_manifest(settings)[0]
    topics = [settings.topics.predictions, settings.topics.labels]
    consumer = clients.consumer(settings, client_id="workers-quality", enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level=settings.isolation_level)
    join = LabelJoin(window_s)
    quality = Quality(manifest.is_classifier, manifest.labels[1] if manifest.is_classifier else None)

    def report() -> dict[str, Any]:
        return {"pipeline": settings.pipeline, "window_s": window_s, "counts": dict(sorted(join.counts.items())),
                "pending": join.pending(), "by_model_version": quality.report()}

    try:
        partitions = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                raise ConfigError(f"topic {topic} does not exist on {settings.bootstrap_servers}, or "
                                  f"{settings.client_name or 'this client'} may not DESCRIBE it")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        since_ms = int((time.time() - window_s) * 1000)
        starts = consumer.offsets_for_times({tp: since_ms for tp in partitions})
        for tp, found_offset in starts.items():
            if found_offset is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found_offset.offset)
        predictions, labels = prediction_codec(settings), label_codec(settings)
        idle_since = reported = time.monotonic()
        while not (stop is not None and stop.is_set()):
            if idle_timeout_s is not None and time.monotonic() - idle_since >= idle_timeout_s:
                break
            batches = consumer.poll(timeout_ms=200)
            if any(batches.values()):
                idle_since = time.monotonic()
            for tp, records in batches.items():
                for record in records:
                    try:
                        if tp.topic == settings.topics.predictions:
                            joined = join.prediction(predictions.decode(record.value)[0])
                        else:
                            value = labels.decode(record.value)[0]
                            truth = value["label"] if value["label"] is not None else value["value"]
                            joined = join.label(value["event_id"], truth, value["label_time"])
                        if joined is not None:
                            quality.add(joined)
                    except Exception:  # a record that cannot be read or used is counted; the join goes on
                        join.counts[f"unusable_{'predictions' if tp.topic == topics[0] else 'labels'}"] += 1
            if on_report is not None and time.monotonic() - reported >= report_every_s:
                reported = time.monotonic()
                on_report(report())
    finally:
        consumer.close()
    return report()


def describe(report: dict[str, Any]) -> list[str]:
    lines = [f"{report['pipeline']}: joined {report['counts'].get('joined', 0)} labels to predictions "
             f"(window {report['window_s']:.0f}s); counts {report['counts']}; waiting {report['pending']}"]
    for version, figures in report["by_model_version"].items():
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in figures.items() if k != "calibration")
        lines.append(f"  {version}: {shown}")
    return lines
