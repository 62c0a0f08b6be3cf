"""The main job end to end: topics, a worker process, events with bad inputs mixed in, a summary."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from workers.core.codec import SchemaStore
from workers.core.registry import ModelRegistry
from workers.producer import EventProducer, SentEvent, plan_kinds
from workers.reference import fraud
from workers.settings import Settings
from workers.tail import consume, describe, human, prediction_codec
from workers.topics import PipelineTopics, create_topics


def produce_mix(
    settings: Settings, topics: PipelineTopics, count: int, bad_fraction: float, old_fraction: float,
    seed: int = 1, rate: float | None = None, shift: dict[str, float] | None = None,
) -> list[SentEvent]:
    """Reference fraud events now-ish, with old-schema events and every bad kind mixed in.

    ``shift`` multiplies numeric features (e.g. {"amount": 5}) to simulate input drift.
    """
    from workers.producer import paced

    store = SchemaStore(settings.schemas_dir)
    manifest = ModelRegistry(settings.models_dir, store).manifest(settings.pipeline)
    old_schema = store.get("fraud/transaction.v1.avsc")
    now_ms = int(time.time() * 1000)
    events, _ = fraud.generate(count, seed, start_ms=now_ms - 60_000, span_ms=60_000)
    for name, factor in (shift or {}).items():
        for event in events:
            event[name] = event[name] * factor
    kinds = plan_kinds(count, bad_fraction, old_fraction, seed)
    with EventProducer(settings, manifest, store, topics.events) as producer:
        return [producer.send_kind(kind, event, old_schema, now_ms)
                for event, kind in paced(zip(events, kinds, strict=True), rate)]


def start_worker(settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        "WORKERS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "WORKERS_PIPELINE": settings.pipeline,
        "WORKERS_TOPIC_PREFIX": settings.topic_prefix,
        **(extra_env or {}),
    }
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop_worker(proc: subprocess.Popen, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def run_demo(settings: Settings, count: int, bad_fraction: float, old_fraction: float, rate: float | None) -> int:
    topics = PipelineTopics.for_pipeline(settings.pipeline, settings.topic_prefix)
    create_topics(settings, topics.all())
    print(f"topics: {topics.events} -> {topics.predictions} / {topics.dlq} ({settings.partitions} partitions)")

    started = time.monotonic()
    sent = produce_mix(settings, topics, count, bad_fraction, old_fraction, rate=rate)
    produce_s = time.monotonic() - started
    kinds = Counter(s.kind for s in sent)
    print(f"produced {len(sent)} events in {produce_s:.1f}s ({len(sent) / produce_s:,.0f}/s): "
          + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))

    default_log = Path(tempfile.gettempdir()) / f"{settings.topic_prefix or 'workers-'}demo-worker.log"
    log_path = Path(os.environ.get("WORKERS_DEMO_LOG", default_log)).resolve()
    worker = start_worker(settings, log_path)
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
                dead[d["dead_letter"]["dlq.reason"]] += 1
                if dead[d["dead_letter"]["dlq.reason"]] == 1:
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
    print(f"  predictions        {predictions}   (expected {kinds['good'] + kinds['old_schema']})")
    print(f"  dead letters       {sum(dead.values())}   (expected {sum(expected.values())})")
    for reason in sorted(set(dead) | set(expected)):
        print(f"    {reason:<18} {dead[reason]:>6}   (expected {expected[reason]})")
    print(f"  accounted for      {predictions + sum(dead.values())} / {len(sent)}")
    print(f"  worker throughput  {(predictions + sum(dead.values())) / span_s:,.0f} events/s "
          f"(first to last output, {span_s:.2f}s, backlog drained by 1 worker process)")
    print(f"  worker exit code   {code} (SIGTERM: clean shutdown)")
    ok = predictions == kinds["good"] + kinds["old_schema"] and dead == expected
    print("\nOK: every event accounted for" if ok else "\nMISMATCH: see above and " + str(log_path))
    return 0 if ok else 1
