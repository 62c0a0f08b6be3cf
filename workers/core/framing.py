"""Input and output framings: Avro single-object encoding, and the Schema Registry wire format.

Teams that produce with a Confluent-compatible Schema Registry (Java ``KafkaAvroSerializer``,
confluent-kafka's ``AvroSerializer``) write a zero byte, the writer schema's 4-byte
big-endian registry id, then the Avro binary body. Single-object encoding starts with
``C3 01``, so one topic can carry both and the first byte tells them apart (``both``).

The core never calls the registry: the adapter fetches the writer schemas of the ids a
batch uses (``RegisteredSchemas.missing``) before ``Pipeline.process`` runs, so decoding
stays a pure function. An id the registry does not know is ``unknown_schema``; a registry
that cannot be reached is the adapter's transient problem, never a verdict on a record.
"""
from __future__ import annotations

import io
import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import fastavro

from workers.core.codec import MAGIC, SchemaStore, SingleObjectCodec, StoredSchema, read_body
from workers.core.reasons import CORRUPT, UNKNOWN_SCHEMA
from workers.errors import RecordError

REGISTRY_MAGIC = 0
REGISTRY_HEADER_SIZE = 5  # magic byte + 4-byte schema id
UNKNOWN_RETRY_S = 60.0  # an id the registry did not know is asked about again after this long


class Framing(StrEnum):
    SINGLE_OBJECT = "single_object"
    REGISTRY = "registry"  # the Confluent Schema Registry wire format
    BOTH = "both"  # told apart by the first byte


def registry_id(payload: bytes | None) -> int | None:
    """The schema id of a registry-framed payload, or None when it is not one."""
    if payload and payload[0] == REGISTRY_MAGIC and len(payload) >= REGISTRY_HEADER_SIZE:
        return int.from_bytes(payload[1:REGISTRY_HEADER_SIZE], "big")
    return None


class UnresolvedSchemaId(Exception):
    """A bug in the adapter: a batch reached the core before its schema ids were fetched."""


class RegisteredSchemas:
    """Writer schemas by registry id, as the adapter fetched them (None: the registry does not know it)."""

    def __init__(self, store: SchemaStore, unknown_retry_s: float = UNKNOWN_RETRY_S) -> None:
        self._store = store
        self._by_id: dict[int, StoredSchema | None] = {}
        self._unknown_since: dict[int, float] = {}  # ids the registry did not know, and when it said so
        self._unknown_retry_s = unknown_retry_s

    def missing(self, payloads: Iterable[bytes | None]) -> set[int]:
        """The ids used by ``payloads`` that have not been fetched yet."""
        if self._unknown_since:
            self._forget_unknown_older_than(time.monotonic() - self._unknown_retry_s)
        by_id = self._by_id
        out = set()
        for payload in payloads:
            if payload and payload[0] == REGISTRY_MAGIC:
                schema_id = registry_id(payload)
                if schema_id is not None and schema_id not in by_id:
                    out.add(schema_id)
        return out

    def add(self, schema_id: int, definition: Any | None) -> StoredSchema | None:
        """Record what the registry answered for ``schema_id`` (its JSON definition, or None)."""
        stored = None if definition is None else self._store.parse_definition(definition, f"registry id {schema_id}")
        self._by_id[schema_id] = stored
        if stored is None:
            self._unknown_since[schema_id] = time.monotonic()
        return stored

    def _forget_unknown_older_than(self, cutoff: float) -> None:
        """Ask again about ids the registry did not know a while ago (a schema registered since:
        a replayed dead letter then decodes)."""
        for schema_id, since in list(self._unknown_since.items()):
            if since <= cutoff:
                del self._unknown_since[schema_id]
                self._by_id.pop(schema_id, None)

    def fetched(self, schema_id: int) -> StoredSchema | None:
        """The writer schema of ``schema_id`` if it was fetched and the registry knew it, else None."""
        return self._by_id.get(schema_id)

    def get(self, schema_id: int) -> StoredSchema | None:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnresolvedSchemaId(f"schema id {schema_id} was not fetched before decoding") from None


class InputDecoder:
    """Decode events in the configured framing into the pipeline's reader schema."""

    __slots__ = ("_accept_registry", "_accept_single", "_single", "reader", "registered")

    def __init__(self, single: SingleObjectCodec, framing: Framing, registered: RegisteredSchemas | None) -> None:
        if framing is not Framing.SINGLE_OBJECT and registered is None:
            raise ValueError(f"framing {framing} needs the registry's schemas")
        self._single = single
        self.reader = single.reader
        self.registered = registered if framing is not Framing.SINGLE_OBJECT else None
        self._accept_single = framing is not Framing.REGISTRY
        self._accept_registry = framing is not Framing.SINGLE_OBJECT

    def decode(self, payload: bytes | None) -> tuple[dict[str, Any], StoredSchema]:
        if payload and payload[0] == REGISTRY_MAGIC and self._accept_registry:
            schema_id = registry_id(payload)
            if schema_id is None:
                raise RecordError(CORRUPT, "registry wire format with a short header")
            assert self.registered is not None
            writer = self.registered.get(schema_id)
            if writer is None:
                raise RecordError(UNKNOWN_SCHEMA, f"schema id {schema_id} is not in the schema registry")
            return read_body(payload, REGISTRY_HEADER_SIZE, writer, self.reader), writer
        if self._accept_single:
            return self._single.decode(payload)
        got = "empty payload" if not payload else (
            "Avro single-object encoding" if payload[:2] == MAGIC else f"first byte 0x{payload[0]:02x}")
        raise RecordError(CORRUPT, f"expected the schema registry wire format (magic byte 0), got {got}")


class RegistryEncoder:
    """Encode records in the registry wire format under a schema id the registry assigned."""

    __slots__ = ("_header", "reader")

    def __init__(self, schema: StoredSchema, schema_id: int) -> None:
        self.reader = schema
        self._header = bytes([REGISTRY_MAGIC]) + schema_id.to_bytes(4, "big")

    @property
    def header(self) -> bytes:
        return self._header

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self.reader.plain, record)
        return out.getvalue()
