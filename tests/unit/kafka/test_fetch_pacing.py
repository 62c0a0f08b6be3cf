"""Batching at low rates is the broker's fetch wait; a quiet stream is fetched without it."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from workers.kafka.batch_engine import IDLE_FETCH, _fetch_wait, pace_fetches


def _config(linger_s: float, min_bytes: int = 12_000) -> SimpleNamespace:
    return SimpleNamespace(batch_linger_s=linger_s, batch_min_bytes=min_bytes)


def test_a_linger_becomes_the_fetch_wait_and_min_bytes():
    assert _fetch_wait(_config(0.008)) == {"fetch_min_bytes": 12_000, "fetch_max_wait_ms": 8}
    assert _fetch_wait(_config(0.0004, 5)) == {"fetch_min_bytes": 5, "fetch_max_wait_ms": 1}  # never 0: a busy loop


def test_no_linger_returns_as_soon_as_a_record_is_there():
    assert _fetch_wait(_config(0.0)) == IDLE_FETCH == {"fetch_min_bytes": 1, "fetch_max_wait_ms": 500}


def test_the_wait_of_aiokafkas_fetcher_changes_between_fetches():
    asyncio.run(_pace_a_real_fetcher())


async def _pace_a_real_fetcher() -> None:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.consumer.subscription_state import SubscriptionState

    # built as AIOKafkaConsumer.start() builds it; no broker is needed until it is assigned partitions
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1")
    fetcher = Fetcher(client, SubscriptionState(), **_fetch_wait(_config(0.008)))
    consumer = SimpleNamespace(_fetcher=fetcher)
    try:
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (12_000, 8)
        assert pace_fetches(consumer, IDLE_FETCH)
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 500)
        assert pace_fetches(consumer, _fetch_wait(_config(0.008)))
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (12_000, 8)
    finally:
        await fetcher.close()
        await client.close()


def test_a_client_without_those_attributes_keeps_its_wait():
    assert not pace_fetches(SimpleNamespace(), IDLE_FETCH)
    assert not pace_fetches(SimpleNamespace(_fetcher=SimpleNamespace()), IDLE_FETCH)

