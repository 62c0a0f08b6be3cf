"""Plain value objects that cross the boundary between the core and the adapters."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class InputRecord:
    """One consumed message, as any adapter (Kafka, file, HTTP) hands it to the core."""

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_ms: int | None = None
    headers: Headers = field(default_factory=list)
    parse_error: str | None = None  # the Kafka client could not parse this record (value and key are lost)
    # An event the adapter has read already (a file's row, an HTTP request's row): checked against the
    # input schema (``workers.core.rows``) instead of decoding ``value``.
    decoded: dict[str, Any] | None = None
    value_format: str = "avro"  # "json": ``value`` is one JSON object (a line of a JSON-lines file)

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(slots=True)
class OutputRecord:
    """A message to publish: a prediction or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str | None = None  # set for dead letters only
    score: float | None = None  # set for predictions only
    prediction: dict[str, Any] | None = None  # the prediction before encoding (for file and HTTP outputs)

    @property
    def is_dead_letter(self) -> bool:
        return self.reason is not None
