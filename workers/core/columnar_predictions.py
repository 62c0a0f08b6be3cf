"""The predictions of a whole batch encoded in one compiled pass (the contract's schema only).

``PredictionEncoder.encode`` costs ~2.5 µs per prediction, almost all of it Python calls
(a varint, a string, a join per field). Here Python pulls each field out of the batch's
prediction dicts as a column (list comprehensions and ``str.encode``, all in C), and one
compiled call (numba, without the GIL) writes every prediction's bytes back to back; each
prediction is then a slice of that buffer. The bytes are exactly those of
``PredictionEncoder.encode`` (tests compare them on generated predictions), which also
encodes any batch this path does not take: fewer than ``COLUMNAR_FROM`` predictions, or an
integer outside Avro's long.
"""
from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from workers.core.jit import compiled
from workers.core.prediction_encoder import PredictionEncoder

COLUMNAR_FROM = 32  # below this, the compiled call's fixed cost (~50 µs with its arrays) is more than it saves


def _varint_size(value: int) -> int:
    n = np.uint64((value << 1) ^ (value >> 63))  # zigzag, 64-bit
    size = 1
    while n > 0x7F:
        n >>= np.uint64(7)
        size += 1
    return size


def _put_varint(out: np.ndarray, pos: int, value: int) -> int:
    n = np.uint64((value << 1) ^ (value >> 63))
    while n > 0x7F:
        out[pos] = np.uint8((n & np.uint64(0x7F)) | np.uint64(0x80))
        pos += 1
        n >>= np.uint64(7)
    out[pos] = np.uint8(n)
    return pos + 1


def _put(out: np.ndarray, pos: int, source: np.ndarray, start: int, end: int) -> int:
    for k in range(start, end):
        out[pos] = source[k]
        pos += 1
    return pos


