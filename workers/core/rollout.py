"""A pipeline's rollout state: what ``<pipeline>.control`` carries and what a worker makes of it. Pure.

The control topic is compacted and keyed by the pipeline's name: its latest record is the
desired state. ``workers rollout`` writes it; every worker reads it at start-up and follows
it live: ``primary`` is the version that scores; a ``candidate`` runs next to it as a shadow
or as a canary over ``fraction`` of the keys, judged by ``guards`` (``workers.core.canary``).
A worker writes it too when a canary's guards decide: an automatic rollback or promotion.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from workers.core.canary import Guards
from workers.core.registry import check_plain_name
from workers.errors import ConfigError

SCHEMA = "workers.rollout.v1"
MODES = ("none", "shadow", "canary")


@dataclass(frozen=True)
class RolloutState:
    pipeline: str
    primary: str  # the version that scores every event
    previous: str | None = None  # the primary before the last change: what `rollback` returns to
    candidate: str | None = None  # on trial next to the primary (mode shadow or canary)
    mode: str = "none"
    fraction: float = 0.0
    guards: dict[str, float] = field(default_factory=dict)
    command: str = ""  # the command that wrote this state, e.g. "promote 1.1.0"
    actor: str = ""
    at_ms: int = 0
    # A worker's automatic decision names the state it was taken under: applied only if that is
    # still the latest (``follows``), so two workers deciding differently cannot overwrite each other.
    based_on: str | None = None

    def __post_init__(self) -> None:
        check_plain_name("pipeline", self.pipeline)
        for name in ("primary", "previous", "candidate"):
            value = getattr(self, name)
            if value is not None:
                check_plain_name(f"rollout {name} version", value)
        if self.mode not in MODES:
            raise ConfigError(f"rollout mode {self.mode!r} is not one of {', '.join(MODES)}")
        if (self.mode == "none") != (self.candidate is None):
            raise ConfigError(f"rollout mode {self.mode!r} with candidate {self.candidate!r}: a shadow or canary "
                              "needs a candidate, and mode none has none")
        if not 0.0 <= self.fraction <= 1.0:
            raise ConfigError(f"rollout fraction {self.fraction} is not between 0 and 1")
        Guards.from_state(self.guards)  # an unknown guard is refused here, not ignored later

    def to_json(self) -> bytes:
        return json.dumps({"schema": SCHEMA, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | None, source: str) -> RolloutState:
        """A record of the control topic; ``ConfigError`` naming ``source`` if it is not a valid state."""
        try:
            raw = json.loads(data or b"")
            if not isinstance(raw, dict) or raw.pop("schema", None) != SCHEMA:
                raise ValueError(f"not a {SCHEMA} record")
            return cls(**{**raw, "guards": {str(k): float(v) for k, v in (raw.get("guards") or {}).items()}})
        except ConfigError as exc:
            raise ConfigError(f"invalid rollout state in {source}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid rollout state in {source}: {exc}") from None

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(self.to_json()).hexdigest()[:16]

    def follows(self, current: RolloutState | None) -> bool:
        """Whether this record applies after ``current``: a command always does; a worker's decision
        only if taken under ``current`` (another decision or a command came first: it is stale)."""
        return self.based_on is None or (current is not None and current.fingerprint() == self.based_on)

    def describe(self) -> str:
        at = datetime.fromtimestamp(self.at_ms / 1000, UTC).isoformat(timespec="seconds") if self.at_ms else "-"
        trial = f"candidate {self.candidate} ({self.mode}" + (
            f", fraction {self.fraction:g})" if self.mode == "canary" else ")") if self.candidate else "no candidate"
        return (f"{self.pipeline}: primary {self.primary} (previous {self.previous or '-'}), {trial}; "
                f"last command {self.command or '-'!r} by {self.actor or '-'} at {at}")


def promote(state: RolloutState | None, version: str | None, serving: str, actor: str, at_ms: int,
            pipeline: str, why: str = "") -> RolloutState:
    """``version`` (None: the candidate on trial) becomes the primary, and the trial ends;
    ``serving`` is the primary when no state was written yet."""
    if version is None:
        if state is None or state.candidate is None:
            raise ConfigError("promote needs a model version: no candidate is on trial")
        version = state.candidate
    primary = state.primary if state is not None else serving
    previous: str | None = primary
    if primary == version:  # promoting the primary again keeps what to roll back to
        previous = state.previous if state is not None else None
    return RolloutState(pipeline, primary=version, previous=previous, command=f"promote {version}{why}",
                        actor=actor, at_ms=at_ms)


def rollback(state: RolloutState | None, actor: str, at_ms: int, why: str = "") -> RolloutState:
    """A trial running: it ends, the primary stays. Else: back to the previous primary."""
    if state is not None and state.candidate is not None:
        return RolloutState(state.pipeline, primary=state.primary, previous=state.previous,
                            command=f"rollback {state.mode} {state.candidate}{why}", actor=actor, at_ms=at_ms)
    if state is None or state.previous is None:
        raise ConfigError("nothing to roll back to: no earlier primary on the control topic")
    return RolloutState(state.pipeline, primary=state.previous, previous=state.primary,
                        command=f"rollback to {state.previous}", actor=actor, at_ms=at_ms)


def trial(state: RolloutState | None, mode: str, version: str, fraction: float, serving: str, actor: str,
          at_ms: int, pipeline: str, guards: dict[str, float] | None = None) -> RolloutState:
    """A shadow or canary candidate next to the primary (``guards``: a canary's, see ``Guards``)."""
    base = state or RolloutState(pipeline, primary=serving)
    if version == base.primary:
        raise ConfigError(f"{version} is the primary already: a {mode} needs another version")
    command = f"{mode} {version}" + (f" --fraction {fraction:g}" if mode == "canary" else "")
    command += "".join(f" --guard {k}={v:g}" for k, v in sorted((guards or {}).items()))
    return replace(base, candidate=version, mode=mode, fraction=fraction if mode == "canary" else 0.0,
                   guards=dict(guards or {}) if mode == "canary" else {}, command=command, actor=actor, at_ms=at_ms,
                   based_on=None)  # a command: it applies whatever came before


def decided(state: RolloutState | None, candidate: str, action: str, why: str, actor: str,
            at_ms: int) -> RolloutState | None:
    """The state after a worker's guards decided about ``candidate`` (``action``: rollback or
    promote); None when the state moved on meanwhile (another worker decided, or a command)."""
    if state is None or state.candidate != candidate:
        return None
    if action == "promote":
        new = promote(state, None, state.primary, actor, at_ms, state.pipeline, why=f" (automatic: {why})")
    else:
        new = rollback(state, actor, at_ms, why=f" (automatic: {why})")
    return replace(new, based_on=state.fingerprint())


def startup_versions(state: RolloutState | None, configured: str | None) -> list[str | None]:
    """The versions a starting worker tries, in order: the state's primary, the primary before it
    (when the current one is refused, that is what the running workers kept), then the configured
    one (None: ``models/<pipeline>/CURRENT`` or the newest)."""
    found: list[str | None] = []
    for version in [*([state.primary, state.previous] if state is not None else []), configured]:
        if version not in found and (version is not None or version is configured):
            found.append(version)
    return found


def wanted_version(state: RolloutState | None, serving: str, refused: set[str]) -> str | None:
    """The version a running worker should switch to now, or None: keep serving. A version this
    worker refused for the current state is not tried again."""
    if state is None or state.primary == serving or state.primary in refused:
        return None
    return state.primary
