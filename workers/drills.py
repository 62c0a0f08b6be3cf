"""Fault drills: real worker processes, a real broker, and an account of every event.

Each drill produces a known set of events (every key unique, so each output names its
event), breaks something the way production does, and counts: predictions, dead
letters, lost (sent, never output), duplicated (output more than once), recovery time.
Used by the integration tests (small sizes) and by ``workers drills`` (the report).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workers.core.codec import SchemaStore
from workers.core.registry import ModelRegistry, file_sha256
from workers.demo import start_worker, stop_worker
from workers.producer import EventProducer
from workers.reference import fraud
from workers.settings import Settings
from workers.tail import consume
from workers.topics import PipelineTopics, create_topics

REPO = Path(__file__).resolve().parent.parent


@dataclass
class DrillResult:
    name: str
    sent: int = 0
    predictions: int = 0
    dead_letters: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    peak_rss_mb: float | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    notes: str = ""

    def row(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        rss = "-" if self.peak_rss_mb is None else f"{self.peak_rss_mb:.0f}"
        return (f"{self.name:<16} {self.sent:>7} {self.predictions:>8} {self.dead_letters:>6} {self.lost:>5} "
                f"{self.duplicated:>6} {recovery:>9} {rss:>8}  {self.notes}")


HEADER = (f"{'drill':<16} {'sent':>7} {'predict':>8} {'dlq':>6} {'lost':>5} {'dupes':>6} "
          f"{'recover_s':>9} {'rss_mb':>8}  notes")


class Drill:
    """One drill's topics, producer, workers and the final account."""

    def __init__(self, bootstrap: str, name: str, workdir: Path, *, partitions: int = 4,
                 models_dir: Path | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        prefix = f"drill-{name}-{os.getpid()}-{int(time.time() * 1000) % 10_000_000}-"
        self.settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=partitions,
                                 models_dir=models_dir or REPO / "models", schemas_dir=REPO / "schemas")
        self.topics = PipelineTopics.for_pipeline("fraud", prefix)
        create_topics(self.settings, self.topics.all())
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.workers: list[subprocess.Popen] = []
        self.sent_keys: list[bytes] = []
        self.expected_reason: dict[bytes, str] = {}
        self._producer_done = threading.Event()
        self._producer_error: BaseException | None = None
        self.store = SchemaStore(self.settings.schemas_dir)
        self.manifest = ModelRegistry(self.settings.models_dir, self.store).manifest("fraud")

    # -- producing
    def events(self, count: int, seed: int) -> list[dict]:
        events, _ = fraud.generate(count, seed, start_ms=int(time.time() * 1000))
        for e in events:
            e["account_id"] = f"acct-{e['event_id'][:16]}"  # unique keys: each output names its event
        return events

    def produce(self, events: list[dict], rate: float | None = None, bad: Callable[[int], str | None] | None = None,
                background: bool = False) -> None:
        def run() -> None:
            try:
                with EventProducer(self.settings, self.manifest, self.store, self.topics.events) as producer:
                    start = time.monotonic()
                    for i, event in enumerate(events):
                        if rate:
                            delay = start + i / rate - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                        kind = bad(i) if bad else None
                        sent = producer.send_bad(kind, event) if kind else producer.send_event(event)
                        self.sent_keys.append(sent.key or b"")
                        if sent.expected_reason:
                            self.expected_reason[sent.key or b""] = sent.expected_reason
            except BaseException as exc:  # reported by wait_produced
                self._producer_error = exc
            finally:
                self._producer_done.set()

        self._producer_done.clear()
        if background:
            threading.Thread(target=run, daemon=True).start()
        else:
            run()

    def wait_produced(self, timeout: float = 300) -> None:
        if not self._producer_done.wait(timeout):
            raise TimeoutError("producer did not finish")
        if self._producer_error is not None:
            raise self._producer_error

    # -- workers
    def start_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        worker_env = {"WORKERS_SCHEMAS_DIR": str(self.settings.schemas_dir),
                      "WORKERS_MODELS_DIR": str(self.settings.models_dir), **self.extra_env, **(env or {})}
        proc = start_worker(self.settings, self.workdir / f"{self.name}-worker-{len(self.workers)}.log", worker_env)
        self.workers.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.workers:
            stop_worker(proc)

    # -- accounting
    def outputs(self, timeout_s: float = 120) -> tuple[Counter[bytes], Counter[bytes], Counter[str], float | None]:
        """Read outputs until every sent key has one (or ``timeout_s`` passes without progress)."""
        wanted = set(self.sent_keys)
        predictions: Counter[bytes] = Counter()
        letters: Counter[bytes] = Counter()
        reasons: Counter[str] = Counter()
        last_output_ms = None
        for record in consume(self.settings, [self.topics.predictions, self.topics.dlq], idle_timeout_s=timeout_s):
            key = record.key or b""
            if record.topic == self.topics.dlq:
                letters[key] += 1
                reasons[dict(record.headers).get("dlq.reason", b"?").decode()] += 1
            else:
                predictions[key] += 1
            last_output_ms = record.timestamp_ms
            wanted.discard(key)
            if not wanted:
                break
        return predictions, letters, reasons, last_output_ms

    def account(self, result: DrillResult, timeout_s: float = 120) -> DrillResult:
        predictions, letters, reasons, _ = self.outputs(timeout_s)
        sent = set(self.sent_keys)
        seen = predictions + letters
        result.sent = len(self.sent_keys)
        result.predictions = sum(predictions.values())
        result.dead_letters = sum(letters.values())
        result.lost = len(sent - set(seen))
        result.duplicated = sum(n - 1 for n in seen.values() if n > 1)
        result.reasons = dict(reasons)
        wrong = [k for k, r in self.expected_reason.items() if predictions[k]]
        if wrong:
            result.notes += f" {len(wrong)} bad inputs were scored!"
        return result


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _output_count(drill: Drill) -> int:
    """Predictions + dead letters written so far (end offsets of both topics)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**drill.settings.kafka_client_options())
    try:
        parts = [TopicPartition(t, p) for t in (drill.topics.predictions, drill.topics.dlq)
                 for p in consumer.partitions_for_topic(t) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def _wait_for_outputs(drill: Drill, at_least: int, timeout_s: float = 90) -> float:
    """Block until ``at_least`` outputs exist; returns the seconds waited."""
    start = time.monotonic()
    while _output_count(drill) < at_least and time.monotonic() - start < timeout_s:
        time.sleep(0.2)
    return time.monotonic() - start


# ---------------------------------------------------------------- the drills


def drill_kill9(bootstrap: str, workdir: Path, count: int = 20_000, kills: int = 3, seconds: float = 30) -> DrillResult:
    drill = Drill(bootstrap, "kill9", workdir)
    result = DrillResult(f"kill -9 x{kills}")
    drill.produce(drill.events(count, 1), rate=count / seconds, background=True)  # kills land mid-stream
    worker = drill.start_worker()
    recoveries = []
    for i in range(kills):
        _wait_for_outputs(drill, (i + 1) * count // (kills + 2))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        at_kill = _output_count(drill)
        worker = drill.start_worker()
        recoveries.append(_wait_for_outputs(drill, at_kill + 1))  # restart to its first output
    drill.wait_produced()
    drill.account(result)
    drill.stop_all()
    result.recovery_s = max(recoveries) if recoveries else None
    result.notes = "restart to first new outputs, worst case" + result.notes
    return result


def drill_rebalance(bootstrap: str, workdir: Path, count: int = 20_000, seconds: float = 20) -> DrillResult:
    drill = Drill(bootstrap, "rebalance", workdir, partitions=6)
    result = DrillResult("rebalance")
    drill.produce(drill.events(count, 2), rate=count / seconds, background=True)
    first = drill.start_worker()
    drill.start_worker()
    _wait_for_outputs(drill, count // 4)
    drill.start_worker()  # a third joins mid-stream
    _wait_for_outputs(drill, count // 2)
    started = time.monotonic()
    stop_worker(first)  # one leaves cleanly mid-stream
    result.recovery_s = time.monotonic() - started
    drill.wait_produced()
    drill.account(result)
    drill.stop_all()
    result.notes = "2 workers, +1 joins, 1 leaves (SIGTERM); recover_s = shutdown time" + result.notes
    return result


def drill_broker_restart(bootstrap: str, workdir: Path, restart: Callable[[], None], count: int = 12_000,
                         seconds: float = 20) -> DrillResult:
    drill = Drill(bootstrap, "broker", workdir)
    result = DrillResult("broker restart")
    drill.start_worker()
    _wait_for_outputs(drill, 0)
    drill.produce(drill.events(count, 3), rate=count / seconds, background=True)
    _wait_for_outputs(drill, count // 3)
    started = time.monotonic()
    restart()
    _wait_for_outputs(drill, count // 3 + 500, timeout_s=120)
    result.recovery_s = time.monotonic() - started
    drill.wait_produced()
    drill.account(result, timeout_s=180)
    drill.stop_all()
    result.notes = "broker stopped + started; recover_s = stop to new outputs" + result.notes
    return result


def drill_corrupt_flood(bootstrap: str, workdir: Path, corrupt: int = 20_000, good: int = 2_000) -> DrillResult:
    drill = Drill(bootstrap, "flood", workdir)
    result = DrillResult("corrupt flood")
    kinds = ["garbage", "truncated", "trailing", "unknown_schema", "empty"]
    drill.produce(drill.events(corrupt + good, 4), bad=lambda i: kinds[i % len(kinds)] if i < corrupt else None)
    worker = drill.start_worker()
    drill.account(result)
    result.notes = f"{corrupt} corrupt then {good} good; worker alive: {worker.poll() is None}" + result.notes
    drill.stop_all()
    return result


def faulty_models_dir(workdir: Path, poison_amounts: set[float], delay_s: float) -> Path:
    """A copy of the fraud model wrapped in FaultyModel, with a manifest to match."""
    import joblib

    from workers.testing import FaultyModel

    models = workdir / "faulty-models"
    source = REPO / "models" / "fraud" / "1.0.0"
    target = models / "fraud" / "1.0.0-faulty"
    shutil.rmtree(models, ignore_errors=True)
    target.mkdir(parents=True)
    base = joblib.load(source / "model.joblib")
    joblib.dump(FaultyModel(base, column=0, poison_values=poison_amounts, delay_s=delay_s), target / "model.joblib")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(version="1.0.0-faulty", artifact_sha256=file_sha256(target / "model.joblib"))
    (target / "manifest.json").write_text(json.dumps(manifest))
    return models


def drill_faulty_model(bootstrap: str, workdir: Path, count: int = 20_000, poison_every: int = 500,
                       delay_s: float = 0.02) -> DrillResult:
    events_seed = 5
    probe = Drill(bootstrap, "faulty", workdir)
    events = probe.events(count, events_seed)
    poison = {events[i]["amount"] for i in range(0, count, poison_every)}
    poisoned_keys = {e["account_id"].encode() for e in events if e["amount"] in poison}
    models = faulty_models_dir(workdir, poison, delay_s)
    drill = Drill(bootstrap, "faulty", workdir, models_dir=models)
    result = DrillResult("raising+slow model")
    drill.produce(events)  # a backlog: the worker must not buffer it all in memory
    worker = drill.start_worker()
    peak = 0.0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(worker.pid))
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    predictions, letters, reasons, _ = drill.outputs()
    done.set()
    drill.stop_all()
    result.sent = len(drill.sent_keys)
    result.predictions = sum(predictions.values())
    result.dead_letters = sum(letters.values())
    seen = predictions + letters
    result.lost = len(set(drill.sent_keys) - set(seen))
    result.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    result.reasons = dict(reasons)
    result.peak_rss_mb = peak
    wrong = set(letters) ^ poisoned_keys
    result.notes = (f"{len(poisoned_keys)} poisoned rows, {delay_s * 1000:.0f} ms/call; "
                    f"dead letters = poisoned rows: {not wrong}")
    return result


def drill_sigterm(bootstrap: str, workdir: Path, count: int = 20_000, seconds: float = 20, stops: int = 2
                  ) -> DrillResult:
    drill = Drill(bootstrap, "sigterm", workdir)
    result = DrillResult(f"SIGTERM x{stops}")
    drill.produce(drill.events(count, 6), rate=count / seconds, background=True)
    worker = drill.start_worker()
    shutdowns = []
    for i in range(stops):
        _wait_for_outputs(drill, (i + 1) * count // (stops + 2))
        _wait_for_outputs(drill, _output_count(drill) + 1)  # this worker is up and scoring
        started = time.monotonic()
        code = stop_worker(worker)
        shutdowns.append(time.monotonic() - started)
        if code != 0:
            result.notes += f" exit code {code}!"
        worker = drill.start_worker()
    drill.wait_produced()
    drill.account(result)
    drill.stop_all()
    result.recovery_s = max(shutdowns)
    result.notes = "recover_s = worst clean shutdown time" + result.notes
    return result


def local_broker_restart(port: str) -> Callable[[], None]:
    script = REPO / "scripts" / "kafka-local"

    def restart() -> None:
        subprocess.run([sys.executable, str(script), "stop", "--port", port], check=True, capture_output=True)
        time.sleep(2)
        subprocess.run([sys.executable, str(script), "start", "--port", port], check=True, capture_output=True)

    return restart


def run_report(bootstrap: str, quick: bool, broker_port: str | None) -> list[DrillResult]:
    scale = 0.3 if quick else 1.0
    n = int(20_000 * scale)
    with tempfile.TemporaryDirectory(prefix="workers-drills-") as tmp:
        workdir = Path(tmp)
        drills: list[Callable[[], DrillResult]] = [
            lambda: drill_kill9(bootstrap, workdir, count=n),
            lambda: drill_rebalance(bootstrap, workdir, count=n),
            lambda: drill_corrupt_flood(bootstrap, workdir, corrupt=n, good=n // 10),
            lambda: drill_faulty_model(bootstrap, workdir, count=n),
            lambda: drill_sigterm(bootstrap, workdir, count=n),
        ]
        if broker_port:
            drills.insert(2, lambda: drill_broker_restart(bootstrap, workdir, local_broker_restart(broker_port),
                                                          count=int(12_000 * scale)))
        print(HEADER, flush=True)
        results = []
        for run in drills:
            result = run()
            print(result.row(), flush=True)
            results.append(result)
        return results
