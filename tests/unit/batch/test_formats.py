"""The files of ``workers score`` stream: readers hand out a batch before reading the file to its end,
writers put rows on disk as they go, so memory is bounded by a batch and a row group, not by the file."""
import io
import json
import time

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import REPO
from workers.batch import formats
from workers.batch.formats import PredictionWriter, Reader
from workers.core.records import InputRecord
from workers.dev import fraud_data as fraud

NOW = int(time.time() * 1000)
SCHEMA = json.loads((REPO / "schemas" / "fraud" / "transaction.v2.avsc").read_text())
BATCH = 100
ROWS = 3000  # predictions written: 30 batches


def _events(n):
    return fraud.generate(n, 8, start_ms=NOW - 5000, span_ms=5000)[0]


@pytest.fixture(scope="module")
def predictions(fraud_pipeline):
    records = [InputRecord(None, None, "x", 0, i, decoded=e) for i, e in enumerate(_events(ROWS))]
    scored = [o.prediction for o in fraud_pipeline.process(records).outputs if o.prediction is not None]
    assert len(scored) == ROWS
    return scored


class _CountingFile(io.FileIO):
    """A file that counts the bytes read from it: how much of the file a reader has pulled into memory."""

    bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.bytes_read += n or 0
        return n


def test_the_avro_reader_yields_a_batch_before_reading_the_file_to_its_end(tmp_path):
    path = tmp_path / "many.avro"
    with path.open("wb") as out:  # fastavro's default blocks: about 16 kB of rows each, here ~17 blocks
        fastavro.writer(out, fastavro.parse_schema(SCHEMA), _events(5000), codec="deflate")
    reader = Reader(path, "avro")
    batches = reader.batches(BATCH)  # held: a dropped generator closes the file
    assert len(next(batches)) == BATCH
    assert reader.progress() < 0.5  # the file's position: the blocks read so far


def test_the_parquet_reader_yields_a_batch_before_reading_the_file_to_its_end(tmp_path, monkeypatch):
    path = tmp_path / "many.parquet"
    # 20 row groups; the reader's Arrow batches (4096 rows) span 5 of them
    pq.write_table(pa.Table.from_pylist(_events(20_000)), path, row_group_size=1000)
    opened: list[_CountingFile] = []
    parquet_file = pq.ParquetFile

    def counting_parquet_file(source, **options):
        opened.append(_CountingFile(source))
        return parquet_file(opened[-1], **options)

    monkeypatch.setattr(pq, "ParquetFile", counting_parquet_file)
    reader = Reader(path, "parquet")
    batches = reader.batches(BATCH)
    try:
        assert len(next(batches)) == BATCH
        # pyarrow's pre-buffering would have read every row group (the whole file) by now
        assert opened[0].bytes_read < path.stat().st_size / 2
    finally:
        batches.close()
        opened[0].close()


def _write_in_batches(path, fmt, predictions, schema):
    """Write BATCH predictions at a time, as ``score_file`` does; the file's size on disk after each write."""
    writer = PredictionWriter(path, fmt, schema)
    sizes = []
    for start in range(0, len(predictions), BATCH):
        writer.write(predictions[start:start + BATCH])
        sizes.append(path.stat().st_size)
    writer.close()
    return sizes


def test_the_avro_writer_puts_blocks_on_disk_as_it_goes(fraud_pipeline, predictions, tmp_path):
    path = tmp_path / "predictions.avro"
    sizes = _write_in_batches(path, "avro", predictions, fraud_pipeline.model.prediction_schema)
    # before close, only the last block (and the file's buffer) are still in memory
    assert sizes[-1] > 0.9 * path.stat().st_size
    assert sizes == sorted(sizes) and len(set(sizes)) > len(sizes) / 2  # it grew write after write
    with path.open("rb") as written:
        assert sum(block.num_records for block in fastavro.block_reader(written)) == len(predictions)


def test_the_parquet_writer_flushes_a_row_group_every_row_group_size_rows(fraud_pipeline, predictions, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(formats, "PARQUET_ROW_GROUP", 3 * BATCH)
    path = tmp_path / "predictions.parquet"
    sizes = _write_in_batches(path, "parquet", predictions, fraud_pipeline.model.prediction_schema)
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [3 * BATCH] * 10
    # each row group reached the disk when it filled, not at close: 9 of the 10 are there before it
    assert 0 < sizes[2] < sizes[5] < sizes[8]
    assert sizes[-1] > 0.8 * path.stat().st_size
