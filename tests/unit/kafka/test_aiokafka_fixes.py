"""aiokafka retries a failed metadata update after its backoff: a worker whose broker is away
does not spin a core asking again and again (a real client against a port that refuses)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.structs import BrokerMetadata

from workers.dev.processes import free_port
from workers.kafka import aiokafka_fixes


async def _updates_in(seconds: float, backoff_ms: int) -> int:
    """Metadata updates a sender-like loop gets through while the only broker refuses connections."""
    port = free_port()  # nothing listens there: every connection is refused at once
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{port}", retry_backoff_ms=backoff_ms)
    client.cluster._brokers = {1: BrokerMetadata(1, "127.0.0.1", port, None)}  # the broker it knew
    client._sync_task = asyncio.ensure_future(client._md_synchronizer())
    updates = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert await client.force_metadata_update() is False
            updates += 1
    finally:
        client._sync_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client._sync_task
        await client.close()
    return updates


@pytest.fixture(autouse=True)
def _quiet_aiokafka(caplog):
    caplog.set_level(logging.CRITICAL, logger="aiokafka")


def test_a_failed_update_waits_for_the_backoff():
    aiokafka_fixes.apply()
    updates = asyncio.run(_updates_in(1.0, backoff_ms=100))
    assert 1 <= updates <= 11  # at most one attempt per 100 ms (fewer on a loaded machine): never a spin


def test_without_the_fix_the_loop_spins(monkeypatch):
    aiokafka_fixes.apply()
    patched = AIOKafkaClient.__dict__["_metadata_update"]
    monkeypatch.setattr(AIOKafkaClient, "_metadata_update", patched.__wrapped__)
    assert asyncio.run(_updates_in(1.0, backoff_ms=100)) > 50


def test_apply_wraps_once():
    aiokafka_fixes.apply()
    aiokafka_fixes._applied = False
    aiokafka_fixes.apply()
    assert not hasattr(AIOKafkaClient.__dict__["_metadata_update"].__wrapped__, "__wrapped__")
    assert not hasattr(MessageAccumulator.__dict__["_pop_batch"].__wrapped__, "__wrapped__")
