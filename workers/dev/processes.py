"""Worker processes for the demo, the drills, the benchmark and the integration tests."""
from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import socket
import stat
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
    endpoints. Chosen outside the kernel's ephemeral range: a port from that range (what binding
    port 0 gives) can be taken as the local port of any outgoing connection in the seconds
    before the child binds it (a broker once failed to start so, "Address already in use").
    Each port is also reserved for a while (``_reserve``) so that another process choosing at
    the same time, or while a broker on it restarts, is not given it too."""
    low, high = _ephemeral_ports()
    if low - width > PRIVATE_PORTS_START:
        first, last = PRIVATE_PORTS_START, low - width
    else:  # an ephemeral range starting low: above it instead
        first, last = max(PRIVATE_PORTS_START, high + 1), 65536 - width
    if last <= first:
        raise RuntimeError(f"no room for private ports outside the ephemeral range {low}-{high} "
                           "(/proc/sys/net/ipv4/ip_local_port_range)")
    for _ in range(200):
        base = random.randrange(first, last)
        ports = range(base, base + width)
        if _bindable(ports) and _reserve(ports):
            return base
    raise RuntimeError(f"no {width} consecutive free ports between {first} and {last + width}")


# above the usual services' ports and the project's fixed ones (registry 18081, test brokers
# 19092 and up, the secure broker 29092-29093): a child given the secure broker's port while
# that broker was down would keep it from starting
PRIVATE_PORTS_START = 30000
RESERVED_FOR_S = 900.0  # longer than a test or drill that stops a broker and starts it again on its port


def _reservations() -> Path:
    """This user's claims: a directory only they can write, so that nobody else's files or links
    are followed."""
    path = Path(tempfile.gettempdir()) / f"kafka-workers-ports-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise RuntimeError(f"{path} is not a directory of this user's that only they can write")
    return path


RESERVATIONS: Path | None = None  # tests point it elsewhere; None: ``_reservations()``


def _reserve(ports: range) -> bool:
    """Claims every port of ``ports`` with a file in this user's reservations, so that the test
    workers and child processes of one machine never hand out the same port; a claim older than
    ``RESERVED_FOR_S`` has lapsed. All or none, under a lock shared by every process. (Another
    user's ports are caught by the bind check.)"""
    directory = RESERVATIONS or _reservations()
    directory.mkdir(exist_ok=True)
    claims = [directory / str(port) for port in ports]
    lock = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the descriptor closes
        now = time.time()
        for claim in claims:
            with contextlib.suppress(FileNotFoundError):
                if now - claim.lstat().st_mtime < RESERVED_FOR_S:
                    return False
        for claim in claims:
            os.close(os.open(claim, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
            os.utime(claim)
    finally:
        os.close(lock)
    return True


def _ephemeral_ports() -> tuple[int, int]:
    """Where outgoing connections take their local ports from (Linux; 32768-60999 where unknown,
    below macOS' 49152)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


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
