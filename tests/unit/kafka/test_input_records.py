"""aiokafka's fetcher hands the batch engine InputRecords, field for field what it would have copied."""
from __future__ import annotations

import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

from workers.core.records import InputRecord
from workers.kafka import input_records
from workers.kafka.input_records import AS_INPUT_RECORDS, as_input_record

TP = TopicPartition("events", 3)
RECORDS = [  # (timestamp, key, value, headers)
    (1_700_000_000_000, b"acct-1", b"\x00value-1", []),
    (1_700_000_000_005, None, b"value-2", [("replay.of", b"x"), ("empty", None)]),
    (1_700_000_000_009, b"acct-3", None, [("h", b"\xff\x00")]),
]


def _fetched(value_deserializer) -> list:
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    for offset, (timestamp, key, value, headers) in enumerate(RECORDS):
        builder.append(offset, timestamp, key, value, headers)
    memory = MemoryRecords(bytes(builder.build()))
    return list(PartitionRecords(TP, memory, [], 0, None, value_deserializer, True, 0))


def test_a_marked_consumer_gets_input_records_equal_to_the_copies_of_its_consumer_records():
    assert input_records.install() and input_records.install()  # idempotent
    direct = _fetched(AS_INPUT_RECORDS)
    copied = [as_input_record(m) for m in _fetched(None)]
    assert all(type(r) is InputRecord for r in direct)
    assert direct == copied
    assert [(r.offset, r.timestamp_ms, r.key, r.value, r.headers) for r in direct] == [
        (i, t, k, v, h) for i, (t, k, v, h) in enumerate(RECORDS)]
    assert {(r.topic, r.partition) for r in direct} == {("events", 3)}


def test_other_consumers_in_the_process_still_get_consumer_records():
    input_records.install()
    assert all(type(m) is ConsumerRecord for m in _fetched(None))
    assert [m.value for m in _fetched(lambda v: v and v.upper())] == [b"\x00VALUE-1", b"VALUE-2", None]


def test_without_the_hook_the_marker_passes_values_through_and_records_are_copied(monkeypatch):
    monkeypatch.delattr(PartitionRecords, "_consumer_record")
    assert not input_records.install()
    assert AS_INPUT_RECORDS(b"v") == b"v" and AS_INPUT_RECORDS(None) is None
    record = ConsumerRecord("events", 3, 7, 1_700_000_000_000, 0, b"k", b"v", None, 1, 1, (("h", b"1"),))
    copied = as_input_record(record)
    assert copied == InputRecord(b"v", b"k", "events", 3, 7, 1_700_000_000_000, [("h", b"1")])
    assert as_input_record(copied) is copied


@pytest.fixture(autouse=True)
def _restore_aiokafka():
    original = PartitionRecords.__dict__["_consumer_record"]
    yield
    PartitionRecords._consumer_record = original
