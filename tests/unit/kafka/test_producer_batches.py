"""Outputs appended to aiokafka's producer batch in one loop give the records, and the splits,
that ``BatchBuilder.append`` per record gives."""
from __future__ import annotations

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.core.records import OutputRecord
from workers.kafka.producer_batches import append_outputs

outputs_strategy = st.lists(
    st.builds(OutputRecord, st.just("t.predictions"), st.one_of(st.none(), st.binary(max_size=12)),
              st.one_of(st.none(), st.binary(max_size=300)),
              st.lists(st.tuples(st.text(min_size=1, max_size=6), st.one_of(st.none(), st.binary(max_size=8))),
                       max_size=2)),
    min_size=1, max_size=60)


def _records(batch: BatchBuilder) -> list[tuple]:
    batch._set_producer_state(7, 0, 0)
    memory = MemoryRecords(bytes(batch._build()))
    found = []
    while memory.has_next():
        for r in memory.next_batch():
            found.append((r.offset, r.key, r.value, list(r.headers)))
    return found


def _split(outputs: list[OutputRecord], size: int, fill) -> list[list[tuple]]:
    batches, start = [], 0
    while start < len(outputs):
        batch = BatchBuilder(size, 0)
        end = fill(batch, outputs, start)
        assert end > start  # at least one record per batch
        assert batch.record_count() == end - start
        batches.append(_records(batch))
        start = end
    return batches


def _one_by_one(batch: BatchBuilder, outputs: list[OutputRecord], start: int) -> int:
    for i in range(start, len(outputs)):
        o = outputs[i]
        if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
            return i
    return len(outputs)


@settings(max_examples=150, deadline=None)
@given(outputs=outputs_strategy, size=st.sampled_from([64, 300, 1000, 16384]))
def test_the_same_records_in_the_same_batches_as_append_one_by_one(outputs, size):
    assert _split(outputs, size, append_outputs) == _split(outputs, size, _one_by_one)


def test_a_full_batch_is_closed_and_takes_nothing_more():
    outputs = [OutputRecord("t", b"k", bytes(100), []) for _ in range(10)]
    batch = BatchBuilder(400, 0)
    end = append_outputs(batch, outputs)
    assert 0 < end < 10 and batch.closed()
    assert append_outputs(batch, outputs, end) == end  # closed: the per-record path, which refuses


class _StandIn:
    """A batch of another kind: only ``append`` is used."""

    def __init__(self, room: int) -> None:
        self.room, self.values = room, []

    def append(self, key, value, timestamp, headers):
        if len(self.values) == self.room:
            return None
        self.values.append(value)
        return object()


@pytest.mark.parametrize("room", [1, 3, 10])
def test_another_kind_of_batch_gets_append_per_record(room):
    outputs = [OutputRecord("t", None, bytes([i]), []) for i in range(5)]
    batch = _StandIn(room)
    assert append_outputs(batch, outputs, 1) == min(5, 1 + room)
    assert batch.values == [bytes([i]) for i in range(1, min(5, 1 + room))]
