"""Pure helpers of scripts/kafka-local (no broker)."""
from __future__ import annotations

import uuid
from types import ModuleType

import pytest

from tests.conftest import KAFKA_LOCAL
from tests.local_services import load_script


def _load_script() -> ModuleType:
    return load_script(KAFKA_LOCAL)


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    script = _load_script()
    # 0xF8 encodes to a leading '-' in base64url: the parser of StorageTool would read it as an option.
    dashed, plain = uuid.UUID(bytes=b"\xf8" + b"\x01" * 15), uuid.UUID(bytes=b"\x10" * 16)
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(script.uuid, "uuid4", lambda: next(draws))
    cluster_id = script.new_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
    assert next(draws, None) is None  # both dashed draws were rejected


def test_cluster_ids_are_random() -> None:
    script = _load_script()
    ids = {script.new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    assert not any(i.startswith("-") for i in ids)


def test_secure_config_enforces_acls_and_keeps_secrets_private(tmp_path) -> None:
    script = _load_script()
    props = script.write_config(tmp_path, 29092, secure=True, mtls=True).read_text()
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "allow.everyone.if.no.acl.found=false" in props and "super.users=User:admin;" in props
    assert "listeners=SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093" in props
    assert "PLAINTEXT://" not in props  # no unauthenticated client listener
    assert "listener.name.sasl_ssl.ssl.client.auth=required" in props  # --mtls
    users = script.read_users(tmp_path)
    assert set(users) == set(script.SECURE_USERS) and len(set(users.values())) == len(users)
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0  # readable by the owner only
    arguments = script.scram_arguments(tmp_path)
    assert arguments.count("--add-scram") == len(users)
    assert f"SCRAM-SHA-512=[name=admin,password={users['admin']}]" in arguments


def test_the_secure_broker_checks_oauth_tokens_against_the_local_issuers_key(tmp_path) -> None:
    import json

    from cryptography.hazmat.primitives import serialization

    script = _load_script()
    (tmp_path / "tls").mkdir()
    jwks = script.make_oauth_issuer(tmp_path)
    props = script.write_config(tmp_path, 29092, secure=True).read_text()
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512,OAUTHBEARER" in props
    assert f"sasl.oauthbearer.jwks.endpoint.url={jwks.resolve().as_uri()}" in props
    assert "sasl.oauthbearer.expected.audience=kafka\n" in props
    assert "sasl.oauthbearer.expected.issuer=kafka-local\n" in props
    assert f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={jwks.resolve().as_uri()}" in script.oauth_jvm_options(
        tmp_path)
    # the JWKS holds the public half of the issuer's key, which only its owner may read
    key = serialization.load_pem_private_key((tmp_path / "tls" / "oauth-issuer.key").read_bytes(), password=None)
    numbers = key.public_key().public_numbers()  # type: ignore[union-attr]
    (published,) = json.loads(jwks.read_text())["keys"]

    def as_int(field: str) -> int:
        import base64

        return int.from_bytes(base64.urlsafe_b64decode(published[field] + "=" * (-len(published[field]) % 4)), "big")

    assert (as_int("n"), as_int("e")) == (numbers.n, numbers.e) and published["alg"] == "RS256"
    assert (tmp_path / "tls" / "oauth-issuer.key").stat().st_mode & 0o077 == 0
    assert script.make_oauth_issuer(tmp_path).read_text() == jwks.read_text()  # kept across restarts


def test_an_advertised_host_listens_on_all_interfaces_and_is_what_clients_are_told(tmp_path) -> None:
    script = _load_script()
    props = script.write_config(tmp_path, 9092, secure=True, host="kafka").read_text()
    assert "listeners=SASL_SSL://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093" in props  # controller stays private
    assert "advertised.listeners=SASL_SSL://kafka:9092" in props
    plain = script.write_config(tmp_path, 19092).read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19092," in plain  # loopback only unless asked
    clients = script.write_client_settings(tmp_path, 9092, mtls=False, host="kafka")
    assert "WORKERS_BOOTSTRAP_SERVERS=kafka:9092\n" in (clients / "worker.env").read_text()


