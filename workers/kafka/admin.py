"""Topic creation with kafka-python's admin client (``workers topics create``, demo, tests)."""
from __future__ import annotations

import time
from typing import Any

from workers.errors import KafkaUnavailableError
from workers.kafka.clients import admin_client
from workers.settings import Settings

VISIBLE_TIMEOUT_S = 30.0


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
        _wait_until_listed(admin, list(dict.fromkeys(names)))  # also those a concurrent creator made
        return created


def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (what a benchmark run created); returns them."""
    if not prefix:
        raise ValueError("refusing to delete every topic: empty prefix")
    with admin_client(settings) as admin:
        names = sorted(t for t in admin.list_topics() if t.startswith(prefix))
        if names:
            admin.delete_topics(names)
        deadline = time.monotonic() + VISIBLE_TIMEOUT_S  # as for creation: until the broker stops listing them
        while any(t.startswith(prefix) for t in admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return names


def _wait_until_listed(admin: Any, names: list[str]) -> None:
    """The controller answers once a topic is committed; a broker's metadata has it a moment later,
    and a client asking in between is told it does not exist (a worker started right after its
    topics were created refused to start). So: until the answering broker lists them all."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT_S
    missing = set(names)
    while missing:
        missing -= set(admin.list_topics())
        if missing and time.monotonic() > deadline:
            raise KafkaUnavailableError(f"topics created but not listed by the broker after {VISIBLE_TIMEOUT_S:.0f}s: "
                                        f"{', '.join(sorted(missing))}")
        if missing:
            time.sleep(0.05)


def alter_topic_config(settings: Settings, topic: str, config: dict[str, str]) -> None:
    """Set topic-level configs (e.g. ``max.message.bytes``); other configs of the topic keep their values."""
    from kafka.admin import ConfigResource, ConfigResourceType

    with admin_client(settings) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=config)])


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """The topic's effective configs as the broker reports them (its own, the broker's defaults)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    with admin_client(settings) as admin:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    # nothing at all while the answering broker has not applied a new topic yet (the caller asks again)
    return {name: entry["value"] for name, entry in described.get("topic", {}).get(topic, {}).items()}
