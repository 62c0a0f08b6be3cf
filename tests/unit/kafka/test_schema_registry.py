"""The Schema Registry client against a real HTTP server on loopback, answering as a registry can:
well, not at all, too slowly, half, or with an error. What is transient must say so
(``RegistryUnavailableError``: the batch waits), an unknown id is an answer (``unknown_schema``),
and no message ever carries the registry's password."""
from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.factories import REPO
from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.framing import Framing, InputDecoder, RegisteredSchemas, RegistryEncoder
from workers.core.reasons import UNKNOWN_SCHEMA
from workers.dev import fraud_data as fraud
from workers.errors import EXIT_RUNTIME, ConfigError, RecordError, RegistryUnavailableError
from workers.kafka.schema_registry import SCHEMA_NOT_FOUND, FetchingDecoder, SchemaRegistry
from workers.settings import Settings

API = "/apis/ccompat/v7"  # where Apicurio serves the Confluent API: the client must keep the base path
SCHEMA = "fraud/transaction.v2.avsc"
TIMEOUT_S = 1.0  # short enough for the slow answers, long enough for a loaded machine's quick ones
SLOW_S = 10.0  # how long a slow answer would take; the server is released at teardown long before
PASSWORD = "s3cr@t-pw"  # percent-encoded in a URL, "@" included: it must be decoded, and never shown
Answer = Callable[[BaseHTTPRequestHandler, "FakeRegistry"], None]


