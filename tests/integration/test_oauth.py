"""SASL/OAUTHBEARER on the secure local broker: tokens from an OAuth 2.0 token endpoint (client
credentials), checked by the broker against its issuer's keys; the token's subject is the principal
the ACLs name."""
from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from tests.integration.workers_harness import free_port, get, run_cli
from tests.oauth_issuer import token_endpoint
from workers.core.deadletter import REASON
from workers.core.pipeline import EVENT_ID_HEADER
from workers.dev.processes import start_worker, stop_worker
from workers.errors import EXIT_RUNTIME
from workers.kafka.acls import ROLES, apply, pipeline_grants
from workers.kafka.admin import create_topics
from workers.kafka.consumer import consume
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest
from workers.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("security")]

PRINCIPALS = {role: f"User:{role}" for role in ROLES}
SECRETS = {role: f"{role}-secret-{os.getpid()}" for role in ROLES}


@pytest.fixture
def issuer(secure_broker):
    with token_endpoint(secure_broker.run_dir / "tls" / "oauth-issuer.key", dict(SECRETS)) as endpoint:
        yield endpoint


@pytest.fixture
def pipeline(secure_broker, unique_name):
    admin = secure_broker.settings("admin", topic_prefix=unique_name("oauth") + "-", partitions=2)
    create_topics(admin, admin.topics.all())
    apply(admin, pipeline_grants(admin, PRINCIPALS))
    return admin


def _oauth_env(secure_broker, issuer, client: str, secret: str | None = None) -> dict[str, str]:
    scram = secure_broker.env("admin")
    return {"WORKERS_BOOTSTRAP_SERVERS": scram["WORKERS_BOOTSTRAP_SERVERS"],
            "WORKERS_SECURITY_PROTOCOL": "SASL_SSL", "WORKERS_SSL_CAFILE": scram["WORKERS_SSL_CAFILE"],
            "WORKERS_SASL_MECHANISM": "OAUTHBEARER", "WORKERS_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": issuer.url,
            "WORKERS_SASL_OAUTHBEARER_CLIENT_ID": client,
            "WORKERS_SASL_OAUTHBEARER_CLIENT_SECRET": secret or SECRETS[client],
            # as Confluent Cloud asks for them; a broker that validates none accepts them
            "WORKERS_SASL_OAUTHBEARER_EXTENSIONS": "logicalCluster=lkc-local,identityPoolId=pool-local"}


def _settings(env: dict[str, str], pipeline: Settings) -> Settings:
    values = {k.removeprefix("WORKERS_").lower(): v for k, v in env.items()}
    return Settings(**values, topic_prefix=pipeline.topic_prefix)



@pytest.mark.parametrize("engine", ["batch", "agent"])
def test_producer_worker_and_consumer_authenticate_with_tokens(secure_broker, issuer, pipeline, engine, tmp_path):
    from workers.dev import fraud_data
    from workers.dev.bad_inputs import send_kind

    producer_settings = _settings(_oauth_env(secure_broker, issuer, "producer"), pipeline)
    manifest, store = load_manifest(producer_settings)
    events, _ = fraud_data.generate(200, seed=41, start_ms=int(time.time() * 1000) - 1000)
    with EventProducer(producer_settings, manifest, store, producer_settings.topics.events) as producer:
        sent = [send_kind(producer, "garbage" if i < 7 else "good", e) for i, e in enumerate(events)]
    port = free_port()
    worker_env = {**_oauth_env(secure_broker, issuer, "worker"), "WORKERS_ENGINE": engine,
                  "WORKERS_METRICS_PORT": str(port), "WORKERS_LOG_LEVEL": "INFO"}
    worker = start_worker(pipeline, tmp_path / "worker.log", worker_env)
    try:
        consumer_settings = _settings(_oauth_env(secure_broker, issuer, "consumer"), pipeline)
        predictions = Counter(dict(r.headers)[EVENT_ID_HEADER] for r in consume(
            consumer_settings, [pipeline.topics.predictions], idle_timeout_s=30, max_records=193))
        letters = list(consume(_settings(_oauth_env(secure_broker, issuer, "replayer"), pipeline),
                               [pipeline.topics.dlq], idle_timeout_s=30, max_records=7))
        status = get(port, "/status.json")[1]
    finally:
        assert stop_worker(worker) == 0
    assert set(predictions) == {s.event_id.encode() for s in sent[7:]} and set(predictions.values()) == {1}
    assert Counter(dict(r.headers)[REASON].decode() for r in letters) == Counter(s.expected_reason for s in sent[:7])
    # each process asked the provider once per start and reused its token; the secret appears nowhere
    assert set(issuer.issued) >= {"producer", "worker", "consumer", "replayer"}
    assert Counter(issuer.issued)["worker"] == 1, issuer.issued
    log = (tmp_path / "worker.log").read_text()
    assert SECRETS["worker"] not in log and SECRETS["worker"].encode() not in status


