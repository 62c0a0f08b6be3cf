"""Micro-batching across concurrent HTTP callers: one ``Pipeline.process`` call for many requests.

A model call costs a fixed ~0.35-1.1 ms whatever the rows (docs/design.md), so scoring each
request on its own caps a server at one call's worth of requests per second. Requests
instead queue their rows; one task takes what is queued and scores it in one call:

* at once when every request the server is reading has queued its rows (``arriving``
  reaches zero: waiting longer would gain nothing, so a lone caller never waits);
* otherwise when ``max_rows`` are queued, or ``max_delay_s`` after the first row queued.

While a batch is scored (in one worker thread, so the event loop keeps reading and answering
requests), the next one gathers. A request's rows are never split across batches; each caller
gets its own rows' outputs back, in order.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from workers.core.pipeline import BatchResult
from workers.core.records import InputRecord, OutputRecord

Process = Callable[[list[InputRecord]], BatchResult]
Delivered = Callable[[list[InputRecord], BatchResult], None]


@dataclass(slots=True)
class _Pending:
    records: list[InputRecord]
    future: asyncio.Future[list[OutputRecord]]


class MicroBatcher:
    def __init__(self, process: Process, *, max_rows: int = 256, max_delay_s: float = 0.002,
                 delivered: Delivered | None = None, in_thread: bool = True,
                 thread_init: Callable[[], object] | None = None) -> None:
        self.process = process
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.delivered = delivered
        self.batches = 0  # scored so far (for tests and the bench)
        self.rows = 0
        self.scoring_since: float | None = None  # monotonic start of the batch being scored
        self._queue: list[_Pending] = []
        self._queued_rows = 0
        self._arriving = 0  # requests being read that have not queued their rows yet
        self._wake: asyncio.Future[None] | None = None
        # thread_init: per-thread settings of the scoring thread (OpenMP's thread count is per calling thread)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="workers-score", initializer=thread_init) \
            if in_thread else None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="workers-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is stopping"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around reading a request: the batcher waits for it (within the delay) before scoring."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._poke()

    def enqueue(self, records: list[InputRecord]) -> asyncio.Future[list[OutputRecord]]:
        """Queue ``records``; the future gives their outputs (one each, in order) once their batch was scored.
        Call it inside ``arriving()``, so that the batch cannot close between the two."""
        future: asyncio.Future[list[OutputRecord]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(records, future))
        self._queued_rows += len(records)
        self._poke()
        return future

    async def submit(self, records: list[InputRecord]) -> list[OutputRecord]:
        return await self.enqueue(records)

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _ready(self, deadline: float, now: float) -> bool:
        return self._queued_rows >= self.max_rows or self._arriving <= 0 or now >= deadline

    async def _wait(self, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        timer = loop.call_at(deadline, self._poke) if deadline is not None else None
        try:
            await self._wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                await self._wait(None)
                continue
            deadline = loop.time() + self.max_delay_s
            while not self._ready(deadline, loop.time()):
                await self._wait(deadline)
            batch = self._take()
            records = [r for item in batch for r in item.records]
            self.scoring_since = time.monotonic()
            try:
                if self._executor is not None:
                    result = await loop.run_in_executor(self._executor, self.process, records)
                else:
                    result = self.process(records)
            except Exception as exc:  # a bug, not a record's problem: every caller of the batch is told
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self.scoring_since = None
            self.batches += 1
            self.rows += len(records)
            start = 0
            for item in batch:
                stop = start + len(item.records)
                if not item.future.done():  # a caller that went away is simply not answered
                    item.future.set_result(result.outputs[start:stop])
                start = stop
            if self.delivered is not None:
                self.delivered(records, result)

    def _take(self) -> list[_Pending]:
        """Whole requests, oldest first, up to ``max_rows`` rows (at least one request)."""
        taken: list[_Pending] = []
        rows = 0
        while self._queue and (not taken or rows + len(self._queue[0].records) <= self.max_rows):
            item = self._queue.pop(0)
            taken.append(item)
            rows += len(item.records)
        self._queued_rows -= rows
        return taken
