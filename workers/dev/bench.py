"""Benchmark on the real broker, side by side in one run (``workers bench``).

* ceiling: the core (decode, validate, score, encode) on pre-encoded events, in-process;
* worker backlog: one worker process drains a pre-filled topic (batch engine, then the
  faust-agent engine on the same backlog, each with its own consumer group and outputs);
* naive: a one-event-per-call faust agent (workers/dev/naive.py) on the same backlog;
* latency: a producer at fixed fractions of the measured backlog rate, end-to-end from
  the event's produce time to the prediction's arrival at a downstream consumer;
* RSS of the worker under the backlog and at steady load.

Throughput is timed from the first to the last output (end offsets polled every 20 ms),
so process start-up is not counted. Prints a table with ratios, writes JSON and a PNG.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers.core.codec import SingleObjectCodec
from workers.core.pipeline import Pipeline
from workers.core.prediction_encoder import PredictionEncoder
from workers.core.records import InputRecord
from workers.core.scoring import Scorer
from workers.core.topics import PipelineTopics
from workers.dev import fraud_data
from workers.dev.processes import cpu_seconds, free_port, rss_mb, start_worker, stop_worker
from workers.dev.warm_start import WorkerProcess
from workers.kafka import clients
from workers.kafka.admin import create_topics, delete_topics_with_prefix
from workers.ops import gc_tuning
from workers.pipelines import load_manifest, load_pipeline
from workers.settings import Settings


@dataclass
class BenchResult:
    events: int
    partitions: int
    batch_size: int
    ceiling_eps: float = 0.0
    ceiling_public_eps: float = 0.0  # the same core, the model's public predict_proba
    worker_eps: float = 0.0
    handwritten_eps: float = 0.0  # the hand-written confluent-kafka batch loop
    agent_engine_eps: float = 0.0
    two_workers_eps: float = 0.0
    naive_eps: float = 0.0
    naive_events: int = 0
    backlog_peak_rss_mb: float = 0.0
    steady_rss_mb: float = 0.0
    latency: list[dict[str, Any]] = field(default_factory=list)
    handwritten_latency: list[dict[str, Any]] = field(default_factory=list)
    cpu_us_per_event: dict[str, float] = field(default_factory=dict)  # contender -> CPU while draining
    drain_cpu_us_by_stage: dict[str, float] = field(default_factory=dict)  # the worker's, from its /metrics
    model_call_ms: dict[str, float] = field(default_factory=dict)  # scoring path -> ms per call

    def ratios(self) -> dict[str, float]:
        lean = self.model_call_ms.get("lean-hgb")
        public = self.model_call_ms.get("public")
        return {
            "worker / ceiling": self.worker_eps / self.ceiling_eps if self.ceiling_eps else 0.0,
            "worker / hand-written loop": self.worker_eps / self.handwritten_eps if self.handwritten_eps else 0.0,
            "worker / naive": self.worker_eps / self.naive_eps if self.naive_eps else 0.0,
            "worker / agent engine": self.worker_eps / self.agent_engine_eps if self.agent_engine_eps else 0.0,
            "two workers / one": self.two_workers_eps / self.worker_eps if self.worker_eps else 0.0,
            **({"model call, public / lean": public / lean} if lean and public else {}),
            **self._cpu_at_load_ratios(),
        }

    def _cpu_at_load_ratios(self) -> dict[str, float]:
        """CPU per event at each load step against CPU per event while draining (1.0: no fixed costs)."""
        draining = self.cpu_us_per_event.get("batch")
        if not draining:
            return {}
        return {f"worker CPU/event at {p['fraction']:.0%} / draining": p["cpu_us_per_event"] / draining
                for p in self.latency if p.get("cpu_us_per_event")}


class _RssWatcher(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._stop_flag = pid, 0.0, threading.Event()
        self.samples: list[float] = []

    def run(self) -> None:
        while not self._stop_flag.is_set():
            rss = rss_mb(self.pid)
            self.peak = max(self.peak, rss)
            self.samples.append(rss)
            time.sleep(0.1)

    def stop(self) -> float:
        self._stop_flag.set()
        return self.peak


def _output_count(consumer: Any, parts: list[Any]) -> int:
    return sum(consumer.end_offsets(parts).values())


STAGE_METRIC = "workers_cpu_seconds_total{"


def read_stage_cpu(metrics_port: int) -> dict[str, float]:
    """A worker's CPU seconds by stage so far (``workers_cpu_seconds_total``); empty if it cannot be read."""
    from urllib.request import urlopen

    try:
        with urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    stages = {}
    for line in text.splitlines():
        if line.startswith(STAGE_METRIC):
            labels, value = line[len(STAGE_METRIC):].rsplit("} ", 1)
            stages[labels.split('stage="', 1)[1].split('"', 1)[0]] = float(value)
    return stages


def per_event_by_stage(before: dict[str, float], after: dict[str, float], events: float) -> dict[str, float]:
    """µs of CPU per event in each stage between two readings of ``read_stage_cpu``."""
    if not before or not after or not events:
        return {}
    return {stage: (after[stage] - before.get(stage, 0.0)) / events * 1e6 for stage in after}


def _time_outputs(settings: Settings, topic: str, expected: int, proc: WorkerProcess, timeout_s: float,
                  pids: list[int] | None = None, metrics_port: int = 0
                  ) -> tuple[float, int, float, dict[str, float]]:
    """Seconds from the first to the ``expected``-th output on ``topic``, the count reached in that
    time, the CPU seconds the processes ``pids`` used meanwhile (start-up not counted), and with
    ``metrics_port`` the worker's CPU per event by stage in that time."""
    pids = pids or [proc.pid]
    from kafka import TopicPartition

    consumer = clients.consumer(settings)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        deadline = time.monotonic() + timeout_s
        first = None
        stages_first: dict[str, float] = {}
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            count = _output_count(consumer, parts)
            now = time.monotonic()
            if count and first is None:
                first = (now, count, sum(cpu_seconds(pid) for pid in pids))
                stages_first = read_stage_cpu(metrics_port) if metrics_port else {}
            if count >= expected:
                break
            time.sleep(0.02)
        if first is None:
            return 0.0, 0, 0.0, {}
        seconds, cpu = time.monotonic() - first[0], sum(cpu_seconds(pid) for pid in pids) - first[2]
        stages_last = read_stage_cpu(metrics_port) if metrics_port else {}
        stages = per_event_by_stage(stages_first, stages_last, count - first[1])
        return seconds, count - first[1], cpu, stages
    finally:
        consumer.close()


def measure_ceiling(pipeline: Pipeline, payloads: list[bytes], keys: list[bytes], batch_size: int) -> float:
    records = [InputRecord(v, k, "bench", 0, i, None, []) for i, (v, k) in enumerate(zip(payloads, keys, strict=True))]
    pipeline.process(records[:batch_size])  # warm-up
    with gc_tuning.tuned():  # the worker's collector settings: the same core, the same runtime
        start = time.perf_counter()
        for i in range(0, len(records), batch_size):
            pipeline.process(records[i : i + batch_size])
        return len(records) / (time.perf_counter() - start)


MODEL_CALL_ROWS = 40  # about one micro-batch at half the backlog rate


def measure_model_call(pipeline: Pipeline, payloads: list[bytes], keys: list[bytes], threads: int,
                       rows: int = MODEL_CALL_ROWS, repeats: int = 300) -> dict[str, float]:
    """ms per scoring call on ``rows`` rows, with the model's public method and the scorer's own path."""
    from threadpoolctl import threadpool_limits

    records = [InputRecord(payloads[i], keys[i], "bench", 0, i, None, []) for i in range(rows)]
    matrix = pipeline.process(records).matrix
    assert matrix is not None
    public = Scorer(pipeline.manifest, pipeline.model.model, lean=False)
    scorers = {"public": public, pipeline.scorer.path: pipeline.scorer}
    timings = {}
    with threadpool_limits(threads):  # as in the worker (WORKERS_MODEL_THREADS)
        for path, scorer in scorers.items():
            scorer.score(matrix)
            start = time.perf_counter()
            for _ in range(repeats):
                scorer.score(matrix)
            timings[path] = (time.perf_counter() - start) / repeats * 1000
    return timings


