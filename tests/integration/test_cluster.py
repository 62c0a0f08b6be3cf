"""A 3-node scripts/kafka-local cluster: the partition leader killed with kill -9 under load."""
from __future__ import annotations

import subprocess

import pytest

from tests.conftest import CPU_HEAVY, KAFKA_LOCAL
from tests.local_services import alive, free_port_run, run_script
from workers.dev import drills
from workers.settings import Settings

pytestmark = pytest.mark.integration

BROKERS = 3


def _kafka_local(*args: str) -> subprocess.CompletedProcess:
    return run_script(KAFKA_LOCAL, *args)


@CPU_HEAVY
def test_leader_kill_9_loses_nothing_and_replicas_come_back(tmp_path):
    port = free_port_run(2 * BROKERS)
    data = tmp_path / "cluster"
    where = ("--port", str(port), "--data-dir", str(data))
    started = _kafka_local("start", "--brokers", str(BROKERS), *where)
    assert started.returncode == 0, started.stderr
    pids: set[int] = set()
    try:
        status = _kafka_local("status", *where)
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
        stopped = _kafka_local("stop", *where)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in pids)
    assert _kafka_local("status", *where).returncode == 3
    assert not list(data.glob("node-*/broker.pid"))
