"""The audit trail's records: what happened to a pipeline, by whom, from where. Pure; no Kafka.

Written to ``<pipeline>.audit`` (Avro, ``schemas/audit.v1.avsc``) by the worker when it
loads a model and starts with a configuration, and by ``workers replay`` for every run;
shown by ``workers audit``.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SCHEMA = "audit.v1.avsc"
MODEL_LOADED = "model_loaded"
WORKER_STARTED = "worker_started"
REPLAY_RUN = "replay_run"


def event(pipeline: str, action: str, actor: str, host: str, details: dict[str, Any], at_ms: int,
          worker_id: str | None = None) -> dict[str, Any]:
    return {"at": at_ms, "pipeline": pipeline, "action": action, "actor": actor, "host": host,
            "worker_id": worker_id, "details": {k: "" if v is None else str(v) for k, v in details.items()}}


def describe(record: dict[str, Any]) -> str:
    """One line per entry, for `workers audit`."""
    details = " ".join(f"{k}={v}" for k, v in sorted(record["details"].items()))
    who = f"{record['actor']}@{record['host']}" + (f" ({record['worker_id']})" if record.get("worker_id") else "")
    at = datetime.fromtimestamp(record["at"] / 1000, UTC).isoformat(timespec="seconds")
    return f"{at} {record['pipeline']} {record['action']} by {who}: {details}"
