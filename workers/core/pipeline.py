"""A pipeline: one input schema, one model version, its topics and policies.

``Pipeline.process`` is the whole per-batch job (decode, validate, build features, score,
encode, dead-letter) as a pure function of the consumed records and the clock. The
Kafka worker, the batch runner and the tests all call it the same way. It is handed what
it needs (a loaded, verified model, the schemas, topic names, policies); turning settings
into those is the caller's job (``workers.pipelines.load_pipeline``).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from workers.core.codec import SchemaStore, SingleObjectCodec
from workers.core.deadletter import dead_letter
from workers.core.features import FeatureBuilder
from workers.core.manifest import Policies
from workers.core.reasons import INFERENCE_ERROR
from workers.core.records import InputRecord, OutputRecord
from workers.core.registry import LoadedModel
from workers.core.replay import REPLAY_COUNT, REPLAY_HEADERS
from workers.core.scoring import Scorer
from workers.core.topics import PipelineTopics
from workers.core.validation import check_event_time, event_time_ms
from workers.errors import RecordError

EVENT_ID_HEADER = "workers.event_id"
REPLAYED_FLAG = "replayed"


@dataclass
class BatchResult:
    outputs: list[OutputRecord]  # in input order: per-key order is kept downstream
    predictions: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    matrix: np.ndarray | None = None  # the scored rows (for drift), None when nothing was scored
    scores: np.ndarray | None = None  # their scores, NaN where the model failed
    event_times_ms: list[int] = field(default_factory=list)  # of the predictions, for latency
    processing_s: float = 0.0  # set by the adapter that timed process()


@dataclass(slots=True)
class _Accepted:
    index: int
    record: InputRecord
    event: dict
    event_ms: int
    writer_fingerprint: str
    flags: list[str]


class Pipeline:
    def __init__(
        self, loaded: LoadedModel, schemas: SchemaStore, topics: PipelineTopics, *, worker_id: str = "local",
        policies: Policies | None = None, lean_scoring: bool = True,
    ) -> None:
        self.model = loaded
        self.manifest = loaded.manifest
        self.policies = policies or loaded.manifest.policies  # the manifest's, unless the operator overrides them
        self.topics = topics
        self.worker_id = worker_id
        self.name = self.manifest.name
        self.input_codec = SingleObjectCodec(schemas, loaded.input_schema)
        self.prediction_codec = SingleObjectCodec(schemas, loaded.prediction_schema)
        self.features = FeatureBuilder(self.manifest.features)
        self.scorer = Scorer(self.manifest, loaded.model, lean=lean_scoring)
        self._n_features = len(self.manifest.features)

    def process(self, batch: list[InputRecord], now_ms: int | None = None) -> BatchResult:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        manifest = self.manifest
        outputs: list[OutputRecord | None] = [None] * len(batch)
        result = BatchResult(outputs=[])
        accepted: list[_Accepted] = []
        rows: list[list[float]] = []

        for i, record in enumerate(batch):
            flags: list[str] = []
            try:
                event, writer = self.input_codec.decode(record.value)
                event_ms = event_time_ms(event.get(manifest.event_time_field))
                check_event_time(event_ms, now, self.policies, flags)
                row = self.features.row(event, flags)
            except RecordError as exc:
                outputs[i] = self._dead_letter(record, exc.reason, exc, now)
                result.dead_letters[exc.reason] += 1
                continue
            if record.header(REPLAY_COUNT) is not None:
                flags.append(REPLAYED_FLAG)
            accepted.append(_Accepted(i, record, event, event_ms, writer.fingerprint_hex, flags))
            rows.append(row)

        if accepted:
            matrix = np.array(rows, dtype=np.float64).reshape(len(rows), self._n_features)
            scores, failures = self.scorer.score(matrix)
            result.matrix, result.scores = matrix, scores
            for j, item in enumerate(accepted):
                error = failures.get(j)
                if error is not None:
                    outputs[item.index] = self._dead_letter(item.record, INFERENCE_ERROR, error, now)
                    result.dead_letters[INFERENCE_ERROR] += 1
                else:
                    outputs[item.index] = self._prediction(item, float(scores[j]), now)
                    result.predictions += 1
                    result.event_times_ms.append(item.event_ms)

        result.outputs = [o for o in outputs if o is not None]
        return result

    def _prediction(self, item: _Accepted, score: float, now_ms: int) -> OutputRecord:
        manifest = self.manifest
        event = item.event
        label = None
        if manifest.is_classifier:
            label = manifest.labels[1] if score >= manifest.threshold else manifest.labels[0]
        event_id = str(event.get(manifest.event_id_field))
        key = event.get(manifest.key_field)
        prediction = {
            "event_id": event_id,
            "key": None if key is None else str(key),
            "score": score,
            "label": label,
            "model_name": manifest.name,
            "model_version": manifest.version,
            "model_sha256": manifest.artifact_sha256,
            "input_schema_fingerprint": item.writer_fingerprint,
            "source_topic": item.record.topic,
            "source_partition": item.record.partition,
            "source_offset": item.record.offset,
            "event_time": item.event_ms,
            "scored_at": now_ms,
            "flags": item.flags,
        }
        record_key = item.record.key if item.record.key is not None else (None if key is None else str(key).encode())
        headers = [(EVENT_ID_HEADER, event_id.encode())]
        if REPLAYED_FLAG in item.flags:  # downstream can tell a replay, and which one, from headers
            headers += [(k, v) for k, v in item.record.headers if k in REPLAY_HEADERS]
        return OutputRecord(
            self.topics.predictions, record_key, self.prediction_codec.encode(prediction), headers, score=score
        )

    def _dead_letter(self, record: InputRecord, reason: str, error: BaseException, now_ms: int) -> OutputRecord:
        return dead_letter(
            record,
            self.topics.dlq,
            reason,
            error,
            pipeline=self.name,
            worker_id=self.worker_id,
            model_version=self.manifest.version,
            now_ms=now_ms,
        )
