"""Topic creation with kafka-python's admin client (``workers topics create``, demo, tests)."""
from __future__ import annotations

from workers.kafka.clients import admin_client
from workers.settings import Settings


def create_topics(
    settings: Settings, names: list[str], partitions: int | None = None, config: dict[str, str] | None = None,
    configs: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent. ``config`` applies
    to all, ``configs`` to the topics it names (``PipelineTopics.configs``: the control topic is compacted)."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    with admin_client(settings) as admin:
        existing = set(admin.list_topics())
        created = []
        for name in (n for n in dict.fromkeys(names) if n not in existing):
            topic = NewTopic(
                name=name,
                num_partitions=partitions or settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs={**(config or {}), **(configs or {}).get(name, {})},
            )
            try:
                admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won; same outcome
        return created


def alter_topic_config(settings: Settings, topic: str, config: dict[str, str]) -> None:
    """Set topic-level configs (e.g. ``max.message.bytes``); other configs of the topic keep their values."""
    from kafka.admin import ConfigResource, ConfigResourceType

    with admin_client(settings) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=config)])
