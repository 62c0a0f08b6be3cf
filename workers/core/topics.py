"""A pipeline's topic names: one place that spells them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineTopics:
    events: str  # the input: events produced by the upstream applications
    predictions: str  # one prediction per scored event
    dlq: str  # dead letters: the original bytes and why they were not scored
    audit: str  # the audit trail: model loads, worker starts, replay runs, rollouts
    control: str = ""  # compacted: the rollout state, one record keyed by the pipeline (workers.core.rollout)
    shadow: str = ""  # a shadow candidate's scores next to the primary's (workers.core.shadow)
    labels: str = ""  # ground truth, joined to predictions by event id (workers.core.quality)

    @classmethod
    def for_pipeline(cls, pipeline: str, prefix: str = "") -> PipelineTopics:
        base = f"{prefix}{pipeline}"
        return cls(events=f"{base}.events", predictions=f"{base}.predictions", dlq=f"{base}.dlq",
                   audit=f"{base}.audit", control=f"{base}.control", shadow=f"{base}.shadow",
                   labels=f"{base}.labels")

    def with_events(self, topic: str) -> PipelineTopics:
        """The same outputs fed from another input topic (benchmarks share one backlog)."""
        return dataclasses.replace(self, events=topic)

    def all(self) -> list[str]:
        optional = (self.control, self.shadow, self.labels)
        return [self.events, self.predictions, self.dlq, self.audit, *[t for t in optional if t]]

    def configs(self) -> dict[str, dict[str, str]]:
        """Topic-level configs a topic needs (the others take the broker's defaults)."""
        return {self.control: CONTROL_CONFIG} if self.control else {}


CONTROL_CONFIG = {"cleanup.policy": "compact"}  # the latest state per pipeline is kept forever
