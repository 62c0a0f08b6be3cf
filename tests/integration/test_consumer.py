"""The downstream consumer on a real broker: a client whose IO thread stops answering is replaced,
and the records go on from the last one yielded (none lost, none twice)."""
from __future__ import annotations

import sys

import pytest

from workers.kafka import clients, consumer, kafka_python_fixes
from workers.kafka.admin import create_topics

pytestmark = pytest.mark.integration

RECORDS = 300


def _produce(settings, topic: str, numbers: range) -> None:
    producer = clients.producer(settings)
    for i in numbers:
        producer.send(topic, key=str(i % 7).encode(), value=str(i).encode())
    producer.flush()
    producer.close()


@pytest.fixture
def topic(broker_settings, unique_name) -> str:
    name = unique_name("tail")
    create_topics(broker_settings, [name], partitions=3)
    _produce(broker_settings, name, range(RECORDS // 2))
    return name


def _called_from(function: str) -> bool:
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != function:
        frame = frame.f_back
    return frame is not None


@pytest.fixture
def stalling_once(monkeypatch):
    """The first consumer built loses one hand-over to its IO thread after its first records:
    the lost wake-up of dpkp/kafka-python#3121. Its next blocking call then waits for good,
    unless the wait is bounded (here at 1 s)."""
    monkeypatch.setattr(kafka_python_fixes, "RUN_WAIT_BOUND_S", 1.0, raising=False)
    built = []
    original = clients.consumer

    def build(*args, **kwargs):
        made = original(*args, **kwargs)
        built.append(made)
        if len(built) == 1:
            poll, handover = made.poll, made._net.call_soon_threadsafe
            state = {"polls_with_records": 0, "dropped": False}

            def drop_once(callback, *a):
                # run()'s hand-over (its nested "waiter") of the fetch a poll waits on; a stall of the
                # group coordinator's calls is caught and retried inside kafka-python itself
                if (state["polls_with_records"] and not state["dropped"] and callback.__name__ == "waiter"
                        and _called_from("fetch_records")):
                    state["dropped"] = True
                    return None
                return handover(callback, *a)

            def counting_poll(*a, **k):
                got = poll(*a, **k)
                state["polls_with_records"] += bool(got)
                return got

            made._net.call_soon_threadsafe = drop_once
            made.poll = counting_poll
            made.stall = state
        return made

    monkeypatch.setattr(clients, "consumer", build)
    return built


@pytest.mark.parametrize("group", [None, "g"], ids=["no group", "group"])
def test_a_stalled_client_is_replaced_and_nothing_is_lost_or_repeated(broker_settings, topic, stalling_once,
                                                                        unique_name, group):
    got = []
    for record in consumer.consume(broker_settings, [topic], group_id=group and unique_name(group),
                                   idle_timeout_s=5, max_records=RECORDS):
        got.append((record.partition, record.offset))
        if len(got) == RECORDS // 2:  # the first half read: the stall comes before the second half
            _produce(broker_settings, topic, range(RECORDS // 2, RECORDS))
    assert stalling_once[0].stall["dropped"], "the stall was not injected"
    assert len(stalling_once) == 2, "the stalled consumer was not replaced"
    assert len(got) == len(set(got)) == RECORDS, (len(got), len(set(got)))
