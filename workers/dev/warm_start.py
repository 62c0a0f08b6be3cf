"""``workers run`` forked from a process that has already imported what every worker imports.

A worker spends ~5 of its ~6.5 CPU-seconds of start-up importing scikit-learn, scipy, faust
and the Kafka clients and on numba's first compile, the same work every time. The drills,
the demos and the integration tests start a worker dozens of times, so they fork it from
multiprocessing's fork server with those modules preloaded (``warmed``): ~1.5 s to a reading
worker instead of ~7. The child is then the worker as ``workers run`` runs it: its own
settings from its environment, its own log file, its own signals and exit code. The
benchmark starts its workers the ordinary way, so what it measures is what users run.
"""
from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import os
import runpy
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext

# Everything `workers run` imports before it reads, and numba's first compile.
PRELOAD = ["workers.cli", "workers.kafka.worker", "workers.kafka.rollout", "faust.app", "faust.worker", "aiohttp.web",
           "kafka", "sklearn.ensemble", "workers.dev.warmed"]


class WorkerProcess(Protocol):
    """What the drills and tests use of a started worker: a subprocess.Popen or a ForkedWorker."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class ForkedWorker:
    """A worker forked by the fork server, with subprocess.Popen's calls: ``returncode`` is the
    exit code, or minus the signal that ended it, and only this process can wait for it."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid: int = process.pid or 0
        self.args = ["workers", "run"]
        self._returncode: int | None = None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def poll(self) -> int | None:
        # one reader of the exit status at a time (a drill's threads, Process.start's clean-up):
        # a second concurrent read finds the pipe empty and multiprocessing reports 255
        with _lock:
            if self._returncode is None and not self._process.is_alive():
                self._returncode = self._process.exitcode
        return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        multiprocessing.connection.wait([self._process.sentinel], timeout)  # without the lock
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # as Popen: never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_lock = threading.Lock()
_context: ForkServerContext | None = None


def available() -> bool:
    """Forking works here and is not turned off (``WORKERS_DEV_FRESH_WORKERS=1``: every worker a
    new interpreter, e.g. to compare the two ways). Linux only: on macOS forking a process that
    has loaded numpy's Accelerate or LLVM is not safe."""
    return (sys.platform == "linux" and "forkserver" in multiprocessing.get_all_start_methods()
            and os.environ.get("WORKERS_DEV_FRESH_WORKERS") != "1")


def fork_worker(env: dict[str, str], log_path: Path) -> ForkedWorker:
    """``workers run`` with exactly ``env`` as its environment, its output appended to ``log_path``.
    The first call starts the fork server (~4 s, once per process)."""
    global _context
    Path(log_path).touch()  # there when this returns, as with subprocess.Popen's log file
    with _lock:
        if _context is None:
            _context = cast("ForkServerContext", multiprocessing.get_context("forkserver"))
            _context.set_forkserver_preload(PRELOAD)
        # daemon: a worker a test leaves behind gets SIGTERM when this process exits (and is joined)
        process = _context.Process(target=_run_worker, args=(env, str(log_path)), daemon=True,
                                   name=f"workers-run:{Path(log_path).name}")
        process.start()
    return ForkedWorker(process)


def _run_worker(env: dict[str, str], log_path: str) -> None:
    """In the forked child: the log file as stdout and stderr, the given environment, then what
    ``python -m workers.cli run`` runs (the module as ``__main__``, which exits with its code)."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    # line by line: the drills read the log as it grows
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["workers", "run"]
    with warnings.catch_warnings():
        # the fork server imported workers.cli already: executed again as __main__, as -m does
        warnings.filterwarnings("ignore", "'workers.cli' found in sys.modules", RuntimeWarning)
        runpy.run_module("workers.cli", run_name="__main__", alter_sys=True)
