"""Two fixes to kafka-python (3.0.12), applied once before its first client is built.

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
nodes (``maybe_raise_auth_failure``), and Kafka's Java client gives up at once (an
authentication failure is not retriable). The fix raises the failure from the bootstrap loop
the first time it is seen: a wrong password is reported in well under a second.
"""
from __future__ import annotations

import sys
from typing import Any

_PENDING = "_workers_pending_error"
_BOOTSTRAPPING = "_workers_bootstrapping"
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


def _flagging_the_bootstrap(do_bootstrap: Any) -> Any:
    async def bootstrap(manager: Any, deadline: Any) -> Any:
        setattr(manager, _BOOTSTRAPPING, True)
        try:
            return await do_bootstrap(manager, deadline)
        finally:
            setattr(manager, _BOOTSTRAPPING, False)

    bootstrap.__wrapped__ = do_bootstrap  # type: ignore[attr-defined]
    return bootstrap


def _raising_authentication_failures(update_backoff: Any) -> Any:
    """The bootstrap loop calls ``update_backoff`` inside its ``except`` for a failed connection:
    when what it handles is an authentication failure, raising it there ends the bootstrap."""
    from kafka.errors import SaslAuthenticationFailedError

    def backoff(manager: Any, node_id: Any) -> Any:
        backoff_ms = update_backoff(manager, node_id)
        if getattr(manager, _BOOTSTRAPPING, False) and str(node_id).startswith("bootstrap"):
            handling = sys.exc_info()[1]
            if isinstance(handling, SaslAuthenticationFailedError):
                raise handling
        return backoff_ms

    backoff.__wrapped__ = update_backoff  # type: ignore[attr-defined]
    return backoff


def apply() -> None:
    """Patch both transports (plain and TLS) and the bootstrap once; a kafka-python without
    them is left alone."""
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
    _applied = True


def _patch_the_bootstrap() -> None:
    try:
        from kafka.net.manager import KafkaConnectionManager as Manager
    except ImportError:  # another kafka-python layout: its bootstrap is left as it is
        return
    methods = [Manager.__dict__.get(name) for name in ("_do_bootstrap", "update_backoff")]
    if all(callable(m) for m in methods) and not hasattr(methods[0], "__wrapped__"):
        Manager._do_bootstrap = _flagging_the_bootstrap(methods[0])
        Manager.update_backoff = _raising_authentication_failures(methods[1])
