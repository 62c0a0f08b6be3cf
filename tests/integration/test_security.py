"""On a broker that asks for credentials: TLS, SASL/SCRAM-SHA-512, ACLs (scripts/kafka-local --secure)."""
from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from tests.integration.workers_harness import free_port, get, run_cli
from workers.core.deadletter import REASON
from workers.core.pipeline import EVENT_ID_HEADER
from workers.dev.bad_inputs import BAD_KINDS, send_kind
from workers.dev.processes import start_worker, stop_worker
from workers.errors import EXIT_RUNTIME
from workers.kafka.acls import ROLES, Grant, apply, pipeline_grants, revoke
from workers.kafka.admin import create_topics
from workers.kafka.consumer import committed_offsets, consume
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("security")]

PRINCIPALS = {role: f"User:{role}" for role in ROLES}


@pytest.fixture
def pipeline(secure_broker, unique_name):
    """A pipeline's topics, created by the admin, with the least-privilege ACLs applied."""
    admin = secure_broker.settings("admin", topic_prefix=unique_name("sec") + "-", partitions=3)
    create_topics(admin, admin.topics.all())
    apply(admin, pipeline_grants(admin, PRINCIPALS))
    return admin


def _as(secure_broker, user, pipeline, **overrides):
    return secure_broker.settings(user, topic_prefix=pipeline.topic_prefix, **overrides)


def _worker_env(secure_broker, user: str, **extra: str) -> dict[str, str]:
    return {**secure_broker.env(user), "WORKERS_LOG_LEVEL": "INFO", **extra}


def _produce(secure_broker, pipeline, count: int, bad: int) -> list:
    producer_settings = _as(secure_broker, "producer", pipeline)
    manifest, store = load_manifest(producer_settings)
    from workers.dev import fraud_data

    events, _ = fraud_data.generate(count, seed=31, start_ms=int(time.time() * 1000) - 1000)
    kinds = list(BAD_KINDS)
    with EventProducer(producer_settings, manifest, store, producer_settings.topics.events) as producer:
        return [send_kind(producer, kinds[i % len(kinds)] if i < bad else "good", e) for i, e in enumerate(events)]


def _outputs(secure_broker, pipeline, expected_letters: int) -> tuple[dict, list]:
    """Predictions (by event id) read as the downstream consumer, dead letters as the replay operator."""
    letters = list(consume(_as(secure_broker, "replayer", pipeline), [pipeline.topics.dlq], idle_timeout_s=30,
                           max_records=expected_letters))
    predictions: dict[bytes, int] = Counter()
    for record in consume(_as(secure_broker, "consumer", pipeline), [pipeline.topics.predictions], idle_timeout_s=5):
        predictions[dict(record.headers)[EVENT_ID_HEADER]] += 1
    return predictions, letters


@pytest.mark.parametrize("engine", ["batch", "agent"])
def test_the_whole_flow_over_sasl_ssl_with_one_principal_per_role(secure_broker, pipeline, engine, tmp_path):
    sent = _produce(secure_broker, pipeline, 600, bad=45)
    port = free_port()
    worker = start_worker(pipeline, tmp_path / "worker.log",
                          _worker_env(secure_broker, "worker", WORKERS_ENGINE=engine, WORKERS_METRICS_PORT=str(port)))
    try:
        predictions, letters = _outputs(secure_broker, pipeline, 45)
        metrics, status = get(port, "/metrics")[1], get(port, "/status.json")[1]
    finally:
        assert stop_worker(worker) == 0
    assert len(predictions) == 555 and set(predictions.values()) == {1}
    assert Counter(dict(r.headers)[REASON].decode() for r in letters) == Counter(
        s.expected_reason for s in sent if s.expected_reason)
    password = secure_broker.env("worker")["WORKERS_SASL_PASSWORD"]
    log = (tmp_path / "worker.log").read_text()
    assert password not in log and password.encode() not in metrics and password.encode() not in status
    assert json.loads(status)["predictions"] == 555
    if engine == "batch":  # the operators' commands, each as its own principal
        _the_commands_work_over_sasl_ssl(secure_broker, pipeline)


