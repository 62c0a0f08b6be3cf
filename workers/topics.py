"""Pipeline topic names and their creation with kafka-python's admin client."""
from __future__ import annotations

from dataclasses import dataclass

from workers.settings import Settings


@dataclass(frozen=True)
class PipelineTopics:
    events: str
    predictions: str
    dlq: str
    shadow: str
    audit: str

    @classmethod
    def for_pipeline(cls, pipeline: str, prefix: str = "") -> PipelineTopics:
        base = f"{prefix}{pipeline}"
        return cls(
            events=f"{base}.events",
            predictions=f"{base}.predictions",
            dlq=f"{base}.dlq",
            shadow=f"{base}.shadow",
            audit=f"{prefix}workers.audit",
        )

    def all(self) -> list[str]:
        return [self.events, self.predictions, self.dlq, self.shadow, self.audit]


def create_topics(
    settings: Settings, names: list[str], partitions: int | None = None, config: dict[str, str] | None = None
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(client_id="workers-admin", **settings.kafka_client_options())
    try:
        existing = set(admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        created = []
        for name in wanted:
            topic = NewTopic(
                name=name,
                num_partitions=partitions or settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=config or {},
            )
            try:
                admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won; same outcome
        return created
    finally:
        admin.close()
