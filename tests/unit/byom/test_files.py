"""Rows from CSV, JSON lines, Avro and Parquet files; values fitted to Avro types; events for `produce`."""
from __future__ import annotations

import json
import time

import fastavro
import numpy as np
import pyarrow
import pyarrow.parquet
import pytest

from tests.byom_data import project
from tests.factories import load_test_pipeline, make_sensor_pipeline
from workers.byom.records import events_from_file
from workers.byom.tables import read_table
from workers.core.avro_values import ValueMismatch, coerce, fit_record
from workers.core.codec import SchemaStore
from workers.core.records import InputRecord
from workers.dev.profile_events import generate
from workers.errors import ConfigError

ROWS = [{"a": 1.5, "b": "x", "c": True}, {"a": -2.0, "b": "y", "c": False}]


def _write_all(tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,c\n1.5,x,true\n-2.0,y,false\n")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    avro = tmp_path / "rows.avro"
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "double"},
                                                        {"name": "b", "type": "string"},
                                                        {"name": "c", "type": "boolean"}]}
    with open(avro, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), ROWS)
    parquet = tmp_path / "rows.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(ROWS), parquet)
    return [csv, jsonl, avro, parquet], schema


def test_every_format_gives_the_same_rows_once_fitted_to_the_schema(tmp_path):
    files, raw_schema = _write_all(tmp_path)
    store = SchemaStore(tmp_path)
    schema = store.add_definition(raw_schema, "r.avsc")
    for path in files:
        table = read_table(path)
        assert table.columns == ["a", "b", "c"], path
        assert [fit_record(r.values, schema) for r in table.rows] == ROWS, path


def test_a_short_csv_line_is_named(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,c\n1,x,true\n2,y\n")
    with pytest.raises(ConfigError, match=r"rows.csv line 3 has 2 cells, the header 3"):
        read_table(path)


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("rows.jsonl", '{"a": 1}\nnot json\n', "rows.jsonl line 2 is not JSON"),
    ("rows.xlsx", "", "unknown format '.xlsx'"),
    ("rows.parquet", "not parquet", "is not a readable Parquet file"),
    ("rows.avro", "not avro", "is not a readable Avro container file"),
    ("rows.csv", "a,a\n1,2\n", "duplicate columns ['a']"),
])
def test_unreadable_files_are_one_clear_error(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        read_table(path)


@pytest.mark.parametrize(("value", "avro_type", "expected"), [
    ("3", "int", 3), ("3.0", "long", 3), (2.0, "long", 2), ("1e3", "double", 1000.0), (7, "float", 7.0),
    ("TRUE", "boolean", True), ("0", "boolean", False), (None, ["null", "double"], None),
    ("2.5", ["null", "double"], 2.5), ("south", {"type": "enum", "name": "S", "symbols": ["north", "south"]}, "south"),
    (np.float64(0.25), "double", 0.25), ("1700000000000", {"type": "long", "logicalType": "timestamp-millis"},
                                         1_700_000_000_000),
])
def test_values_are_fitted_to_their_avro_type(value, avro_type, expected):
    assert coerce(value, avro_type) == expected


@pytest.mark.parametrize(("value", "avro_type", "expected"), [
    ("3.5", "int", "not a whole number"), ("maybe", "boolean", "not a boolean"), (True, "double", "is a boolean"),
    ("abc", "double", "not a number"), (3, "string", "not text"), (None, "double", "not nullable"),
    (2**40, "int", "outside the range of int"),
    ("west", {"type": "enum", "name": "S", "symbols": ["north"]}, "not one of the enum's symbols"),
])
def test_values_that_do_not_fit_say_why(value, avro_type, expected):
    with pytest.raises(ValueMismatch, match=expected):
        coerce(value, avro_type)


@pytest.fixture
def sensor(tmp_path):
    schemas, models = make_sensor_pipeline(tmp_path)
    pipeline = load_test_pipeline("sensor", schemas, models)
    return pipeline


def test_records_from_a_file_get_an_id_and_a_time_but_must_have_their_key(sensor, tmp_path):
    path = tmp_path / "readings.csv"
    path.write_text("device,temperature_c,load_pct,vibration_mm_s,site,comment\n"
                    "dev-1,40.5,50,,north,ok\n"
                    "dev-2,39,60,1.5,east,\n")
    found = events_from_file(path, sensor.manifest, sensor.input_codec.reader, now_ms=123)
    assert found.ignored_columns == ["comment"]
    first, second = found.events
    assert first["device"] == "dev-1" and first["ts"] == 123 and first["vibration_mm_s"] is None
    assert len(first["reading_id"]) == 32 and first["reading_id"] != second["reading_id"]
    assert second["load_pct"] == 60.0 and second["site"] == "east"

    path.write_text("temperature_c,load_pct,vibration_mm_s,site\n40.5,50,1,north\n")
    with pytest.raises(ConfigError, match=r"readings.csv line 2: no value for field 'device'"):
        events_from_file(path, sensor.manifest, sensor.input_codec.reader)
    path.write_text("device,temperature_c,load_pct,vibration_mm_s,site\nd,40.5,50,1,north\nd,hot,50,1,north\n")
    with pytest.raises(ConfigError, match=r"readings.csv line 3: field 'temperature_c': 'hot' is not a number"):
        events_from_file(path, sensor.manifest, sensor.input_codec.reader)


def test_events_drawn_from_the_reference_profile_are_all_scored(tmp_path):
    from sklearn.linear_model import Ridge

    from tests.byom_data import diabetes, dump, write_schema
    from workers.byom.new import NewPipeline, create
    from workers.settings import Settings

    schemas, models = project(tmp_path)
    x, y = diabetes()
    reference = tmp_path / "reference.csv"
    x.to_csv(reference, index=False)
    settings = Settings(schemas_dir=schemas, models_dir=models)
    create(NewPipeline(name="diabetes", version="1", model=dump(Ridge().fit(x.to_numpy(), y), tmp_path / "m.joblib"),
                       schema=write_schema(tmp_path / "visit.avsc", "Visit", x.columns), reference=reference,
                       features_from_reference=True, key_field="patient"), settings)
    pipeline = load_test_pipeline("diabetes", schemas, models)
    now = int(time.time() * 1000)
    events = generate(pipeline.manifest, pipeline.input_codec.reader, 2000, seed=3, now_ms=now)
    batch = [InputRecord(pipeline.input_codec.encode(e), topic="t", partition=0, offset=i)
             for i, e in enumerate(events)]
    result = pipeline.process(batch, now_ms=now)
    assert result.predictions == 2000 and not result.dead_letters
    bmi = np.array([e["bmi"] for e in events])  # each feature drawn from its reference deciles
    assert abs(np.median(bmi) - x.bmi.median()) < 0.2 * x.bmi.std()

    shifted = generate(pipeline.manifest, pipeline.input_codec.reader, 2000, seed=3, now_ms=now, shift={"bmi": 2})
    assert [e["bmi"] for e in shifted] == pytest.approx([2 * e["bmi"] for e in events])
    with pytest.raises(ConfigError, match="no reference profile"):
        bare = pipeline.manifest.model_copy(update={"reference_profile": None})
        generate(bare, pipeline.input_codec.reader, 1, seed=1, now_ms=now)