def _the_commands_work_over_sasl_ssl(secure_broker, pipeline) -> None:
    prefix = ("--topic-prefix", pipeline.topic_prefix)
    tail = run_cli(secure_broker.env("consumer"), "tail", "predictions", "--max", "3", "--idle-timeout", "10", *prefix)
    assert tail.returncode == 0 and len(tail.stdout.strip().splitlines()) == 3, tail.stderr
    replay = run_cli(secure_broker.env("replayer"), "replay", *prefix)
    assert replay.returncode == 0 and "replayed 45" in replay.stdout, replay.stdout + replay.stderr
    shown = run_cli(secure_broker.env("admin"), "audit", "--idle-timeout", "3", *prefix)
    assert shown.returncode == 0 and "replay_run by User:replayer@" in shown.stdout, shown.stdout + shown.stderr



def test_wrong_password_and_unauthenticated_clients_get_one_clear_line(secure_broker, pipeline):
    env = secure_broker.env("producer")
    wrong = {**env, "WORKERS_SASL_PASSWORD": "not-the-password-42"}
    for args in (["produce", "--count", "5"], ["tail", "--max", "1"], ["topics", "create"]):
        out = run_cli(wrong, *args, "--topic-prefix", pipeline.topic_prefix)
        assert out.returncode == EXIT_RUNTIME, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and "authentication failed" in out.stderr, (args, out.stderr)
        assert "not-the-password-42" not in out.stderr + out.stdout
    plaintext = run_cli({"WORKERS_BOOTSTRAP_SERVERS": secure_broker.bootstrap}, "produce", "--count", "5",
                     "--topic-prefix", pipeline.topic_prefix)
    assert plaintext.returncode == EXIT_RUNTIME and plaintext.stderr.count("\n") == 1
    assert "the broker answered in TLS" in plaintext.stderr and "SASL_SSL" in plaintext.stderr


def _first_bad_offsets(secure_broker, pipeline, sent: list) -> dict[int, int]:
    """{partition: offset of its first record bound for the dead letters}, read back as the admin."""
    bad = {s.value for s in sent if s.expected_reason}
    first: dict[int, int] = {}
    for record in consume(pipeline, [pipeline.topics.events], idle_timeout_s=5, max_records=len(sent)):
        if record.value in bad and record.partition not in first:
            first[record.partition] = record.offset
    assert len(first) >= 1 and sum(1 for r in sent if r.expected_reason) == len(bad)
    return first


@pytest.mark.parametrize("engine", ["batch", "agent"])
def test_a_worker_denied_write_on_dead_letters_stops_cleanly_and_resumes_once_granted(secure_broker, pipeline,
                                                                                   engine, tmp_path):
    denied = Grant(PRINCIPALS["worker"], "WRITE", "TOPIC", pipeline.topics.dlq)
    revoke(pipeline, [denied])
    sent = _produce(secure_broker, pipeline, 300, bad=9)
    first_bad = _first_bad_offsets(secure_broker, pipeline, sent)
    worker = start_worker(pipeline, tmp_path / "w1.log", _worker_env(secure_broker, "worker", WORKERS_ENGINE=engine))
    assert worker.wait(120) == EXIT_RUNTIME
    log = (tmp_path / "w1.log").read_text()
    assert f"cannot WRITE to topic {pipeline.topics.dlq}: not authorized" in log
    # no partition's committed offset passes a record whose dead letter was refused
    committed = committed_offsets(pipeline, pipeline.group_id, pipeline.topics.events)
    for partition, offset in first_bad.items():
        assert (committed.get(partition) or 0) <= offset, (partition, committed, first_bad)

    apply(pipeline, [denied])
    worker = start_worker(pipeline, tmp_path / "w2.log", _worker_env(secure_broker, "worker", WORKERS_ENGINE=engine))
    try:
        predictions, letters = _outputs(secure_broker, pipeline, 9)
    finally:
        stop_worker(worker)
    # every event accounted for (predictions of the batch that failed were written, then again: duplicates)
    assert set(predictions) == {s.event_id.encode() for s in sent if not s.expected_reason}
    assert sorted(r.value for r in letters) == sorted(s.value for s in sent if s.expected_reason)


