"""The ACL plan of a pipeline is least privilege: each role gets what its job needs, nothing else."""
from workers.kafka.acls import ROLES, pipeline_grants
from workers.settings import Settings

PRINCIPALS = {role: f"User:{role}" for role in ROLES}


def _rights(prefix: str = "p-") -> dict[str, set[tuple[str, str, str, str]]]:
    settings = Settings(topic_prefix=prefix)
    rights: dict[str, set[tuple[str, str, str, str]]] = {}
    for g in pipeline_grants(settings, PRINCIPALS):
        rights.setdefault(g.principal.removeprefix("User:"), set()).add((g.operation, g.resource, g.name, g.pattern))
    return rights


def test_each_role_gets_exactly_its_job():
    r = _rights()
    assert r["worker"] == {
        ("READ", "TOPIC", "p-fraud.events", "LITERAL"), ("DESCRIBE", "TOPIC", "p-fraud.events", "LITERAL"),
        ("READ", "GROUP", "p-fraud-worker", "LITERAL"),
        ("WRITE", "TOPIC", "p-fraud.predictions", "LITERAL"), ("DESCRIBE", "TOPIC", "p-fraud.predictions", "LITERAL"),
        ("WRITE", "TOPIC", "p-fraud.dlq", "LITERAL"), ("DESCRIBE", "TOPIC", "p-fraud.dlq", "LITERAL"),
        ("WRITE", "TOPIC", "p-fraud.audit", "LITERAL"), ("DESCRIBE", "TOPIC", "p-fraud.audit", "LITERAL"),
        ("READ", "TOPIC", "p-fraud.control", "LITERAL"), ("DESCRIBE", "TOPIC", "p-fraud.control", "LITERAL"),
        ("WRITE", "TOPIC", "p-fraud.control", "LITERAL"),  # a canary's automatic rollback or promotion
        ("WRITE", "TOPIC", "p-fraud.shadow", "LITERAL"), ("DESCRIBE", "TOPIC", "p-fraud.shadow", "LITERAL"),
        ("READ", "TOPIC", "p-fraud.labels", "LITERAL"), ("DESCRIBE", "TOPIC", "p-fraud.labels", "LITERAL"),
    }
    assert r["producer"] == {("WRITE", "TOPIC", "p-fraud.events", "LITERAL"),
                             ("DESCRIBE", "TOPIC", "p-fraud.events", "LITERAL"),
                             ("WRITE", "TOPIC", "p-fraud.labels", "LITERAL"),
                             ("DESCRIBE", "TOPIC", "p-fraud.labels", "LITERAL")}
    assert {(op, name) for op, kind, name, _ in r["consumer"] if kind == "TOPIC"} == {
        ("READ", "p-fraud.predictions"), ("DESCRIBE", "p-fraud.predictions"),
        ("READ", "p-fraud.shadow"), ("DESCRIBE", "p-fraud.shadow"),
        ("READ", "p-fraud.labels"), ("DESCRIBE", "p-fraud.labels")}
    assert ("WRITE", "TOPIC", "p-fraud.events", "LITERAL") in r["replayer"]
    writes = {name for op, _, name, _ in r["replayer"] if op == "WRITE"}
    assert writes == {"p-fraud.events", "p-fraud.audit"}
    assert not any(name == "p-fraud.audit" and op == "READ" for rights in r.values() for op, _, name, _ in rights)
    assert {role for role, rights in r.items() for op, _, name, _ in rights
            if name == "p-fraud.control" and op == "WRITE"} == {"worker"}


def test_no_wildcards_no_cluster_rights_no_creation():
    for rights in _rights().values():
        for operation, resource, name, _ in rights:
            assert resource in ("TOPIC", "GROUP") and operation in ("READ", "WRITE", "DESCRIBE") and "*" not in name
