"""``workers score``: each input format, bad rows in each, predictions in the contract, the summary."""
import io
import json
import math
import subprocess
import sys
import time

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import REPO
from workers.batch.formats import DeadLetterWriter, PredictionWriter, Reader
from workers.batch.score import Progress, score_file, summary
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud
from workers.errors import InputFileError

NOW = int(time.time() * 1000)
SCHEMA = json.loads((REPO / "schemas" / "fraud" / "transaction.v2.avsc").read_text())
V1 = json.loads((REPO / "schemas" / "fraud" / "transaction.v1.avsc").read_text())


def _events(n=30, seed=8):
    return fraud.generate(n, seed, start_ms=NOW - 5000, span_ms=5000)[0]


def _bad(events):
    """Rows every format can hold, each spoiled in its own way, with the reason it must get."""
    spoiled = [
        ({"distance_from_home_km": None}, "missing_field"),
        ({"amount": math.nan}, "invalid_value"),
        ({"merchant_category": "zoo"}, "invalid_value"),
        ({"account_age_days": -3}, "invalid_value"),
        ({"event_time": NOW - 7_200_000}, "late"),
        ({"event_time": NOW + 7_200_000}, "future_timestamp"),
    ]
    rows, expected = [], {}
    for i, event in enumerate(events):
        if i % 5 == 1 and spoiled:
            change, reason = spoiled.pop()
            event = {**event, **change}
            expected[i] = reason
        rows.append(event)
    assert not spoiled
    return rows, expected


def _run(pipeline, path, fmt, tmp_path, out_fmt="parquet"):
    out = tmp_path / f"predictions.{out_fmt}"
    predictions = PredictionWriter(out, out_fmt, pipeline.model.prediction_schema)
    dead = DeadLetterWriter(tmp_path / "dlq.jsonl")
    report = score_file(pipeline, Reader(path, fmt), predictions, dead, batch_size=7)
    letters = [json.loads(line) for line in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    return report, out, letters


def _expected_scores(pipeline, rows):
    records = [InputRecord(None, None, "x", 0, i, decoded=r) for i, r in enumerate(rows)]
    return [o.score for o in pipeline.process(records).outputs if not o.is_dead_letter]


def _check(report, letters, expected, rows):
    assert report.read == len(rows)
    assert report.predictions == len(rows) - len(expected)
    assert {d["row"]: d["reason"] for d in letters} == expected
    assert sum(report.dead_letters.values()) == len(expected)
    assert all(d["error.message"] and d["pipeline"] == "fraud" for d in letters)


def test_json_lines(fraud_pipeline, tmp_path):
    rows, expected = _bad(_events())
    lines = [json.dumps(r) for r in rows] + ["{broken", "", "[1]", json.dumps({**rows[0], "amount": "12"})]
    expected.update({len(rows): "corrupt", len(rows) + 1: "corrupt", len(rows) + 2: "invalid_value"})
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report, out, letters = _run(fraud_pipeline, path, "jsonl", tmp_path)
    assert report.read == len(rows) + 3  # the blank line is no record
    assert {d["row"]: d["reason"] for d in letters} == expected
    broken = next(d for d in letters if d["row"] == len(rows))
    assert broken["line"] == len(rows) + 1 and broken["record"] == "{broken"
    assert broken["error.message"].startswith("not JSON")
    table = pq.read_table(out)
    assert table.num_rows == report.predictions
    assert table.column("score").to_pylist() == pytest.approx(_expected_scores(fraud_pipeline, rows), abs=0)


def test_avro_container_with_an_old_writer_schema(fraud_pipeline, tmp_path):
    rows, expected = _bad(_events())
    path = tmp_path / "events.avro"
    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(SCHEMA), rows)
    report, out, letters = _run(fraud_pipeline, path, "avro", tmp_path, out_fmt="avro")
    _check(report, letters, expected, rows)
    with out.open("rb") as f:
        predictions = list(fastavro.reader(f))
    assert [p["score"] for p in predictions] == _expected_scores(fraud_pipeline, rows)
    assert predictions[0]["model_version"] == "1.0.0" and predictions[0]["source_topic"] == "file:events.avro"
    # v1 files (no device_trust_score) read as v2: the feature is imputed, as for a v1 Kafka event
    v1_path = tmp_path / "v1.avro"
    v1_rows = [{k: v for k, v in r.items() if k != "device_trust_score"} for r in _events(5)]
    with v1_path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(V1), v1_rows)
    report, out, letters = _run(fraud_pipeline, v1_path, "avro", tmp_path, out_fmt="avro")
    with out.open("rb") as f:
        assert all(p["flags"] == ["imputed"] for p in fastavro.reader(f))
    assert report.predictions == 5 and not letters


