"""The audit trail's records: what happened to a pipeline, by whom, from where. Pure; no Kafka.

Written to ``<pipeline>.audit`` (Avro, ``SCHEMA`` below) by the worker when it
loads a model and starts with a configuration, and by ``workers replay`` for every run;
shown by ``workers audit``.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# The audit record's schema: built in (a pipeline's own schemas directory need not hold it).
SCHEMA_NAME = "audit.v1 (built in)"
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AuditEvent",
    "namespace": "io.workers.audit",
    "doc": "One entry of a pipeline's audit trail (<pipeline>.audit): a model load, a worker start, a replay run.",
    "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "when it happened"},
        {"name": "pipeline", "type": "string"},
        {"name": "action", "type": "string",
         "doc": "model_loaded, worker_started, replay_run, rollout_command, model_switched, rollout_refused, "
                "trial_started, trial_decided"},
        {"name": "actor", "type": "string", "doc": "the Kafka principal it acted as (the SASL user), else the OS user"},
        {"name": "host", "type": "string"},
        {"name": "worker_id", "type": ["null", "string"], "default": None},
        {"name": "details", "type": {"type": "map", "values": "string"}, "doc": "what was done, as text"},
    ],
}
MODEL_LOADED = "model_loaded"
WORKER_STARTED = "worker_started"
REPLAY_RUN = "replay_run"
ROLLOUT_COMMAND = "rollout_command"  # `workers rollout` wrote a new desired state
MODEL_SWITCHED = "model_switched"  # a worker serves another version (a rollout applied)
ROLLOUT_REFUSED = "rollout_refused"  # a worker refused a version that failed verification
TRIAL_STARTED = "trial_started"  # a worker runs a candidate as a shadow or canary
TRIAL_DECIDED = "trial_decided"  # a canary's guards rolled it back or promoted it (with the values why)


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
