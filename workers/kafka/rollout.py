"""A worker follows its pipeline's rollout state (``<pipeline>.control``): at start-up and live.

At start-up, before anything is consumed, the worker serves the state's primary (else the
primary before it, else the configured version). Live, a thread reads the control topic; when
the primary changes, it loads and verifies that version there (sha256, schema contract,
signature when trusted keys are set), so scoring does not stall, and offers it to the engine,
which switches between batches (``PipelineSwitch``). A version that fails verification is
refused: the worker keeps its model, logs it, counts it (``workers_rollout_refusals_total``)
and writes an audit record; so does every switch.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from workers.core import audit
from workers.core.pipeline import Pipeline
from workers.core.rollout import RolloutState, startup_versions, wanted_version
from workers.errors import ConfigError, WorkersError
from workers.kafka import audit as audit_log
from workers.kafka.control import ControlReader
from workers.kafka.engine import PipelineSwitch
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
                 refused_at_start: Iterable[str] = ()) -> None:
        super().__init__(name="rollout-follower", daemon=True)
        self.settings, self.reader, self.state, self.switch, self.load = settings, reader, state, switch, load
        self.serving = serving.manifest.version
        self.on_refused = refused
        self.refused: set[str] = set(refused_at_start)  # versions refused for the current state
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.step(self.reader.poll(timeout_ms=500))
        except Exception as exc:  # the worker keeps scoring with its model; rollouts are no longer followed
            log.error("rollout follower stopped; rollouts are not followed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.reader.close()

    def step(self, new_state: RolloutState | None) -> None:
        if new_state is not None:
            self.state, self.refused = new_state, set()
            log.info("rollout state received", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                     serving=self.serving, state=new_state.describe())
        version = wanted_version(self.state, self.serving, self.refused)
        if version is not None:
            self._switch_to(version)

    def _switch_to(self, version: str) -> None:
        command = self.state.command if self.state else ""
        try:
            pipeline = self.load(version)  # loaded and verified here, off the event loop
        except WorkersError as exc:
            self.refused.add(version)
            _refused(self.settings, version, exc, self.state)
            self.on_refused(version, str(exc))
            return
        applied = self.switch.offer(pipeline)
        while not applied.wait(0.5):
            if self.stopping.is_set():
                return
        previous, self.serving = self.serving, version
        manifest = pipeline.manifest
        log.info("model switched", pipeline=self.settings.pipeline, worker_id=self.settings.worker_id,
                 previous=previous, version=version, sha256=manifest.artifact_sha256, command=command)
        _audit(self.settings, audit.MODEL_SWITCHED, {
            "previous": previous, "version": version, "sha256": manifest.artifact_sha256, "command": command,
            "signer": pipeline.model.signer or "none (no trusted keys)"})
