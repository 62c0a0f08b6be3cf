"""``workers run --processes N``: N worker processes in one consumer group, under one supervisor.

The supervisor only manages processes: it starts each child (a normal ``workers run``),
forwards SIGTERM and SIGINT to all of them as SIGTERM, waits for them at most
``stop_timeout_s`` (the worker's shutdown timeout plus a margin) and SIGKILLs what is left.
When one child ends without being asked to, it stops the others rather than restarting
the one that died: the supervisor then exits, and whoever runs it (systemd, Docker,
Kubernetes) restarts the whole set, as it would a single worker.

Its exit code is the worst of the children's: 70 (runtime) if any child failed, was
killed, or ended by itself (even with 0: a worker only ends when told to), else 2 if a
child reported a configuration error, else 0. A child ended by the SIGTERM the supervisor
forwarded counts as a clean stop (it had not yet installed its own handler, so nothing was
in flight).
"""
from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType

from workers.errors import EXIT_CONFIG, EXIT_RUNTIME
from workers.ops.logs import get_logger

log = get_logger("workers.supervisor")

SEVERITY = (0, EXIT_CONFIG, EXIT_RUNTIME)  # worst last
FORWARDED = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]


def child_outcome(returncode: int, stop_requested: bool) -> int:
    """What one child's exit status means for the supervisor's exit code."""
    if stop_requested and returncode in (0, *(-s for s in FORWARDED)):
        return 0
    if returncode == EXIT_CONFIG:
        return EXIT_CONFIG
    return EXIT_RUNTIME  # a failure, a SIGKILL, or an end nobody asked for


def worst(outcomes: Iterable[int]) -> int:
    return max(outcomes, key=SEVERITY.index, default=0)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the supervisor itself is killed, instead of running on as an orphan."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Runs the children until all have ended; ``run()`` returns the exit code."""

    def __init__(self, children: list[ChildSpec], stop_timeout_s: float, poll_s: float = 0.1) -> None:
        self.children = children
        self.stop_timeout_s = stop_timeout_s
        self.poll_s = poll_s
        self.procs: list[subprocess.Popen] = []
        self._stop_reason: str | None = None  # set by a signal, or by a child that ended
        self._stop_sent_at: float | None = None
        self._killed = False
        self._outcomes: dict[int, int] = {}

    def request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(f"received {signal.Signals(signum).name}")

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED}
        try:
            for spec in self.children:
                if self._stop_reason is not None:
                    break  # stopped while starting: start no more
                self.procs.append(self._start(spec))
            while len(self._outcomes) < len(self.procs):
                self._reap()
                if self._stop_reason is not None:
                    self._stop()
                time.sleep(self.poll_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        code = worst(self._outcomes.values())
        log.info("worker processes stopped", exit_code=code, reason=self._stop_reason,
                 exit_codes={self.children[i].name: p.returncode for i, p in enumerate(self.procs)})
        return code

    def _start(self, spec: ChildSpec) -> subprocess.Popen:
        # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it once.
        proc = subprocess.Popen(spec.argv, env=spec.env, stdin=subprocess.DEVNULL, process_group=0,
                                preexec_fn=_die_with_parent)
        log.info("worker process started", name=spec.name, pid=proc.pid)
        return proc

    def _reap(self) -> None:
        for index, proc in enumerate(self.procs):
            if index in self._outcomes or proc.poll() is None:
                continue
            asked = self._stop_sent_at is not None
            self._outcomes[index] = child_outcome(proc.returncode, asked)
            if not asked:
                name = self.children[index].name
                log.error("worker process ended unexpectedly; stopping the others", name=name, pid=proc.pid,
                          exit_code=proc.returncode)
                self.request_stop(f"{name} exited with {proc.returncode}")

    def _stop(self) -> None:
        now = time.monotonic()
        if self._stop_sent_at is None:
            self._stop_sent_at = now
            log.info("stopping worker processes", reason=self._stop_reason, timeout_s=self.stop_timeout_s)
            for index, proc in enumerate(self.procs):
                if index not in self._outcomes:
                    _signal(proc, signal.SIGTERM)
        elif now - self._stop_sent_at > self.stop_timeout_s and not self._killed:
            self._killed = True
            for index, proc in enumerate(self.procs):
                if index not in self._outcomes and proc.poll() is None:
                    log.error("worker process did not stop in time; killing it", name=self.children[index].name,
                              pid=proc.pid, timeout_s=self.stop_timeout_s)
                    _signal(proc, signal.SIGKILL)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def child_environments(base: dict[str, str], count: int, worker_id: str, metrics_port: int) -> list[dict[str, str]]:
    """Child i: ``WORKERS_WORKER_ID=<worker id>-<i>`` and, with a metrics port, ``WORKERS_METRICS_PORT=<port>+i``."""
    envs = []
    for i in range(count):
        env = {**base, "WORKERS_WORKER_ID": f"{worker_id}-{i}"}
        if metrics_port:
            env["WORKERS_METRICS_PORT"] = str(metrics_port + i)
        else:
            env.pop("WORKERS_METRICS_PORT", None)
        envs.append(env)
    return envs

