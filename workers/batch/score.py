"""``workers score``: a file of events in, predictions and dead letters out, through ``Pipeline.process``.

The same verified pipeline as the stream worker (``workers.pipelines.load_pipeline``), the
same batches through the same core: decoding (or the row check), event-time policies,
features, scoring, the prediction contract and the dead-letter reasons and messages. Only
the adapters differ: rows come from a file, predictions go to a file (Avro container or
Parquet), dead letters to a JSON-lines file.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from workers.batch.formats import DeadLetterWriter, PredictionWriter, Reader
from workers.core.pipeline import Pipeline

PROGRESS_EVERY_S = 0.2


@dataclass
class ScoreReport:
    read: int = 0
    predictions: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.read / max(self.seconds, 1e-9)


class Progress:
    """A one-line progress bar on a terminal (nothing when stderr is a file or a pipe)."""

    def __init__(self, out: TextIO | None, label: str) -> None:
        self.out = out if out is not None and out.isatty() else None
        self.label = label
        self._last = 0.0
        self._started = time.monotonic()

    def update(self, share: float, rows: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.out is None or (not force and now - self._last < PROGRESS_EVERY_S):
            return
        self._last = now
        width = 30
        filled = int(width * min(1.0, share))
        rate = rows / max(now - self._started, 1e-9)
        self.out.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {share:4.0%} "
                       f"{rows:,} rows {rate:,.0f}/s ")
        self.out.flush()

    def done(self) -> None:
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()


def score_file(pipeline: Pipeline, reader: Reader, predictions: PredictionWriter, dead_letters: DeadLetterWriter,
               batch_size: int, progress: Progress | None = None) -> ScoreReport:
    report = ScoreReport()
    started = time.monotonic()
    try:
        for batch in reader.batches(batch_size):
            result = pipeline.process([row.record for row in batch])
            scored = []
            for row, output in zip(batch, result.outputs, strict=True):  # one output per input, in order
                if output.is_dead_letter:
                    dead_letters.write(row, output)
                elif output.prediction is not None:
                    scored.append(output.prediction)
            predictions.write(scored)
            report.read += len(batch)
            report.predictions += result.predictions
            report.dead_letters.update(result.dead_letters)
            if progress is not None:
                progress.update(reader.progress(), report.read)
    finally:
        predictions.close()
        dead_letters.close()
        if progress is not None:
            progress.update(reader.progress(), report.read, force=True)
            progress.done()
    report.seconds = time.monotonic() - started
    return report


def summary(report: ScoreReport, source: Path, predictions: PredictionWriter, dead_letters: DeadLetterWriter,
            out: TextIO = sys.stdout) -> None:
    """The same figures as the demo's summary: predictions, dead letters by reason, the rate."""
    dead = sum(report.dead_letters.values())
    print("\nsummary", file=out)
    print(f"  records read       {report.read}   ({source})", file=out)
    print(f"  predictions        {report.predictions}   -> {predictions.path} ({predictions.format})", file=out)
    print(f"  dead letters       {dead}   -> {dead_letters.path}", file=out)
    for reason in sorted(report.dead_letters):
        print(f"    {reason:<18} {report.dead_letters[reason]:>6}", file=out)
    print(f"  accounted for      {report.predictions + dead} / {report.read}", file=out)
    print(f"  throughput         {report.rate:,.0f} records/s ({report.seconds:.2f}s, 1 process)", file=out)
