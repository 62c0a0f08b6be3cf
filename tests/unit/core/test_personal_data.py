"""Personal data: marked fields never reach predictions, logs, metrics or the status page."""
from __future__ import annotations

import json
import time

import pytest
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from tests.factories import load_test_pipeline, make_sensor_pipeline, sensor_rows
from workers.core.records import InputRecord
from workers.errors import ConfigError
from workers.ops.monitor import WorkerMonitor


def _personal_sensor(tmp_path, mark: str):
    schemas, models = make_sensor_pipeline(tmp_path)
    if mark == "manifest":
        path = models / "sensor" / "3" / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["personal_fields"] = ["device", "site"]
        path.write_text(json.dumps(manifest))
    else:  # the Avro schema marks them
        path = schemas / "sensor" / "reading.v1.avsc"
        schema = json.loads(path.read_text())
        for field in schema["fields"]:
            if field["name"] in ("device", "site"):
                field["personal"] = True
        path.write_text(json.dumps(schema))
    return schemas, models


@pytest.mark.parametrize("mark", ["manifest", "schema"])
def test_a_personal_key_is_pseudonymised_and_never_copied(tmp_path, mark):
    schemas, models = _personal_sensor(tmp_path, mark)
    pipeline = load_test_pipeline("sensor", schemas, models, pseudonym_key="k1")
    rows, _ = sensor_rows(40, seed=4)
    now = int(time.time() * 1000)
    for row in rows:
        row["ts"] = now
    records = [InputRecord(pipeline.input_codec.encode(r), r["device"].encode(), "in", 0, i, now)
               for i, r in enumerate(rows)]
    result = pipeline.process(records, now)
    monitor = WorkerMonitor(pipeline, "w", drift_window=10)
    with capture_logs() as logs:
        monitor.batch_delivered(records, result)
    exposed = b"".join(o.value or b"" for o in result.outputs if not o.is_dead_letter)
    exposed += b"".join(o.key or b"" for o in result.outputs if not o.is_dead_letter)
    exposed += b"".join(v for o in result.outputs for _, v in o.headers if not o.is_dead_letter)
    exposed += generate_latest(monitor.metrics.registry) + json.dumps(monitor.status()).encode()
    exposed += json.dumps(logs).encode()
    devices = {r["device"] for r in rows}
    assert not [d for d in devices if d.encode() in exposed]
    assert not [site for site in ("north", "south", "east") if site.encode() in exposed]  # the personal feature
    predictions = [pipeline.prediction_codec.decode(o.value)[0] for o in result.outputs if not o.is_dead_letter]
    by_device = {}
    assert len(predictions) == 40
    for row, p in zip(rows, predictions, strict=True):
        assert p["key"].startswith("pn:")
        assert by_device.setdefault(row["device"], p["key"]) == p["key"]  # same device, same pseudonym
    assert len(set(by_device.values())) == len(devices)


@pytest.mark.parametrize(("value", "personal"), [("west", True), ("west", False)])
def test_a_personal_features_value_stays_out_of_error_messages(value, personal):
    from workers.core.features import FeatureBuilder
    from workers.core.manifest import FeatureSpec
    from workers.errors import RecordError

    builder = FeatureBuilder([FeatureSpec(name="site", kind="categorical", categories=["north", "south"])],
                             frozenset({"site"}) if personal else frozenset())
    with pytest.raises(RecordError) as caught:
        builder.row({"site": value}, [])
    assert (value in str(caught.value)) is not personal


def test_a_personal_key_without_a_pseudonym_key_refuses_to_start(tmp_path):
    schemas, models = _personal_sensor(tmp_path, "manifest")
    with pytest.raises(ConfigError, match="WORKERS_PSEUDONYM_KEY"):
        load_test_pipeline("sensor", schemas, models)


@pytest.mark.parametrize("mark", ["manifest", "schema"])
def test_dead_letters_of_a_personal_key_carry_it_only_in_the_original_record(tmp_path, mark):
    """The dead letter keeps the original key and bytes (needed for replay); its headers, the logs,
    the metrics and the status page never name the device."""
    schemas, models = _personal_sensor(tmp_path, mark)
    pipeline = load_test_pipeline("sensor", schemas, models, pseudonym_key="k1")
    rows, _ = sensor_rows(12, seed=5)
    now = int(time.time() * 1000)
    records = []
    for i, row in enumerate(rows):
        row["ts"] = now
        if i % 3 == 0:
            row["temperature_c"] = float("nan")  # decoded, then refused by the features
        value = pipeline.input_codec.encode(row) if i % 3 != 1 else b"\xc3\x01garbage"  # corrupt
        records.append(InputRecord(value, row["device"].encode(), "in", 0, i, now))
    result = pipeline.process(records, now)
    letters = [o for o in result.outputs if o.is_dead_letter]
    assert {o.reason for o in letters} == {"corrupt", "invalid_value"} and len(letters) == 8
    assert [o.key for o in letters] == [r.key for r in records if r.offset % 3 != 2]  # the original keys, kept
    monitor = WorkerMonitor(pipeline, "w", drift_window=10)
    with capture_logs() as logs:
        monitor.batch_delivered(records, result)
    exposed = b"".join(v for o in letters for _, v in o.headers)
    exposed += generate_latest(monitor.metrics.registry) + json.dumps(monitor.status()).encode()
    exposed += json.dumps(logs).encode()
    assert not [r["device"] for r in rows if r["device"].encode() in exposed]
