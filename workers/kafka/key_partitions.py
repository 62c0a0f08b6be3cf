"""Kafka's default placement of keyed records, for a whole batch of keys in one compiled call.

The Java clients, librdkafka's ``murmur2`` partitioner, aiokafka and kafka-python place a key
on partition ``(murmur2(key) & 0x7fffffff) % count``. aiokafka's murmur2 is pure Python (~10 µs
a key), so the engine kept a dict of keys it had placed; with ~100,000 keys that dict lookup
was itself a cache miss per record at moderate rates (~0.2-1.4 µs). Here the keys are joined
into one buffer and hashed by a numba kernel: ~0.1 µs a key, no per-key state.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from workers.core.jit import compiled

NO_KEY = -1  # a record without a key: the caller places it (at random, as the clients do)


def _murmur2_positive(buf: Any, lengths: Any, out: Any) -> None:
    """``murmur2(key) & 0x7fffffff`` of each key (``lengths[i] < 0``: no key, ``NO_KEY``), in
    32-bit arithmetic done in int64 and masked (numba would widen uint32 products)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    start = 0
    for j in range(lengths.shape[0]):
        n = lengths[j]
        if n < 0:
            out[j] = NO_KEY
            continue
        end = start + n
        h = (0x9747B28C ^ n) & mask
        i = start
        while i + 4 <= end:
            k = (np.int64(buf[i]) | (np.int64(buf[i + 1]) << 8) | (np.int64(buf[i + 2]) << 16)
                 | (np.int64(buf[i + 3]) << 24))
            k = (k * m) & mask
            k ^= k >> 24
            k = (k * m) & mask
            h = ((h * m) & mask) ^ k
            i += 4
        extra = n & 3
        if extra >= 3:
            h ^= np.int64(buf[i + 2]) << 16
        if extra >= 2:
            h ^= np.int64(buf[i + 1]) << 8
        if extra >= 1:
            h ^= np.int64(buf[i])
            h = (h * m) & mask
        h ^= h >> 13
        h = (h * m) & mask
        h ^= h >> 15
        out[j] = h & 0x7FFFFFFF
        start = end


_kernel: list[Any] = []


def key_hashes(keys: list[bytes | None]) -> list[int]:
    """``murmur2(key) & 0x7fffffff`` per key, ``NO_KEY`` for ``None``: the partition of a key
    among ``partitions`` (sorted) is ``partitions[hash % len(partitions)]``."""
    if not _kernel:
        _kernel.append(compiled(_murmur2_positive))
    if None in keys:
        lengths = np.fromiter((NO_KEY if k is None else len(k) for k in keys), dtype=np.int64, count=len(keys))
        keys = [k for k in keys if k is not None]
    else:  # the usual batch: map(len) stays in C
        lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))  # type: ignore[arg-type]
    buf = np.frombuffer(b"".join(keys), dtype=np.uint8)  # type: ignore[arg-type]
    out = np.empty(lengths.shape[0], dtype=np.int64)
    _kernel[0](buf, lengths, out)
    return out.tolist()
