"""The supervisor of ``workers run --processes N``, with fake children (small Python scripts)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from workers.errors import EXIT_CONFIG, EXIT_RUNTIME
from workers.ops.supervisor import ChildSpec, Supervisor, child_environments, child_outcome, worst

# A fake worker: writes "<name> started", and on SIGTERM writes "<name> got SIGTERM" and exits with $ON_TERM.
# With $EXIT_AFTER it exits by itself with $EXIT_CODE; with $IGNORE_TERM it ignores SIGTERM.
FAKE = """
import os, signal, sys, time
out = os.environ["OUT"]
name = os.environ["NAME"]
def note(text):
    with open(out, "a") as f:
        f.write(f"{name} {text}\\n")
def on_term(signum, frame):
    note("got SIGTERM")
    sys.exit(int(os.environ.get("ON_TERM", "0")))
signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("IGNORE_TERM") else on_term)
note("started")
deadline = time.monotonic() + float(os.environ.get("EXIT_AFTER", "60"))
while time.monotonic() < deadline:
    time.sleep(0.02)
note("exits by itself")
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""


def _children(tmp_path, *extra: dict[str, str]) -> list[ChildSpec]:
    out = tmp_path / "notes"
    return [ChildSpec(f"c{i}", [sys.executable, "-c", FAKE], {**os.environ, "OUT": str(out), "NAME": f"c{i}", **env})
            for i, env in enumerate(extra)]


def _notes(tmp_path) -> list[str]:
    path = tmp_path / "notes"
    return path.read_text().splitlines() if path.exists() else []


def _when_started(tmp_path, count: int, action) -> threading.Thread:
    """Run ``action`` once ``count`` children wrote that they started (their SIGTERM handler is installed)."""
    def wait() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(n.endswith("started") for n in _notes(tmp_path)) < count:
            time.sleep(0.02)
        action()
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("codes", "expected"), [
    ([0, 0], 0), ([0, EXIT_CONFIG], EXIT_CONFIG), ([EXIT_CONFIG, EXIT_RUNTIME], EXIT_RUNTIME),
    ([EXIT_RUNTIME, 0], EXIT_RUNTIME), ([], 0)])
def test_the_worst_outcome_wins(codes, expected):
    assert worst(codes) == expected


@pytest.mark.parametrize(("returncode", "asked", "outcome"), [
    (0, True, 0),                              # a clean stop
    (-signal.SIGTERM, True, 0),                # ended by the forwarded SIGTERM before installing a handler
    (0, False, EXIT_RUNTIME),                  # a worker does not end by itself: that is a failure
    (-signal.SIGTERM, False, EXIT_RUNTIME),    # someone else killed it
    (-signal.SIGKILL, True, EXIT_RUNTIME),     # killed after the stop timeout
    (EXIT_CONFIG, False, EXIT_CONFIG),
    (EXIT_CONFIG, True, EXIT_CONFIG),
    (EXIT_RUNTIME, True, EXIT_RUNTIME),
    (1, True, EXIT_RUNTIME),                   # anything unexpected is a runtime failure
    (130, True, EXIT_RUNTIME)])
def test_each_child_exit_status_means_one_outcome(returncode, asked, outcome):
    assert child_outcome(returncode, asked) == outcome


def test_sigterm_to_the_supervisor_reaches_every_child_and_a_clean_stop_exits_0(tmp_path):
    supervisor = Supervisor(_children(tmp_path, {}, {}, {}), stop_timeout_s=20, poll_s=0.02)
    _when_started(tmp_path, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))  # the real signal, to this process
    previous = signal.getsignal(signal.SIGTERM)
    assert supervisor.run() == 0
    assert sorted(n for n in _notes(tmp_path) if "SIGTERM" in n) == ["c0 got SIGTERM", "c1 got SIGTERM",
                                                                     "c2 got SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) is previous  # the supervisor's handlers are removed again
    assert all(p.returncode == 0 for p in supervisor.procs)


def test_sigint_is_forwarded_as_sigterm(tmp_path):
    supervisor = Supervisor(_children(tmp_path, {}, {}), stop_timeout_s=20, poll_s=0.02)
    _when_started(tmp_path, 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert supervisor.run() == 0
    assert sum("got SIGTERM" in n for n in _notes(tmp_path)) == 2


def test_a_child_that_fails_stops_the_others_and_its_code_is_the_supervisors(tmp_path):
    supervisor = Supervisor(_children(tmp_path, {}, {"EXIT_AFTER": "0.3", "EXIT_CODE": "70"}, {}),
                            stop_timeout_s=20, poll_s=0.02)
    started = time.monotonic()
    assert supervisor.run() == EXIT_RUNTIME
    assert time.monotonic() - started < 10
    notes = _notes(tmp_path)
    assert "c1 exits by itself" in notes
    assert sorted(n for n in notes if "SIGTERM" in n) == ["c0 got SIGTERM", "c2 got SIGTERM"]
    assert [p.returncode for p in supervisor.procs] == [0, 70, 0]


def test_a_child_that_exits_0_by_itself_is_still_a_failure(tmp_path):
    supervisor = Supervisor(_children(tmp_path, {"EXIT_AFTER": "0.2"}, {}), stop_timeout_s=20, poll_s=0.02)
    assert supervisor.run() == EXIT_RUNTIME
    assert "c1 got SIGTERM" in _notes(tmp_path)


def test_a_configuration_error_in_a_child_exits_2(tmp_path):
    supervisor = Supervisor(_children(tmp_path, {"EXIT_AFTER": "0.1", "EXIT_CODE": "2"}, {}), stop_timeout_s=20,
                            poll_s=0.02)
    assert supervisor.run() == EXIT_CONFIG


def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout(tmp_path):
    supervisor = Supervisor(_children(tmp_path, {"IGNORE_TERM": "1"}, {}), stop_timeout_s=1.0, poll_s=0.02)
    _when_started(tmp_path, 2, lambda: supervisor.request_stop("test"))
    started = time.monotonic()
    assert supervisor.run() == EXIT_RUNTIME
    assert 1.0 <= time.monotonic() - started < 8
    assert supervisor.procs[0].returncode == -signal.SIGKILL and supervisor.procs[1].returncode == 0


def test_each_child_gets_its_worker_id_suffix_and_its_own_port():
    envs = child_environments({"A": "1", "WORKERS_METRICS_PORT": "9100"}, 3, "host-7", 9100)
    assert [e["WORKERS_WORKER_ID"] for e in envs] == ["host-7-0", "host-7-1", "host-7-2"]
    assert [e["WORKERS_METRICS_PORT"] for e in envs] == ["9100", "9101", "9102"]
    assert all(e["A"] == "1" for e in envs)
    without = child_environments({"WORKERS_METRICS_PORT": "0"}, 2, "w", 0)
    assert all("WORKERS_METRICS_PORT" not in e for e in without)