def _write_all(header: np.ndarray, ids: np.ndarray, id_ends: np.ndarray, keys: np.ndarray, key_ends: np.ndarray,
               key_null: np.ndarray, scores: np.ndarray, blocks: np.ndarray, block_ends: np.ndarray,
               block_of: np.ndarray, ints: np.ndarray, tails: np.ndarray, tail_ends: np.ndarray,
               tail_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every prediction's bytes in field order; ``ends[i]`` is where prediction i ends.

    ``ints[i]`` holds source_partition, source_offset, event_time and scored_at; ``tails`` are
    the distinct encoded flags arrays. Strings come as UTF-8 bytes back to back with their ends.
    """
    varint_size, put_varint, put = _jit_varint_size, _jit_put_varint, _jit_put
    n = id_ends.shape[0]
    ends = np.empty(n, dtype=np.int64)
    size = 0
    for i in range(n):  # sizes first: one allocation
        id_start = id_ends[i - 1] if i else 0
        size += header.shape[0] + varint_size(id_ends[i] - id_start) + id_ends[i] - id_start + 1 + 8
        if not key_null[i]:
            key_start = key_ends[i - 1] if i else 0
            size += varint_size(key_ends[i] - key_start) + key_ends[i] - key_start
        b = block_of[i]
        size += block_ends[b] - (block_ends[b - 1] if b else 0)
        for c in range(4):
            size += varint_size(ints[i, c])
        t = tail_of[i]
        size += tail_ends[t] - (tail_ends[t - 1] if t else 0)
        ends[i] = size
    out = np.empty(size, dtype=np.uint8)
    pos = 0
    for i in range(n):
        pos = put(out, pos, header, 0, header.shape[0])
        id_start = id_ends[i - 1] if i else 0
        pos = put_varint(out, pos, id_ends[i] - id_start)
        pos = put(out, pos, ids, id_start, id_ends[i])
        if key_null[i]:
            out[pos] = 0
            pos += 1
        else:
            key_start = key_ends[i - 1] if i else 0
            out[pos] = 2
            pos = put_varint(out, pos + 1, key_ends[i] - key_start)
            pos = put(out, pos, keys, key_start, key_ends[i])
        pos = put(out, pos, scores[i], 0, 8)
        b = block_of[i]
        pos = put(out, pos, blocks, block_ends[b - 1] if b else 0, block_ends[b])
        for c in range(4):
            pos = put_varint(out, pos, ints[i, c])
        t = tail_of[i]
        pos = put(out, pos, tails, tail_ends[t - 1] if t else 0, tail_ends[t])
    return out, ends


_jit_varint_size: Any = None  # the compiled helpers that the compiled ``_write_all`` calls
_jit_put_varint: Any = None
_jit_put: Any = None
_write_compiled: list[Any] = []


def _compile() -> Any:
    if _write_compiled:
        return _write_compiled[0]
    global _jit_varint_size, _jit_put_varint, _jit_put
    _jit_varint_size, _jit_put_varint, _jit_put = compiled(_varint_size), compiled(_put_varint), compiled(_put)
    _write_compiled.append(compiled(_write_all))
    return _write_compiled[0]


def _utf8(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as UTF-8 bytes back to back, and where each ends."""
    raw = [t.encode() for t in texts]
    ends = np.cumsum(np.fromiter(map(len, raw), dtype=np.int64, count=len(raw)))
    return np.frombuffer(b"".join(raw), dtype=np.uint8), ends


def _distinct(values: list[Any], encode: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The encoded forms of the distinct values back to back with their ends, and the index of each value's."""
    index: dict[Any, int] = {}
    which = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
    distinct = [encode(v) for v in index]
    ends = np.cumsum(np.fromiter(map(len, distinct), dtype=np.int64, count=len(distinct)))
    return np.frombuffer(b"".join(distinct), dtype=np.uint8), ends, which


class ColumnarPredictionEncoder:
    """``encode_many`` gives the bytes ``encoder.encode`` gives for each prediction, a batch per call."""

    def __init__(self, encoder: PredictionEncoder) -> None:
        self._encoder = encoder
        self._header = np.frombuffer(encoder.header, dtype=np.uint8)
        self._write = _compile()
        self.encode_many([_SAMPLE] * COLUMNAR_FROM)  # compiles (or loads the cached code) at start-up

    def encode_many(self, predictions: list[dict[str, Any]]) -> list[bytes]:
        encoder = self._encoder
        n = len(predictions)
        if n < COLUMNAR_FROM:
            return [encoder.encode(p) for p in predictions]
        try:
            ints = np.array([[p["source_partition"] for p in predictions], [p["source_offset"] for p in predictions],
                             [p["event_time"] for p in predictions], [p["scored_at"] for p in predictions]],
                            dtype=np.int64).T.copy()
        except OverflowError:  # beyond a long: encoded one by one, which raises as fastavro would
            return [encoder.encode(p) for p in predictions]
        keys = [p["key"] for p in predictions]
        ids, id_ends = _utf8([p["event_id"] for p in predictions])
        key_bytes, key_ends = _utf8([k or "" for k in keys])
        key_null = np.array([k is None for k in keys], dtype=np.bool_)
        scores = np.array([p["score"] for p in predictions], dtype=np.float64).view(np.uint8).reshape(n, 8)
        blocks, block_ends, block_of = self._blocks(predictions)
        flags = [p["flags"] for p in predictions]
        if any(flags):
            tails, tail_ends, tail_of = _distinct([tuple(f) for f in flags], encoder.flags)
        else:
            tails, tail_ends, tail_of = _NO_FLAGS, _NO_FLAGS_END, np.zeros(n, dtype=np.int64)
        out, ends = self._write(self._header, ids, id_ends, key_bytes, key_ends, key_null, scores, blocks,
                                block_ends, block_of, ints, tails, tail_ends, tail_of)
        data = out.tobytes()
        starts = [0, *ends.tolist()]
        return [data[a:b] for a, b in pairwise(starts)]

    def _blocks(self, predictions: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct encoded label..source_topic blocks, and each prediction's. Usually only
        the label varies in a batch: then the distinct labels decide."""
        n = len(predictions)
        label, *rest = [[p[f] for p in predictions] for f in _BLOCK_FIELDS]
        same = [column[0] for column in rest]
        if all(column.count(value) == n for column, value in zip(rest, same)):  # noqa: B905
            return _distinct(label, lambda lbl: self._encoder.block((lbl, *same)))
        return _distinct(list(zip(label, *rest)), self._encoder.block)  # noqa: B905


_BLOCK_FIELDS = ("label", "model_name", "model_version", "model_sha256", "input_schema_fingerprint", "source_topic")
_NO_FLAGS = np.zeros(1, dtype=np.uint8)  # an empty array: its end marker only
_NO_FLAGS_END = np.ones(1, dtype=np.int64)
_SAMPLE: dict[str, Any] = {
    "event_id": "e", "key": None, "score": 0.5, "label": None, "model_name": "m", "model_version": "1",
    "model_sha256": "0" * 64, "input_schema_fingerprint": "0" * 16, "source_topic": "t", "source_partition": 0,
    "source_offset": 0, "event_time": 0, "scored_at": 0, "flags": [],
}