def _prefill(settings: Settings, topic: str, payloads: list[bytes], keys: list[bytes]) -> None:
    producer = clients.producer(settings, acks="all", linger_ms=20, batch_size=512 * 1024)
    for value, key in zip(payloads, keys, strict=True):
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


WARM_UP_MS = 1000


def _latency_consumer(settings: Settings, topic: str, ready: Any, stop: Any, out: Any) -> None:
    """Own process: receive predictions; per prediction, arrival time minus event time (ms), and
    the prediction record's timestamp (set by the worker's producer) minus event time."""
    import asyncio
    import gc

    from aiokafka import AIOKafkaConsumer

    from workers.kafka.connection import aiokafka_options

    manifest, store = load_manifest(settings)
    codec = SingleObjectCodec(store, store.get(manifest.prediction_schema))
    if PredictionEncoder.fits(codec.reader.definition):  # read the event time alone: the harness stays light
        header = len(codec.header)

        def event_time(value: bytes) -> int:
            return contract_event_time(value, header)
    else:
        def event_time(value: bytes) -> int:
            return int(codec.decode(value)[0]["event_time"])

    async def main() -> tuple[list[float], list[float]]:
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="latest", fetch_max_wait_ms=5,
                                    **aiokafka_options(settings))
        await consumer.start()
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        gc.collect()
        gc.freeze()  # the harness's own collections must not show as latency
        ready.set()
        latencies: list[float] = []
        in_worker: list[float] = []
        first_event_ms = None
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=20)
                arrived = time.time() * 1000
                for messages in batches.values():
                    for m in messages:
                        event_ms = event_time(m.value)
                        first_event_ms = first_event_ms or event_ms
                        if event_ms >= first_event_ms + WARM_UP_MS:  # connections, caches, first batches
                            latencies.append(arrived - event_ms)
                            in_worker.append(m.timestamp - event_ms)
        finally:
            await consumer.stop()
        return latencies, in_worker

    out.put(asyncio.run(main()))


