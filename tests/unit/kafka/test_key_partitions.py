"""A batch of keys is placed as Kafka's clients place each key (murmur2, as the Java client)."""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from workers.kafka.key_partitions import NO_KEY, key_hashes

# Java's Utils.murmur2 of these strings (signed 32-bit), as Kafka's and the Python clients' tests give them
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_the_java_clients_hashes():
    keys = list(JAVA_MURMUR2)
    assert key_hashes(keys) == [JAVA_MURMUR2[k] & 0x7FFFFFFF for k in keys]


@given(st.lists(st.one_of(st.none(), st.binary(max_size=40)), max_size=60))
def test_every_key_hashes_as_aiokafka_hashes_it_alone(keys):
    assert key_hashes(keys) == [NO_KEY if k is None else murmur2(k) & 0x7FFFFFFF for k in keys]


@given(st.lists(st.binary(min_size=1, max_size=24), min_size=1, max_size=60), st.integers(1, 64))
def test_the_partition_is_the_one_aiokafkas_partitioner_picks(keys, count):
    partitions = list(range(count))
    assert [partitions[h % count] for h in key_hashes(keys)] == [
        DefaultPartitioner()(k, partitions, partitions) for k in keys]
