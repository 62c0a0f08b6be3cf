"""One settings object, read once at start-up from ``WORKERS_*`` environment variables.

Every environment variable the project reads is a field here (pydantic-settings, prefix
``WORKERS_``; the bootstrap servers also fall back to ``KAFKA_BOOTSTRAP_SERVERS``).
Nothing else in the code reads the environment. The password is a ``SecretStr``: it is
never shown by ``repr``, logs or the status page.
"""
from __future__ import annotations

import os
import re
import socket
import urllib.parse
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.core.config_errors import one_line
from workers.core.framing import Framing
from workers.core.topics import PipelineTopics
from workers.errors import ConfigError

_EXTENSION_KEY = re.compile(r"[A-Za-z]+")  # Kafka's SaslExtensions rules (RFC 7628, section 3.1)
_EXTENSION_VALUE = re.compile(r"[\x21-\x7E \t\r\n]+")

PREFIX = "WORKERS_"
_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BOOTSTRAP = "127.0.0.1:19092"  # scripts/kafka-local's default port

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


def _default_dir(name: str) -> Path:
    """``schemas/`` and ``models/`` beside the package in a checkout, else in the cwd."""
    beside = _REPO_ROOT / name
    return beside if beside.is_dir() else Path.cwd() / name


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid", validate_default=True,
                                      populate_by_name=True)

    bootstrap_servers: str = Field(
        DEFAULT_BOOTSTRAP, min_length=1,
        validation_alias=AliasChoices("WORKERS_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma-separated (also read from KAFKA_BOOTSTRAP_SERVERS)")
    pipeline: str = Field("fraud", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                          description="pipeline name: models/<pipeline>/ (a plain name)")
    schemas_dir: Path = Field(default_factory=lambda: _default_dir("schemas"), description="the Avro schemas")
    models_dir: Path = Field(default_factory=lambda: _default_dir("models"), description="the model versions")
    model_version: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                      description="model version to serve (default: the newest)")
    trusted_keys: str | None = Field(
        None, description="Ed25519 public keys (PEM files, comma-separated) whose signature a model's manifest "
                          "must carry; unset: signatures are not required")
    topic_prefix: str = Field("", description="prepended to every pipeline topic (tests, multi-tenant clusters)")
    input_topic: str | None = Field(None, description="overrides <prefix><pipeline>.events")
    consumer_group: str | None = Field(None, description="default: <prefix><pipeline>-worker")
    partitions: int = Field(4, ge=1, description="partitions of topics created by `workers topics create`")
    replication_factor: int = Field(1, ge=1, description="replication factor of created topics")
    max_lateness_s: float | None = Field(
        None, ge=0, description="overrides the manifest's lateness limit (e.g. before a replay)")
    batch_size: int = Field(500, ge=1, description="records per scored micro-batch, at most")
    batch_linger_s: float = Field(
        0.008, ge=0, le=0.5, description="at low rates, the broker holds a fetch this long for batch_min_bytes "
                                       "(fewer, larger batches: less CPU per event, more latency); 0: none. "
                                       "Agent engine: take_events' window, at least 50 ms")
    batch_min_bytes: int = Field(12_000, ge=1, description="bytes of records a lingering fetch waits for")
    isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        "read_committed", description="input and labels topics: read_committed skips the records of aborted "
                                      "transactions and waits for open ones; read_uncommitted reads every record")
    output_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none", description="compression of the batches the worker and the tools produce (Kafka's compression.type)")
    engine: Literal["batch", "agent"] = Field(
        "batch", description="batch: the driver's batch fetch; agent: a faust agent with take_events")
    max_batches_in_flight: int = Field(4, ge=1, description="scored batches awaiting broker acks (bounds memory)")
    model_threads: int = Field(1, ge=1, description="native (OpenMP/BLAS) threads per model call")
    max_isolation_calls: int = Field(
        160, ge=1, description="model calls at most to find the failing rows of a batch (about 8 bad rows in 500)")
    delivery_timeout_s: float = Field(
        120.0, gt=0, description="an output still unacknowledged after this stops the worker (nothing committed)")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="SIGTERM and rebalances wait this long for undelivered outputs, then exit "
                                "without committing them")
    max_message_bytes: int = Field(
        1_000_000, ge=1024, description="largest record the output topics accept; a bigger dead letter is written "
                                        "with a reference instead of the original bytes")
    stall_timeout_s: float = Field(
        60.0, gt=0, description="/readyz fails when the committed position has not moved for this long with lag")
    liveness_timeout_s: float = Field(
        30.0, gt=0, description="/healthz fails when the event loop has not run for this long")
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key of the pseudonyms that replace personal keys and event ids in predictions")
    replay_key: SecretStr | None = Field(
        None, description="HMAC key that signs replay marks; the worker trusts only marks signed with it")
    lean_scoring: bool = Field(True, description="HistGradientBoosting: lean path, same bits, checked at load")
    columnar_codecs: bool = Field(True, description="one compiled pass per batch decodes the events (flat input "
                                                    "schemas) and encodes the predictions; same values and bytes")
    worker_id: str = Field(default_factory=_default_worker_id, description="default: <hostname>-<pid>")
    metrics_port: int = Field(0, ge=0, le=65535, description="HTTP port of /metrics, /healthz, /readyz, /status; "
                                                           "0: no endpoint")
    http_host: str = Field("127.0.0.1", description="address the HTTP endpoints bind to (0.0.0.0 in a container)")
    http_token: SecretStr | None = Field(None, description="if set, /status and /status.json need "
                                                           "`Authorization: Bearer <token>`")
    serve_port: int = Field(8080, ge=0, le=65535, description="port of `workers serve` (Open Inference Protocol)")
    serve_max_batch_rows: int = Field(256, ge=1, description="`workers serve`: rows per scored micro-batch, at most")
    serve_max_delay_ms: float = Field(2.0, ge=0, description="`workers serve`: how long a queued request waits for "
                                                             "others to share its model call, at most")
    drift_window: int = Field(5000, ge=1, description="scored events compared with the reference profile")
    drift_threshold: float = Field(0.2, gt=0, description="PSI above which a feature counts as drifted")
    live_quality: bool = Field(False, description="join <pipeline>.labels to this worker's own predictions: live "
                                                  "quality per model version, and a canary's quality guard")
    labels_window_s: float = Field(7 * 24 * 3600.0, gt=0, description="how long a prediction waits for its label")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_oauthbearer_token_endpoint_url: str | None = Field(
        None, description="OAUTHBEARER: the identity provider's OAuth 2.0 token endpoint (client credentials grant)")
    sasl_oauthbearer_client_id: str | None = Field(None, description="OAUTHBEARER: this client's id at the provider")
    sasl_oauthbearer_client_secret: SecretStr | None = Field(None, description="OAUTHBEARER: its secret")
    sasl_oauthbearer_scope: str | None = Field(None, description="OAUTHBEARER: the scope to ask for, if the "
                                                                 "provider needs one")
    sasl_oauthbearer_extensions: str | None = Field(
        None, description="OAUTHBEARER: SASL extensions sent with the token, KEY=VALUE,KEY=VALUE (Confluent "
        "Cloud: logicalCluster=lkc-...,identityPoolId=pool-...)")
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certificates "
                                                      "(default: the system's trusted CAs)")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client certificate's private key (mutual TLS)")

    input_framing: Framing = Field(
        Framing.SINGLE_OBJECT, description="how events are framed: single_object (Avro single-object encoding), "
        "registry (Schema Registry wire format: 0x00 + schema id) or both (told apart by the first byte)")
    prediction_framing: Literal["single_object", "registry"] = Field(
        "single_object", description="registry: predictions in the Schema Registry wire format, the prediction "
        "schema registered under <predictions topic>-value")
    schema_registry_url: str | None = Field(
        None, description="a Confluent-compatible Schema Registry, e.g. http://127.0.0.1:18081/apis/ccompat/v7")
    schema_registry_auth: SecretStr | None = Field(None, description="USER:PASSWORD for the registry (basic auth)")
    schema_registry_cafile: Path | None = Field(None, description="CA bundle of an https registry")
    schema_registry_timeout_s: float = Field(5.0, gt=0, description="per registry request")

    @model_validator(mode="before")
    @classmethod
    def _upper_case_choices(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for name in ("log_level", "security_protocol", "sasl_mechanism"):
                if isinstance(values.get(name), str):
                    values[name] = values[name].upper()
        return values

    @model_validator(mode="after")
    def _consistent_security(self) -> Settings:
        """A combination that would connect differently than asked is refused at start-up."""
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        protocol = f"{PREFIX}SECURITY_PROTOCOL={self.security_protocol}"
        oauth = {"SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": self.sasl_oauthbearer_token_endpoint_url,
                 "SASL_OAUTHBEARER_CLIENT_ID": self.sasl_oauthbearer_client_id,
                 "SASL_OAUTHBEARER_CLIENT_SECRET": self.sasl_oauthbearer_client_secret,
                 "SASL_OAUTHBEARER_SCOPE": self.sasl_oauthbearer_scope,
                 "SASL_OAUTHBEARER_EXTENSIONS": self.sasl_oauthbearer_extensions}
        oauth_given = [PREFIX + name for name, value in oauth.items() if value is not None]
        if sasl and not self.sasl_mechanism:
            raise ValueError(f"{protocol} needs {PREFIX}SASL_MECHANISM "
                             "(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)")
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password is not None or oauth_given):
            raise ValueError(f"SASL settings are given but {protocol}; use SASL_PLAINTEXT or SASL_SSL")
        if self.sasl_mechanism == "OAUTHBEARER":
            missing = [PREFIX + name for name in list(oauth)[:3] if not oauth[name]]  # unset or empty
            if missing:
                raise ValueError(f"{PREFIX}SASL_MECHANISM=OAUTHBEARER needs {', '.join(missing)}")
            if self.sasl_username or self.sasl_password is not None:
                raise ValueError(f"{PREFIX}SASL_MECHANISM=OAUTHBEARER takes a client id and secret "
                                 f"({PREFIX}SASL_OAUTHBEARER_CLIENT_ID/_SECRET), not {PREFIX}SASL_USERNAME/_PASSWORD")
            url = urllib.parse.urlsplit(self.sasl_oauthbearer_token_endpoint_url or "")
            loopback = url.hostname in ("127.0.0.1", "::1", "localhost")
            if url.scheme != "https" and not (url.scheme == "http" and loopback):
                # the client secret travels in the request: in clear text only on this machine
                raise ValueError(f"{PREFIX}SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL must be an https URL (http only on "
                                 f"loopback), not {self.sasl_oauthbearer_token_endpoint_url!r}")
            _ = self.oauth_extensions  # refused here, at start-up, rather than at the first connection
        elif sasl:
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(f"{protocol} needs {PREFIX}SASL_USERNAME and {PREFIX}SASL_PASSWORD")
            if oauth_given:
                raise ValueError(f"{', '.join(oauth_given)} given but {PREFIX}SASL_MECHANISM={self.sasl_mechanism}; "
                                 "use OAUTHBEARER")
        tls_files = {"SSL_CAFILE": self.ssl_cafile, "SSL_CERTFILE": self.ssl_certfile,
                     "SSL_KEYFILE": self.ssl_keyfile}
        given = [name for name, path in tls_files.items() if path is not None]
        if given and not tls:
            raise ValueError(f"{', '.join(PREFIX + name for name in given)} given but {protocol}; use SSL or SASL_SSL")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(f"mutual TLS needs both {PREFIX}SSL_CERTFILE and {PREFIX}SSL_KEYFILE")
        for name in given:
            if not Path(tls_files[name]).is_file():  # type: ignore[arg-type]
                raise ValueError(f"{PREFIX}{name}={tls_files[name]} is not a readable file")
        return self

    @model_validator(mode="after")
    def _registry_when_needed(self) -> Settings:
        needs = [f"{PREFIX}{name.upper()}={value}" for name, value in
                 (("input_framing", self.input_framing), ("prediction_framing", self.prediction_framing))
                 if value != Framing.SINGLE_OBJECT]
        if needs and not self.schema_registry_url:
            raise ValueError(f"{' and '.join(needs)} needs {PREFIX}SCHEMA_REGISTRY_URL")
        return self

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The environment, with explicit values (command-line options) taking precedence.

        ``None`` means "not given". Any invalid value is a ``ConfigError`` naming the variable.
        """
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(one_line(exc, env_prefix=PREFIX)) from None

    @property
    def trusted_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in (self.trusted_keys or "").split(",") if p.strip()]

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"{self.topic_prefix}{self.pipeline}-worker"

    @property
    def compression_type(self) -> str | None:
        """``output_compression`` as the Kafka clients take it (None: uncompressed)."""
        return None if self.output_compression == "none" else self.output_compression

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]

    @property
    def topics(self) -> PipelineTopics:
        topics = PipelineTopics.for_pipeline(self.pipeline, self.topic_prefix)
        return topics.with_events(self.input_topic) if self.input_topic else topics

    @property
    def oauth_extensions(self) -> dict[str, str]:
        """``WORKERS_SASL_OAUTHBEARER_EXTENSIONS`` as a mapping; keys and values as Kafka accepts them
        (RFC 7628: a key of letters, other than ``auth``; a value of printable ASCII)."""
        extensions: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in (self.sasl_oauthbearer_extensions or "").split(","))):
            key, sep, value = item.partition("=")
            if not sep or not _EXTENSION_KEY.fullmatch(key) or key == "auth" or not _EXTENSION_VALUE.fullmatch(value):
                raise ValueError(f"{PREFIX}SASL_OAUTHBEARER_EXTENSIONS: {item!r} is not KEY=VALUE with a key "
                                 "of letters (not 'auth') and a value of printable ASCII")
            if key in extensions:
                raise ValueError(f"{PREFIX}SASL_OAUTHBEARER_EXTENSIONS names {key!r} twice")
            extensions[key] = value
        return extensions

    @property
    def client_name(self) -> str | None:
        """Who these settings authenticate as, for messages: the SASL user or the OAuth client id."""
        return self.sasl_username or self.sasl_oauthbearer_client_id

    def masked(self) -> dict[str, Any]:
        """A printable view with secrets hidden."""
        shown = self.model_dump(mode="json")
        for secret in ("sasl_password", "sasl_oauthbearer_client_secret"):
            if getattr(self, secret) is not None:
                shown[secret] = "***"
        if self.schema_registry_url and "@" in urllib.parse.urlsplit(self.schema_registry_url).netloc:
            parts = urllib.parse.urlsplit(self.schema_registry_url)  # user:password@ in the URL
            shown["schema_registry_url"] = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
        return shown
