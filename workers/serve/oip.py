"""The Open Inference Protocol (KServe v2, MLServer) mapped onto a pipeline: no HTTP here.

A request carries the input schema's fields as named tensors, one value per row
(``{"name": "amount", "shape": [2], "datatype": "FP64", "data": [12.5, 80.0]}``; shapes
``[N]``, ``[N, 1]`` and nested ``data`` lists are all read as N values). Row ``i`` is
``{name: data[i]}`` for every tensor and becomes an ``InputRecord`` whose ``decoded`` row
the core checks against the input schema, exactly as for a file's row. Fields the caller
may leave out: the event id (the request id and the row number), the event time (the
request's arrival) and the entity key, and any field with a default.

A request that cannot be read as tensors is a ``BadRequest`` (400, ``corrupt``). Rows
that the pipeline rejects are answered 422 with one entry per rejected row: its
position, the dead-letter reason and the message the dead-letter topic would carry;
500 when every rejection is an ``inference_error`` (the server's fault, not the rows').
"""
from __future__ import annotations

import json
import math
import uuid
from typing import Any

from workers.core.deadletter import ERROR_MESSAGE
from workers.core.manifest import Manifest
from workers.core.pipeline import Pipeline
from workers.core.reasons import CORRUPT, INFERENCE_ERROR
from workers.core.records import InputRecord, OutputRecord

