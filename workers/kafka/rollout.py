"""A worker follows its pipeline's rollout state (``<pipeline>.control``): at start-up and live.

At start-up, before anything is consumed, the worker serves the state's primary (else the
primary before it, else the configured version). Live, a thread reads the control topic; when
the primary changes, it loads and verifies that version there (sha256, schema contract,
signature when trusted keys are set), so scoring does not stall, and offers it to the engine,
which switches between batches (``PipelineSwitch``). A version that fails verification is
refused: the worker keeps its model, logs it, counts it (``workers_rollout_refusals_total``)
and writes an audit record; so does every switch.

A candidate (shadow or canary) is loaded and verified the same way and offered as a ``Trial``.
When a canary's guards decide (in the engine, right after the batch), the engine has already
acted; this thread then audits the decision with its values and writes the new state to the
control topic, so that every worker, and every worker started later, follows it.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from workers.core import audit, rollout
from workers.core.canary import Decision, Guards
from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.pipeline import Pipeline
from workers.core.rollout import RolloutState, startup_versions, wanted_version
from workers.core.shadow import SCHEMA as SHADOW_SCHEMA
from workers.core.shadow import SCHEMA_NAME as SHADOW_SCHEMA_NAME
from workers.core.trial import SHADOW, Trial
from workers.errors import ConfigError, WorkersError
from workers.kafka import audit as audit_log
from workers.kafka.control import ControlReader, write_state
from workers.kafka.engine import EngineContext, PipelineSwitch
from workers.ops.logs import get_logger
from workers.settings import Settings

log = get_logger("workers.rollout")
Loader = Callable[[str | None], Pipeline]  # a version (None: the configured default) -> a verified pipeline


def open_control(settings: Settings) -> tuple[ControlReader | None, RolloutState | None]:
    """The reader positioned after the current state, and that state; (None, None) without a control topic
    (the worker then serves the configured version and follows no rollout)."""
    try:
        reader = ControlReader(settings)
    except ConfigError as exc:
        log.warning("rollouts not followed", pipeline=settings.pipeline, error=str(exc))
        return None, None
    try:
        return reader, reader.current()
    except BaseException:
        reader.close()
        raise


def load_at_start(settings: Settings, state: RolloutState | None, load: Loader,
                  refused: Callable[[str, str], None] = lambda version, reason: None) -> Pipeline:
    """The first of ``startup_versions`` that loads and verifies; each refusal is logged and audited."""
    versions = startup_versions(state, settings.model_version)
    for i, version in enumerate(versions):
        try:
            return load(version)
        except WorkersError as exc:
            if version is None or i == len(versions) - 1:
                raise  # the configured version: a start-up error as before
            _refused(settings, version, exc, state)
            refused(version, str(exc))
    raise ConfigError("no model version to serve")  # not reached: the configured one is always last


def _refused(settings: Settings, version: str, exc: BaseException, state: RolloutState | None) -> None:
    log.error("model version refused", pipeline=settings.pipeline, version=version, worker_id=settings.worker_id,
              error=str(exc), command=state.command if state else None)
    _audit(settings, audit.ROLLOUT_REFUSED, {"version": version, "error": str(exc),
                                              "command": state.command if state else ""})


def _audit(settings: Settings, action: str, details: dict[str, Any]) -> None:
    try:
        audit_log.write(settings, action, details, settings.worker_id)
    except WorkersError as exc:  # the decision stands; the missing record is logged
        log.error("audit record not written", action=action, error=str(exc), **details)


class RolloutFollower(threading.Thread):
    """Applies each new state of the control topic; one per worker process."""

    def __init__(self, settings: Settings, reader: ControlReader, state: RolloutState | None, serving: Pipeline,
                 switch: PipelineSwitch, load: Loader, refused: Callable[[str, str], None],
                 refused_at_start: Iterable[str] = (),
                 quality: Callable[[], dict[str, dict[str, Any]]] | None = None) -> None:
        super().__init__(name="rollout-follower", daemon=True)
        self.settings, self.reader, self.state, self.switch, self.load = settings, reader, state, switch, load
        self.serving = serving.manifest.version
        self.on_refused = refused
        self.refused: set[str] = set(refused_at_start)  # versions refused for the current state
        self.stopping = threading.Event()
        self.quality = quality  # live quality per model version (WORKERS_LIVE_QUALITY), for the quality guard
        self.trial: tuple[str, str, float, tuple] | None = None  # (candidate, mode, fraction, guards) running
        self.trial_obj: Trial | None = None  # the trial offered last (the one running, unless it decided)
        self.decided_under: RolloutState | None = None  # the state a local decision was taken under
        self.decisions: queue.SimpleQueue[tuple[Trial, Decision]] = queue.SimpleQueue()
        self._before_start: EngineContext | None = None  # set by ``begin``: apply offers at once
        switch.decision_listeners.append(lambda trial, decision: self.decisions.put((trial, decision)))

    def begin(self, context: EngineContext) -> None:
        """Before the engine starts: a trial the state names runs from the first batch, so a worker
        that joins during a canary never scores a canary key with the primary."""
        self._before_start = context
        try:
            self._follow_trial()
        finally:
            self._before_start = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.step(self.reader.poll(self.state, timeout_ms=500))
        except Exception as exc:  # the worker keeps scoring with its model; rollouts are no longer followed
            log.error("rollout follower stopped; rollouts are not followed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.reader.close()

    def step(self, new_state: RolloutState | None) -> None:
        if new_state is not None:  # first: a decision is written only against the latest state
            self.state, self.refused, self.decided_under = new_state, set(), None
            log.info("rollout state received", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                     serving=self.serving, state=new_state.describe())
        while not self.decisions.empty():
            self._decided(*self.decisions.get())
        if self.decided_under is not None:
            return  # the engine acted on a canary's decision: the state written for it comes next
        version = wanted_version(self.state, self.serving, self.refused)
        if version is not None and self.trial_obj is not None and self.trial_obj.version == version:
            self._promote_trial()  # the candidate on trial becomes the primary at one batch boundary
            version = None
        self._follow_trial()  # a trial the state ended ends before the primary changes
        if version is not None:
            self._switch_to(version)
            self._follow_trial()  # one the state starts runs next to the new primary

    def _promote_trial(self) -> None:
        """The trial's candidate (loaded and verified already) serves, and the trial ends, between
        the same two batches: its canary keys never go back to the old primary meanwhile."""
        trial = self.trial_obj
        assert trial is not None
        ended, applied = self.switch.offer_trial(None), self.switch.offer(trial.candidate)
        if not (self._offered(ended) and self._offered(applied)):
            return
        previous, self.serving, self.trial, self.trial_obj = self.serving, trial.version, None, None
        manifest = trial.candidate.manifest
        command = self.state.command if self.state else ""
        log.info("model switched", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                 previous=previous, version=trial.version, sha256=manifest.artifact_sha256, command=command)
        _audit(self.settings, audit.MODEL_SWITCHED, {
            "previous": previous, "version": trial.version, "sha256": manifest.artifact_sha256, "command": command,
            "signer": trial.candidate.model.signer or "none (no trusted keys)"})

    # ------------------------------------------------------------------ trials

    def _follow_trial(self) -> None:
        state = self.state
        wanted = None
        if state is not None and state.candidate is not None and state.candidate not in self.refused \
                and state.candidate != self.serving:
            wanted = (state.candidate, state.mode, state.fraction, tuple(sorted(state.guards.items())))
        if wanted == self.trial:
            return
        trial = None
        if wanted is not None:
            trial = self._trial(state)
            if trial is None:
                return  # refused: audited, counted; the primary serves on alone
        if not self._offered(self.switch.offer_trial(trial)):
            return
        self.trial, self.trial_obj = wanted, trial
        if trial is not None:
            log.info("trial started", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                     mode=trial.mode, candidate=trial.version, fraction=trial.fraction, primary=self.serving)
            _audit(self.settings, audit.TRIAL_STARTED, {"mode": trial.mode, "candidate": trial.version,
                                                         "fraction": trial.fraction, "primary": self.serving,
                                                         "command": state.command if state else ""})
        else:
            log.info("trial ended", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                     command=state.command if state else "")

    def _trial(self, state: Any) -> Trial | None:
        version = state.candidate
        try:
            candidate = self.load(version)
            if state.mode == SHADOW:
                from workers.kafka.clients import check_access

                check_access(self.settings, [self.settings.topics.shadow])
            guards = Guards.from_state(state.guards)
        except WorkersError as exc:
            self.refused.add(version)
            _refused(self.settings, version, exc, state)
            self.on_refused(version, str(exc))
            return None
        store = SchemaStore(self.settings.schemas_dir)
        codec = SingleObjectCodec(store, store.add_definition(SHADOW_SCHEMA, SHADOW_SCHEMA_NAME))
        trial = Trial(candidate, state.mode, fraction=state.fraction, guards=guards,
                      shadow_topic=self.settings.topics.shadow, shadow_codec=codec,
                      worker_id=self.settings.worker_id, primary_version=self.serving)
        trial.quality = self.quality
        return trial

    def _offered(self, applied: threading.Event) -> bool:
        if self._before_start is not None:
            self.switch.apply(self._before_start)
        while not applied.wait(0.5):
            if self.stopping.is_set():
                return False
        return True

    def _decided(self, trial: Trial, decision: Decision) -> None:
        """The engine ended a canary (rollback) or made its candidate the primary (promote): audit it
        with the guard values, and write the state that makes every worker do the same."""
        if trial is self.trial_obj:  # else the follower has offered another trial since: that one runs
            self.trial, self.trial_obj = None, None
        if decision.action == "promote":
            self.serving = trial.version  # what the engine serves now
        why = f"{decision.guard} by {self.settings.worker_id}"
        log.warning("canary decided", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                    candidate=trial.version, decision=decision.describe(), trial=trial.summary())
        _audit(self.settings, audit.TRIAL_DECIDED, {
            "action": decision.action, "guard": decision.guard, "candidate": trial.version, "mode": trial.mode,
            **{f"value.{k}": f"{v:.4g}" if isinstance(v, float) else v for k, v in decision.values.items()},
            "primary": trial.primary_side.summary(), "candidate_side": trial.candidate_side.summary()})
        new = rollout.decided(self.state, trial.version, decision.action, why, audit_log.actor(self.settings),
                              int(time.time() * 1000))
        if new is None:
            return  # the state moved on (a command, another worker's decision): follow it as it is
        # Until the state written for it (or any later one) arrives, this worker keeps what its engine
        # did: it neither restarts the trial nor switches back.
        self.decided_under = self.state
        try:
            write_state(self.settings, new)
        except WorkersError as exc:  # this worker has acted; the others follow their own guards
            log.error("rollout state not written; other workers decide by their own guards", error=str(exc))

    def _switch_to(self, version: str) -> None:
        command = self.state.command if self.state else ""
        try:
            pipeline = self.load(version)  # loaded and verified here, off the event loop
        except WorkersError as exc:
            self.refused.add(version)
            _refused(self.settings, version, exc, self.state)
            self.on_refused(version, str(exc))
            return
        if not self._offered(self.switch.offer(pipeline)):
            return
        previous, self.serving = self.serving, version
        manifest = pipeline.manifest
        log.info("model switched", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                 previous=previous, version=version, sha256=manifest.artifact_sha256, command=command)
        _audit(self.settings, audit.MODEL_SWITCHED, {
            "previous": previous, "version": version, "sha256": manifest.artifact_sha256, "command": command,
            "signer": pipeline.model.signer or "none (no trusted keys)"})