@pytest.mark.parametrize("command", [["run"], ["replay", "--dry-run"]])
def test_a_worker_or_replay_with_a_wrong_password_stops_with_one_error_line(secure_broker, pipeline, command):
    user = "worker" if command == ["run"] else "replayer"
    wrong = {**secure_broker.env(user), "WORKERS_SASL_PASSWORD": "not-the-password-43"}
    out = run_cli(wrong, *command, "--topic-prefix", pipeline.topic_prefix)
    assert out.returncode == EXIT_RUNTIME, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("workers: error:")]
    assert len(errors) == 1 and "authentication failed" in errors[0], out.stderr
    assert "not-the-password-43" not in out.stderr + out.stdout


def test_workers_write_the_audit_trail_and_only_an_operator_reads_it(secure_broker, pipeline, tmp_path):
    worker = start_worker(pipeline, tmp_path / "worker.log", _worker_env(secure_broker, "worker"))
    try:
        shown = ""
        for _ in range(30):  # the worker writes its model_loaded record (acknowledged) before it serves
            out = run_cli(secure_broker.env("admin"), "audit", "--topic-prefix", pipeline.topic_prefix,
                       "--idle-timeout", "3")
            assert out.returncode == 0, out.stderr
            shown = out.stdout
            if "model_loaded by User:worker@" in shown:
                break
            time.sleep(1)
    finally:
        assert stop_worker(worker) == 0
    assert "model_loaded by User:worker@" in shown and "worker_started by User:worker@" in shown, shown
    sha256 = json.loads((pipeline.models_dir / "fraud" / "1.0.0" / "manifest.json").read_text())["artifact_sha256"]
    assert f"sha256={sha256}" in shown
    for role in ("worker", "producer", "consumer", "replayer"):  # they may write it (workers, replay) but not read it
        out = run_cli(secure_broker.env(role), "audit", "--topic-prefix", pipeline.topic_prefix, "--idle-timeout", "3")
        assert out.returncode == EXIT_RUNTIME and out.stderr.count("\n") == 1, (role, out.stderr)
        assert f"{role} may not" in out.stderr, (role, out.stderr)


def test_a_principal_without_acls_cannot_read_the_events(secure_broker, pipeline):
    out = run_cli(secure_broker.env("intruder"), "tail", "predictions", "--topic-prefix", pipeline.topic_prefix,
               "--idle-timeout", "5")
    assert out.returncode == EXIT_RUNTIME and "intruder may not DESCRIBE it" in out.stderr
    with pytest.raises(Exception, match="may not DESCRIBE"):
        list(consume(_as(secure_broker, "intruder", pipeline), [pipeline.topics.events], idle_timeout_s=5))


def test_acl_apply_is_idempotent_and_prints_least_privilege(secure_broker, pipeline):
    out = run_cli(secure_broker.env("admin"), "acl", "apply", "--topic-prefix", pipeline.topic_prefix)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("User:")]
    assert len(lines) == len(pipeline_grants(pipeline, PRINCIPALS)) == 35
    assert not [line for line in lines if "producer" in line and "READ" in line]  # producers only write
    # the rollout control topic: workers read it, and write it only for a canary's automatic decisions
    control = [line.split()[:2] for line in lines if line.rstrip().endswith(".control")]
    assert sorted(control) == [["User:worker", "DESCRIBE"], ["User:worker", "READ"], ["User:worker", "WRITE"]]
    assert "applied 35 ACLs" in out.stdout
