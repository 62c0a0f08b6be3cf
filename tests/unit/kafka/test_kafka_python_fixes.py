"""kafka-python hands the protocol the bytes that arrived with the end of the stream (a broker's
"wrong password" answer followed by its close) before it reports the close."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading

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


async def _bootstrap_loop(backoff, failure: BaseException) -> int:
    """Stands for kafka-python's ``_do_bootstrap``: it calls update_backoff inside its except."""
    try:
        raise failure
    except type(failure):
        return backoff(None, "bootstrap-0")


def _connection_task(backoff, failure: BaseException) -> int:
    """Stands for ``_connect``, which calls update_backoff from its own except: never raised there."""
    try:
        raise failure
    except type(failure):
        return backoff(None, "bootstrap-0")


def _backoff():
    return kafka_python_fixes._raising_authentication_failures(lambda _manager, _node: 50,
                                                               _bootstrap_loop.__code__)


def _in_the_bootstrap_loop(failure: BaseException) -> int:
    return asyncio.run(_bootstrap_loop(_backoff(), failure))


def _refusals() -> list[BaseException]:
    from kafka.errors import InvalidReceiveError, SaslAuthenticationFailedError, UnsupportedSaslMechanismError

    return [SaslAuthenticationFailedError("invalid credentials"),
            UnsupportedSaslMechanismError("SCRAM-SHA-512 not enabled"),
            KafkaConnectionError("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"),  # mutual TLS
            KafkaConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),  # not our CA
            InvalidReceiveError("Invalid frame length: 352518912")]  # 0x15 0x03 ...: a TLS alert read as Kafka


@pytest.mark.parametrize("index", range(5))
def test_a_failure_no_retry_can_mend_ends_the_bootstrap_at_once(index):
    refused = _refusals()[index]
    with pytest.raises(type(refused), match=re.escape(str(refused))):
        _in_the_bootstrap_loop(refused)
    assert _connection_task(_backoff(), refused) == 50  # the connection's own task goes on as before


@pytest.mark.parametrize("failure", [KafkaConnectionError("[Errno 111] ECONNREFUSED"),  # a broker not up yet
                                     KafkaConnectionError("Invalid frame length: 1234")])  # not a TLS record
def test_other_failures_are_retried_as_before(failure):
    assert _in_the_bootstrap_loop(failure) == 50


def _listener(answer: bytes | None) -> tuple[socket.socket, int]:
    """A loopback port that answers every connection with ``answer`` and closes (None: refuses it)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if answer is None:
        server.close()  # nothing listens: connection refused
        return server, port
    server.listen()

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                conn.recv(1024)
                conn.sendall(answer)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, port


def test_the_real_bootstrap_ends_on_a_tls_listener_and_retries_a_closed_port(caplog):
    from kafka import KafkaConsumer
    from kafka.errors import InvalidReceiveError, KafkaTimeoutError

    kafka_python_fixes.apply()
    tls, tls_port = _listener(b"\x15\x03\x03\x00\x02\x02\x28")  # a TLS handshake_failure alert
    _, closed_port = _listener(None)
    try:
        with caplog.at_level(logging.ERROR, logger="kafka"):
            with pytest.raises(InvalidReceiveError, match="352518912"):  # raised, not timed out
                KafkaConsumer(bootstrap_servers=f"127.0.0.1:{tls_port}", bootstrap_timeout_ms=20_000)
            with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):  # retried until the timeout
                KafkaConsumer(bootstrap_servers=f"127.0.0.1:{closed_port}", bootstrap_timeout_ms=1_500)
    finally:
        tls.close()
    assert not [r for r in caplog.records if "Unhandled exception" in r.getMessage()]


def test_the_bootstrap_of_kafka_python_is_patched_once():
    from kafka.net.manager import KafkaConnectionManager

    kafka_python_fixes.apply()
    kafka_python_fixes.apply()
    patched = KafkaConnectionManager.__dict__["update_backoff"]
    assert hasattr(patched, "__wrapped__") and not hasattr(patched.__wrapped__, "__wrapped__")


def test_a_call_the_io_thread_never_completes_times_out_instead_of_waiting_for_good(monkeypatch):
    """dpkp/kafka-python#3121: run() waited on its event without a timeout."""
    from kafka.errors import KafkaTimeoutError
    from kafka.net.selector import NetworkSelector

    kafka_python_fixes.apply()
    monkeypatch.setattr(kafka_python_fixes, "RUN_WAIT_BOUND_S", 0.2)
    selector = NetworkSelector()
    selector._io_thread = threading.Thread()  # "an IO thread runs" ...
    selector.call_soon_threadsafe = lambda waiter: None  # ... and loses the hand-over
    try:
        outcome: list[BaseException] = []
        caller = threading.Thread(target=lambda: _run_into(selector, outcome), daemon=True)
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "run() still waiting"
        assert len(outcome) == 1 and isinstance(outcome[0], KafkaTimeoutError), outcome
    finally:
        selector._io_thread = None
        selector.close()


def _run_into(selector, outcome: list[BaseException]) -> None:
    async def never_scheduled():
        return 1

    try:
        selector.run(never_scheduled)
    except BaseException as exc:
        outcome.append(exc)


def test_calls_the_io_thread_completes_are_answered_as_before():
    from kafka.net.selector import NetworkSelector

    kafka_python_fixes.apply()
    selector = NetworkSelector()
    selector.start()
    try:
        async def answer(x):
            return x * 2

        assert selector.run(answer, 21) == 42
    finally:
        selector.stop()
        selector.close()
