"""Start real worker processes and account for every event they were given."""
from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.deadletter import headers_dict
from workers.core.topics import PipelineTopics
from workers.dev.processes import free_port
from workers.kafka.admin import create_topics
from workers.kafka.consumer import Consumed, consume
from workers.settings import Settings


@dataclass
class Outputs:
    predictions: list[dict] = field(default_factory=list)
    prediction_records: list[Consumed] = field(default_factory=list)
    dead_letters: list[Consumed] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.predictions) + len(self.dead_letters)

    def reasons(self) -> Counter[str]:
        return Counter(headers_dict(d.headers)["dlq.reason"] for d in self.dead_letters)


def pipeline_settings(bootstrap: str, prefix: str, pipeline: str = "fraud", **overrides) -> Settings:
    settings = Settings(bootstrap_servers=bootstrap, pipeline=pipeline, topic_prefix=prefix, partitions=3, **overrides)
    topics = PipelineTopics.for_pipeline(pipeline, prefix)
    create_topics(settings, topics.all(), configs=topics.configs())
    return settings


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        "WORKERS_SCHEMAS_DIR": str(settings.schemas_dir),
        "WORKERS_MODELS_DIR": str(settings.models_dir),
        "WORKERS_LOG_LEVEL": "INFO",
    }


def collect(settings: Settings, expected: int, timeout_s: float = 90, worker=None) -> Outputs:
    """Read predictions and dead letters until ``expected`` arrived (or the timeout)."""
    topics = PipelineTopics.for_pipeline(settings.pipeline, settings.topic_prefix)
    store = SchemaStore(settings.schemas_dir)
    codec = SingleObjectCodec(store, store.get("prediction.v1.avsc"))
    out = Outputs()
    deadline = time.monotonic() + timeout_s
    for record in consume(settings, [topics.predictions, topics.dlq], idle_timeout_s=timeout_s):
        if record.topic == topics.dlq:
            out.dead_letters.append(record)
        else:
            out.predictions.append(codec.decode(record.value)[0])
            out.prediction_records.append(record)
        if out.total >= expected or time.monotonic() > deadline:
            break
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"worker exited with {worker.returncode} after {out.total} outputs")
    return out


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def metrics(port: int) -> dict[str, float]:
    """{'name{label=value,...}': value} for every sample."""
    _, body = get(port, "/metrics")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "pipeline")
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def start_observed_worker(settings: Settings, log: Path, extra_env: dict[str, str] | None = None
                          ) -> tuple[subprocess.Popen, int]:
    """A worker process with its HTTP endpoints on a free port."""
    from workers.dev.processes import start_worker

    port = free_port()
    env = {**worker_env(settings), "WORKERS_METRICS_PORT": str(port), **(extra_env or {})}
    return start_worker(settings, log, env), port


def run_cli(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """``workers <args>`` in a child process with exactly these WORKERS_* settings (none inherited)."""
    import os
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKERS_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, env={**clean, **env})
