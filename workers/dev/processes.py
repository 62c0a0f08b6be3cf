"""Worker processes for the demo, the drills, the benchmark and the integration tests."""
from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workers.dev import warm_start
from workers.dev.warm_start import WorkerProcess
from workers.settings import Settings


def free_port(width: int = 1) -> int:
    """The first of ``width`` consecutive loopback TCP ports nothing listens on now, for a child's
    endpoints. Chosen below the kernel's ephemeral range: a port from that range (what binding
    port 0 gives) can be taken as the local port of any outgoing connection in the seconds
    before the child binds it (a broker once failed to start so, "Address already in use").
    Each port is also reserved for a while (``_reserve``) so that another process choosing at
    the same time, or while a broker on it restarts, is not given it too."""
    low = _ephemeral_ports_start()
    for _ in range(200):
        base = random.randrange(PRIVATE_PORTS_START, max(PRIVATE_PORTS_START + 1, low - width))
        ports = range(base, base + width)
        if _bindable(ports) and _reserve(ports):
            return base
    raise RuntimeError(f"no {width} consecutive free ports between {PRIVATE_PORTS_START} and {low}")


# above the usual services' ports and the project's fixed ones (registry 18081, test brokers
# 19092 and up, the secure broker 29092-29093): a child given the secure broker's port while
# that broker was down would keep it from starting
PRIVATE_PORTS_START = 30000
RESERVATIONS = Path(tempfile.gettempdir()) / "kafka-workers-ports"
RESERVED_FOR_S = 900.0  # longer than a test or drill that stops a broker and starts it again on its port


def _reserve(ports: range) -> bool:
    """Claims every port of ``ports`` with a file under ``RESERVATIONS``, so the test workers and
    child processes of one machine never hand out the same port; a claim older than
    ``RESERVED_FOR_S`` has lapsed. All or none, under a lock shared by every process."""
    RESERVATIONS.mkdir(exist_ok=True)
    claims = [RESERVATIONS / str(port) for port in ports]
    with open(RESERVATIONS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        now = time.time()
        for claim in claims:
            with contextlib.suppress(FileNotFoundError):
                if now - claim.stat().st_mtime < RESERVED_FOR_S:
                    return False
        for claim in claims:
            claim.write_text(f"{os.getpid()}\n")
    return True


def _ephemeral_ports_start() -> int:
    """Where outgoing connections take their local ports from (Linux; 32768 where unknown, below
    macOS' 49152)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(ports: range) -> bool:
    taken: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket()
            taken.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in taken:
            sock.close()


def start_worker(settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None, *,
                 fresh: bool = False) -> WorkerProcess:
    """``workers run`` in a child process with these settings' broker, pipeline and topic prefix,
    forked from a warmed fork server (``warm_start``) unless ``fresh`` asks for a new interpreter,
    as users start it (the benchmark measures those)."""
    env = {
        **os.environ,
        "WORKERS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "WORKERS_PIPELINE": settings.pipeline,
        "WORKERS_TOPIC_PREFIX": settings.topic_prefix,
        **(extra_env or {}),
    }
    if not fresh and warm_start.available():
        try:
            return warm_start.fork_worker(env, log_path)
        except (OSError, EOFError) as exc:  # the fork server did not start or died: start it the long way
            print(f"warm start unavailable ({type(exc).__name__}: {exc}); starting a new interpreter",
                  file=sys.stderr)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop_worker(proc: WorkerProcess, timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def child_pids(pid: int) -> list[int]:
    """The pids of a process's children (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []
