"""Ports for child processes' endpoints: free, and out of reach of outgoing connections."""
from __future__ import annotations

import socket

from workers.dev import processes


def test_a_free_run_of_ports_lies_below_the_ephemeral_range_and_can_be_bound():
    base = processes.free_port(3)
    assert processes.PRIVATE_PORTS_START <= base <= processes._ephemeral_ports_start() - 3
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
        offered = iter([busy - 1, free])  # the first run (busy - 1, busy) is half taken
        monkeypatch.setattr(processes.random, "randrange", lambda *args: next(offered))
        assert processes.free_port(2) == free
