"""The worker's garbage-collector settings, shared with the benchmark's in-process ceiling.

Everything alive once the model and libraries are loaded lives as long as the process:
frozen, it is no longer traversed by full collections, which took 50-60 ms each under load
(a stall for every event in flight) and now take a few ms. A batch allocates tens of
container objects per event and holds them until its outputs are acknowledged; at the
default young-generation threshold (700 net allocations) collections ran many times per
batch and traversed the batches in flight. With a young-generation threshold of 20,000
(and 20 for each older generation, against 10), a backlog drains 8-12% faster here
(docs/design.md).
"""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

THRESHOLDS = (20_000, 20, 20)


def freeze_and_tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextlib.contextmanager
def tuned() -> Iterator[None]:
    """The worker's settings for a block of code (the benchmark's ceiling), restored after."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    if frozen:
        gc.set_threshold(*THRESHOLDS)  # a heap frozen by the caller stays frozen
    else:
        freeze_and_tune()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if not frozen:
            gc.unfreeze()
