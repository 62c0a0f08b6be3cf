"""The baseline a prototype would write: a faust agent scoring one event per model call.

Only the benchmark runs it (``python -m workers.dev.naive``), to show what micro-batching
buys. It decodes with fastavro, calls ``predict_proba`` on a single row, and sends each
prediction without waiting for it: simple, and slow.
"""
from __future__ import annotations

import tempfile

import faust
import numpy as np

from workers.errors import RecordError
from workers.kafka.connection import faust_options
from workers.pipelines import load_pipeline
from workers.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    pipeline = load_pipeline(settings)
    app = faust.App(
        settings.group_id + "-naive",
        **faust_options(settings),
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="workers-naive-"),
    )
    source = app.topic(pipeline.topics.events, value_type=bytes, value_serializer="raw")
    sink = app.topic(pipeline.topics.predictions, value_type=bytes, value_serializer="raw")
    model = pipeline.model.model

    @app.agent(source)
    async def score(stream):
        async for event in stream.events():
            try:
                record, _ = pipeline.input_codec.decode(event.message.value)
                row = pipeline.features.row(record, [])
            except RecordError:
                continue  # the prototype drops bad input (the gap this project closes)
            score_ = float(model.predict_proba(np.array([row]))[0, 1])
            await sink.send(key=event.message.key, value=str(score_).encode())

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
