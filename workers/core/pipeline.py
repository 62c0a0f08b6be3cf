"""A pipeline: one input schema, one model version, its topics and policies.

``Pipeline.process`` is the whole per-batch job (decode, validate, build features, score,
encode, dead-letter) as a pure function of the consumed records and the clock. The
Kafka worker, the batch runner and the tests all call it the same way. It is handed what
it needs (a loaded, verified model, the schemas, topic names, policies); turning settings
into those is the caller's job (``workers.pipelines.load_pipeline``).

Most batches of a live stream hold only ordinary events: written with the input schema,
on time, every feature present (or imputed) and valid. Such a batch is checked a column at
a time (``_ordinary_batch``: one compiled decode, then numpy over whole columns), with no
dict per event; a batch with anything else in it goes record by record (``_check_each``),
which dead-letters each bad record with its reason. Both give the same outputs, byte for
byte (tests/unit/core/test_ordinary_batches.py).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.core.codec import HEADER_SIZE, SchemaStore, SingleObjectCodec
from workers.core.columnar_avro import ColumnarDecoder, Columns
from workers.core.columnar_predictions import ColumnarPredictionEncoder
from workers.core.deadletter import dead_letter
from workers.core.features import IMPUTED, FeatureBuilder
from workers.core.framing import (
    REGISTRY_HEADER_SIZE,
    REGISTRY_MAGIC,
    Framing,
    InputDecoder,
    RegisteredSchemas,
    RegistryEncoder,
    registry_id,
)
from workers.core.manifest import Policies
from workers.core.prediction_encoder import PredictionEncoder
from workers.core.reasons import CORRUPT, INFERENCE_ERROR
from workers.core.records import Headers, InputRecord, OutputRecord
from workers.core.registry import LoadedModel
from workers.core.replay import verified_replay_headers
from workers.core.rows import RowReader
from workers.core.scoring import Scorer
from workers.core.topics import PipelineTopics
from workers.core.validation import LATE_FLAG, check_future, check_lateness, event_time_ms
from workers.errors import ConfigError, RecordError

EVENT_ID_HEADER = "workers.event_id"
# W3C trace context, which OpenTelemetry's Kafka instrumentations put in headers: a prediction
# continues its event's trace (a dead letter keeps all of the event's headers)
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
REPLAYED_FLAG = "replayed"
JSON = "json"  # InputRecord.value_format of a JSON object
_SAFE_MS = 2**52  # event times within this many ms of 1970 (142,000 years) cannot overflow int64 arithmetic
COLUMNAR_FROM = 8  # records in the input schema's own framing: below this, fastavro per record is cheaper


@dataclass
class BatchResult:
    outputs: list[OutputRecord]  # in input order: per-key order is kept downstream
    predictions: int = 0
    # of ``predictions``, those a model other than the served one made (a canary's candidate), per version
    other_versions: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    matrix: np.ndarray | None = None  # the scored rows (for drift), None when nothing was scored
    scores: np.ndarray | None = None  # their scores, NaN where the model failed
    event_times_ms: list[int] = field(default_factory=list)  # of the predictions, for latency
    processing_s: float = 0.0  # set by the adapter that timed process()


@dataclass(slots=True)
class _Accepted:
    index: int
    record: InputRecord
    event_id: Any  # the event's id and key fields as read
    key: Any
    event_ms: int
    writer_fingerprint: str
    flags: list[str]
    replay: Headers  # the verified replay marks, empty for an original event


class Pipeline:
    def __init__(
        self, loaded: LoadedModel, schemas: SchemaStore, topics: PipelineTopics, *, worker_id: str = "local",
        policies: Policies | None = None, lean_scoring: bool = True, max_isolation_calls: int = 160,
        replay_key: bytes | None = None, pseudonym_key: bytes | None = None,
        framing: Framing = Framing.SINGLE_OBJECT, registered: RegisteredSchemas | None = None,
        prediction_schema_id: int | None = None, columnar_codecs: bool = True,
    ) -> None:
        self.model = loaded
        self.manifest = loaded.manifest
        self.policies = policies or loaded.manifest.policies  # the manifest's, unless the operator overrides them
        self.topics = topics
        self.worker_id = worker_id
        self.name = self.manifest.name
        self.input_codec = SingleObjectCodec(schemas, loaded.input_schema)
        # registry-framed inputs need their writer schemas fetched first (``registered.missing``)
        self.registered = registered if framing is not Framing.SINGLE_OBJECT else None
        self.input_decoder = InputDecoder(self.input_codec, framing, registered)
        self._decode = self.input_codec.decode if framing is Framing.SINGLE_OBJECT else self.input_decoder.decode
        # events written with the input schema itself, a batch at a time (core/columnar_avro.py)
        self._columnar = ColumnarDecoder.plan(loaded.input_schema.plain) if columnar_codecs else None
        self._own_header = self.input_codec.header if framing is not Framing.REGISTRY else None
        self._own_registry_headers: set[bytes] = set()  # registry ids whose schema is the input schema
        self.rows = RowReader(loaded.input_schema)  # events read by a file or HTTP adapter
        # predictions in the registry wire format when the prediction schema has a registry id
        self.prediction_codec: SingleObjectCodec | RegistryEncoder = (
            SingleObjectCodec(schemas, loaded.prediction_schema) if prediction_schema_id is None
            else RegistryEncoder(loaded.prediction_schema, prediction_schema_id))
        self._encode_predictions = self._predictions_encoder(loaded, columnar_codecs)
        self.personal = frozenset(self.manifest.personal_fields) | loaded.input_schema.personal
        self.features = FeatureBuilder(self.manifest.features, self.personal)
        identifying = sorted({self.manifest.key_field, self.manifest.event_id_field} & self.personal)
        if identifying and pseudonym_key is None:
            raise ConfigError(f"{', '.join(identifying)} of {self.manifest.name} hold personal data: set "
                              "WORKERS_PSEUDONYM_KEY so that predictions carry a keyed pseudonym instead")
        self._pseudonym_key = pseudonym_key
        self._hide_event_id = self.manifest.event_id_field in self.personal and pseudonym_key is not None
        self._hide_key = self.manifest.key_field in self.personal and pseudonym_key is not None
        self._input_key_shown = self.manifest.key_field not in self.personal
        self.scorer = Scorer(self.manifest, loaded.model, lean=lean_scoring, max_calls=max_isolation_calls)
        self._n_features = len(self.manifest.features)
        self._replay_key = replay_key
        self._stream_time: dict[tuple[str, int], int] = {}  # (topic, partition) -> highest event time seen

    def carry_over(self, previous: Pipeline) -> None:
        """Take over what ``previous`` knew of the stream (its stream time per partition) when it
        replaces it between batches (a rollout switching the model)."""
        self._stream_time.update(previous._stream_time)
        if self.registered is not None and previous.registered is not None:
            # the writer schemas already fetched for the batch about to be scored stay known
            self.registered = self.input_decoder.registered = previous.registered

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions that moved to another worker: their stream time starts afresh if they come back."""
        for tp in partitions:
            self._stream_time.pop(tp, None)

    def _lateness_reference(self, record: InputRecord, event_ms: int, now_ms: int) -> int:
        if self.policies.clock == "wall":
            return now_ms
        tp = (record.topic, record.partition)
        stream_time = max(self._stream_time.get(tp, event_ms), event_ms)
        self._stream_time[tp] = stream_time
        return stream_time

    def process(self, batch: list[InputRecord], now_ms: int | None = None, flags: tuple[str, ...] = ()) -> BatchResult:
        """``flags`` are added to every prediction's (a canary marks the candidate's with ``canary``)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        outputs: list[OutputRecord | None] = [None] * len(batch)
        result = BatchResult(outputs=[])
        columnar = self._columnar_batch(batch)
        ordinary = self._ordinary_batch(batch, columnar[1], now, flags) \
            if columnar is not None and len(columnar[0]) == len(batch) else None
        if ordinary is not None:
            accepted, matrix = ordinary
        else:
            decoded: list[dict | None] | None = None
            if columnar is not None:
                assert self._columnar is not None
                decoded = [None] * len(batch)
                for i, event in zip(columnar[0], self._columnar.dicts(columnar[1]), strict=True):
                    decoded[i] = event
            accepted, rows = self._check_each(batch, decoded, now, flags, outputs, result)
            matrix = np.array(rows, dtype=np.float64).reshape(len(rows), self._n_features)
        if accepted:
            self._score(accepted, matrix, now, outputs, result)
        result.outputs = [o for o in outputs if o is not None]
        return result

    def _check_each(self, batch: list[InputRecord], decoded: list[dict | None] | None, now: int,
                    flags: tuple[str, ...], outputs: list[OutputRecord | None],
                    result: BatchResult) -> tuple[list[_Accepted], list[list[float]]]:
        """Record by record: decode, check, build the row, or dead-letter with the reason."""
        manifest = self.manifest
        accepted: list[_Accepted] = []
        rows: list[list[float]] = []
        for i, record in enumerate(batch):
            record_flags: list[str] = list(flags)
            try:
                if record.parse_error is not None:
                    raise RecordError(CORRUPT, f"the Kafka client could not parse this record: {record.parse_error}")
                if record.decoded is not None:
                    event, writer = self.rows.read(record.decoded), self.rows.schema
                elif record.value_format == JSON:
                    event, writer = self.rows.read_json(record.value), self.rows.schema
                elif decoded is not None and (columnar := decoded[i]) is not None:
                    event, writer = columnar, self.input_codec.reader
                else:
                    event, writer = self._decode(record.value)
                event_ms = event_time_ms(event.get(manifest.event_time_field))
                check_future(event_ms, now, self.policies)
                check_lateness(event_ms, self._lateness_reference(record, event_ms, now), self.policies,
                               record_flags)
                row = self.features.row(event, record_flags)
            except RecordError as exc:
                outputs[i] = self._dead_letter(record, exc.reason, exc, now)
                result.dead_letters[exc.reason] += 1
                continue
            replay = verified_replay_headers(record.headers, record.value, self._replay_key) \
                if self._replay_key is not None else None
            if replay:
                record_flags.append(REPLAYED_FLAG)
            accepted.append(_Accepted(i, record, event.get(manifest.event_id_field), event.get(manifest.key_field),
                                      event_ms, writer.fingerprint_hex, record_flags, replay or []))
            rows.append(row)
        return accepted, rows

    def _ordinary_batch(self, batch: list[InputRecord], columns: Columns, now: int,
                        flags: tuple[str, ...]) -> tuple[list[_Accepted], np.ndarray] | None:
        """A batch whose every record is ordinary, checked a column at a time: decoded, on time
        (or late and let through to be scored), every feature present and valid. The same
        outcome as ``_check_each`` gives for such a batch; None if any record is not ordinary
        (nothing is changed then, and ``_check_each`` finds which one and why)."""
        manifest, policies = self.manifest, self.policies
        if not columns.all_good():
            return None
        times = columns.integers(manifest.event_time_field)
        if times is None or columns.nulls(manifest.event_time_field) is not None:
            return None
        if not ((times > -_SAFE_MS) & (times < _SAFE_MS)).all():  # no int64 overflow below
            return None
        if ((times - now) > policies.max_future_s * 1000).any():
            return None
        references, stream_times = self._stream_references(batch, times, now)
        if references is None:
            return None
        late = (references - times) > policies.max_lateness_s * 1000 if policies.max_lateness_s is not None \
            else np.zeros(len(batch), dtype=np.bool_)
        if policies.late_action != "score" and late.any():
            return None
        built = self.features.matrix(columns)
        if built is None:
            return None
        matrix, imputed = built
        self._stream_time.update(stream_times)
        fingerprint = self.input_codec.reader.fingerprint_hex
        ids, keys = columns.values(manifest.event_id_field), columns.values(manifest.key_field)
        replay_key = self._replay_key
        accepted = []
        for i, (record, event_ms, is_late, is_imputed) in enumerate(
                zip(batch, times.tolist(), late.tolist(), imputed.tolist(), strict=True)):
            record_flags = [*flags, LATE_FLAG] if is_late else list(flags)
            if is_imputed and IMPUTED not in record_flags:  # as FeatureBuilder.row: never twice
                record_flags.append(IMPUTED)
            replay = verified_replay_headers(record.headers, record.value, replay_key) \
                if replay_key is not None and record.headers else None
            if replay:
                record_flags.append(REPLAYED_FLAG)
            accepted.append(_Accepted(i, record, ids[i], keys[i], event_ms, fingerprint, record_flags, replay or []))
        return accepted, matrix

    def _stream_references(self, batch: list[InputRecord], times: np.ndarray,
                           now: int) -> tuple[np.ndarray | None, dict[tuple[str, int], int]]:
        """What each record's lateness is measured against, as ``_lateness_reference`` gives it
        record by record, and the partitions' stream times after the batch (not stored yet)."""
        if self.policies.clock == "wall":
            return np.full(len(times), now, dtype=np.int64), {}
        topic = batch[0].topic
        if any(r.topic != topic for r in batch):
            return None, {}
        partitions = np.array([r.partition for r in batch], dtype=np.int64)
        references = np.empty_like(times)
        after: dict[tuple[str, int], int] = {}
        for partition in np.unique(partitions).tolist():
            mine = partitions == partition
            running = np.maximum.accumulate(times[mine])  # the highest event time so far, this one included
            before = self._stream_time.get((topic, partition))
            if before is not None:
                if not -_SAFE_MS < before < _SAFE_MS:  # set by the record path from an extreme event time
                    return None, {}
                running = np.maximum(running, before)
            references[mine] = running
            after[(topic, partition)] = int(running[-1])
        return references, after

    def _score(self, accepted: list[_Accepted], matrix: np.ndarray, now: int, outputs: list[OutputRecord | None],
               result: BatchResult) -> None:
        scores, failures = self.scorer.score(matrix)
        result.matrix, result.scores = matrix, scores
        scored: list[tuple[_Accepted, dict]] = []
        for j, (item, score) in enumerate(zip(accepted, scores.tolist(), strict=True)):
            error = failures.get(j)
            if error is not None:
                outputs[item.index] = self._dead_letter(item.record, INFERENCE_ERROR, error, now)
                result.dead_letters[INFERENCE_ERROR] += 1
            else:
                scored.append((item, self._prediction(item, score, now)))
                result.event_times_ms.append(item.event_ms)
        result.predictions = len(scored)
        encoded = self._encode_predictions([prediction for _, prediction in scored])
        for (item, prediction), value in zip(scored, encoded, strict=True):
            outputs[item.index] = self._prediction_record(item, prediction, value)

    def _columnar_batch(self, batch: list[InputRecord]) -> tuple[list[int], Columns] | None:
        """The events of ``batch`` written with the input schema itself (their positions), decoded
        in one pass; None when not worth it."""
        columnar = self._columnar
        if columnar is None or len(batch) < COLUMNAR_FROM:
            return None
        positions, values, headers = [], [], []
        for i, r in enumerate(batch):
            if r.decoded is None and r.parse_error is None and r.value_format != JSON and isinstance(r.value, bytes):
                header = self._own_framing(r.value)
                if header:
                    positions.append(i)
                    values.append(r.value)
                    headers.append(header)
        if len(positions) < COLUMNAR_FROM:
            return None
        return positions, columnar.columns(values, headers)

    def _own_framing(self, value: bytes) -> int:
        """The header size of a value framed with the input schema as its writer schema, else 0."""
        if self._own_header is not None and value.startswith(self._own_header):
            return HEADER_SIZE
        if self.registered is None or not value or value[0] != REGISTRY_MAGIC:
            return 0
        prefix = value[:REGISTRY_HEADER_SIZE]
        if prefix in self._own_registry_headers:
            return REGISTRY_HEADER_SIZE
        schema_id = registry_id(value)
        writer = self.registered.fetched(schema_id) if schema_id is not None else None
        if writer is None or writer.fingerprint != self.input_codec.reader.fingerprint:
            return 0
        self._own_registry_headers.add(prefix)  # a registry id names one schema for good
        return REGISTRY_HEADER_SIZE

    def _predictions_encoder(self, loaded: LoadedModel, columnar: bool) -> Callable[[list[dict]], list[bytes]]:
        """The project's own contract has a direct encoder (half fastavro's cost), and a compiled
        one for whole batches (core/columnar_predictions.py); any other schema is fastavro's."""
        if not PredictionEncoder.fits(loaded.prediction_schema.definition):
            encode = self.prediction_codec.encode
            return lambda predictions: [encode(p) for p in predictions]
        direct = PredictionEncoder(self.prediction_codec.header)
        if columnar:
            return ColumnarPredictionEncoder(direct).encode_many
        return lambda predictions: [direct.encode(p) for p in predictions]

    def _prediction(self, item: _Accepted, score: float, now_ms: int) -> dict:
        manifest = self.manifest
        label = None
        if manifest.is_classifier:
            label = manifest.labels[1] if score >= manifest.threshold else manifest.labels[0]
        event_id = str(item.event_id)
        if self._hide_event_id:
            event_id = self._pseudonym(event_id)
        key = item.key
        if key is not None:
            key = self._pseudonym(str(key)) if self._hide_key else str(key)
        return {
            "event_id": event_id,
            "key": key,
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

    def _prediction_record(self, item: _Accepted, prediction: dict, value: bytes) -> OutputRecord:
        record, key = item.record, prediction["key"]
        record_key: bytes | None
        if record.key is not None and self._input_key_shown:
            record_key = record.key  # the input's own key; a personal one is replaced by its pseudonym
        else:
            record_key = None if key is None else key.encode()
        headers = [(EVENT_ID_HEADER, prediction["event_id"].encode())]
        if record.headers:
            headers += [(k, v) for k, v in record.headers if k in TRACE_HEADERS]
        if item.replay:
            headers += item.replay  # a verified replay: downstream can tell it, and which one, from headers
        return OutputRecord(self.topics.predictions, record_key, value, headers, score=prediction["score"],
                            prediction=prediction)

    def _pseudonym(self, value: str) -> str:
        """A personal value as a prediction may carry it: a keyed pseudonym (the same value always
        gives the same pseudonym, so per-key order and joins still work)."""
        assert self._pseudonym_key is not None
        return "pn:" + hmac.new(self._pseudonym_key, value.encode(), hashlib.sha256).hexdigest()[:32]

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
