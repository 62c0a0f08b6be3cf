"""The micro-batcher: many callers, one model call; a lone caller never waits; each gets its own rows."""
import asyncio
import time

from workers.core.pipeline import BatchResult
from workers.core.records import InputRecord, OutputRecord
from workers.serve.batcher import MicroBatcher


class Recorder:
    def __init__(self, cost_s=0.0):
        self.batches: list[list[int]] = []
        self.cost_s = cost_s

    def __call__(self, records):
        time.sleep(self.cost_s)
        self.batches.append([r.offset for r in records])
        return BatchResult(outputs=[OutputRecord("t", None, None, [], score=float(r.offset)) for r in records])


def _records(start, n):
    return [InputRecord(None, offset=start + i) for i in range(n)]


def test_a_lone_caller_is_scored_at_once():
    async def main():
        recorder = Recorder()
        batcher = MicroBatcher(recorder, max_rows=64, max_delay_s=1.0)
        batcher.start()
        started = time.perf_counter()
        with batcher.arriving():
            pending = batcher.enqueue(_records(0, 3))
        outputs = await pending
        await batcher.stop()
        return recorder, outputs, time.perf_counter() - started

    recorder, outputs, elapsed = asyncio.run(main())
    assert recorder.batches == [[0, 1, 2]]
    assert [o.score for o in outputs] == [0.0, 1.0, 2.0]
    assert elapsed < 0.5  # not the 1 s delay: nobody else was arriving


def test_concurrent_callers_share_one_call_and_get_their_own_rows():
    async def main():
        recorder = Recorder(cost_s=0.02)
        batcher = MicroBatcher(recorder, max_rows=1000, max_delay_s=0.05)
        batcher.start()

        async def caller(k):
            with batcher.arriving():
                await asyncio.sleep(0.001 * (k % 3))  # reading the request
                pending = batcher.enqueue(_records(k * 10, 2))
            return [o.score for o in await pending]

        answers = await asyncio.gather(*(caller(k) for k in range(40)))
        await batcher.stop()
        return recorder, answers

    recorder, answers = asyncio.run(main())
    assert answers == [[k * 10.0, k * 10.0 + 1] for k in range(40)]
    assert len(recorder.batches) <= 3  # 40 requests, a few model calls
    assert sum(len(b) for b in recorder.batches) == 80


def test_max_rows_closes_a_batch_and_requests_are_never_split():
    async def main():
        recorder = Recorder(cost_s=0.01)
        batcher = MicroBatcher(recorder, max_rows=5, max_delay_s=0.05)
        batcher.start()
        with batcher.arriving():  # everything queued while one more request is still being read
            with batcher.arriving():
                pendings = [batcher.enqueue(_records(k * 10, 2)) for k in range(6)]
            await asyncio.gather(*pendings)
        await batcher.stop()
        return recorder

    recorder = asyncio.run(main())
    assert all(len(b) <= 5 and len(b) % 2 == 0 for b in recorder.batches)
    assert sorted(x for b in recorder.batches for x in b) == sorted(k * 10 + i for k in range(6) for i in range(2))


def test_the_delay_bounds_the_wait_for_a_slow_reader():
    async def main():
        recorder = Recorder()
        batcher = MicroBatcher(recorder, max_rows=100, max_delay_s=0.01)
        batcher.start()
        started = time.perf_counter()
        with batcher.arriving():  # a request that takes long to read
            with batcher.arriving():
                pending = batcher.enqueue(_records(0, 1))
            await pending
            waited = time.perf_counter() - started
        await batcher.stop()
        return waited

    assert 0.009 <= asyncio.run(main()) < 0.5


def test_a_failing_process_fails_its_callers_and_the_batcher_goes_on():
    calls = []

    def process(records):
        calls.append(len(records))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return BatchResult(outputs=[OutputRecord("t", None, None, [], score=1.0) for _ in records])

    async def main():
        batcher = MicroBatcher(process, in_thread=False)
        batcher.start()
        try:
            await batcher.submit(_records(0, 1))
        except RuntimeError as exc:
            first = str(exc)
        second = await batcher.submit(_records(0, 1))
        await batcher.stop()
        return first, second

    first, second = asyncio.run(main())
    assert first == "boom" and second[0].score == 1.0
