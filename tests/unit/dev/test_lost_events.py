"""How a drill names a worker's state and its last error (no broker)."""
from __future__ import annotations

import json
import subprocess
import sys

from workers.dev.lost_events import last_error, worker_state


def _line(level: str, logger: str, event: str, **fields: str) -> str:
    return json.dumps({"event": event, "level": level, "logger": logger, **fields})


def test_the_last_error_is_the_workers_own_not_its_clients(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("\n".join([
        _line("error", "workers.batch_engine", "first failure", error="Boom: one"),
        _line("critical", "workers.worker", "unrecoverable error", error="DeliveryError: two"),
        _line("error", "aiokafka", "Unable connect to node with id 1"),
        _line("info", "workers.monitor", "progress"),
        "not json at all",
    ]) + "\n")
    assert last_error(log) == "unrecoverable error DeliveryError: two"


def test_a_traceback_gives_its_exception_when_nothing_structured_was_logged(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("starting\nTraceback (most recent call last):\n  File x\n    raise y\nValueError: y\n")
    assert last_error(log) == "ValueError: y"


def test_the_clis_error_line_counts(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("workers: error: topic t does not exist\n" + _line("info", "workers.monitor", "progress") + "\n")
    assert last_error(log) == "workers: error: topic t does not exist"


def test_no_log_or_no_error_gives_none(tmp_path):
    assert last_error(tmp_path / "missing.log") is None
    (tmp_path / "quiet.log").write_text(_line("info", "workers.monitor", "progress") + "\n")
    assert last_error(tmp_path / "quiet.log") is None


def test_worker_state_names_the_exit_code_and_the_error(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text(_line("critical", "workers.worker", "unrecoverable error", error="rebalance: 12 undelivered") + "\n")
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(70)"])
    exited.wait()
    assert worker_state(0, exited, log) == \
        "worker 0 exited with code 70; its last error: unrecoverable error rebalance: 12 undelivered"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert worker_state(1, running, tmp_path / "none.log") == "worker 1 running"
    finally:
        running.kill()
        running.wait()