def _varint(value: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = value[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def contract_event_time(value: bytes, pos: int) -> int:
    """The event_time of a prediction in the contract's layout (prediction.v1), its body at
    ``pos``: the fields before it are skipped, not decoded (~3 µs less than fastavro per record)."""
    size, pos = _varint(value, pos)  # event_id
    pos += size
    for union in (True, False, True):  # key, score, label
        if not union:
            pos += 8
        elif value[pos] == 2:
            size, pos = _varint(value, pos + 1)
            pos += size
        else:
            pos += 1
    for _ in range(5):  # model_name, model_version, model_sha256, input_schema_fingerprint, source_topic
        size, pos = _varint(value, pos)
        pos += size
    pos = _varint(value, pos)[1]  # source_partition
    pos = _varint(value, pos)[1]  # source_offset
    return _varint(value, pos)[0]


def _latency_producer(settings: Settings, topic: str, rate: float, seconds: float, seed: int, sending: Any,
                      out: Any) -> None:
    """Own process: offer ``rate`` events/s in 2 ms ticks, event time = the tick's send time.

    aiokafka batches per partition keep the generator's own cost per event small, so the
    measured latency is the worker's and the broker's, not a Python producer's queue.
    """
    import asyncio
    import gc

    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    from workers.kafka.connection import aiokafka_options

    codec = codec_for(settings)
    events, _ = fraud_data.generate(int(rate * seconds), seed)
    partitioner = DefaultPartitioner()
    placed: dict[bytes, int] = {}  # murmur2 is pure Python in aiokafka: once per key
    gc.collect()
    gc.freeze()  # the generated events are long-lived: keep full collections off the send loop

    async def main() -> float:
        producer = AIOKafkaProducer(acks="all", linger_ms=0, **aiokafka_options(settings))
        await producer.start()
        partitions = sorted(await producer.partitions_for(topic))
        sending.set()
        tick = 0.002
        start = time.monotonic()
        sent = 0
        pending = []
        while sent < len(events):
            due = min(len(events), int((time.monotonic() - start) * rate) + 1)
            now_ms = int(time.time() * 1000)
            by_partition: dict[int, Any] = {}
            for event in events[sent:due]:
                event["event_time"] = now_ms
                key = event["account_id"].encode()
                partition = placed.get(key)
                if partition is None:
                    partition = placed[key] = partitioner(key, partitions, partitions)
                batch = by_partition.get(partition) or by_partition.setdefault(partition, producer.create_batch())
                batch.append(key=key, value=codec.encode(event), timestamp=None)
            for partition, batch in by_partition.items():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            sent = due
            await asyncio.sleep(max(0.0, start + (sent / rate) - time.monotonic()) or tick)
        await asyncio.gather(*pending)
        achieved = sent / (time.monotonic() - start)
        await producer.stop()
        return achieved

    out.put(asyncio.run(main()))


def measure_latency(settings: Settings, topics: PipelineTopics, rate: float, seconds: float, seed: int,
                    pid: int | None = None, metrics_port: int = 0) -> dict[str, Any]:
    """End-to-end latency at ``rate`` events/s offered; with ``pid``, that process's CPU per event,
    and with ``metrics_port``, the worker's CPU per event by stage."""
    ctx = multiprocessing.get_context("spawn")
    ready, stop, sending = ctx.Event(), ctx.Event(), ctx.Event()
    latencies_out, achieved_out = ctx.Queue(), ctx.Queue()
    consumer = ctx.Process(target=_latency_consumer, args=(settings, topics.predictions, ready, stop, latencies_out))
    consumer.start()
    ready.wait(30)
    producer = ctx.Process(target=_latency_producer, args=(settings, topics.events, rate,
                                                           seconds + WARM_UP_MS / 1000, seed, sending, achieved_out))
    producer.start()
    sending.wait(60)
    cpu_before = _cpu_jiffies()
    process_cpu = cpu_seconds(pid) if pid else 0.0
    stages_before = read_stage_cpu(metrics_port) if metrics_port else {}
    achieved = achieved_out.get(timeout=seconds + 60)
    cpu_after = _cpu_jiffies()
    process_cpu = cpu_seconds(pid) - process_cpu if pid else 0.0
    stages_after = read_stage_cpu(metrics_port) if metrics_port else {}
    producer.join(10)
    time.sleep(1.0)  # the last predictions arrive
    stop.set()
    received, in_worker = latencies_out.get(timeout=30)
    latencies = np.array(received)
    consumer.join(10)
    point: dict[str, Any] = {"offered_eps": rate, "achieved_eps": achieved, "received": len(latencies)}
    if pid and achieved:
        # what the scoring process spent per event offered while the producer ran
        point["cpu_us_per_event"] = process_cpu / (achieved * (seconds + WARM_UP_MS / 1000)) * 1e6
    by_stage = per_event_by_stage(stages_before, stages_after, achieved * (seconds + WARM_UP_MS / 1000))
    if by_stage:
        point["cpu_us_by_stage"] = by_stage
    if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
        # the whole machine: broker, generator and downstream consumer share it with the worker
        point["machine_cpu_busy"] = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    if not len(latencies):
        return point
    return {
        **point,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "max_ms": float(latencies.max()),
        # event produced -> its prediction handed to the worker's producer; the rest of the
        # latency is the broker and the downstream consumer
        "worker_p50_ms": float(np.percentile(in_worker, 50)),
        "worker_p99_ms": float(np.percentile(in_worker, 99)),
    }


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (Linux only)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def run(base: Settings, *, events: int, naive_events: int, partitions: int, latency_seconds: float,
        load_fractions: list[float], out_dir: Path, seed: int = 7, warm_workers: bool = False) -> BenchResult:
    """The whole benchmark; its topics (~1.4 GB and ~270 partitions a full run) are deleted at the
    end, so that runs in a row measure the same broker, not one growing with every run.

    Workers start as users start them (a new interpreter each) unless ``warm_workers`` forks them
    from the warmed fork server (``warm_start``): the same figures once they read, ~5 s sooner each.
    """
    base = base.model_copy(update={"pipeline": "fraud", "topic_prefix": "", "input_topic": None})
    run_id = f"bench-{os.getpid()}-{int(time.time()) % 100000}-"
    try:
        return _run(base, run_id, events=events, naive_events=naive_events, partitions=partitions,
                    latency_seconds=latency_seconds, load_fractions=load_fractions, out_dir=out_dir, seed=seed,
                    warm_workers=warm_workers)
    finally:
        try:
            deleted = delete_topics_with_prefix(base, run_id)
            print(f"deleted the run's {len(deleted)} topics ({run_id}*)", flush=True)
        except Exception as exc:  # the results stand; the topics are left for the broker's owner
            print(f"could not delete the run's topics ({run_id}*): {type(exc).__name__}: {exc}", flush=True)


def _run(base: Settings, run_id: str, *, events: int, naive_events: int, partitions: int, latency_seconds: float,
         load_fractions: list[float], out_dir: Path, seed: int, warm_workers: bool) -> BenchResult:
    bootstrap = base.bootstrap_servers
    result = BenchResult(events=events, partitions=partitions, batch_size=base.batch_size)
    backlog = f"{run_id}backlog"

    pipeline = load_pipeline(base)
    generated, _ = fraud_data.generate(events, seed, start_ms=int(time.time() * 1000))
    payloads = [pipeline.input_codec.encode(e) for e in generated]
    keys = [e["account_id"].encode() for e in generated]
    result.ceiling_eps = measure_ceiling(pipeline, payloads, keys, base.batch_size)
    public = load_pipeline(base.model_copy(update={"lean_scoring": False}))
    result.ceiling_public_eps = measure_ceiling(public, payloads, keys, base.batch_size)
    print(f"ceiling (in-process core): {result.ceiling_eps:,.0f} events/s "
          f"({result.ceiling_public_eps:,.0f} with the public predict_proba)", flush=True)
    result.model_call_ms = measure_model_call(pipeline, payloads, keys, base.model_threads)
    calls = ", ".join(f"{path} {ms:.2f} ms" for path, ms in result.model_call_ms.items())
    print(f"model call, {MODEL_CALL_ROWS} rows: {calls}", flush=True)

    create_topics(base, [backlog], partitions=partitions)
    _prefill(base, backlog, payloads, keys)
    print(f"backlog: {events} events in {backlog} ({partitions} partitions)", flush=True)

    logs = Path(tempfile.mkdtemp(prefix="workers-bench-"))

    def launch(name: str, settings: Settings, env: dict[str, str], module: str | None) -> WorkerProcess:
        if not module:
            return start_worker(settings, logs / f"{name}.log", env, fresh=not warm_workers)
        full_env = {**os.environ, "WORKERS_BOOTSTRAP_SERVERS": bootstrap, "WORKERS_TOPIC_PREFIX": settings.topic_prefix,
                    "WORKERS_MODELS_DIR": str(base.models_dir), "WORKERS_SCHEMAS_DIR": str(base.schemas_dir), **env}
        with open(logs / f"{name}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", module], env=full_env, stdout=log, stderr=subprocess.STDOUT)

    def drain(name: str, env: dict[str, str], expected: int, module: str | None = None, processes: int = 1,
              metrics_port: int = 0) -> tuple[float, float]:
        settings = base.model_copy(update={"topic_prefix": f"{run_id}{name}-", "input_topic": backlog,
                                           "partitions": partitions})
        topics = settings.topics
        create_topics(settings, [topics.predictions, topics.dlq, topics.audit])
        env = {"WORKERS_INPUT_TOPIC": backlog, "WORKERS_LOG_LEVEL": "WARNING", **env}
        if metrics_port:
            env["WORKERS_METRICS_PORT"] = str(metrics_port)
        proc = launch(name, settings, env, module)
        extra = [start_worker(settings, logs / f"{name}-{i}.log", env, fresh=not warm_workers)
                 for i in range(1, processes)]
        watcher = _RssWatcher(proc.pid)
        watcher.start()
        try:
            seconds, count, cpu, stages = _time_outputs(settings, topics.predictions, expected, proc, timeout_s=600,
                                                        pids=[p.pid for p in [proc, *extra]], metrics_port=metrics_port)
            if stages:
                result.drain_cpu_us_by_stage = stages
        finally:
            peak = watcher.stop()
            for p in [proc, *extra]:
                stop_worker(p)
        if count:
            result.cpu_us_per_event[name] = cpu / count * 1e6
        return (count / seconds if seconds else 0.0), peak

    def cpu_note(name: str) -> str:
        return f", {result.cpu_us_per_event[name]:.0f} us CPU per event" if name in result.cpu_us_per_event else ""

    result.worker_eps, result.backlog_peak_rss_mb = drain("batch", {"WORKERS_ENGINE": "batch"}, events,
                                                          metrics_port=free_port())
    print(f"worker, batch engine: {result.worker_eps:,.0f} events/s (peak RSS {result.backlog_peak_rss_mb:.0f} MB"
          f"{cpu_note('batch')})", flush=True)
    result.handwritten_eps, _ = drain("handwritten", {}, events, module="workers.dev.handwritten")
    print(f"hand-written confluent-kafka loop: {result.handwritten_eps:,.0f} events/s{cpu_note('handwritten')}",
          flush=True)
    result.two_workers_eps, _ = drain("two", {"WORKERS_ENGINE": "batch"}, events, processes=2)
    print(f"two worker processes, one group: {result.two_workers_eps:,.0f} events/s", flush=True)
    result.agent_engine_eps, _ = drain("agent", {"WORKERS_ENGINE": "agent"}, events)
    print(f"worker, faust agent engine: {result.agent_engine_eps:,.0f} events/s", flush=True)
    result.naive_events = naive_events
    result.naive_eps, _ = drain("naive", {}, naive_events, module="workers.dev.naive")
    print(f"naive one-event agent: {result.naive_eps:,.0f} events/s (first {naive_events} events)", flush=True)

    # Latency at fixed offered loads (fractions of the worker's drain rate), each contender on fresh topics.
    for name, module, points in (("latency", None, result.latency),
                                 ("handwritten-latency", "workers.dev.handwritten", result.handwritten_latency)):
        settings = base.model_copy(update={"topic_prefix": f"{run_id}{name}-", "partitions": partitions})
        topics = settings.topics
        create_topics(settings, topics.all(), configs=topics.configs())
        metrics_port = free_port() if module is None else 0  # the worker's CPU by stage
        env = {"WORKERS_LOG_LEVEL": "WARNING", **({"WORKERS_METRICS_PORT": str(metrics_port)} if metrics_port else {})}
        proc = launch(name, settings, env, module)
        watcher = _RssWatcher(proc.pid)
        watcher.start()
        try:
            time.sleep(4)  # joined the group
            for i, fraction in enumerate(load_fractions):
                rate = max(50.0, fraction * result.worker_eps)
                point = measure_latency(settings, topics, rate, latency_seconds, seed + i, pid=proc.pid,
                                        metrics_port=metrics_port)
                point["fraction"] = fraction
                points.append(point)
                print(f"{'worker' if module is None else 'hand-written loop'} latency at {fraction:.0%} "
                      f"({rate:,.0f}/s offered): p50 {point.get('p50_ms', 0):.1f} ms, "
                      f"p95 {point.get('p95_ms', 0):.1f}, p99 {point.get('p99_ms', 0):.1f}, "
                      f"max {point.get('max_ms', 0):.1f}, CPU {point.get('cpu_us_per_event', 0):.0f} us/event",
                      flush=True)
            if module is None:
                result.steady_rss_mb = float(np.median(watcher.samples[-20:])) if watcher.samples else 0.0
        finally:
            watcher.stop()
            stop_worker(proc)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps({**asdict(result), "ratios": result.ratios()}, indent=2))
    plot(result, out_dir / "bench.png")
    return result


