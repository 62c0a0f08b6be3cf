"""scripts/kafka-local as a user runs it: a second broker on its own port and data dir."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import KAFKA_LOCAL
from tests.local_services import alive, free_port_run, held_port, run_script
from workers.kafka.admin import create_topics
from workers.settings import Settings

pytestmark = pytest.mark.integration


def _kafka_local(*args: str) -> subprocess.CompletedProcess:
    return run_script(KAFKA_LOCAL, *args, timeout=180)








def test_start_is_idempotent_survives_kill_9_and_stop_leaves_nothing(tmp_path):
    port = free_port_run(2)
    base = ("--port", str(port), "--data-dir", str(tmp_path / "broker"))
    assert _kafka_local("status", *base).returncode == 3  # not running yet
    first = _kafka_local("start", *base)
    assert first.returncode == 0, first.stderr
    pid = int((tmp_path / "broker" / "broker.pid").read_text())
    try:
        again = _kafka_local("start", *base)
        assert again.returncode == 0 and "already running" in again.stdout
        assert int((tmp_path / "broker" / "broker.pid").read_text()) == pid

        settings = Settings(bootstrap_servers=f"127.0.0.1:{port}")
        assert create_topics(settings, ["survives-crash"], partitions=2) == ["survives-crash"]

        os.kill(pid, signal.SIGKILL)  # a crash: stale pid file, unclean log
        while alive(pid):
            time.sleep(0.05)
        assert _kafka_local("status", *base).returncode == 3
        recovered = _kafka_local("start", *base)
        assert recovered.returncode == 0, recovered.stderr
        new_pid = int((tmp_path / "broker" / "broker.pid").read_text())
        assert new_pid != pid
        assert create_topics(settings, ["survives-crash"], partitions=2) == []  # the data survived
        pid = new_pid
    finally:
        stopped = _kafka_local("stop", *base)
    assert stopped.returncode == 0
    assert not alive(pid)
    assert not (tmp_path / "broker" / "broker.pid").exists()
    for p in (port, port + 1):  # nothing listens any more
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))


def test_taken_port_is_a_clear_error(tmp_path):
    with held_port() as port:
        result = _kafka_local("start", "--port", str(port), "--data-dir", str(tmp_path / "b"))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is taken" in result.stderr


def test_logs_show_the_broker_log(tmp_path):
    missing = _kafka_local("logs", "--data-dir", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no log yet" in missing.stderr


def test_secure_broker_in_the_foreground_as_the_secure_compose_runs_it(tmp_path):
    """docker-compose.secure.yml's broker command, with a Kafka distribution's libs/ as its image has."""
    libs = _kafka_local("fetch").stdout.strip()
    port = free_port_run(2)
    data = tmp_path / "secure"
    broker = subprocess.Popen(
        [sys.executable, str(KAFKA_LOCAL), "start", "--secure", "--port", str(port), "--advertise-host", "localhost",
         "--foreground", "--data-dir", str(data)],
        env={**os.environ, "KAFKA_LOCAL_LIBS": libs}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while _kafka_local("status", "--port", str(port), "--data-dir", str(data)).returncode != 0:
            assert broker.poll() is None, broker.stdout.read()
            assert time.monotonic() < deadline, "the foreground broker did not become ready"
            time.sleep(0.5)
        env = dict(line.split("=", 1) for line in (data / "clients" / "admin.env").read_text().splitlines())
        assert env["WORKERS_BOOTSTRAP_SERVERS"] == f"localhost:{port}"  # what containers are told
        admin = Settings(**{k.removeprefix("WORKERS_").lower(): v for k, v in env.items()})
        assert create_topics(admin, ["over-the-advertised-name"], partitions=1) == ["over-the-advertised-name"]
        broker_pid = int((data / "broker.pid").read_text())
    finally:
        broker.send_signal(signal.SIGTERM)  # what `docker compose stop` sends
        output, _ = broker.communicate(timeout=60)
    assert broker.returncode == 0, output
    assert "broker exited" in output
    assert not alive(broker_pid)


def _client_env(data, user: str, drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = dict(line.split("=", 1) for line in (data / "clients" / f"{user}.env").read_text().splitlines())
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKERS_")}
    return {**clean, **{k: v for k, v in env.items() if k not in drop}}


def _workers(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_mutual_tls_admits_only_clients_with_a_certificate_the_broker_trusts(tmp_path):
    port = free_port_run(2)
    where = ("--port", str(port), "--data-dir", str(tmp_path / "mtls"))
    started = _kafka_local("start", "--secure", "--mtls", *where)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert "mutual TLS" in started.stdout and _kafka_local("status", *where).returncode == 0
        data = tmp_path / "mtls"
        assert _workers(_client_env(data, "admin"), "topics", "create", "--topic-prefix", "m-").returncode == 0
        assert _workers(_client_env(data, "admin"), "acl", "apply", "--topic-prefix", "m-").returncode == 0
        sent = _workers(_client_env(data, "producer"), "produce", "--count", "20", "--topic-prefix", "m-")
        assert sent.returncode == 0 and "sent 20 events" in sent.stdout, sent.stderr
        # the right password but no certificate: refused in the TLS handshake, one line saying what is missing
        refused = _workers(_client_env(data, "producer", drop=("WORKERS_SSL_CERTFILE", "WORKERS_SSL_KEYFILE")),
                           "produce", "--count", "20", "--topic-prefix", "m-")
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
        assert "the broker wants a client certificate it trusts" in refused.stderr
    finally:
        stopped = _kafka_local("stop", *where)
    assert stopped.returncode == 0, stopped.stderr
