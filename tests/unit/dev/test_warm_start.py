"""A worker forked from the warmed fork server behaves as one started as a new interpreter."""
from __future__ import annotations

import signal
import subprocess

import pytest

from workers.dev import warm_start
from workers.dev.processes import free_port, start_worker
from workers.errors import EXIT_CONFIG
from workers.settings import Settings

pytestmark = pytest.mark.skipif(not warm_start.available(), reason="no fork server on this platform")


def test_a_forked_worker_fails_as_the_command_does(tmp_path):
    """Its settings come from the environment it was given; its one error line goes to its log."""
    settings = Settings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    outcomes = {}
    for fresh in (True, False):
        log = tmp_path / f"fresh-{fresh}.log"
        worker = start_worker(settings, log, {"WORKERS_PIPELINE": "../nope"}, fresh=fresh)
        outcomes[fresh] = (worker.wait(timeout=60), log.read_text())
    fresh_code, fresh_log = outcomes[True]
    warm_code, warm_log = outcomes[False]
    assert fresh_code == warm_code == EXIT_CONFIG
    assert warm_log == fresh_log
    assert warm_log.count("\n") == 1 and warm_log.startswith("workers: error: ") and "../nope" in warm_log


def test_a_forked_worker_is_waited_for_and_signalled_as_a_subprocess(tmp_path):
    settings = Settings(bootstrap_servers=f"127.0.0.1:{free_port()}")  # nothing listens: it keeps trying
    worker = start_worker(settings, tmp_path / "w.log")
    assert isinstance(worker, warm_start.ForkedWorker)
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=0.5)
    assert worker.poll() is None and worker.returncode is None
    worker.kill()
    assert worker.wait(timeout=30) == -signal.SIGKILL
    assert worker.poll() == worker.returncode == -signal.SIGKILL
    worker.send_signal(signal.SIGTERM)  # once it is gone, a signal is not sent (its pid may be reused)


def test_workers_start_fresh_when_asked_to(tmp_path, monkeypatch):
    settings = Settings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("WORKERS_DEV_FRESH_WORKERS", "1")
    worker = start_worker(settings, tmp_path / "w.log")
    try:
        assert isinstance(worker, subprocess.Popen)
    finally:
        worker.kill()
        worker.wait(timeout=30)
