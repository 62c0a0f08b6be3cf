"""Outputs appended to an aiokafka producer batch in one loop.

``BatchBuilder.append`` is a keyword call per record that serializes (nothing, here), checks
the batch is open and counts offsets before it reaches the compiled record builder. For a
batch of predictions this loop calls the compiled builder directly (~0.15 µs per record
instead of ~0.3). Batches of another kind (a test's stand-in, another aiokafka version, a
producer with serializers) get ``append`` per record.
"""
from __future__ import annotations

from typing import Any

from workers.core.records import OutputRecord

try:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
except ImportError:  # pragma: no cover - another aiokafka layout: the per-record path
    DefaultRecordBatchBuilder = None


def _direct(batch: Any) -> Any:
    """The compiled builder, when ``batch`` is aiokafka's BatchBuilder as this module knows it."""
    builder = getattr(batch, "_builder", None)
    if DefaultRecordBatchBuilder is None or type(builder) is not DefaultRecordBatchBuilder:
        return None
    if getattr(batch, "_key_serializer", None) or getattr(batch, "_value_serializer", None):
        return None
    if getattr(batch, "_closed", True) or not isinstance(getattr(batch, "_relative_offset", None), int):
        return None
    return builder


def append_outputs(batch: Any, outputs: list[OutputRecord], start: int = 0) -> int:
    """Append ``outputs[start:]`` until the batch is full; the index of the first one left out.

    An empty batch takes its first record whatever its size, as ``BatchBuilder.append`` does,
    so each call appends at least one record."""
    builder = _direct(batch)
    end = len(outputs)
    i = start
    if builder is None:
        while i < end:
            o = outputs[i]
            if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
                break
            i += 1
        return i
    append, offset = builder.append, batch._relative_offset
    while i < end:
        o = outputs[i]
        if append(offset, None, o.key, o.value, o.headers) is None:
            batch.close()  # full: as BatchBuilder.append leaves it
            break
        offset += 1
        i += 1
    batch._relative_offset = offset
    return i
