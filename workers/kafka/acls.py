"""Least privilege for a pipeline: who may do what on its topics and groups, printed or applied.

| principal | may |
|---|---|
| worker | READ the events topic and its consumer group, and the control topic (rollouts); |
|        | WRITE predictions, dead letters, audit, shadow scores, and the control topic; READ labels |
| producer | WRITE the events and labels topics |
| consumer | READ the predictions, shadow and labels topics (``workers quality``), and consumer groups |
|          | named ``<prefix><pipeline>-consumer*`` |
| replayer | READ dead letters and the events topic (truncated originals); WRITE events and audit; |
|          | its progress groups ``<prefix><pipeline>-replay*`` |

Each WRITE and READ on a topic comes with DESCRIBE on it (metadata). Nothing else: no
cluster-level rights, no topic creation (an admin creates topics), no wildcard. Nobody but
an admin reads the audit trail. Workers write the control topic for one reason: a canary's
guards roll it back (or promote it after its soak) in every worker and across restarts, which
only the shared state can do; what any state names is still verified before it serves.
Applying is idempotent: Kafka keeps one copy of an ACL however often it is created.

ACLs are eventually consistent: the controller commits a change and answers, and each broker
applies it when it replays the metadata log, a moment later. A client that acts at once can
still be refused (a producer got TopicAuthorizationFailed right after the grants were made,
on a loaded machine), so ``apply`` and ``revoke`` return only once the broker that answers
DescribeAcls shows the change, as Kafka's own tests wait for theirs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from workers.kafka.clients import admin_client
from workers.settings import Settings

ROLES = ("worker", "producer", "consumer", "replayer")
PROPAGATION_TIMEOUT_S = 30.0


@dataclass(frozen=True, order=True)
class Grant:
    principal: str  # e.g. "User:worker"
    operation: str  # READ, WRITE, DESCRIBE
    resource: str  # TOPIC or GROUP
    name: str
    pattern: str = "LITERAL"  # or PREFIXED

    def describe(self) -> str:
        shown = f"{self.name}*" if self.pattern == "PREFIXED" else self.name
        return f"{self.principal:<16} {self.operation:<8} {self.resource.lower():<5} {shown}"


def pipeline_grants(settings: Settings, principals: dict[str, str]) -> list[Grant]:
    """The grants of a pipeline's principals (``principals``: role -> principal)."""
    topics = settings.topics
    base = f"{settings.topic_prefix}{settings.pipeline}"

    def topic(role: str, operation: str, name: str) -> list[Grant]:
        return [Grant(principals[role], operation, "TOPIC", name), Grant(principals[role], "DESCRIBE", "TOPIC", name)]

    grants = [
        *topic("worker", "READ", topics.events),
        Grant(principals["worker"], "READ", "GROUP", settings.group_id),
        *topic("worker", "WRITE", topics.predictions),
        *topic("worker", "WRITE", topics.dlq),
        *topic("worker", "WRITE", topics.audit),
        *topic("worker", "READ", topics.control),  # no group: every worker reads the whole state
        *topic("worker", "WRITE", topics.control),  # a canary's automatic rollback or promotion
        *topic("worker", "WRITE", topics.shadow),
        *topic("worker", "READ", topics.labels),  # live quality (WORKERS_LIVE_QUALITY)
        *topic("producer", "WRITE", topics.events),
        *topic("producer", "WRITE", topics.labels),
        *topic("consumer", "READ", topics.predictions),
        *topic("consumer", "READ", topics.shadow),
        *topic("consumer", "READ", topics.labels),
        Grant(principals["consumer"], "READ", "GROUP", f"{base}-consumer", "PREFIXED"),
        *topic("replayer", "READ", topics.dlq),
        *topic("replayer", "READ", topics.events),
        *topic("replayer", "WRITE", topics.events),
        *topic("replayer", "WRITE", topics.audit),
        Grant(principals["replayer"], "READ", "GROUP", f"{base}-replay", "PREFIXED"),
    ]
    return sorted(set(grants))


def apply(settings: Settings, grants: list[Grant]) -> int:
    """Create the ACLs (as the admin the settings connect as); returns how many were sent."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    acls = [ACL(principal=g.principal, host="*", operation=ACLOperation[g.operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(ResourceType[g.resource], g.name, ACLResourcePatternType[g.pattern]))
            for g in grants]
    failed = []
    with admin_client(settings) as admin:
        # one per request: kafka-python 3.0 mis-reads the response to a multi-ACL CreateAcls
        # (every ACL came back "SecurityDisabledError" from a broker that applies them one by one)
        for acl in acls:
            failed += admin.create_acls([acl])["failed"]
        if failed:
            from workers.errors import KafkaUnavailableError

            raise KafkaUnavailableError(f"the broker refused {len(failed)} ACLs, e.g. {failed[0]}")
        _wait_until(admin, grants, present=True)
    return len(acls)


def revoke(settings: Settings, grants: list[Grant]) -> None:
    """Delete exactly these ACLs (tests take a right away to see what happens)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    filters = [ACLFilter(principal=g.principal, host="*", operation=ACLOperation[g.operation],
                         permission_type=ACLPermissionType.ALLOW,
                         resource_pattern=ResourcePatternFilter(ResourceType[g.resource], g.name,
                                                                ACLResourcePatternType[g.pattern]))
               for g in grants]
    with admin_client(settings) as admin:
        admin.delete_acls(filters)
        _wait_until(admin, grants, present=False)


def _wait_until(admin: Any, grants: list[Grant], present: bool) -> None:
    """Until the broker enforces these grants (``present``) or no longer does."""
    from workers.errors import KafkaUnavailableError

    wanted = set(grants)
    deadline = time.monotonic() + PROPAGATION_TIMEOUT_S
    while True:
        shown = _shown(admin, {g.principal for g in grants}) & wanted
        if (shown == wanted) if present else not shown:
            return
        if time.monotonic() > deadline:
            late = (wanted - shown) if present else shown
            raise KafkaUnavailableError(
                f"after {PROPAGATION_TIMEOUT_S:.0f} s the broker still {'lacks' if present else 'has'} "
                f"{len(late)} of the ACLs, e.g. {min(late).describe()}")
        time.sleep(0.05)


def _shown(admin: Any, principals: set[str]) -> set[Grant]:
    """The ALLOW grants the answering broker's authorizer holds for these principals."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    shown = set()
    for principal in principals:
        acls, _ = admin.describe_acls(ACLFilter(
            principal=principal, host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)))
        shown |= {Grant(a.principal, a.operation.name, a.resource_pattern.resource_type.name,
                        a.resource_pattern.resource_name, a.resource_pattern.pattern_type.name) for a in acls}
    return shown