def test_tokens_expiring_while_the_provider_is_down_lose_nothing(secure_broker, issuer, pipeline, tmp_path):
    """Tokens of 6 s; Kafka ends a session when its token expires, and aiokafka does not
    re-authenticate: it reconnects, and needs a new token. The provider is down for 12 s in the
    middle of a steady stream, so reconnections fail until it is back: the worker must keep
    retrying (before, the provider's error ended aiokafka's sender task: exit 70). The batch engine
    only: faust's clients take the same aiokafka provider (the flow test above runs both engines)."""
    from workers.dev import fraud_data

    issuer.lifetime_s = 6
    worker = start_worker(pipeline, tmp_path / "worker.log",
                          _oauth_env(secure_broker, issuer, "worker"))
    try:
        producer_settings = pipeline  # the admin, with SCRAM: the worker alone depends on the provider
        manifest, store = load_manifest(producer_settings)
        events, _ = fraud_data.generate(3000, seed=43, start_ms=int(time.time() * 1000))
        sent = set()
        with EventProducer(producer_settings, manifest, store, producer_settings.topics.events) as producer:
            for i in range(0, len(events), 25):  # ~20 s of events, across several token lifetimes
                issuer.unavailable = 3_000 / 3 <= i < 3_000 / 3 + 1900  # ~12 s from a third of the way in
                sent.update(producer.send_event(event).event_id.encode() for event in events[i:i + 25])
                time.sleep(0.16)
        issuer.unavailable = False
        predicted = {dict(r.headers)[EVENT_ID_HEADER] for r in consume(
            pipeline, [pipeline.topics.predictions], idle_timeout_s=30, max_records=len(events))}
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
    finally:
        code = stop_worker(worker)
    assert code == 0
    assert len(sent) == len(events) and predicted == sent
    assert Counter(issuer.issued)["worker"] >= 3, issuer.issued  # the worker renewed its token
    assert issuer.requests > len(issuer.issued)  # and asked while the provider was down


def test_the_audit_trail_names_the_tokens_subject(secure_broker, issuer, pipeline, tmp_path):
    worker = start_worker(pipeline, tmp_path / "worker.log", _oauth_env(secure_broker, issuer, "worker"))
    try:
        shown = ""
        for _ in range(30):
            out = run_cli(secure_broker.env("admin"), "audit", "--topic-prefix", pipeline.topic_prefix,
                       "--idle-timeout", "3")
            shown = out.stdout
            if "worker_started by User:worker@" in shown:
                break
            time.sleep(1)
    finally:
        assert stop_worker(worker) == 0
    assert "worker_started by User:worker@" in shown, shown


def test_a_refused_secret_and_a_refused_token_are_one_line_each(secure_broker, issuer, pipeline):
    wrong = _oauth_env(secure_broker, issuer, "worker", secret="not-the-secret-77")
    for args in (["produce", "--count", "3"], ["tail", "predictions", "--max", "1"], ["run"]):
        out = run_cli(wrong, *args, "--topic-prefix", pipeline.topic_prefix)
        assert out.returncode == EXIT_RUNTIME, (args, out.stderr)
        errors = [line for line in out.stderr.splitlines() if line.startswith("workers: error:")]
        assert len(errors) == 1 and "HTTP 401 invalid_client" in errors[0], (args, out.stderr)
        assert "not-the-secret-77" not in out.stderr + out.stdout
    assert issuer.refused >= 3

    # a token the broker refuses (another audience): the broker's verdict, as one line
    issuer.audience = "someone-else"
    out = run_cli(_oauth_env(secure_broker, issuer, "producer"), "produce", "--count", "3",
               "--topic-prefix", pipeline.topic_prefix)
    assert out.returncode == EXIT_RUNTIME and out.stderr.count("\n") == 1, out.stderr
    assert "refused the OAuth token" in out.stderr, out.stderr

    unreachable = {**_oauth_env(secure_broker, issuer, "producer"),
                   "WORKERS_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}/token"}
    out = run_cli(unreachable, "produce", "--count", "3", "--topic-prefix", pipeline.topic_prefix)
    assert out.returncode == EXIT_RUNTIME and out.stderr.count("\n") == 1, out.stderr
    assert "cannot reach the OAuth token endpoint" in out.stderr
