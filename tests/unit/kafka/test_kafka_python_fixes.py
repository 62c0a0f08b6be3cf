"""kafka-python hands the protocol the bytes that arrived with the end of the stream (a broker's
"wrong password" answer followed by its close) before it reports the close."""
from __future__ import annotations

import re
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


class _Manager:
    """What the wrapper reads of kafka-python's connection manager: the bootstrap flag."""

    def __init__(self, bootstrapping: bool) -> None:
        setattr(self, kafka_python_fixes._BOOTSTRAPPING, bootstrapping)


def _backoff_while_handling(manager: _Manager, node_id: str, failure: BaseException) -> int:
    backoff = kafka_python_fixes._raising_authentication_failures(lambda _manager, _node: 50)
    try:
        raise failure
    except type(failure):  # as the bootstrap loop calls it: inside its except for the connection
        return backoff(manager, node_id)


def _refusals() -> list[BaseException]:
    from kafka.errors import (
        InvalidReceiveError,
        KafkaConnectionError,
        SaslAuthenticationFailedError,
    )

    return [SaslAuthenticationFailedError("invalid credentials"),
            KafkaConnectionError("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"),  # mutual TLS
            KafkaConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),  # not our CA
            InvalidReceiveError("Invalid frame length: 352518912")]  # 0x15 0x03 ...: a TLS alert read as Kafka


@pytest.mark.parametrize("index", range(4))
def test_a_failure_no_retry_can_mend_ends_the_bootstrap_at_once(index):
    refused = _refusals()[index]
    with pytest.raises(type(refused), match=re.escape(str(refused))):
        _backoff_while_handling(_Manager(bootstrapping=True), "bootstrap-0", refused)


@pytest.mark.parametrize(("bootstrapping", "node_id", "failure"), [
    (True, "bootstrap-0", KafkaConnectionError("refused")),  # a broker not up yet: retried until the timeout
    (True, "bootstrap-0", KafkaConnectionError("Invalid frame length: 1234")),  # not a TLS record
    (False, "bootstrap-0", None),  # a connected client's reconnects keep kafka-python's own handling
    (True, "1", None),  # a broker node, not a bootstrap address
])
def test_other_failures_are_retried_as_before(bootstrapping, node_id, failure):
    from kafka.errors import SaslAuthenticationFailedError

    failure = failure or SaslAuthenticationFailedError("invalid credentials")
    assert _backoff_while_handling(_Manager(bootstrapping), node_id, failure) == 50


def test_the_bootstrap_of_kafka_python_is_patched_once():
    from kafka.net.manager import KafkaConnectionManager

    kafka_python_fixes.apply()
    kafka_python_fixes.apply()
    for name in ("_do_bootstrap", "update_backoff"):
        patched = KafkaConnectionManager.__dict__[name]
        assert hasattr(patched, "__wrapped__") and not hasattr(patched.__wrapped__, "__wrapped__")
