"""Three fixes to kafka-python (3.0.12), applied once before its first client is built.

1. Bytes that arrive together with the end of the stream are lost: the transport reads until
the socket says EOF, then aborts with "socket disconnected" and never hands the bytes it
read to the protocol. A broker that refuses a password sends its SASL error and closes the
connection ``connection.failed.authentication.delay.ms`` (100 ms) later; a client busy for
that long reads both at once, and the user is told "the broker closed the connection"
instead of "authentication failed" (13 of 15 wrong-password attempts on a loaded 2-core
machine). The fix delivers the bytes first and reports the EOF on the next read: a socket
at EOF stays readable, so the read loop comes straight back for it.

2. A refused password does not end the bootstrap: kafka-python backs off and tries again until
its bootstrap timeout (10 s here), although it keeps the failure as "sticky" for connected
nodes (``maybe_raise_auth_failure``), and Kafka's Java client gives up at once (authentication
and TLS-authentication failures are not retriable). The fix raises such a failure from the
bootstrap loop the first time it is seen: a wrong password, a certificate the broker refuses
or does not present correctly, or a plaintext client at a TLS listener is reported in well
under a second. A broker that is not up yet is still retried until the timeout.

3. A blocking call can wait forever: ``NetworkSelector.run`` hands the call to the client's IO
thread and waits on a ``threading.Event`` with no timeout, whatever timeout the caller gave
(dpkp/kafka-python#3121; bounded upstream by #3123/#3124, after 3.0.12). A consumer's
``poll(timeout_ms=200)`` once waited there for good after the broker restarted mid-stream.
The fix bounds that wait at ``RUN_WAIT_BOUND_S`` (upstream's default API timeout, 60 s, plus
its 5 s grace) and then raises ``KafkaTimeoutError``, as upstream now does: the caller sees
an error it can act on (``workers.kafka.consumer.consume`` builds a new consumer) instead of
a thread that never returns. The call itself is not cancelled, as upstream.
"""
from __future__ import annotations

import re
import sys
import threading
import types
from typing import Any

_PENDING = "_workers_pending_error"
RUN_WAIT_BOUND_S = 65.0
_applied = False


def _keeping_data_before_eof(sock_recv: Any) -> Any:
    def recv(transport: Any) -> tuple[bytes, Any]:
        pending = getattr(transport, _PENDING, None)
        if pending is not None:
            setattr(transport, _PENDING, None)
            return b"", pending
        data, err = sock_recv(transport)
        if err is not None and data:
            setattr(transport, _PENDING, err)
            return data, None
        return data, err

    recv.__wrapped__ = sock_recv  # type: ignore[attr-defined]
    return recv


# the TLS alerts and checks that mean "this certificate is refused", never "try again later":
# the broker's alerts about ours (mutual TLS), and our check of the broker's
CLIENT_CERTIFICATE_REFUSED = ("ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_REQUIRED", "ALERT_UNKNOWN_CA")
CERTIFICATE_REFUSED = (*CLIENT_CERTIFICATE_REFUSED, "CERTIFICATE_VERIFY_FAILED")


def answered_in_tls(cause: str) -> bool:
    """A client that speaks plain Kafka to a TLS listener reads the broker's TLS alert as a frame
    length: its first bytes are a TLS record's type (0x15 alert, 0x16 handshake) and version 3.x."""
    match = re.search(r"Invalid frame length: (-?\d+)", cause)
    if match is None:
        return False
    head = int(match.group(1)) & 0xFFFFFFFF
    return head >> 24 in (0x15, 0x16) and (head >> 16) & 0xFF == 0x03


def refused_for_good(exc: BaseException) -> bool:
    """A bootstrap failure that trying again cannot mend: credentials, certificates, protocol."""
    from kafka.errors import SaslAuthenticationFailedError, UnsupportedSaslMechanismError

    text = str(exc)
    return (isinstance(exc, (SaslAuthenticationFailedError, UnsupportedSaslMechanismError))
            or any(m in text for m in CERTIFICATE_REFUSED) or answered_in_tls(f"{type(exc).__name__}: {text}"))


def _raising_authentication_failures(update_backoff: Any, bootstrap_code: Any) -> Any:
    """The bootstrap loop calls ``update_backoff`` inside its ``except`` for a failed connection:
    when what it handles cannot succeed on a retry, raising it there ends the bootstrap. Only
    there: the connection task (``_connect``) calls it too, and must go on as before."""
    def backoff(manager: Any, node_id: Any) -> Any:
        backoff_ms = update_backoff(manager, node_id)
        if sys._getframe(1).f_code is bootstrap_code:
            handling = sys.exc_info()[1]
            if handling is not None and refused_for_good(handling):
                raise handling
        return backoff_ms

    backoff.__wrapped__ = update_backoff  # type: ignore[attr-defined]
    return backoff


class _BoundedEvent(threading.Event):
    """The event ``NetworkSelector.run`` waits on (its only ``threading.Event``): a wait without a
    timeout gives up after ``RUN_WAIT_BOUND_S``."""

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            return super().wait(timeout)
        if super().wait(RUN_WAIT_BOUND_S):
            return True
        from kafka.errors import KafkaTimeoutError

        raise KafkaTimeoutError(f"the Kafka client's IO thread did not complete a call within {RUN_WAIT_BOUND_S:g} s")


class _ThreadingWithBoundedEvent(types.ModuleType):
    """``threading`` as kafka.net.selector sees it: the same module, but ``Event`` is bounded."""

    Event = _BoundedEvent

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


def _bound_the_run_wait() -> None:
    try:
        import kafka.net.selector as selector
    except ImportError:  # another kafka-python layout
        return
    run = getattr(getattr(selector, "NetworkSelector", None), "run", None)
    # only where run() waits on threading.Event() without a timeout (3.0.x); later versions bound it
    if run is None or getattr(selector, "threading", None) is not threading or "timeout_ms" in run.__code__.co_varnames:
        return
    selector.threading = _ThreadingWithBoundedEvent("threading")


def apply() -> None:
    """Patch both transports (plain and TLS), the bootstrap and ``run``'s wait once; a
    kafka-python without them is left alone."""
    global _applied
    if _applied:
        return
    try:
        from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport
    except ImportError:  # another kafka-python layout: nothing of ours to fix there
        _applied = True
        return
    for cls in (KafkaTCPTransport, KafkaSSLTransport):
        original = cls.__dict__.get("_sock_recv")
        if original is not None and not hasattr(original, "__wrapped__"):
            cls._sock_recv = _keeping_data_before_eof(original)
    _patch_the_bootstrap()
    _bound_the_run_wait()
    _applied = True


def _patch_the_bootstrap() -> None:
    try:
        from kafka.net.manager import KafkaConnectionManager as Manager
    except ImportError:  # another kafka-python layout: its bootstrap is left as it is
        return
    bootstrap, update_backoff = (Manager.__dict__.get(name) for name in ("_do_bootstrap", "update_backoff"))
    if callable(bootstrap) and callable(update_backoff) and not hasattr(update_backoff, "__wrapped__"):
        Manager.update_backoff = _raising_authentication_failures(update_backoff, bootstrap.__code__)
