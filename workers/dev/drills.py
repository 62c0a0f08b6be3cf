"""Fault drills: real worker processes, a real broker, and an account of every event.

Each drill produces a known set of events (every key unique, so each output names its
event), breaks something the way production does, and counts: predictions, dead
letters, lost (sent, never output), duplicated (output more than once), recovery time.
Used by the integration tests (small sizes) and by ``workers drills`` (the report).
"""
from __future__ import annotations

import contextlib
import itertools
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

from workers.core import reasons
from workers.core.deadletter import REASON
from workers.core.registry import file_sha256
from workers.dev import fraud_data, lost_events
from workers.dev.bad_inputs import BAD_KINDS, INVALID_UTF8_KEY, corrupt_variant
from workers.dev.processes import rss_mb, start_worker, stop_worker
from workers.dev.warm_start import WorkerProcess
from workers.errors import EXIT_RUNTIME
from workers.kafka.admin import create_topics, topic_config
from workers.kafka.clients import admin_client
from workers.kafka.consumer import consume, end_offsets_total
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest
from workers.settings import Settings

REPO = Path(__file__).resolve().parents[2]  # the checkout: scripts/kafka-local
GATE_TIMEOUT_S = 300.0  # a paused stream that is never resumed fails the drill instead of hanging it
ASSIGNED = "partitions assigned"  # the worker's log line once it owns partitions and reads


