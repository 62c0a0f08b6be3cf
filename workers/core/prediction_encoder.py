"""A direct Avro encoder for predictions of the project's contract (``prediction.v1.avsc``).

Half of fastavro's per-record cost on the hot path is generic work: looking the schema up
field by field, a buffer per record. This encoder knows the fields in order and memoizes
the encoded form of values that repeat across predictions (model name, version, sha256,
source topic, writer fingerprint, label), so a prediction costs about half as much. It is
used only when the pipeline's prediction schema is exactly that contract (same fields, same
types, same order); any other prediction schema is encoded by fastavro. Tests check that
both give the same bytes.
"""
from __future__ import annotations

import struct
from typing import Any

_FIELDS = (
    ("event_id", "string"), ("key", ["null", "string"]), ("score", "double"), ("label", ["null", "string"]),
    ("model_name", "string"), ("model_version", "string"), ("model_sha256", "string"),
    ("input_schema_fingerprint", "string"), ("source_topic", "string"), ("source_partition", "int"),
    ("source_offset", "long"), ("event_time", {"type": "long", "logicalType": "timestamp-millis"}),
    ("scored_at", {"type": "long", "logicalType": "timestamp-millis"}),
    ("flags", {"type": "array", "items": "string"}),
)
_MEMO_LIMIT = 4096  # repeated values are few; a stream of distinct ones must not grow memory
_ONE_BYTE = [bytes((n,)) for n in range(128)]
_double = struct.Struct("<d").pack


def _long(n: int) -> bytes:
    """Avro's zigzag varint (unrolled to 3 bytes: offsets and lengths; a loop beyond)."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(value: str) -> bytes:
    raw = value.encode()
    return _long(len(raw)) + raw


class PredictionEncoder:
    __slots__ = ("_blocks", "_memo", "_scored_at", "header")

    def __init__(self, header: bytes) -> None:
        self.header = header  # the framing: single-object or schema-registry header
        self._memo: dict[str, bytes] = {}
        # label .. source_topic are next to each other and the same for most of a stream: encoded once
        self._blocks: dict[tuple[str | None, str, str, str, str, str], bytes] = {}
        self._scored_at = (0, _long(0))  # the same for a whole batch: encoded once

    @staticmethod
    def fits(definition: Any) -> bool:
        """Is ``definition`` (a prediction schema's JSON) exactly the contract this encoder writes?"""
        if not isinstance(definition, dict) or definition.get("type") != "record":
            return False
        fields = definition.get("fields")
        if not isinstance(fields, list):
            return False
        return [(f.get("name"), f.get("type")) for f in fields if isinstance(f, dict)] == list(_FIELDS) \
            and len(fields) == len(_FIELDS)

    def _repeated(self, value: str) -> bytes:
        encoded = self._memo.get(value)
        if encoded is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            encoded = self._memo[value] = _string(value)
        return encoded

    def block(self, identity: tuple[str | None, str, str, str, str, str]) -> bytes:
        """label, model_name, model_version, model_sha256, input_schema_fingerprint, source_topic."""
        block = self._blocks.get(identity)
        if block is None:
            if len(self._blocks) >= _MEMO_LIMIT:
                self._blocks.clear()
            label = identity[0]
            block = self._blocks[identity] = b"".join((
                b"\x00" if label is None else b"\x02" + _string(label), *(_string(v) for v in identity[1:])))
        return block

    def encode(self, p: dict[str, Any]) -> bytes:
        key, flags, scored_at = p["key"], p["flags"], p["scored_at"]
        if self._scored_at[0] != scored_at:
            self._scored_at = (scored_at, _long(scored_at))
        return b"".join((
            self.header,
            _string(p["event_id"]),
            b"\x00" if key is None else b"\x02" + _string(key),
            _double(p["score"]),
            self.block((p["label"], p["model_name"], p["model_version"], p["model_sha256"],
                        p["input_schema_fingerprint"], p["source_topic"])),
            _long(p["source_partition"]),
            _long(p["source_offset"]),
            _long(p["event_time"]),
            self._scored_at[1],
            self.flags(flags),
        ))

    def flags(self, flags: list[str] | tuple[str, ...]) -> bytes:
        """The flags array: one block of items and the end marker, or only the marker."""
        if not flags:
            return b"\x00"
        return _long(len(flags)) + b"".join(self._repeated(f) for f in flags) + b"\x00"
