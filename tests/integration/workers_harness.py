"""Start real worker processes and account for every event they were given."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.deadletter import headers_dict
from workers.settings import Settings
from workers.tail import Consumed, consume
from workers.topics import PipelineTopics, create_topics


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
    create_topics(settings, PipelineTopics.for_pipeline(pipeline, prefix).all())
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


def log_file(tmp_path: Path, name: str = "worker.log") -> Path:
    return tmp_path / name
