"""kafka-python hands the protocol the bytes that arrived with the end of the stream (a broker's
"wrong password" answer followed by its close) before it reports the close."""
from __future__ import annotations

import socket

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport

from workers.kafka import kafka_python_fixes


@pytest.fixture
def transport_reading():
    """A plain transport over one end of a socket pair whose other end wrote an answer and closed."""
    kafka_python_fixes.apply()
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.sendall(b"the SASL error answer")
    broker.close()
    yield KafkaTCPTransport(None, ours)  # reading needs only the socket, not the event loop
    ours.close()


def test_bytes_read_together_with_the_close_are_delivered_before_the_close(transport_reading):
    assert transport_reading._sock_recv() == (b"the SASL error answer", None)
    data, err = transport_reading._sock_recv()
    assert data == b"" and isinstance(err, KafkaConnectionError) and "socket disconnected" in str(err)


def test_a_close_with_nothing_before_it_is_reported_at_once():
    kafka_python_fixes.apply()
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.close()
    data, err = KafkaTCPTransport(None, ours)._sock_recv()
    ours.close()
    assert data == b"" and isinstance(err, KafkaConnectionError)


def test_both_transports_are_patched_once():
    kafka_python_fixes.apply()
    kafka_python_fixes.apply()
    for cls in (KafkaTCPTransport, KafkaSSLTransport):
        patched = cls.__dict__["_sock_recv"]
        assert hasattr(patched, "__wrapped__") and not hasattr(patched.__wrapped__, "__wrapped__")
