"""A 3-node scripts/kafka-local cluster: the partition leader killed with kill -9 under load."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import KAFKA_LOCAL
from workers.dev import drills
from workers.settings import Settings

pytestmark = pytest.mark.integration

BROKERS = 3


def _free_port_run(width: int) -> int:
    """A base port with ``width`` consecutive free ports (node i: base+2(i-1), its controller +1)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + width >= 65000:
            continue
        taken = []
        try:
            for port in range(base, base + width):
                sock = socket.socket()
                taken.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in taken:
                sock.close()
    raise RuntimeError("no run of free ports")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(KAFKA_LOCAL), *args], capture_output=True, text=True, timeout=240)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_leader_kill_9_loses_nothing_and_replicas_come_back(tmp_path):
    port = _free_port_run(2 * BROKERS)
    data = tmp_path / "cluster"
    where = ("--port", str(port), "--data-dir", str(data))
    started = _cli("start", "--brokers", str(BROKERS), *where)
    assert started.returncode == 0, started.stderr
    pids: set[int] = set()
    try:
        status = _cli("status", *where)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("the cluster lists 3 brokers") == BROKERS

        base = Settings(bootstrap_servers=drills.cluster_bootstrap(port, BROKERS))
        result = drills.drill_leader_kill(base, tmp_path, port, data, count=4000, seconds=14, down_s=3)
        pids = {int((data / f"node-{i}" / "broker.pid").read_text()) for i in range(1, BROKERS + 1)}
        assert result.sent == 4000 and result.lost == 0, result.row()
        assert result.passed, result.problems  # every partition back to 3 in-sync replicas
        assert result.recovery_s is not None and result.stopped_s is not None

        settings = base.model_copy(update={"replication_factor": BROKERS})
        states = drills.partition_states(settings, ["__consumer_offsets"])
        assert states and all(isr == [1, 2, 3] for _, isr in states.values())
    finally:
        stopped = _cli("stop", *where)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_alive(pid) for pid in pids)
    assert _cli("status", *where).returncode == 3
    assert not list(data.glob("node-*/broker.pid"))
