"""The one broker fixture for the whole suite, and unique names per test.

Broker, in this order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; else a Kafka container
when a Docker engine answers (testcontainers, KRaft); else the local broker from
``scripts/kafka-local`` (real Apache Kafka jars, no Docker). Integration tests
never skip for want of a broker: a missing broker is an error.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"

# The few tests that keep both cores busy for a minute or more (many worker processes, a
# 3-broker cluster): one test process runs them one after the other, so that they never
# run side by side while the other process runs the rest.
CPU_HEAVY = pytest.mark.xdist_group("cpu_heavy")


def _docker_answers() -> bool:
    try:
        import docker  # installed with testcontainers

        docker.from_env(timeout=3).ping()
    except Exception:  # any failure here just means "no usable engine"
        return False
    return True


_LOCAL_PORT: list[str] = []  # set when the session's broker is scripts/kafka-local


def _local_port() -> str:
    """``KAFKA_LOCAL_PORT`` (19092), and with pytest-xdist one broker per test process on every
    other port from there (each broker takes the next one for its controller): drills that
    restart the session's broker restart only their own process's."""
    base = int(os.environ.get("KAFKA_LOCAL_PORT", "19092"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return str(base + 2 * int(worker.removeprefix("gw") or 0))


def _local_broker() -> Iterator[str]:
    port = _local_port()
    _LOCAL_PORT.append(port)
    already_running = subprocess.run(
        [sys.executable, str(KAFKA_LOCAL), "status", "--port", port], capture_output=True
    ).returncode == 0
    if not already_running:
        started = subprocess.run([sys.executable, str(KAFKA_LOCAL), "start", "--port", port])
        if started.returncode != 0:
            pytest.fail(f"could not start the local Kafka broker (scripts/kafka-local start --port {port})")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _delete_test_topics(f"127.0.0.1:{port}")
        if not already_running:  # leave a broker the user started; stop the one we started
            subprocess.run([sys.executable, str(KAFKA_LOCAL), "stop", "--port", port], capture_output=True)


_NAMED: list[str] = []  # every unique_name this session made: its topics start with one of them


def _delete_test_topics(bootstrap: str) -> None:
    """The topics this session named (``unique_name``, and its drills) on the local broker, and no others (another
    run may share the broker): a suite leaves ~1 GB and hundreds of partitions, and a broker kept
    across many runs slowed until tests failed."""
    from workers.kafka.clients import admin_client
    from workers.settings import Settings

    drills = sys.modules.get("workers.dev.drills")  # drills name their own topics
    prefixes = (*_NAMED, *(drills.PREFIXES if drills is not None else ()))
    if not prefixes:
        return
    try:
        with admin_client(Settings(bootstrap_servers=bootstrap)) as admin:
            ours = [t for t in admin.list_topics() if t.startswith(prefixes)]
            if ours:
                admin.delete_topics(ours)
    except Exception as exc:  # a broker that is gone or slow: the topics stay
        print(f"could not delete the test topics: {exc}", file=sys.stderr)


def _container_broker() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
    elif os.environ.get("WORKERS_TEST_BROKER") != "local" and _docker_answers():
        yield from _container_broker()
    else:
        yield from _local_broker()


@pytest.fixture
def broker_settings(kafka_bootstrap):
    """Settings that reach the session's broker, everything else at its default."""
    from workers.settings import Settings

    return Settings(bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def local_broker_port(kafka_bootstrap) -> str:
    """The port of the session's scripts/kafka-local broker, for tests that restart it."""
    if not _LOCAL_PORT:
        pytest.skip("the broker is not scripts/kafka-local (KAFKA_BOOTSTRAP_SERVERS or Docker): cannot restart it")
    return _LOCAL_PORT[0]


@pytest.fixture
def unique_name(request: pytest.FixtureRequest):
    """``unique_name("events")`` -> a topic/group name no other test (or run) uses."""
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    run = uuid.uuid4().hex[:8]

    def make(kind: str) -> str:
        name = f"t-{test}-{kind}-{run}"
        _NAMED.append(name)
        return name

    return make


@pytest.fixture(scope="session")
def fraud_pipeline():
    """The committed reference pipeline (schemas/ and models/fraud/), loaded and verified."""
    from tests.factories import load_test_pipeline

    return load_test_pipeline()


class SecureBroker:
    """A scripts/kafka-local --secure broker: TLS, SASL/SCRAM-SHA-512, ACLs enforced."""

    def __init__(self, port: str, run_dir: Path) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.run_dir = run_dir

    def env(self, user: str) -> dict[str, str]:
        """The WORKERS_* variables that connect as ``user`` (admin, worker, producer, consumer, replayer, intruder)."""
        lines = (self.run_dir / "clients" / f"{user}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line)

    def settings(self, user: str, **overrides):
        from workers.settings import Settings

        values = {k.removeprefix("WORKERS_").lower(): v for k, v in self.env(user).items()}
        return Settings(**{**values, **overrides})


@pytest.fixture(scope="session")
def secure_broker() -> Iterator[SecureBroker]:
    """The secure local broker (no Docker needed): started if not running, stopped again if started here."""
    port = os.environ.get("KAFKA_LOCAL_SECURE_PORT", "29092")
    running = subprocess.run([sys.executable, str(KAFKA_LOCAL), "status", "--port", port],
                             capture_output=True).returncode == 0
    if not running:
        started = subprocess.run([sys.executable, str(KAFKA_LOCAL), "start", "--secure", "--port", port],
                                 capture_output=True, text=True)
        if started.returncode != 0:
            pytest.fail(f"could not start the secure local broker: {started.stdout}{started.stderr}")
    cache = Path(os.environ.get("KAFKA_LOCAL_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kafka-workers")
    try:
        yield SecureBroker(port, cache / "run" / port)
    finally:
        if not running:
            subprocess.run([sys.executable, str(KAFKA_LOCAL), "stop", "--port", port], capture_output=True)


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """A real Confluent-compatible schema registry (scripts/schema-registry, Apicurio; no Docker needed):
    started if not running, stopped again if started here. $SCHEMA_REGISTRY_URL uses another one."""
    configured = os.environ.get("SCHEMA_REGISTRY_URL")
    if configured:
        yield configured
        return
    port = os.environ.get("SCHEMA_REGISTRY_PORT", "18081")
    script = str(KAFKA_LOCAL.parent / "schema-registry")
    running = subprocess.run([sys.executable, script, "status", "--port", port], capture_output=True).returncode == 0
    if not running:
        started = subprocess.run([sys.executable, script, "start", "--port", port], capture_output=True, text=True)
        if started.returncode != 0:
            pytest.fail(f"could not start the local schema registry: {started.stdout}{started.stderr}")
    try:
        yield f"http://127.0.0.1:{port}/apis/ccompat/v7"
    finally:
        if not running:
            subprocess.run([sys.executable, script, "stop", "--port", port], capture_output=True)
