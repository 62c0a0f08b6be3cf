"""``score_file`` streams: the core gets one batch at a time, and its predictions go to disk before the next
(the readers' and writers' own streaming: test_formats.py)."""
import json
import time

from workers.batch.formats import DeadLetterWriter, PredictionWriter, Reader
from workers.batch.score import score_file
from workers.dev import fraud_data as fraud

NOW = int(time.time() * 1000)


def test_the_core_gets_one_batch_at_a_time_and_predictions_are_written_as_they_come(fraud_pipeline, tmp_path,
                                                                                    monkeypatch):
    source = tmp_path / "events.jsonl"
    events = fraud.generate(3000, 8, start_ms=NOW - 5000, span_ms=5000)[0]
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    out = tmp_path / "predictions.avro"
    batch_sizes, written_before = [], []
    process = fraud_pipeline.process

    def recording_process(records):
        batch_sizes.append(len(records))
        written_before.append(out.stat().st_size)
        return process(records)

    monkeypatch.setattr(fraud_pipeline, "process", recording_process)
    predictions = PredictionWriter(out, "avro", fraud_pipeline.model.prediction_schema)
    report = score_file(fraud_pipeline, Reader(source, "jsonl"), predictions,
                        DeadLetterWriter(tmp_path / "dlq.jsonl"), batch_size=100)
    assert report.predictions == 3000
    assert batch_sizes == [100] * 30  # never more rows at once than the batch
    # the last batch finds most of the earlier batches' predictions on disk already, not held for the end
    assert written_before[-1] > 0.8 * out.stat().st_size
