"""scripts/schema-registry as a user runs it: a real registry on its own port, spoken to over HTTP."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.local_services import alive, free_port_run, held_port, run_script

pytestmark = pytest.mark.integration

SCHEMA_REGISTRY = REPO / "scripts" / "schema-registry"


def _registry(*args: str) -> subprocess.CompletedProcess:
    return run_script(SCHEMA_REGISTRY, *args)






def _call(url: str, method: str = "GET", body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")




def _listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_address, hex_port = local.split(":")
            raw = bytes.fromhex(hex_address)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


def _is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1", "::ffff:127.0.0.1")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, str]]:
    """A registry started by the script on a port of its own: (port, run dir, client URL)."""
    port = free_port_run(2)
    run = tmp_path_factory.mktemp("registry")
    base = ("--port", str(port), "--run-dir", str(run))
    assert _registry("status", *base).returncode == 3  # not running yet
    started = _registry("start", *base)
    assert started.returncode == 0, started.stdout + started.stderr
    url = f"http://127.0.0.1:{port}/apis/ccompat/v7"
    assert url in started.stdout
    try:
        yield port, run, url
    finally:
        pid = int((run / "registry.pid").read_text()) if (run / "registry.pid").exists() else None
        stopped = _registry("stop", *base)
        assert stopped.returncode == 0, stopped.stderr
        assert pid is None or not alive(pid)
        assert not (run / "registry.pid").exists()
        for p in (port, port + 1):  # nothing listens any more
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))


def _record(*fields: dict) -> dict:
    return {"type": "record", "name": "Payment", "namespace": "local.test",
            "fields": [{"name": "id", "type": "string"}, *fields]}


def test_start_is_idempotent_and_binds_loopback_only(registry) -> None:
    port, run, _url = registry
    pid = int((run / "registry.pid").read_text())
    again = _registry("start", "--port", str(port), "--run-dir", str(run))
    assert again.returncode == 0 and "already running" in again.stdout
    assert int((run / "registry.pid").read_text()) == pid
    assert _registry("status", "--port", str(port), "--run-dir", str(run)).returncode == 0
    listening = _listening_addresses(pid)
    assert any(p == port for _a, p in listening), listening
    assert all(_is_loopback(address) for address, _p in listening), listening


def test_register_and_fetch_by_id_round_trip(registry) -> None:
    _port, _run, url = registry
    subject = f"payments-{uuid.uuid4().hex[:8]}-value"
    schema = json.dumps(_record({"name": "amount", "type": "double"}))
    status, body = _call(f"{url}/subjects/{subject}/versions", "POST", {"schema": schema})
    assert status == 200, body
    schema_id = body["id"]  # type: ignore[index]
    status, fetched = _call(f"{url}/schemas/ids/{schema_id}")
    assert status == 200
    assert json.loads(fetched["schema"]) == json.loads(schema)  # type: ignore[index]
    status, latest = _call(f"{url}/subjects/{subject}/versions/latest")
    assert status == 200 and latest["id"] == schema_id and latest["version"] == 1  # type: ignore[index]
    # registering the same schema again is not a new version
    assert _call(f"{url}/subjects/{subject}/versions", "POST", {"schema": schema}) == (200, {"id": schema_id})
    assert subject in _call(f"{url}/subjects")[1]  # type: ignore[operator]


def test_compatibility_is_backward_as_in_confluent(registry) -> None:
    _port, _run, url = registry
    assert _call(f"{url}/config") == (200, {"compatibilityLevel": "BACKWARD"})
    subject = f"evolving-{uuid.uuid4().hex[:8]}-value"
    v1 = _record({"name": "amount", "type": "double"})
    assert _call(f"{url}/subjects/{subject}/versions", "POST", {"schema": json.dumps(v1)})[0] == 200
    # a new field without a default cannot read old records: refused
    breaking = _record({"name": "amount", "type": "double"}, {"name": "merchant", "type": "string"})
    status, body = _call(f"{url}/subjects/{subject}/versions", "POST", {"schema": json.dumps(breaking)})
    assert status == 409, body
    # with a default it can: accepted as version 2
    compatible = _record({"name": "amount", "type": "double"},
                         {"name": "currency", "type": "string", "default": "EUR"})
    status, body = _call(f"{url}/subjects/{subject}/versions", "POST", {"schema": json.dumps(compatible)})
    assert status == 200, body
    assert _call(f"{url}/subjects/{subject}/versions")[1] == [1, 2]


def test_confluent_kafka_clients_round_trip_a_record(registry) -> None:
    """confluent-kafka's own registry client and Avro serdes (when that package is installed)."""
    pytest.importorskip("confluent_kafka.schema_registry.avro", reason="confluent-kafka[avro,schemaregistry]")
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    _port, _run, url = registry
    topic = f"payments-{uuid.uuid4().hex[:8]}"
    schema = json.dumps(_record({"name": "amount", "type": "double"}))
    client = SchemaRegistryClient({"url": url})
    context = SerializationContext(topic, MessageField.VALUE)
    payload = AvroSerializer(client, schema)({"id": "p-1", "amount": 12.5}, context)
    assert payload is not None and payload[0] == 0  # Confluent's wire format: magic byte, 4-byte id
    schema_id = int.from_bytes(payload[1:5], "big")
    assert client.get_latest_version(f"{topic}-value").schema_id == schema_id
    assert json.loads(client.get_schema(schema_id).schema_str) == json.loads(schema)
    assert AvroDeserializer(client)(payload, context) == {"id": "p-1", "amount": 12.5}
    assert client.lookup_schema(f"{topic}-value", Schema(schema, "AVRO")).version == 1


def test_taken_port_is_a_clear_error(tmp_path) -> None:
    with held_port() as port:
        result = _registry("start", "--port", str(port), "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert f"schema-registry: error: port {port} on 127.0.0.1 is taken" in result.stderr


def test_stop_when_not_running_is_harmless(tmp_path) -> None:
    started = time.monotonic()
    result = _registry("stop", "--run-dir", str(tmp_path / "none"))
    assert result.returncode == 0 and "not running" in result.stdout
    assert time.monotonic() - started < 30