def table(result: BenchResult) -> str:
    cpu = result.cpu_us_per_event

    def drained(label: str, eps: float, name: str | None = None) -> str:
        shown = f"{cpu[name]:>9.0f} us/event" if name in cpu else ""
        return f"{label:<40}{eps:>12,.0f}/s{shown}"

    lines = [
        f"{'drain (one process unless said)':<40}{'events/s':>14}{'CPU while draining':>20}",
        drained("ceiling, in-process core (lean scoring)", result.ceiling_eps),
        drained("ceiling, in-process core (public)", result.ceiling_public_eps),
        drained("worker (batch engine)", result.worker_eps, "batch"),
        drained("hand-written confluent-kafka loop", result.handwritten_eps, "handwritten"),
        drained("two workers, one group", result.two_workers_eps, "two"),
        drained("worker (faust agent engine)", result.agent_engine_eps, "agent"),
        drained("naive one-event agent", result.naive_eps, "naive"),
        f"{'worker peak RSS under backlog':<40}{result.backlog_peak_rss_mb:>11,.0f} MB",
        f"{'worker RSS at steady load':<40}{result.steady_rss_mb:>11,.0f} MB",
        *(f"{f'model call, {MODEL_CALL_ROWS} rows ({path})':<40}{ms:>11.2f} ms"
          for path, ms in result.model_call_ms.items()),
    ]
    for name, value in result.ratios().items():
        lines.append(f"{name:<40}{value:>13.2f}x")
    lines.append(f"{'who':<18} {'load':>5} {'offered/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
                 f"{'max ms':>8} {'CPU us/event':>13} {'machine cpu':>12}")
    for who, points in (("worker", result.latency), ("hand-written loop", result.handwritten_latency)):
        for p in points:
            machine = f"{p['machine_cpu_busy']:.0%}" if "machine_cpu_busy" in p else "-"
            lines.append(f"{who:<18} {p['fraction']:>5.0%} {p['offered_eps']:>10,.0f} {p.get('p50_ms', 0):>8.1f} "
                         f"{p.get('p95_ms', 0):>8.1f} {p.get('p99_ms', 0):>8.1f} {p.get('max_ms', 0):>8.1f} "
                         f"{p.get('cpu_us_per_event', 0):>13.0f} {machine:>12}")
    lines += _stage_lines(result)
    return "\n".join(lines)


