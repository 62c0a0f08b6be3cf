"""Where a worker's CPU goes: the CPU seconds of each stage, as one Prometheus counter.

Stages are timed with ``time.thread_time()`` on the event loop's thread, around code that
does not wait: the CPU the stage used, not the wall time of a thread waiting for a core
(which a sampling profiler counts as busy on a loaded machine). What no stage claims is
``other``: the process's CPU since start-up minus the stages, i.e. the Kafka client's
fetch, produce and commit requests, the event loop, and the worker's other threads.

    score    Pipeline.process: decode, validate, score, encode (and a trial's candidate)
    outputs  the engine placing outputs on partitions and into producer batches
    account  the monitor counting a delivered batch: metrics, drift, live quality
    other    the rest (above)
"""
from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

SCORE, OUTPUTS, ACCOUNT, OTHER = "score", "outputs", "account", "other"
TIMED = (SCORE, OUTPUTS, ACCOUNT)


class StageCpu(Collector):
    """``add(stage, since)`` after a stage that started at ``since = time.thread_time()``."""

    def __init__(self, labels: dict[str, str] | None = None) -> None:
        self.labels = dict(labels or {})
        self._seconds = dict.fromkeys(TIMED, 0.0)
        self._process_start = time.process_time()  # start-up (model load, compiling) is nobody's stage

    def add(self, stage: str, since: float) -> None:
        self._seconds[stage] += time.thread_time() - since

    def totals(self) -> dict[str, float]:
        """CPU seconds per stage since this clock was made, ``other`` included."""
        seconds = dict(self._seconds)  # the HTTP thread reads while the event loop adds: one copy
        process = time.process_time() - self._process_start
        seconds[OTHER] = max(0.0, process - sum(seconds.values()))
        return seconds

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "workers_cpu_seconds", "CPU time by stage: score (decode, validate, score, encode), outputs (placing "
            "them in producer batches), account (metrics, drift), other (Kafka client requests, event loop, "
            "other threads)", labels=[*self.labels, "stage"])
        for stage, seconds in self.totals().items():
            family.add_metric([*self.labels.values(), stage], seconds)
        yield family
