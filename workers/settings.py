"""One settings object, read once at start-up from ``WORKERS_*`` environment variables.

Every environment variable the project reads is named in ``Settings.from_env``; nothing
else in the code reads the environment. Secrets are masked when settings are printed.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workers.errors import ConfigError

PREFIX = "WORKERS_"
_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BOOTSTRAP = "127.0.0.1:19092"  # scripts/kafka-local's default port


def _default_dir(name: str) -> Path:
    """``schemas/`` and ``models/`` beside the package in a checkout, else in the cwd."""
    beside = _REPO_ROOT / name
    return beside if beside.is_dir() else Path.cwd() / name


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    pipeline: str = "fraud"
    schemas_dir: Path = field(default_factory=lambda: _default_dir("schemas"))
    models_dir: Path = field(default_factory=lambda: _default_dir("models"))
    model_version: str | None = None  # None: the newest version in models/<pipeline>/
    topic_prefix: str = ""  # prepended to every pipeline topic (tests, multi-tenant clusters)
    input_topic: str | None = None  # overrides "<prefix><pipeline>.events" (benchmarks share one backlog)
    consumer_group: str | None = None  # None: "<prefix><pipeline>-worker"
    partitions: int = 4
    replication_factor: int = 1
    max_lateness_s: float | None = None  # overrides the manifest's policy (e.g. before a replay)
    batch_size: int = 500
    batch_linger_s: float = 0.0  # once records arrive, wait this long for more before scoring
    engine: str = "batch"  # batch (driver batch fetch in the faust app) | agent (faust agent + take_events)
    max_batches_in_flight: int = 4  # scored batches awaiting broker acks; bounds memory
    model_threads: int = 1  # native (OpenMP/BLAS) threads per model call; scale with processes instead
    lean_scoring: bool = True  # HistGradientBoosting: skip sklearn's per-call overhead (same bits, checked at load)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    metrics_port: int = 0  # 0: no HTTP endpoint (/metrics, /healthz, /readyz, /status)
    drift_window: int = 5000  # events in the sliding window compared with the reference profile
    drift_threshold: float = 0.2  # PSI above which a feature counts as drifted
    log_level: str = "INFO"
    log_format: str = "json"  # json | console
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        bootstrap = env.get(PREFIX + "BOOTSTRAP_SERVERS") or env.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            values["bootstrap_servers"] = bootstrap
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or f.name == "bootstrap_servers":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_linger_s < 0:
            raise ConfigError(f"batch_linger_s must be >= 0, got {self.batch_linger_s}")
        if self.model_threads < 1:
            raise ConfigError(f"model_threads must be >= 1, got {self.model_threads}")
        if self.max_batches_in_flight < 1:
            raise ConfigError(f"max_batches_in_flight must be >= 1, got {self.max_batches_in_flight}")
        if self.partitions < 1:
            raise ConfigError(f"partitions must be >= 1, got {self.partitions}")
        if self.engine not in ("batch", "agent"):
            raise ConfigError(f"engine must be 'batch' or 'agent', got {self.engine!r}")
        if self.log_format not in ("json", "console"):
            raise ConfigError(f"log_format must be 'json' or 'console', got {self.log_format!r}")

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"{self.topic_prefix}{self.pipeline}-worker"

    def kafka_client_options(self) -> dict[str, object]:
        """Connection options in kafka-python's spelling (aiokafka shares most names)."""
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        return options

    def masked(self) -> dict[str, object]:
        """A printable view with secrets hidden."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if shown["sasl_password"]:
            shown["sasl_password"] = "***"
        return {k: str(v) if isinstance(v, Path) else v for k, v in shown.items()}


def _convert(name: str, annotation: object, raw: str) -> object:
    kind = str(annotation)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("Path"):
            return Path(raw)
        if kind.startswith("bool"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r}: {exc}") from exc
    return raw or None
