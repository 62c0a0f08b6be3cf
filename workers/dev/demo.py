"""The main job end to end: topics, a worker process, events with bad inputs mixed in, a summary."""
from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from workers.core.deadletter import REASON
from workers.dev import fraud_data
from workers.dev.bad_inputs import GOOD, OLD_SCHEMA, SentEvent, plan_kinds, send_kind
from workers.dev.processes import start_worker, stop_worker
from workers.kafka.admin import create_topics
from workers.kafka.consumer import consume
from workers.kafka.producer import EventProducer, paced
from workers.pipelines import load_manifest
from workers.settings import Settings
from workers.tail import describe, human, prediction_codec


def produce_mix(
    settings: Settings, count: int, bad_fraction: float, old_fraction: float,
    seed: int = 1, rate: float | None = None, shift: dict[str, float] | None = None,
) -> list[SentEvent]:
    """Reference fraud events now-ish, with old-schema events and every bad kind mixed in.

    ``shift`` multiplies numeric features (e.g. {"amount": 5}) to simulate input drift.
    """
    manifest, store = load_manifest(settings)
    old_schema = store.get(fraud_data.OLD_SCHEMA)
    now_ms = int(time.time() * 1000)
    events, _ = fraud_data.generate(count, seed, start_ms=now_ms - 60_000, span_ms=60_000)
    for name, factor in (shift or {}).items():
        for event in events:
            event[name] = event[name] * factor
    kinds = plan_kinds(count, bad_fraction, old_fraction, seed)
    with EventProducer(settings, manifest, store, settings.topics.events) as producer:
        return [send_kind(producer, kind, event, old_schema, now_ms)
                for event, kind in paced(zip(events, kinds, strict=True), rate)]


def run_demo(settings: Settings, count: int, bad_fraction: float, old_fraction: float, rate: float | None) -> int:
    topics = settings.topics
    create_topics(settings, topics.all(), configs=topics.configs())
    print(f"topics: {topics.events} -> {topics.predictions} / {topics.dlq} ({settings.partitions} partitions)")

    started = time.monotonic()
    sent = produce_mix(settings, count, bad_fraction, old_fraction, rate=rate)
    produce_s = time.monotonic() - started
    kinds = Counter(s.kind for s in sent)
    print(f"produced {len(sent)} events in {produce_s:.1f}s ({len(sent) / produce_s:,.0f}/s): "
          + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))

    default_log = Path(tempfile.gettempdir()) / f"{settings.topic_prefix or 'workers-'}demo-worker.log"
    log_path = Path(os.environ.get("WORKERS_DEMO_LOG", default_log)).resolve()
    reference_key = settings.models_dir / "trusted-keys" / "reference-test.pub.pem"
    trusted = reference_key.is_file() and not settings.trusted_keys
    verify = {"WORKERS_TRUSTED_KEYS": str(reference_key)} if trusted else {}
    worker = start_worker(settings, log_path, verify)  # the reference model is signed: the worker checks it
    print(f"worker started (pid {worker.pid}, logs in {log_path})")
    codec = prediction_codec(settings)
    predictions = 0
    dead: Counter[str] = Counter()
    first_ts = last_ts = None
    samples: list[str] = []
    try:
        for record in consume(settings, [topics.predictions, topics.dlq], idle_timeout_s=60, max_records=count):
            d = describe(record, codec)
            first_ts = record.timestamp_ms if first_ts is None else min(first_ts, record.timestamp_ms)
            last_ts = record.timestamp_ms if last_ts is None else max(last_ts, record.timestamp_ms)
            if "dead_letter" in d:
                dead[d["dead_letter"][REASON]] += 1
                if dead[d["dead_letter"][REASON]] == 1:
                    samples.append(human(d))
            else:
                predictions += 1
                if predictions <= 3 or (predictions <= 50 and d["prediction"]["flags"] and len(samples) < 12):
                    samples.append(human(d))
            if worker.poll() is not None:
                print(f"worker exited early with code {worker.returncode}; see {log_path}")
                break
    finally:
        code = stop_worker(worker)
    for line in samples:
        print("  " + line)
    expected = Counter(s.expected_reason for s in sent if s.expected_reason)
    span_s = max(1e-3, ((last_ts or 0) - (first_ts or 0)) / 1000)
    print("\nsummary")
    print(f"  events sent        {len(sent)}")
    print(f"  predictions        {predictions}   (expected {kinds[GOOD] + kinds[OLD_SCHEMA]})")
    print(f"  dead letters       {sum(dead.values())}   (expected {sum(expected.values())})")
    for reason in sorted(set(dead) | set(expected)):
        print(f"    {reason:<18} {dead[reason]:>6}   (expected {expected[reason]})")
    print(f"  accounted for      {predictions + sum(dead.values())} / {len(sent)}")
    print(f"  worker throughput  {(predictions + sum(dead.values())) / span_s:,.0f} events/s "
          f"(first to last output, {span_s:.2f}s, backlog drained by 1 worker process)")
    print(f"  worker exit code   {code} (SIGTERM: clean shutdown)")
    ok = predictions == kinds[GOOD] + kinds[OLD_SCHEMA] and dead == expected
    print("\nOK: every event accounted for" if ok else "\nMISMATCH: see above and " + str(log_path))
    return 0 if ok else 1