def _stage_lines(result: BenchResult) -> list[str]:
    """The worker's CPU per event by stage (workers_cpu_seconds_total) while draining and at each load."""
    rows = [("draining", result.drain_cpu_us_by_stage)]
    rows += [(f"{p['fraction']:.0%} load", p["cpu_us_by_stage"]) for p in result.latency if p.get("cpu_us_by_stage")]
    rows = [(label, stages) for label, stages in rows if stages]
    if not rows:
        return []
    names = list(rows[0][1])
    lines = [f"{'worker CPU us/event by stage':<30}" + "".join(f"{n:>9}" for n in names) + f"{'all':>9}"]
    for label, stages in rows:
        lines.append(f"{label:<30}" + "".join(f"{stages.get(n, 0.0):>9.1f}" for n in names)
                     + f"{sum(stages.values()):>9.1f}")
    return lines


def plot(result: BenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = ["ceiling\n(in-process)", "worker\n(batch)", "hand-written\nconfluent loop", "worker\n(faust agent)",
             "naive\n(1 event/call)"]
    values = [result.ceiling_eps, result.worker_eps, result.handwritten_eps, result.agent_engine_eps, result.naive_eps]
    bars = left.bar(names, values, color=["#999999", "#1f77b4", "#ff7f0e", "#6baed6", "#d62728"])
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    left.set_ylabel("events/s (one process)")
    left.set_title("Throughput, backlog drained")
    for who, points, color in (("worker", result.latency, "#1f77b4"),
                               ("hand-written", result.handwritten_latency, "#ff7f0e")):
        measured = [p for p in points if "p50_ms" in p]
        loads = [p["offered_eps"] for p in measured]
        for key, style in (("p50_ms", "o-"), ("p99_ms", "^--")):
            right.plot(loads, [p[key] for p in measured], style, color=color, label=f"{who} {key[:-3]}")
    right.set_xlabel("offered load (events/s)")
    right.set_ylabel("end-to-end latency (ms)")
    right.set_yscale("log")
    right.set_title("Latency vs offered load")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def codec_for(settings: Settings) -> SingleObjectCodec:
    manifest, store = load_manifest(settings)
    return SingleObjectCodec(store, store.get(manifest.input_schema))
