"""Helpers for the tests of the project's own local services (scripts/kafka-local, scripts/schema-registry)."""
from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from workers.dev.processes import free_port


def load_script(path: Path) -> ModuleType:
    """A script without a .py suffix, imported as a module (its pure parts are unit-tested)."""
    name = path.name.replace("-", "_") + "_script"
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def free_port_run(width: int = 2) -> int:
    """A base port with ``width`` consecutive free ports on loopback (a service and its companions)."""
    return free_port(width)


def run_script(script: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A loopback port another process is listening on, for as long as the block runs."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]