def test_provided_kafka_libs_must_hold_kafka(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _load_script()
    monkeypatch.setenv("KAFKA_LOCAL_LIBS", str(tmp_path))
    with pytest.raises(script.BrokerError, match=r"holds no kafka_2\.13"):
        script.fetch_jars()
    (tmp_path / "kafka_2.13-4.1.0.jar").touch()
    assert script.fetch_jars() == tmp_path


def test_cluster_nodes_get_their_own_ports_ids_and_dirs(tmp_path) -> None:
    script = _load_script()
    paths = script.write_cluster_config(tmp_path, 39092, 3)
    assert paths == [tmp_path / f"node-{i}" / "server.properties" for i in (1, 2, 3)]
    assert [script.node_ports(39092, i) for i in (1, 2, 3)] == [(39092, 39093), (39094, 39095), (39096, 39097)]
    assert script.cluster_bootstrap(39092, 3) == "127.0.0.1:39092,127.0.0.1:39094,127.0.0.1:39096"
    voters = "controller.quorum.voters=1@127.0.0.1:39093,2@127.0.0.1:39095,3@127.0.0.1:39097\n"
    for node_id, props in enumerate((p.read_text() for p in paths), start=1):
        client, controller = script.node_ports(39092, node_id)
        assert f"node.id={node_id}\n" in props and "process.roles=broker,controller\n" in props
        assert voters in props and "controller.quorum.bootstrap.servers" not in props  # one static quorum
        assert f"listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}\n" in props
        assert f"advertised.listeners=PLAINTEXT://127.0.0.1:{client}\n" in props
        assert f"log.dirs={tmp_path / f'node-{node_id}' / 'data'}\n" in props
    assert script.cluster_size(tmp_path) == 3


def test_cluster_replicates_internal_and_default_topics_three_ways(tmp_path) -> None:
    script = _load_script()
    props = script.write_cluster_config(tmp_path, 39092, 3)[0].read_text()
    for line in ("default.replication.factor=3", "min.insync.replicas=2", "offsets.topic.replication.factor=3",
                 "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2",
                 "share.coordinator.state.topic.replication.factor=3", "unclean.leader.election.enable=false"):
        assert f"\n{line}\n" in props
    five = script.write_cluster_config(tmp_path / "five", 40000, 5)
    assert "\ndefault.replication.factor=3\n" in five[4].read_text()  # at most 3 replicas
    assert "5@127.0.0.1:40009" in five[0].read_text()


def test_a_cluster_needs_two_nodes_and_single_node_mode_is_unchanged(tmp_path) -> None:
    script = _load_script()
    with pytest.raises(script.BrokerError, match="2 or more"):
        script.write_cluster_config(tmp_path, 39092, 1)
    assert script.cluster_size(tmp_path) == 0
    plain = script.write_config(tmp_path, 19092).read_text()
    assert "--standalone" not in plain and "controller.quorum.bootstrap.servers=127.0.0.1:19093" in plain
    assert "offsets.topic.replication.factor=1" in plain


def test_stop_without_the_data_dir_a_broker_was_started_with_says_so(tmp_path, monkeypatch, capsys) -> None:
    from tests.local_services import held_port

    script = _load_script()
    monkeypatch.setattr(script, "CACHE_ROOT", tmp_path)  # no broker was started under this port's default dir
    with held_port() as port:  # ...but something listens there, e.g. one started with --data-dir
        assert script.stop(port, None) == 0
    said = capsys.readouterr().out
    assert f"not running in {tmp_path / 'run' / str(port)}" in said and "same --data-dir" in said
    assert script.stop(port, None) == 0  # nothing listens any more: no hint
    assert "--data-dir" not in capsys.readouterr().out
