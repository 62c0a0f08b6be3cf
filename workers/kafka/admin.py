"""Topic creation with kafka-python's admin client (``workers topics create``, demo, tests)."""
from __future__ import annotations

from workers.kafka.clients import admin_client
from workers.settings import Settings


def create_topics(
    settings: Settings, names: list[str], partitions: int | None = None, config: dict[str, str] | None = None
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent."""
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
                topic_configs=config or {},
            )
            try:
                admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won; same outcome
        return created
