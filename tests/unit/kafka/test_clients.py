"""The one line a failed connection is explained with names its most telling cause."""
from __future__ import annotations

import pytest

from workers.kafka.clients import _main_cause


@pytest.mark.parametrize(("causes", "meaning"), [
    (["KafkaConnectionError: socket disconnected",
      "SaslAuthenticationFailedError: SaslAuthenticationFailedError: Authentication failed during authentication"],
     "authentication failed (wrong user or password?)"),
    # a plain Kafka client reading a TLS listener's alert (0x15 0x03 0x03 ...) as a frame length
    (["InvalidReceiveError: InvalidReceiveError: Invalid frame length: 352518912"], "the broker answered in TLS"),
    (["InvalidReceiveError: InvalidReceiveError: Invalid frame length: 369296128"], "the broker answered in TLS"),
    (["KafkaConnectionError: socket disconnected"], "the broker closed the connection"),
    (["KafkaConnectionError: [Errno 111] ECONNREFUSED"], "connection refused"),
    # a broker requiring a client certificate (mutual TLS), as kafka-python reports its alert
    (["KafkaConnectionError: KafkaConnectionError: [SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"],
     "TLS handshake failed: the broker wants a client certificate it trusts"),
    (["KafkaConnectionError: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"],
     "TLS handshake failed: the broker wants a client certificate it trusts"),
    (["KafkaConnectionError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"], "TLS handshake failed: "
     "KafkaConnectionError"),
])
def test_the_most_telling_cause_is_named(causes, meaning):
    assert _main_cause(causes).startswith(meaning)


def test_a_frame_length_that_is_no_tls_record_is_not_called_tls():
    cause = "InvalidReceiveError: InvalidReceiveError: Invalid frame length: 1048577000"
    assert _main_cause([cause]) == cause


def test_no_cause_seen_is_none():
    assert _main_cause([]) is None