def test_parquet_with_nulls_and_a_column_of_the_wrong_type(fraud_pipeline, tmp_path):
    rows, expected = _bad(_events())
    path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=8)
    report, out, letters = _run(fraud_pipeline, path, "parquet", tmp_path)
    _check(report, letters, expected, rows)
    assert pq.read_table(out).column("score").to_pylist() == _expected_scores(fraud_pipeline, rows)
    # a whole column of text where the schema says double: every row, invalid_value; a column left out: missing
    wrong = pa.Table.from_pylist([{**r, "amount": str(r["amount"])} for r in rows[:4]])
    pq.write_table(wrong.drop_columns(["channel"]).append_column("channel", pa.array(["pos"] * 4)), path)
    report, _, letters = _run(fraud_pipeline, path, "parquet", tmp_path)
    assert report.dead_letters == {"invalid_value": 4}
    assert letters[0]["error.message"] == "field 'amount' is not double (got str)"
    pq.write_table(pa.Table.from_pylist(rows[:3]).drop_columns(["channel"]), path)
    report, _, letters = _run(fraud_pipeline, path, "parquet", tmp_path)
    assert report.dead_letters == {"missing_field": 3}


@pytest.mark.parametrize(("name", "content", "fmt"), [
    ("junk.avro", b"not avro at all", "avro"), ("junk.parquet", b"PAR1 nope", "parquet")])
def test_a_file_that_is_not_its_format_is_one_error(fraud_pipeline, tmp_path, name, content, fmt):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=name):
        _run(fraud_pipeline, path, fmt, tmp_path)


def test_a_corrupt_avro_block_names_the_row_reached(fraud_pipeline, tmp_path):
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(SCHEMA), _events(200), sync_interval=1000, codec="deflate")
    data = bytearray(buffer.getvalue())
    data[len(data) // 2: len(data) // 2 + 40] = b"\x00" * 40
    path = tmp_path / "broken.avro"
    path.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="corrupt Avro data after row"):
        _run(fraud_pipeline, path, "avro", tmp_path)


def test_memory_stays_bounded_by_the_batch(fraud_pipeline, tmp_path):
    """The reader hands out batches lazily: the first comes before the file is read to its end."""
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in _events(5000)))
    reader = Reader(path, "jsonl")
    batches = reader.batches(100)
    first = next(batches)
    assert len(first) == 100 and reader.progress() < 1.0


def test_summary_and_progress(fraud_pipeline, tmp_path):
    rows, _ = _bad(_events())
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = io.StringIO()
    out.isatty = lambda: True  # type: ignore[method-assign]
    predictions = PredictionWriter(tmp_path / "p.parquet", "parquet", fraud_pipeline.model.prediction_schema)
    dead = DeadLetterWriter(tmp_path / "d.jsonl")
    report = score_file(fraud_pipeline, Reader(path, "jsonl"), predictions, dead, 10, Progress(out, "events"))
    assert "100%" in out.getvalue() and f"{len(rows):,} rows" in out.getvalue()
    text = io.StringIO()
    summary(report, path, predictions, dead, text)
    assert "predictions        24" in text.getvalue() and "    late                    1" in text.getvalue()
    assert f"accounted for      30 / {len(rows)}" in text.getvalue()


def test_the_command(tmp_path):
    rows, expected = _bad(_events())
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = subprocess.run([sys.executable, "-m", "workers.cli", "score", "--pipeline", "fraud", str(path),
                             str(tmp_path / "out.avro")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "dead letters       6" in result.stdout and "accounted for      30 / 30" in result.stdout
    assert len((tmp_path / "out.dlq.jsonl").read_text().splitlines()) == len(expected)
    missing = subprocess.run([sys.executable, "-m", "workers.cli", "score", str(tmp_path / "nope.jsonl"),
                              str(tmp_path / "o.parquet")], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert missing.returncode == 2 and missing.stderr.startswith("workers: error:") and "nope.jsonl" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
