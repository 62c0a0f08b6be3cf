"""Ports for child processes' endpoints: free, and out of reach of outgoing connections."""
from __future__ import annotations

import os
import socket
import time

import pytest

from workers.dev import processes


@pytest.fixture(autouse=True)
def own_reservations(tmp_path, monkeypatch):
    """Claims in a directory of this test's own, so that the suite's other processes neither see
    nor disturb them."""
    monkeypatch.setattr(processes, "RESERVATIONS", tmp_path / "ports")


def test_a_free_run_of_ports_lies_below_the_ephemeral_range_and_can_be_bound():
    base = processes.free_port(3)
    assert processes.PRIVATE_PORTS_START <= base <= processes._ephemeral_ports()[0] - 3
    held = []
    try:
        for port in range(base, base + 3):
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in held:
            sock.close()


def test_a_port_something_listens_on_is_never_given(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        free = processes.free_port(2)
        monkeypatch.setattr(processes, "RESERVATIONS", processes.RESERVATIONS.with_name("other"))
        offered = iter([busy - 1, free])  # the first run (busy - 1, busy) is half taken
        monkeypatch.setattr(processes.random, "randrange", lambda *args: next(offered))
        assert processes.free_port(2) == free


def test_a_port_given_to_one_process_is_not_given_to_another_before_it_binds(monkeypatch):
    monkeypatch.setattr(processes, "_bindable", lambda ports: True)  # nothing is bound yet, as while a broker starts
    first = processes.free_port(2)
    second = first + 2
    offered = iter([first + 1, second])  # the first run overlaps the claimed one by a port
    monkeypatch.setattr(processes.random, "randrange", lambda *args: next(offered))
    assert processes.free_port(2) == second
    assert sorted(int(p.name) for p in processes.RESERVATIONS.iterdir() if p.name.isdigit()) == [
        first, first + 1, second, second + 1]  # the refused run (first + 1, first + 2) left no claim


def test_a_claim_lapses_after_its_time():
    port = processes.free_port()
    long_ago = time.time() - processes.RESERVED_FOR_S - 1
    os.utime(processes.RESERVATIONS / str(port), (long_ago, long_ago))
    assert processes._reserve(range(port, port + 1))
    assert not processes._reserve(range(port, port + 1))  # claimed afresh


def test_with_an_ephemeral_range_starting_low_ports_come_from_above_it(monkeypatch):
    monkeypatch.setattr(processes, "_ephemeral_ports", lambda: (1024, 40000))
    ports = {processes.free_port(2) for _ in range(5)}
    assert len(ports) == 5 and all(40000 < port <= 65534 for port in ports)


def test_the_reservations_are_this_users_alone(monkeypatch, tmp_path):
    monkeypatch.setattr(processes.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(processes, "RESERVATIONS", None)
    port = processes.free_port()
    directory = tmp_path / f"kafka-workers-ports-{os.getuid()}"
    assert (directory / str(port)).exists() and directory.stat().st_mode & 0o777 == 0o700
    directory.chmod(0o777)  # writable by others: their links could be followed
    with pytest.raises(RuntimeError, match="only they can write"):
        processes.free_port()