@dataclass
class FakeRegistry:
    """Answers every request with ``answer``, and records what was asked (method, path, headers)."""

    answer: Answer
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # ends the slow answers at teardown
    port: int = 0

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{API}"

    @property
    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            registry.requests.append((self.command, self.path, dict(self.headers)))
            registry.answer(self, registry)

        do_GET = do_POST = do_PUT = _any

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    return Handler


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry(answer=_json(200, {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, length: int | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def _json(status: int, body: object) -> Answer:
    return lambda handler, _: _send(handler, status, json.dumps(body).encode())


def _schema_answer(definition: object) -> Answer:
    """What a registry answers to GET /schemas/ids/{id}: the schema as a JSON string."""
    return _json(200, {"schema": json.dumps(definition)})


def _late_status_line(handler: BaseHTTPRequestHandler, registry: FakeRegistry) -> None:
    registry.release.wait(SLOW_S)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
        _send(handler, 200, b"{}")


def _late_body(handler: BaseHTTPRequestHandler, registry: FakeRegistry) -> None:
    body = json.dumps({"schema": '"string"'}).encode()
    _send(handler, 200, body[:5], length=len(body))
    registry.release.wait(SLOW_S)
    handler.wfile.write(body[5:])


def _close_without_answer(handler: BaseHTTPRequestHandler, _: FakeRegistry) -> None:
    handler.close_connection = True


def _close_mid_body(handler: BaseHTTPRequestHandler, _: FakeRegistry) -> None:
    _send(handler, 200, b'{"schema": "', length=400)  # promises 400 bytes, sends 12, and hangs up
    handler.close_connection = True


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(REPO / "schemas")


def _decoder(store: SchemaStore, registry: SchemaRegistry) -> FetchingDecoder:
    """How ``workers tail`` decodes registry-framed records: ids fetched once, cached by RegisteredSchemas."""
    single = SingleObjectCodec(store, store.get(SCHEMA))
    return FetchingDecoder(InputDecoder(single, Framing.REGISTRY, RegisteredSchemas(store)), registry)


def _framed_event(store: SchemaStore, schema_id: int, seed: int) -> tuple[dict, bytes]:
    event = fraud.generate(1, seed=seed, start_ms=1_700_000_000_000)[0][0]
    return event, RegistryEncoder(store.get(SCHEMA), schema_id).encode(event)


def test_a_schema_is_fetched_by_id_once_and_decodes_every_event_that_names_it(registry, store):
    definition = store.get(SCHEMA).definition
    registry.answer = _schema_answer(definition)
    client = SchemaRegistry(registry.url(), timeout_s=TIMEOUT_S)
    assert client.schema(7) == definition
    assert registry.paths == [f"{API}/schemas/ids/7"]

    registry.requests.clear()
    decoder = _decoder(store, client)
    (first, first_value), (second, second_value) = _framed_event(store, 7, 1), _framed_event(store, 7, 2)
    assert decoder.decode(first_value)[0] == first
    assert decoder.decode(second_value)[0] == second
    assert registry.paths == [f"{API}/schemas/ids/7"]  # the second event's id was not asked again


def test_an_id_the_registry_does_not_know_is_none_and_its_events_are_unknown_schema(registry, store):
    registry.answer = _json(404, {"error_code": SCHEMA_NOT_FOUND, "message": "Schema 99 not found"})
    client = SchemaRegistry(registry.url(), timeout_s=TIMEOUT_S)
    assert client.schema(99) is None

    registry.requests.clear()
    decoder = _decoder(store, client)
    _, value = _framed_event(store, 99, 1)
    for _ in range(2):
        with pytest.raises(RecordError) as caught:
            decoder.decode(value)
        assert caught.value.reason == UNKNOWN_SCHEMA
        assert str(caught.value) == "schema id 99 is not in the schema registry"
    assert len(registry.requests) == 1  # the answer is kept too (until UNKNOWN_RETRY_S has passed)


@pytest.mark.parametrize(("status", "body", "said"), [
    (500, b'{"error_code": 50001, "message": "Error in the backend datastore"}', ": Error in the backend datastore"),
    (502, b"", ""),  # a proxy in front of a registry that is down
    (503, b"<html>Service Unavailable</html>", ": <html>Service Unavailable</html>"),
], ids=["json-message", "empty-body", "html-body"])
def test_a_server_error_is_transient_and_names_the_status_and_the_request(registry, store, status, body, said):
    registry.answer = lambda handler, _: _send(handler, status, body)
    client = SchemaRegistry(registry.url(), timeout_s=TIMEOUT_S)
    with pytest.raises(RegistryUnavailableError) as caught:
        client.schema(7)
    assert str(caught.value) == f"schema registry {registry.url()} answered {status} to GET /schemas/ids/7{said}"
    assert not isinstance(caught.value, ConfigError) and caught.value.exit_code == EXIT_RUNTIME

    # never a verdict: the id stays unfetched, and decodes once the registry answers again
    decoder = _decoder(store, client)
    event, value = _framed_event(store, 7, 1)
    with pytest.raises(RegistryUnavailableError):
        decoder.decode(value)
    registry.answer = _schema_answer(store.get(SCHEMA).definition)
    assert decoder.decode(value)[0] == event


@pytest.mark.parametrize("answer", [_late_status_line, _late_body], ids=["no-status-line", "body-stalls"])
def test_an_answer_slower_than_the_timeout_is_transient_and_says_so(registry, answer):
    registry.answer = answer
    settings = Settings(schema_registry_url=registry.url(), schema_registry_timeout_s=TIMEOUT_S)
    client = SchemaRegistry.from_settings(settings)  # the timeout comes from WORKERS_SCHEMA_REGISTRY_TIMEOUT_S
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as caught:
        client.schema(7)
    assert time.monotonic() - started < SLOW_S / 2  # gave up at the timeout, did not wait for the server
    assert str(caught.value) == (f"schema registry {registry.url()} did not answer GET /schemas/ids/7 "
                                 f"within {TIMEOUT_S:g}s")


@pytest.mark.parametrize(("answer", "error"), [(_close_without_answer, "RemoteDisconnected"),
                                               (_close_mid_body, "IncompleteRead")],
                         ids=["before-the-answer", "mid-body"])
def test_a_connection_closed_by_the_registry_is_transient(registry, answer, error):
    registry.answer = answer
    client = SchemaRegistry(registry.url(), timeout_s=TIMEOUT_S)
    with pytest.raises(RegistryUnavailableError) as caught:
        client.schema(7)
    assert str(caught.value).startswith(f"schema registry {registry.url()} unreachable (GET /schemas/ids/7): "
                                        f"{error}")


def test_nothing_listening_is_transient():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SchemaRegistry(f"http://127.0.0.1:{port}", timeout_s=TIMEOUT_S)
    with pytest.raises(RegistryUnavailableError, match=r"unreachable \(GET /schemas/ids/7\): .*refused"):
        client.schema(7)


# every way a request can fail, and what it raises: the last is a refusal an operator must fix
FAILURES: list[tuple[Answer, type[Exception]]] = [
    (_json(503, {"message": "down"}), RegistryUnavailableError),
    (_late_status_line, RegistryUnavailableError),
    (_close_mid_body, RegistryUnavailableError),
    (_json(401, {"message": "Unauthorized"}), ConfigError),
]


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(registry, store):
    client = SchemaRegistry(registry.url(f"alice:{PASSWORD.replace('@', '%40')}@"), timeout_s=TIMEOUT_S)
    assert client.url == registry.url()
    registry.answer = _schema_answer(store.get(SCHEMA).definition)
    client.schema(7)
    [(_, path, headers)] = registry.requests
    assert path == f"{API}/schemas/ids/7"
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()

    messages = []
    for answer, expected in FAILURES:
        registry.answer = answer
        with pytest.raises(expected) as caught:
            client.schema(7)
        messages.append(str(caught.value))
    assert messages[-1] == f"schema registry {registry.url()} refused the credentials (401)"
    assert all(f"schema registry {registry.url()} " in m for m in messages), messages
    assert not [m for m in messages if "s3cr" in m or "alice" in m]


def test_credentials_from_the_settings_are_never_shown_either(registry):
    settings = Settings(schema_registry_url=registry.url(), schema_registry_auth=f"alice:{PASSWORD}",
                        schema_registry_timeout_s=TIMEOUT_S)
    client = SchemaRegistry.from_settings(settings)
    for answer, expected in FAILURES:
        registry.answer = answer
        with pytest.raises(expected) as caught:
            client.schema(7)
        assert "s3cr" not in str(caught.value)
    assert {headers["Authorization"] for _, _, headers in registry.requests} == {
        "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}


def test_credentials_given_twice_are_refused_without_showing_either(registry):
    with pytest.raises(ConfigError) as caught:
        SchemaRegistry(registry.url("alice:url-pw@"), auth="bob:settings-pw")
    assert str(caught.value) == (f"schema registry {registry.url()}: credentials in the URL and in "
                                 "WORKERS_SCHEMA_REGISTRY_AUTH; give them once")


def _redirect(handler: BaseHTTPRequestHandler, _registry: FakeRegistry) -> None:
    handler.send_response(307)
    handler.send_header("Location", "http://elsewhere.invalid/apis/ccompat/v7/schemas/ids/7")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def test_a_redirect_is_not_followed_so_the_credentials_stay_with_the_registry(registry):
    client = SchemaRegistry(registry.url(f"alice:{PASSWORD.replace('@', '%40')}@"), timeout_s=TIMEOUT_S)
    registry.answer = _redirect
    with pytest.raises(ConfigError) as caught:
        client.schema(7)
    assert str(caught.value).startswith(f"schema registry {registry.url()} redirected GET /schemas/ids/7 (307) to "
                                        "http://elsewhere.invalid/")
    assert len(registry.requests) == 1 and "s3cr" not in str(caught.value)  # asked once, never followed
