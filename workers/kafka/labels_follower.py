"""A worker's view of the ground truth (``WORKERS_LIVE_QUALITY``): a thread reads every partition of
``<pipeline>.labels`` (no group: each worker reads them all) from ``labels_window_s`` ago and hands
each label to the monitor, which joins it to the predictions this worker made. Labels for events
another worker scored stay unmatched there (counted as ``unknown_labels``), by design."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from workers.errors import ConfigError, WorkersError
from workers.kafka import clients
from workers.kafka.quality import label_codec
from workers.ops.logs import get_logger
from workers.settings import Settings

log = get_logger("workers.labels")
LabelSink = Callable[[str, "str | float", int], None]  # event id, truth, label time (ms)


class LabelFollower(threading.Thread):
    def __init__(self, settings: Settings, sink: LabelSink) -> None:
        super().__init__(name="labels-follower", daemon=True)
        self.settings, self.sink = settings, sink
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            self._follow()
        except (WorkersError, OSError) as exc:
            log.warning("live quality not followed", topic=self.settings.topics.labels, error=str(exc))
        except Exception as exc:  # the worker scores on; only the live quality stops
            log.error("labels follower stopped", error=f"{type(exc).__name__}: {exc}")

    def _follow(self) -> None:
        from kafka import TopicPartition

        topic = self.settings.topics.labels
        consumer = clients.consumer(self.settings, client_id="workers-labels", enable_auto_commit=False,
                                    auto_offset_reset="earliest", isolation_level=self.settings.isolation_level)
        try:
            found = consumer.partitions_for_topic(topic)
            if not found:
                raise ConfigError(f"topic {topic} does not exist, or this principal may not DESCRIBE it")
            partitions = [TopicPartition(topic, p) for p in sorted(found)]
            consumer.assign(partitions)
            since = int((time.time() - self.settings.labels_window_s) * 1000)
            for tp, start in consumer.offsets_for_times({tp: since for tp in partitions}).items():
                if start is None:
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, start.offset)
            codec = label_codec(self.settings)
            log.info("following labels", topic=topic, partitions=len(partitions))
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        try:
                            label = codec.decode(record.value)[0]
                        except Exception as exc:  # a label that cannot be read is logged and skipped
                            log.warning("label unreadable", partition=record.partition, offset=record.offset,
                                        error=f"{type(exc).__name__}: {exc}")
                            continue
                        truth = label["label"] if label["label"] is not None else label["value"]
                        self.sink(label["event_id"], truth, label["label_time"])
        finally:
            consumer.close()
