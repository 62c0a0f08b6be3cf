"""``workers rollout status | promote V | rollback | shadow V | canary V --fraction F``.

A command reads the current state from ``<pipeline>.control``, writes the new one (acknowledged
by the broker) and an audit record of the command, and returns what to print. ``status`` also
shows what each worker reported on ``<pipeline>.audit``: the version it loaded or switched to,
or the version it refused and why.
"""
from __future__ import annotations

import time
from typing import Any

from workers.core import audit, rollout
from workers.core.rollout import RolloutState
from workers.errors import ConfigError, WorkersError
from workers.kafka import audit as audit_log
from workers.kafka.control import read_state, write_state
from workers.settings import Settings

REPORTED = (audit.MODEL_LOADED, audit.MODEL_SWITCHED, audit.ROLLOUT_REFUSED, audit.TRIAL_STARTED,
            audit.TRIAL_DECIDED)


def _serving(settings: Settings) -> str:
    """The version served when no state was written yet: WORKERS_MODEL_VERSION, CURRENT, or the newest."""
    from workers.pipelines import load_manifest

    return load_manifest(settings)[0].version


def change(settings: Settings, action: str, version: str | None = None, fraction: float = 0.0,
           guards: dict[str, float] | None = None) -> list[str]:
    current = read_state(settings)
    actor, now = audit_log.actor(settings), int(time.time() * 1000)
    if action == "rollback":
        new = rollout.rollback(current, actor, now)
    else:
        serving = current.primary if current is not None else _serving(settings)
        if action == "promote":
            new = rollout.promote(current, version, serving, actor, now, settings.pipeline)
        elif version is None:
            raise ConfigError(f"rollout {action} needs a model version")
        else:
            new = rollout.trial(current, action, version, fraction, serving, actor, now, settings.pipeline, guards)
    write_state(settings, new)
    audit_log.write(settings, audit.ROLLOUT_COMMAND, {"command": new.command, "primary": new.primary,
                                                      "previous": new.previous, "candidate": new.candidate,
                                                      "mode": new.mode, "fraction": new.fraction})
    return [f"wrote: {new.describe()}"]


def status(settings: Settings, idle_timeout_s: float = 2.0) -> list[str]:
    state = read_state(settings)
    lines = [state.describe() if state is not None else
             f"{settings.pipeline}: no rollout state on {settings.topics.control} (workers serve their configured "
             "version)"]
    for worker, record in sorted(worker_reports(settings, idle_timeout_s).items()):
        lines.append(f"  worker {worker}: {describe_report(record, state)}")
    return lines


def worker_reports(settings: Settings, idle_timeout_s: float) -> dict[str, dict[str, Any]]:
    """Each worker's latest load, switch or refusal, from the audit trail."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        for record in audit_log.read(settings, idle_timeout_s=idle_timeout_s):
            if record["action"] in REPORTED and record.get("worker_id"):
                latest[record["worker_id"]] = record
    except WorkersError:
        return {}  # no audit topic (or no right to read it): the state alone is shown
    return latest


def describe_report(record: dict[str, Any], state: RolloutState | None) -> str:
    details = record["details"]
    if record["action"] == audit.ROLLOUT_REFUSED:
        return f"REFUSED {details.get('version')} (keeps its model): {details.get('error')}"
    if record["action"] == audit.TRIAL_STARTED:
        share = f" over {float(details.get('fraction') or 0):.0%} of keys" if details.get("mode") == "canary" else ""
        return f"serves {details.get('primary')} with {details.get('candidate')} as {details.get('mode')}{share}"
    if record["action"] == audit.TRIAL_DECIDED:
        values = ", ".join(f"{k.removeprefix('value.')}={v}" for k, v in sorted(details.items())
                           if k.startswith("value."))
        verb = "PROMOTED" if details.get("action") == "promote" else "ROLLED BACK"
        return (f"{verb} {details.get('mode')} {details.get('candidate')} automatically "
                f"({details.get('guard')}: {values})")
    version = details.get("version", "?")
    behind = f" (not the primary {state.primary})" if state is not None and version != state.primary else ""
    return f"serves {version}{behind} since {record['action'].replace('_', ' ')}"
