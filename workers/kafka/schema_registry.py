"""A client of a Confluent-compatible Schema Registry's REST API (stdlib HTTP, no extra package).

The worker asks it for writer schemas by id (cached by the caller, ``RegisteredSchemas``) and
registers the prediction schema under its topic's subject (TopicNameStrategy:
``<topic>-value``). ``workers schemas register|check`` use it for a pipeline's schemas.
A 404 for an id is an answer (the registry does not know it); a connection error, a
timeout, a connection closed mid-answer or a 5xx is ``RegistryUnavailableError``: transient,
never a verdict on a record. Credentials (``auth``, or ``user:password@`` in the URL) go in a
basic-auth header, never into ``url`` or a message.
"""
from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from workers.core.codec import StoredSchema
from workers.core.framing import InputDecoder
from workers.errors import ConfigError, RegistryUnavailableError
from workers.settings import Settings

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SUBJECT_NOT_FOUND = 40401
SCHEMA_NOT_FOUND = 40403


def value_subject(topic: str) -> str:
    """TopicNameStrategy: the subject of a topic's record values."""
    return f"{topic}-value"


@dataclass(frozen=True)
class Compatibility:
    compatible: bool
    messages: list[str]


class SchemaRegistry:
    def __init__(self, url: str, *, auth: str | None = None, cafile: str | None = None, timeout_s: float = 5.0):
        bare_url, url_auth = _split_credentials(url)
        if url_auth and auth:
            raise ConfigError(f"schema registry {bare_url}: credentials in the URL and in "
                              "WORKERS_SCHEMA_REGISTRY_AUTH; give them once")
        auth = auth or url_auth
        self.url = bare_url.rstrip("/")  # shown in messages and logs: never with credentials
        self._headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if auth:
            self._headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        self._context = ssl.create_default_context(cafile=cafile) if cafile else None
        self._timeout_s = timeout_s
        # no redirects: urllib would follow one to any host with the Authorization header
        self._open = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=self._context)).open

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaRegistry:
        if not settings.schema_registry_url:
            raise ConfigError("no schema registry: set WORKERS_SCHEMA_REGISTRY_URL")
        auth = settings.schema_registry_auth.get_secret_value() if settings.schema_registry_auth else None
        cafile = str(settings.schema_registry_cafile) if settings.schema_registry_cafile else None
        return cls(settings.schema_registry_url, auth=auth, cafile=cafile,
                   timeout_s=settings.schema_registry_timeout_s)

    def schema(self, schema_id: int) -> Any | None:
        """The JSON definition of schema ``schema_id``, or None when the registry does not know it."""
        status, body = self._call("GET", f"/schemas/ids/{schema_id}")
        if status == 404:
            return None
        self._expect(status, body, f"schema id {schema_id}")
        if body.get("schemaType", "AVRO") != "AVRO":
            return None  # a JSON Schema or Protobuf id cannot be an Avro writer schema
        return json.loads(body["schema"])

    def register(self, subject: str, definition: Any) -> int:
        """Register (idempotent: the same schema gets its existing id); returns the schema id."""
        status, body = self._call("POST", f"/subjects/{_quote(subject)}/versions",
                                  {"schema": json.dumps(definition), "schemaType": "AVRO"})
        if status == 409:
            raise ConfigError(f"the registry refused the schema for subject {subject}: incompatible with its "
                              f"latest version under the subject's compatibility rule ({_message(body)})")
        if status == 422:
            raise ConfigError(f"the registry refused the schema for subject {subject}: {_message(body)}")
        self._expect(status, body, f"registering under {subject}")
        return int(body["id"])

    def check(self, subject: str, definition: Any) -> Compatibility:
        """Would ``definition`` be accepted as the subject's next version? (true when it has none yet)"""
        status, body = self._call("POST", f"/compatibility/subjects/{_quote(subject)}/versions/latest?verbose=true",
                                  {"schema": json.dumps(definition), "schemaType": "AVRO"})
        if status == 404 and body.get("error_code") in (SUBJECT_NOT_FOUND, 40402):
            return Compatibility(True, [f"{subject} has no version yet"])
        self._expect(status, body, f"checking against {subject}")
        return Compatibility(bool(body.get("is_compatible")), [str(m) for m in body.get("messages") or []])

    def set_compatibility(self, subject: str, level: str) -> None:
        """The subject's own rule (BACKWARD, FORWARD, FULL, their _TRANSITIVE forms, or NONE)."""
        status, body = self._call("PUT", f"/config/{_quote(subject)}", {"compatibility": level})
        self._expect(status, body, f"setting {subject}'s compatibility to {level}")

    def compatibility_level(self, subject: str) -> str:
        """The rule that applies to ``subject`` (its own, else the registry's global one)."""
        status, body = self._call("GET", f"/config/{_quote(subject)}?defaultToGlobal=true")
        if status == 404:
            status, body = self._call("GET", "/config")
        self._expect(status, body, "reading the compatibility rule")
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    def _call(self, method: str, path: str, payload: Any = None) -> tuple[int, dict[str, Any]]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        asked = f"{method} {path.split('?')[0]}"
        try:
            try:
                with self._open(request, timeout=self._timeout_s) as response:
                    return response.status, _json(response.read())
            except urllib.error.HTTPError as exc:
                status, raw, headers = exc.code, exc.read(), exc.headers  # the read can fail too: below
        # http.client.HTTPException: the connection closed mid-answer (IncompleteRead) or a garbled one
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, TimeoutError):
                raise RegistryUnavailableError(f"schema registry {self.url} did not answer {asked} within "
                                               f"{self._timeout_s:g}s") from None
            why = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
            raise RegistryUnavailableError(f"schema registry {self.url} unreachable ({asked}): {why}") from None
        body = _json(raw)
        if 300 <= status < 400:
            location = headers.get("Location") if headers else None
            raise ConfigError(f"schema registry {self.url} redirected {asked} ({status}) to {location}: set "
                              "WORKERS_SCHEMA_REGISTRY_URL to the registry's own address (redirects are not "
                              "followed, so credentials never go elsewhere)")
        if status >= 500:
            detail = f": {_message(body)}" if body else ""
            raise RegistryUnavailableError(f"schema registry {self.url} answered {status} to {asked}{detail}")
        if status in (401, 403):
            raise ConfigError(f"schema registry {self.url} refused the credentials ({status})")
        return status, body

    def _expect(self, status: int, body: dict[str, Any], doing: str) -> None:
        if status != 200:
            raise ConfigError(f"schema registry {self.url}: {doing}: {status} {_message(body)}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it came (an HTTPError with its 3xx status), never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``https://user:pass@host/path`` -> (``https://host/path``, ``user:pass``), percent-decoded."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return bare, f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}


def _message(body: dict[str, Any]) -> str:
    return str(body.get("message") or body.get("error_code") or body)


class FetchingDecoder:
    """An ``InputDecoder`` that asks the registry for ids it has not seen (tail, tools: not the hot path)."""

    def __init__(self, decoder: InputDecoder, registry: SchemaRegistry) -> None:
        self._decoder = decoder
        self._registry = registry
        self.reader = decoder.reader

    def decode(self, payload: bytes | None) -> tuple[dict[str, Any], StoredSchema]:
        registered = self._decoder.registered
        if registered is not None:
            for schema_id in registered.missing([payload]):
                registered.add(schema_id, self._registry.schema(schema_id))
        return self._decoder.decode(payload)
