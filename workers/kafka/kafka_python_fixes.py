"""One fix to kafka-python (3.0.12), applied once before its first client is built.

Bytes that arrive together with the end of the stream are lost: the transport reads until
the socket says EOF, then aborts with "socket disconnected" and never hands the bytes it
read to the protocol. A broker that refuses a password sends its SASL error and closes the
connection ``connection.failed.authentication.delay.ms`` (100 ms) later; a client busy for
that long reads both at once, and the user is told "the broker closed the connection"
instead of "authentication failed" (13 of 15 wrong-password attempts on a loaded 2-core
machine). The fix delivers the bytes first and reports the EOF on the next read: a socket
at EOF stays readable, so the read loop comes straight back for it.
"""
from __future__ import annotations

from typing import Any

_PENDING = "_workers_pending_error"
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


def apply() -> None:
    """Patch both transports (plain and TLS) once; a kafka-python without them is left alone."""
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
    _applied = True