DATATYPES = frozenset({"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                       "FP16", "FP32", "FP64", "BYTES"})
MAX_ROWS = 10_000
SOURCE = "http"  # the predictions' source_topic
SCORE, LABEL, FLAGS = "score", "label", "flags"


class BadRequest(Exception):
    """The body is not an inference request this model can read (HTTP 400)."""

    reason = CORRUPT


class NotFound(Exception):
    """No such model or version here (HTTP 404)."""


def _datatype(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return _datatype(branches[0]) if len(branches) == 1 else "BYTES"
    if isinstance(avro_type, dict):
        return "BYTES" if avro_type["type"] in ("enum", "string", "fixed", "bytes") else _datatype(avro_type["type"])
    return {"double": "FP64", "float": "FP32", "long": "INT64", "int": "INT32", "boolean": "BOOL"}.get(
        avro_type, "BYTES")


class ModelSpec:
    """What the protocol says about one pipeline: its name, version, inputs and outputs."""

    def __init__(self, pipeline: Pipeline) -> None:
        manifest: Manifest = pipeline.manifest
        self.pipeline = pipeline
        self.name, self.version = manifest.name, manifest.version
        self.event_id_field, self.time_field = manifest.event_id_field, manifest.event_time_field
        self.key_field = manifest.key_field
        features = {f.name: f for f in manifest.features}
        provided = {self.event_id_field, self.time_field, self.key_field}
        self.fields: dict[str, dict[str, Any]] = {}
        for field in pipeline.rows.schema.parsed["fields"]:
            name, avro_type = field["name"], field["type"]
            spec = features.get(name)
            parameters: dict[str, Any] = {}
            if spec is not None:
                parameters["feature"] = spec.kind
                if spec.kind == "categorical":
                    parameters["categories"] = list(spec.categories)
                if spec.kind == "numeric":
                    parameters["min"], parameters["max"] = spec.min, spec.max
                optional = spec.missing == "impute"
            else:
                optional = name in provided or "default" in field
            parameters["optional"] = optional
            self.fields[name] = {"name": name, "datatype": _datatype(avro_type), "shape": [-1],
                                 "parameters": parameters}
        self.outputs = [{"name": SCORE, "datatype": "FP64", "shape": [-1]}]
        if manifest.is_classifier:
            self.outputs.append({"name": LABEL, "datatype": "BYTES", "shape": [-1]})
        self.outputs.append({"name": FLAGS, "datatype": "BYTES", "shape": [-1]})

    def check(self, name: str, version: str | None = None) -> None:
        if name != self.name:
            raise NotFound(f"model {name!r} is not served here (this server serves {self.name!r})")
        if version is not None and version != self.version:
            raise NotFound(f"model {name!r} has no version {version!r} here (this server serves {self.version!r})")

    def metadata(self) -> dict[str, Any]:
        manifest = self.pipeline.manifest
        # features first, in the model's order: what a caller must send; then the other fields
        ordered = [self.fields[f.name] for f in manifest.features] + [
            spec for name, spec in self.fields.items() if name not in {f.name for f in manifest.features}]
        return {"name": self.name, "versions": [self.version], "platform": "scikit-learn",
                "inputs": ordered, "outputs": self.outputs,
                "parameters": {"task": str(manifest.task), "threshold": manifest.threshold,
                               "labels": list(manifest.labels) if manifest.is_classifier else None,
                               "artifact_sha256": manifest.artifact_sha256,
                               "input_schema": self.pipeline.rows.schema.path}}

    # ---------------------------------------------------------------- requests

    def records(self, body: bytes, now_ms: int) -> tuple[str, list[InputRecord], list[str]]:
        """The request id, one record per row, and the outputs asked for."""
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
            raise BadRequest('an inference request is a JSON object with a non-empty "inputs" list')
        request_id = request.get("id")
        if request_id is None:
            request_id = uuid.uuid4().hex
        elif not isinstance(request_id, str):
            raise BadRequest('"id" must be a string')
        columns: dict[str, list[Any]] = {}
        for tensor in request["inputs"]:
            name, values = self._tensor(tensor)
            if name in columns:
                raise BadRequest(f"input {name!r} is given twice")
            columns[name] = values
        unknown = sorted(set(columns) - set(self.fields))
        if unknown:
            raise BadRequest(f"unknown inputs {unknown}; {self.name} takes {sorted(self.fields)} "
                             f"(GET /v2/models/{self.name})")
        counts = {len(v) for v in columns.values()}
        if len(counts) != 1:
            raise BadRequest("every input must have one value per row: got "
                             + ", ".join(f"{k}={len(v)}" for k, v in columns.items()))
        rows = counts.pop()
        if rows == 0 or rows > MAX_ROWS:
            raise BadRequest(f"a request carries 1 to {MAX_ROWS} rows, got {rows}")
        outputs = self._requested_outputs(request.get("outputs"))
        names = list(columns)
        records = []
        for i, row_values in enumerate(zip(*columns.values(), strict=True)):
            row = dict(zip(names, row_values, strict=True))
            row.setdefault(self.event_id_field, f"{request_id}-{i}")
            row.setdefault(self.time_field, now_ms)
            row.setdefault(self.key_field, "")
            records.append(InputRecord(None, None, SOURCE, 0, i, now_ms, [], decoded=row))
        return request_id, records, outputs

    @staticmethod
    def _tensor(tensor: Any) -> tuple[str, list[Any]]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequest('each input is an object with "name", "shape", "datatype" and "data"')
        name = tensor["name"]
        shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers")
        if datatype not in DATATYPES:
            raise BadRequest(f"input {name!r}: datatype {datatype!r} is not one of {sorted(DATATYPES)}")
        if not isinstance(data, list):
            raise BadRequest(f"input {name!r}: data must be a list")
        values = _flat(data)
        if math.prod(shape) != len(values):
            raise BadRequest(f"input {name!r}: shape {shape} holds {math.prod(shape)} values, data has {len(values)}")
        return name, values

    def _requested_outputs(self, asked: Any) -> list[str]:
        known = [str(o["name"]) for o in self.outputs]
        if asked is None:
            return known
        if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                  for o in asked):
            raise BadRequest('"outputs" must be a list of objects with a "name"')
        names = [o["name"] for o in asked]
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise BadRequest(f"unknown outputs {unknown}; {self.name} gives {known}")
        return names

    # ---------------------------------------------------------------- answers

    def response(self, request_id: str, outputs: list[OutputRecord], asked: list[str]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for one request's outputs, in row order."""
        rejected = [{"row": i, "reason": o.reason, "message": _message(o)}
                    for i, o in enumerate(outputs) if o.is_dead_letter]
        if rejected:
            status = 500 if all(r["reason"] == INFERENCE_ERROR for r in rejected) else 422
            reasons = sorted({str(r["reason"]) for r in rejected})
            return status, {
                "error": f"{len(rejected)} of {len(outputs)} rows rejected ({', '.join(reasons)})",
                "id": request_id, "model_name": self.name, "model_version": self.version, "rejected": rejected}
        n = len(outputs)
        predictions = [o.prediction or {} for o in outputs]
        tensors = {
            SCORE: {"name": SCORE, "datatype": "FP64", "shape": [n], "data": [o.score for o in outputs]},
            LABEL: {"name": LABEL, "datatype": "BYTES", "shape": [n], "data": [p.get("label") for p in predictions]},
            FLAGS: {"name": FLAGS, "datatype": "BYTES", "shape": [n],
                    "data": [",".join(p.get("flags") or ()) for p in predictions]},
        }
        return 200, {"model_name": self.name, "model_version": self.version, "id": request_id,
                     "parameters": {}, "outputs": [tensors[name] for name in asked]}


def _flat(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flat(v) if isinstance(v, list) else [v])
    return out


def _message(output: OutputRecord) -> str:
    for name, value in output.headers:
        if name == ERROR_MESSAGE:
            return value.decode("utf-8", "replace")
    return ""


def error_body(message: str, reason: str | None = None) -> dict[str, Any]:
    """The protocol's error answer ({"error": ...}), with the dead-letter reason when there is one."""
    return {"error": message} if reason is None else {"error": message, "reason": reason}