@dataclass
class DrillResult:
    name: str
    sent: int = 0
    predictions: int = 0
    dead_letters: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    stopped_s: float | None = None  # the longest time without any output while events were waiting
    peak_rss_mb: float | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    problems: list[str] = field(default_factory=list)  # anything besides lost events that fails the drill

    @property
    def passed(self) -> bool:
        return self.lost == 0 and not self.problems

    def row(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        stopped = "-" if self.stopped_s is None else f"{self.stopped_s:.1f}"
        rss = "-" if self.peak_rss_mb is None else f"{self.peak_rss_mb:.0f}"
        return (f"{self.name:<19} {self.sent:>7} {self.predictions:>8} {self.dead_letters:>6} {self.lost:>5} "
                f"{self.duplicated:>6} {recovery:>9} {stopped:>9} {rss:>7}  {self.notes}"
                + "".join(f"; FAILED: {p}" for p in self.problems))


HEADER = (f"{'drill':<19} {'sent':>7} {'predict':>8} {'dlq':>6} {'lost':>5} {'dupes':>6} "
          f"{'recover_s':>9} {'stopped_s':>9} {'rss_mb':>7}  notes")


PREFIXES: list[str] = []  # the topic prefix of every drill this process made (delete_drill_topics)


def delete_drill_topics(base: Settings) -> None:
    """The topics of this process's drills: a broker kept across runs would otherwise collect
    hundreds of partitions and their data each time, and slow down."""
    prefixes = tuple(PREFIXES)
    if not prefixes:
        return
    with admin_client(base) as admin:
        ours = [t for t in admin.list_topics() if t.startswith(prefixes)]
        if ours:
            admin.delete_topics(ours)
        deadline = time.monotonic() + 30  # until the broker stops listing them
        while any(t.startswith(prefixes) for t in admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.1)
    PREFIXES.clear()


class Drill:
    """One drill's topics, producer, workers and the final account."""

    def __init__(self, base: Settings, name: str, workdir: Path, *, partitions: int = 4,
                 models_dir: Path | None = None, extra_env: dict[str, str] | None = None,
                 topic_config: dict[str, dict[str, str]] | None = None, without: tuple[str, ...] = ()) -> None:
        """``topic_config``: per-topic configs by role (events, predictions, dlq); ``without``: roles not created."""
        self.name = name
        prefix = f"drill-{name}-{os.getpid()}-{int(time.time() * 1000) % 10_000_000}-"
        PREFIXES.append(prefix)
        self.settings = base.model_copy(update={
            "pipeline": "fraud", "topic_prefix": prefix, "partitions": partitions, "input_topic": None,
            "models_dir": models_dir or base.models_dir})
        self.topics = self.settings.topics
        for role in ("events", "predictions", "dlq", "audit"):
            if role not in without:
                create_topics(self.settings, [getattr(self.topics, role)], config=(topic_config or {}).get(role))
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.workers: list[WorkerProcess] = []
        self.worker_logs: list[Path] = []
        self.sent_keys: list[bytes] = []
        self.expected_reason: dict[bytes, str] = {}
        self._producer_done = threading.Event()
        self._producer_error: BaseException | None = None
        self.manifest, self.store = load_manifest(self.settings)

    # -- producing
    def events(self, count: int, seed: int) -> list[dict]:
        events, _ = fraud_data.generate(count, seed, start_ms=int(time.time() * 1000))
        for e in events:
            e["account_id"] = f"acct-{e['event_id'][:16]}"  # unique keys: each output names its event
        return events

    def produce(self, events: list[dict], rate: float | None = None, bad: Callable[[int], str | None] | None = None,
                background: bool = False, gate: threading.Event | None = None) -> None:
        """``rate``: events per second; ``gate``: the stream pauses while it is clear (e.g. while no
        worker is up) and goes on at ``rate`` when it is set again, without a catch-up burst."""
        def run() -> None:
            try:
                with EventProducer(self.settings, self.manifest, self.store, self.topics.events) as producer:
                    next_at = time.monotonic()
                    for i, event in enumerate(events):
                        if gate is not None and not gate.is_set():
                            if not gate.wait(GATE_TIMEOUT_S):
                                raise TimeoutError(f"the stream stayed paused for {GATE_TIMEOUT_S:.0f} s")
                            next_at = time.monotonic()
                        if rate:
                            delay = next_at - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                            next_at += 1 / rate
                        kind = bad(i) if bad else None
                        key = producer.key_of(event) or b""
                        if kind:
                            value = corrupt_variant(kind, event, producer.codec, self.manifest, os.urandom(64),
                                                    int(time.time() * 1000))
                            producer.send_raw(value, key)
                            self.expected_reason[key] = BAD_KINDS[kind]
                        else:
                            producer.send_event(event)
                        self.sent_keys.append(key)
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
    def produce_raw(self, value: bytes, key: bytes, expected_reason: str) -> tuple[int, int]:
        """One record as is; returns its (partition, offset)."""
        with EventProducer(self.settings, self.manifest, self.store, self.topics.events) as producer:
            metadata = producer.send_raw(value, key).get(timeout=30)
        self.sent_keys.append(key)
        self.expected_reason[key] = expected_reason
        return metadata.partition, metadata.offset

    def start_worker(self, env: dict[str, str] | None = None) -> WorkerProcess:
        worker_env = {"WORKERS_SCHEMAS_DIR": str(self.settings.schemas_dir),
                      "WORKERS_MODELS_DIR": str(self.settings.models_dir), **self.extra_env, **(env or {})}
        log = self.workdir / f"{self.name}-worker-{len(self.workers)}.log"
        proc = start_worker(self.settings, log, worker_env)
        self.workers.append(proc)
        self.worker_logs.append(log)
        return proc

    def stop_all(self) -> None:
        for proc in self.workers:
            stop_worker(proc)

    # -- accounting
    def wait_for_dead_letters(self, count: int, timeout_s: float = 60) -> None:
        """Until ``count`` dead letters are on the dead-letter topic."""
        seen = 0
        for _ in consume(self.settings, [self.topics.dlq], idle_timeout_s=timeout_s):
            seen += 1
            if seen >= count:
                return
        raise TimeoutError(f"{seen} of {count} dead letters, and none for {timeout_s:.0f} s")

    def outputs(self, timeout_s: float = 120, read_all: bool = False
                ) -> tuple[Counter[bytes], Counter[bytes], Counter[str], float | None]:
        """Read outputs until every sent key has one (``read_all``: until none arrives for ``timeout_s``)."""
        wanted = set(self.sent_keys)
        predictions: Counter[bytes] = Counter()
        letters: Counter[bytes] = Counter()
        reasons: Counter[str] = Counter()
        last_output_ms = None
        self.output_times_ms: list[int] = []
        for record in consume(self.settings, [self.topics.predictions, self.topics.dlq], idle_timeout_s=timeout_s):
            self.output_times_ms.append(record.timestamp_ms)
            key = record.key or b""
            if record.topic == self.topics.dlq:
                letters[key] += 1
                reasons[dict(record.headers).get(REASON, b"?").decode()] += 1
            else:
                predictions[key] += 1
            last_output_ms = record.timestamp_ms
            wanted.discard(key)
            if not wanted and not read_all:
                break
        return predictions, letters, reasons, last_output_ms

    def explain_lost(self, lost: set[bytes]) -> list[str]:
        """Where the lost events are (lost_events.explain), while the workers are still as they were."""
        return lost_events.explain(self.settings, lost, self.workers, self.worker_logs)

    def longest_pause_s(self) -> float:
        """The longest gap between two consecutive outputs (broker timestamps)."""
        times = sorted(self.output_times_ms)
        return max((b - a for a, b in itertools.pairwise(times)), default=0) / 1000

    def account(self, result: DrillResult, timeout_s: float = 120) -> DrillResult:
        predictions, letters, reasons, _ = self.outputs(timeout_s)
        result.stopped_s = self.longest_pause_s()
        sent = set(self.sent_keys)
        seen = predictions + letters
        result.sent = len(self.sent_keys)
        result.predictions = sum(predictions.values())
        result.dead_letters = sum(letters.values())
        result.lost = len(sent - set(seen))
        result.duplicated = sum(n - 1 for n in seen.values() if n > 1)
        result.reasons = dict(reasons)
        if result.lost:
            result.problems += self.explain_lost(sent - set(seen))
        wrong = [k for k, r in self.expected_reason.items() if predictions[k]]
        if wrong:
            result.problems.append(f"{len(wrong)} bad inputs were scored")
        return result


def _output_count(drill: Drill) -> int:
    """Predictions + dead letters written so far (end offsets of both topics)."""
    return end_offsets_total(drill.settings, [drill.topics.predictions, drill.topics.dlq])


def _wait_until_reading(drill: Drill, timeout_s: float = 120) -> None:
    """Block until the newest worker logs its partition assignment (or ``timeout_s`` passes:
    the drill's account then shows what did not happen)."""
    log = drill.worker_logs[-1]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if ASSIGNED in log.read_text(errors="replace"):
                return
        time.sleep(0.2)


def _wait_for_outputs(drill: Drill, at_least: int, timeout_s: float = 90) -> float:
    """Block until ``at_least`` outputs exist; returns the seconds waited."""
    start = time.monotonic()
    while _output_count(drill) < at_least and time.monotonic() - start < timeout_s:
        time.sleep(0.2)
    return time.monotonic() - start


# ---------------------------------------------------------------- the drills


def drill_kill9(base: Settings, workdir: Path, count: int = 20_000, kills: int = 3, seconds: float = 30) -> DrillResult:
    drill = Drill(base, "kill9", workdir)
    result = DrillResult(f"kill -9 x{kills}")
    # The stream flows only while a worker reads: each kill lands mid-stream, and the restarted
    # worker has new events to score however long its start-up takes. (Flowing regardless, a
    # slow start-up let the stream end before the last kill, and the wait for new outputs ran
    # into its 90 s timeout, reported as the recovery time.)
    flowing = threading.Event()
    drill.produce(drill.events(count, 1), rate=count / seconds, background=True, gate=flowing)
    worker = drill.start_worker()
    _wait_until_reading(drill)
    flowing.set()
    recoveries = []
    for i in range(kills):
        _wait_for_outputs(drill, (i + 1) * count // (kills + 2))
        worker.send_signal(signal.SIGKILL)
        flowing.clear()
        worker.wait()
        at_kill = _output_count(drill)
        restarted = time.monotonic()
        worker = drill.start_worker()
        _wait_until_reading(drill)
        flowing.set()
        _wait_for_outputs(drill, at_kill + 1)
        recoveries.append(time.monotonic() - restarted)  # restart to its first output
        if _output_count(drill) <= at_kill:
            result.problems.append(f"no new output within {time.monotonic() - restarted:.0f} s of restart {i + 1}")
    drill.wait_produced()
    drill.account(result)
    drill.stop_all()
    result.recovery_s = max(recoveries) if recoveries else None
    result.notes = "restart to first new outputs, worst case" + result.notes
    return result


def drill_rebalance(base: Settings, workdir: Path, count: int = 20_000, seconds: float = 20) -> DrillResult:
    drill = Drill(base, "rebalance", workdir, partitions=6)
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


def drill_broker_restart(base: Settings, workdir: Path, restart: Callable[[], None], count: int = 12_000,
                         seconds: float = 20) -> DrillResult:
    drill = Drill(base, "broker", workdir)
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


def drill_corrupt_flood(base: Settings, workdir: Path, corrupt: int = 20_000, good: int = 2_000) -> DrillResult:
    drill = Drill(base, "flood", workdir)
    result = DrillResult("corrupt flood")
    kinds = ["garbage", "truncated", "trailing", "unknown_schema", "empty"]
    drill.produce(drill.events(corrupt + good, 4), bad=lambda i: kinds[i % len(kinds)] if i < corrupt else None)
    worker = drill.start_worker()
    drill.account(result)
    result.notes = f"{corrupt} corrupt then {good} good" + result.notes
    if worker.poll() is not None:
        result.problems.append(f"the worker exited with code {worker.returncode}")
    drill.stop_all()
    return result


def faulty_models_dir(source: Path, workdir: Path, poison_amounts: set[float], delay_s: float) -> Path:
    """A copy of the fraud model version in ``source`` wrapped in FaultyModel, with a manifest to match."""
    import joblib

    from workers.dev.faults import FaultyModel

    models = workdir / "faulty-models"
    target = models / "fraud" / "1.0.0-faulty"
    shutil.rmtree(models, ignore_errors=True)
    target.mkdir(parents=True)
    model = joblib.load(source / "model.joblib")
    joblib.dump(FaultyModel(model, column=0, poison_values=poison_amounts, delay_s=delay_s), target / "model.joblib")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(version="1.0.0-faulty", artifact_sha256=file_sha256(target / "model.joblib"))
    (target / "manifest.json").write_text(json.dumps(manifest))
    return models


def drill_faulty_model(base: Settings, workdir: Path, count: int = 20_000, poison_every: int = 500,
                       delay_s: float = 0.02) -> DrillResult:
    events_seed = 5
    probe = Drill(base, "faulty", workdir)
    events = probe.events(count, events_seed)
    poison = {events[i]["amount"] for i in range(0, count, poison_every)}
    poisoned_keys = {e["account_id"].encode() for e in events if e["amount"] in poison}
    models = faulty_models_dir(base.models_dir / "fraud" / "1.0.0", workdir, poison, delay_s)
    drill = Drill(base, "faulty", workdir, models_dir=models)
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
    result.sent = len(drill.sent_keys)
    result.predictions = sum(predictions.values())
    result.dead_letters = sum(letters.values())
    seen = predictions + letters
    result.lost = len(set(drill.sent_keys) - set(seen))
    if result.lost:
        result.problems += drill.explain_lost(set(drill.sent_keys) - set(seen))
    drill.stop_all()
    result.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    result.reasons = dict(reasons)
    result.peak_rss_mb = peak
    wrong = set(letters) ^ poisoned_keys
    result.notes = f"{len(poisoned_keys)} poisoned rows, {delay_s * 1000:.0f} ms/call"
    if wrong:
        result.problems.append(f"{len(wrong)} keys differ between the dead letters and the poisoned rows")
    return result


def drill_sigterm(base: Settings, workdir: Path, count: int = 20_000, seconds: float = 20, stops: int = 2
                  ) -> DrillResult:
    drill = Drill(base, "sigterm", workdir)
    result = DrillResult(f"SIGTERM x{stops}")
    flowing = threading.Event()  # only while a worker reads: each stop lands mid-stream (drill_kill9)
    drill.produce(drill.events(count, 6), rate=count / seconds, background=True, gate=flowing)
    worker = drill.start_worker()
    _wait_until_reading(drill)
    flowing.set()
    shutdowns = []
    for i in range(stops):
        _wait_for_outputs(drill, (i + 1) * count // (stops + 2))
        _wait_for_outputs(drill, _output_count(drill) + 1)  # this worker is up and scoring
        started = time.monotonic()
        code = stop_worker(worker)
        flowing.clear()
        shutdowns.append(time.monotonic() - started)
        if code != 0:
            result.problems.append(f"a worker exited with code {code} on SIGTERM")
        worker = drill.start_worker()
        _wait_until_reading(drill)
        flowing.set()
    drill.wait_produced()
    drill.account(result)
    drill.stop_all()
    result.recovery_s = max(shutdowns)
    result.notes = "recover_s = worst clean shutdown time" + result.notes
    return result


def _corrupt_of_size(size: int, seed: int) -> bytes:
    """Random bytes: never valid single-object encoding (the magic is C3 01), so dead-lettered corrupt."""
    import random

    return b"\x00" + random.Random(seed).randbytes(size - 1)


def drill_near_limit(base: Settings, workdir: Path, count: int = 4000, seconds: float = 4.0,
                     limit: int = 16_384, big: int = 3) -> DrillResult:
    """Inputs just under the dead-letter topic's size limit: their dead letters (the same bytes plus a
    dozen headers) are over it, so they are written with a reference, and the stream goes on.

    Each lands on a dead-letter partition the worker has written to before (a small corrupt
    input placed there first): a refused batch must leave that partition's sequence intact, or
    the re-send is refused as out of sequence (only a producer's first write to a partition is
    taken at any sequence)."""
    drill = Drill(base, "nearlimit", workdir, topic_config={"dlq": {"max.message.bytes": str(limit)}})
    result = DrillResult("near-limit record")
    events = drill.events(count, 7)
    drill.start_worker()
    drill.produce(events[: count // 2], rate=count / seconds)
    for i in range(big):
        beside = _key_beside(f"big-{i}".encode(), drill.settings.partitions, i)
        drill.produce_raw(_corrupt_of_size(300, big + i), beside, reasons.CORRUPT)
    drill.wait_for_dead_letters(big)
    for i in range(big):
        drill.produce_raw(_corrupt_of_size(limit - 200, i), f"big-{i}".encode(), reasons.CORRUPT)
    drill.produce(events[count // 2:], rate=count / seconds, background=True)
    drill.wait_produced()
    drill.account(result)
    drill.stop_all()
    result.notes = (f"{big} corrupt inputs of {limit - 200} B, each after a small one on its dead-letter partition; "
                    f"dead-letter topic max.message.bytes={limit}")
    return result


def _key_beside(key: bytes, partitions: int, seed: int) -> bytes:
    """Another key placed on ``key``'s partition (murmur2, as every client places keys)."""
    from kafka.partitioner.default import murmur2

    wanted = (murmur2(key) & 0x7FFFFFFF) % partitions
    for n in itertools.count():
        candidate = f"beside-{seed}-{n}".encode()
        if (murmur2(candidate) & 0x7FFFFFFF) % partitions == wanted:
            return candidate
    raise AssertionError("unreachable")


def drill_unparseable(base: Settings, workdir: Path, count: int = 4000, seconds: float = 4.0) -> DrillResult:
    """A record whose header key is not UTF-8 (the broker accepts it, aiokafka cannot parse it),
    between good events: it is dead-lettered as a marker, and every good event is predicted."""
    from workers.dev.bad_inputs import send_unparseable

    drill = Drill(base, "unparseable", workdir)
    result = DrillResult("unparseable record")
    events = drill.events(count, 8)
    drill.produce(events[: count // 2], rate=count / seconds)
    worker = drill.start_worker()
    offset = send_unparseable(drill.settings, drill.topics.events, b"unparseable", b"\xc3\x01whatever", partition=0)
    drill.sent_keys.append(b"")  # the client cannot give its key: the marker has none
    drill.expected_reason[b""] = reasons.CORRUPT
    drill.produce(events[count // 2:], rate=count / seconds)
    drill.account(result)
    if worker.poll() is not None:
        result.problems.append(f"the worker exited with code {worker.returncode}")
    drill.stop_all()
    result.notes = f"header key {INVALID_UTF8_KEY!r} at partition 0 offset {offset}" + result.notes
    return result


def drill_unwritable_output(base: Settings, workdir: Path, count: int = 2000) -> DrillResult:
    """The dead-letter topic does not exist: the worker stops with one clear error and commits nothing
    past what was delivered; once the topic exists, a restarted worker goes on with nothing lost."""
    from workers.kafka.consumer import committed_offsets

    drill = Drill(base, "unwritable", workdir, without=("dlq",))
    result = DrillResult("unwritable output")
    events = drill.events(count, 9)
    drill.produce(events[: count // 2])
    partition, offset = drill.produce_raw(b"garbage", b"bad-0", reasons.CORRUPT)
    drill.produce(events[count // 2:])
    env = {"WORKERS_DELIVERY_TIMEOUT_S": "8"}
    started = time.monotonic()
    worker = drill.start_worker(env)
    code = worker.wait(120)
    stop_s = time.monotonic() - started
    log_text = (drill.workdir / f"{drill.name}-worker-0.log").read_text()
    if code != EXIT_RUNTIME:
        result.problems.append(f"exit code {code}, expected {EXIT_RUNTIME}")
    if f"cannot WRITE to topic {drill.topics.dlq}" not in log_text:
        result.problems.append("no error line naming the topic and the operation")
    committed = committed_offsets(drill.settings, drill.settings.group_id, drill.topics.events)
    if (committed.get(partition) or 0) > offset:
        result.problems.append(f"committed {committed[partition]} past the undelivered record at {offset}")
    create_topics(drill.settings, [drill.topics.dlq])
    drill.start_worker()
    drill.account(result)
    drill.stop_all()
    result.recovery_s = stop_s
    result.notes = f"worker stopped with code {code} after {stop_s:.1f}s; committed then: {committed}" + result.notes
    return result


def drill_sigterm_stuck(base: Settings, workdir: Path, port: int | str, count: int = 20_000) -> DrillResult:
    """SIGTERM while deliveries are stuck (the broker is down): the worker exits within
    WORKERS_SHUTDOWN_TIMEOUT_S without committing them; restarted later, nothing is lost."""
    script = REPO / "scripts" / "kafka-local"
    drill = Drill(base, "stuck", workdir)
    result = DrillResult("SIGTERM, stuck")
    drill.produce(drill.events(count, 10))
    worker = drill.start_worker({"WORKERS_SHUTDOWN_TIMEOUT_S": "5"})
    _wait_for_outputs(drill, 1)
    subprocess.run([sys.executable, str(script), "stop", "--port", str(port)], check=True, capture_output=True)
    started = time.monotonic()
    code = stop_worker(worker, timeout=60)
    shutdown_s = time.monotonic() - started
    subprocess.run([sys.executable, str(script), "start", "--port", str(port)], check=True, capture_output=True)
    if code not in (0, EXIT_RUNTIME):  # 0: everything was delivered before the broker went away
        result.problems.append(f"exit code {code} after SIGTERM")
    drill.start_worker()
    drill.account(result, timeout_s=180)
    drill.stop_all()
    result.recovery_s = shutdown_s
    result.notes = f"exit code {code} {shutdown_s:.1f}s after SIGTERM (limit 5s)" + result.notes
    return result


def drill_replay_twice(base: Settings, workdir: Path, count: int = 2000, late: int = 200) -> DrillResult:
    """Late events dead-lettered, replayed after the fix, and replayed again: the second run
    publishes nothing new."""
    from workers.core.replay import ReplaySelection
    from workers.kafka.replay import replay

    drill = Drill(base, "replay", workdir)
    result = DrillResult("replay run twice")
    events = drill.events(count, 11)
    drill.produce(events, bad=lambda i: "late" if i < late else None)
    worker = drill.start_worker()
    _wait_for_outputs(drill, count)
    stop_worker(worker)
    selection = ReplaySelection(reasons=frozenset({reasons.LATE}))
    first = replay(drill.settings, drill.topics.dlq, drill.topics.events, selection)
    second = replay(drill.settings, drill.topics.dlq, drill.topics.events, selection)
    drill.start_worker({"WORKERS_MAX_LATENESS_S": "86400"})
    deadline = time.monotonic() + 90
    while end_offsets_total(drill.settings, [drill.topics.predictions]) < count and time.monotonic() < deadline:
        time.sleep(0.2)  # every event predicted: the ones on time, then the replayed late ones
    predictions, letters, _, _ = drill.outputs(timeout_s=3, read_all=True)
    drill.stop_all()
    result.sent = count
    result.predictions, result.dead_letters = sum(predictions.values()), sum(letters.values())
    result.lost = len(set(drill.sent_keys) - set(predictions))  # every late one is predicted in the end
    result.duplicated = sum(n - 1 for n in predictions.values() if n > 1)
    if (first.published, second.published) != (late, 0):
        result.problems.append(f"replays published {first.published} then {second.published}")
    result.stopped_s = drill.longest_pause_s()
    result.notes = f"{late} late: first replay published {first.published}, second {second.published}"
    return result


def local_broker_restart(port: int | str, away_s: float = 2.0) -> Callable[[], None]:
    """Stop the broker, wait ``away_s``, start it. Over ~40 s in all (the producer's request
    timeout), outputs waiting for a partition leader expire and the engine re-sends them."""
    script = REPO / "scripts" / "kafka-local"

    def restart() -> None:
        subprocess.run([sys.executable, str(script), "stop", "--port", str(port)], check=True, capture_output=True)
        time.sleep(away_s)
        subprocess.run([sys.executable, str(script), "start", "--port", str(port)], check=True, capture_output=True)

    return restart


def cluster_bootstrap(port: int, brokers: int = 3) -> str:
    """The bootstrap list of a ``scripts/kafka-local start --brokers N --port P`` cluster (node i on P+2(i-1))."""
    return ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(brokers))


def partition_states(settings: Settings, topics: list[str]) -> dict[tuple[str, int], tuple[int, list[int]]]:
    """(topic, partition) -> (leader node id, in-sync replica node ids), from the cluster's metadata."""
    from workers.kafka.clients import admin_client

    with admin_client(settings) as admin:
        described = admin.describe_topics(topics)
    return {(t["name"], p["partition_index"]): (p["leader_id"], sorted(p["isr_nodes"]))
            for t in described for p in t["partitions"]}


def wait_fully_replicated(settings: Settings, topics: list[str], replicas: int, timeout_s: float = 90) -> float | None:
    """Seconds until every partition of ``topics`` has ``replicas`` in-sync replicas (None: not in time)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if all(len(isr) >= replicas for _, isr in partition_states(settings, topics).values()):
                return time.monotonic() - started
        except Exception:  # metadata while a node is away: ask again
            pass
        time.sleep(0.5)
    return None


def drill_leader_kill(base: Settings, workdir: Path, cluster_port: int, data_dir: Path | str | None = None,
                      brokers: int = 3, count: int = 12_000, seconds: float = 30, down_s: float = 5
                      ) -> DrillResult:
    """A ``scripts/kafka-local --brokers 3`` cluster: topics with replication factor 3 and
    min.insync.replicas 2; under a steady load, the leader of the events topic's partition 0 is
    killed with SIGKILL, the stream goes on, and the node is restarted ``down_s`` later.
    stopped_s is the longest gap in the output stream; recover_s is kill to every partition
    fully in sync again."""
    script = REPO / "scripts" / "kafka-local"
    cli = [sys.executable, str(script)]
    where = ["--port", str(cluster_port)] + (["--data-dir", str(data_dir)] if data_dir else [])
    run = Path(data_dir) if data_dir else Path(os.environ.get("KAFKA_LOCAL_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kafka-workers") / "run" / str(cluster_port)
    settings = base.model_copy(update={"bootstrap_servers": cluster_bootstrap(cluster_port, brokers),
                                       "replication_factor": min(brokers, 3)})
    isr = {"min.insync.replicas": "2"}
    drill = Drill(settings, "leaderkill", workdir, topic_config={r: isr for r in ("events", "predictions", "dlq",
                                                                                  "audit")})
    result = DrillResult("leader kill -9")
    topics = [drill.topics.events, drill.topics.predictions, drill.topics.dlq, drill.topics.audit]
    for topic in topics:  # what makes acks=all mean two copies: checked on the broker, not assumed
        if (effective := _min_insync(drill.settings, topic)) != "2":
            result.problems.append(f"{topic} has min.insync.replicas={effective}, not 2")
    drill.start_worker()
    drill.produce(drill.events(count, 12), rate=count / seconds, background=True)
    _wait_for_outputs(drill, count // 3)
    leader = partition_states(drill.settings, [drill.topics.events])[(drill.topics.events, 0)][0]
    pid = int((run / f"node-{leader}" / "broker.pid").read_text())
    killed_at = time.monotonic()
    killed_ms = int(time.time() * 1000)
    os.kill(pid, signal.SIGKILL)
    moved_to, failover_s = leader, None
    while time.monotonic() - killed_at < 60:  # the controller notices after broker.session.timeout.ms
        with contextlib.suppress(Exception):
            moved_to = partition_states(drill.settings, [drill.topics.events])[(drill.topics.events, 0)][0]
        if moved_to not in (leader, -1):
            failover_s = time.monotonic() - killed_at
            break
        time.sleep(0.2)
    if failover_s is None:
        result.problems.append(f"the leader of events/0 did not move off node {leader} within 60 s of the kill")
    time.sleep(down_s)  # the stream goes on without the node
    started = subprocess.run([*cli, "start", "--node", str(leader), *where], capture_output=True, text=True,
                             timeout=180)
    if started.returncode != 0:
        raise RuntimeError(f"restarting node {leader} failed: {started.stderr.strip()}")
    restarted_s = time.monotonic() - killed_at
    all_topics = [*topics, "__consumer_offsets"]
    if wait_fully_replicated(drill.settings, all_topics, min(brokers, 3)) is not None:
        result.recovery_s = time.monotonic() - killed_at
    drill.wait_produced()
    drill.account(result, timeout_s=180)
    drill.stop_all()
    if wait_fully_replicated(drill.settings, all_topics, min(brokers, 3), timeout_s=30) is None:
        result.problems.append("some partition did not get all its replicas back in sync")
    times = sorted(drill.output_times_ms)
    around = [b - a for a, b in itertools.pairwise(times) if b >= killed_ms and a <= killed_ms + down_s * 1000 + 15_000]
    result.stopped_s = max(around, default=0) / 1000
    failover = "-" if failover_s is None else f"{failover_s:.1f}s"
    result.notes = (f"node {leader} (leader of events/0) killed: leader moved to node {moved_to} after {failover}, "
                    f"node back after {restarted_s:.1f}s; recover_s = kill to all replicas in sync" + result.notes)
    return result


def _min_insync(settings: Settings, topic: str, timeout_s: float = 10) -> str | None:
    """The topic's min.insync.replicas; a broker that has not applied a new topic yet answers
    with no configs at all, so ask again for a while."""
    deadline = time.monotonic() + timeout_s
    while True:
        configs = topic_config(settings, topic)
        if configs or time.monotonic() > deadline:
            return configs.get("min.insync.replicas")
        time.sleep(0.2)


def run_report(base: Settings, quick: bool, broker_port: int | None, cluster_port: int | None = None
               ) -> list[DrillResult]:
    scale = 0.3 if quick else 1.0
    n = int(20_000 * scale)
    with tempfile.TemporaryDirectory(prefix="workers-drills-") as tmp:
        workdir = Path(tmp)
        drills: list[Callable[[], DrillResult]] = [
            lambda: drill_kill9(base, workdir, count=n),
            lambda: drill_rebalance(base, workdir, count=n),
            lambda: drill_corrupt_flood(base, workdir, corrupt=n, good=n // 10),
            lambda: drill_faulty_model(base, workdir, count=n),
            lambda: drill_sigterm(base, workdir, count=n),
            lambda: drill_near_limit(base, workdir, count=max(1000, n // 5)),
            lambda: drill_unparseable(base, workdir, count=max(1000, n // 5)),
            lambda: drill_unwritable_output(base, workdir, count=max(1000, n // 10)),
            lambda: drill_replay_twice(base, workdir, count=max(1000, n // 10)),
        ]
        if broker_port:
            drills.insert(2, lambda: drill_broker_restart(base, workdir, local_broker_restart(broker_port),
                                                          count=int(12_000 * scale)))
            drills.append(lambda: drill_sigterm_stuck(base, workdir, broker_port, count=n))
        if cluster_port:
            drills.append(lambda: drill_leader_kill(base, workdir, cluster_port, count=int(20_000 * scale)))
        print(HEADER, flush=True)
        results = []
        try:
            for run in drills:
                result = run()
                print(result.row(), flush=True)
                results.append(result)
        finally:
            delete_drill_topics(base)
        return results
