"""Waiting for the broker to acknowledge a batch's outputs, re-sending what failed."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from workers.core.records import OutputRecord
from workers.ops.logs import get_logger

log = get_logger("workers.delivery")

RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)

# One future per group of outputs: a whole producer batch (batch engine) or one record.
Sent = list[tuple[Any, list[OutputRecord]]]


async def await_delivery(sent: Sent, resend: Callable[[list[OutputRecord]], Awaitable[Sent]]) -> None:
    """Return once every output is acknowledged; retries (with backoff) never give up.

    A broker that is down for a while therefore stalls the worker (and, through the
    in-flight limit, its consumption) instead of losing or skipping records.
    """
    attempt = 0
    while True:
        results = await asyncio.gather(*(future for future, _ in sent), return_exceptions=True)
        failed = [o for (_, group), r in zip(sent, results, strict=True) if isinstance(r, BaseException) for o in group]
        if not failed:
            return
        errors = sorted({type(r).__name__ for r in results if isinstance(r, BaseException)})
        delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
        log.warning("publish failed; retrying", failed=len(failed), errors=errors, retry_in_s=delay)
        attempt += 1
        await asyncio.sleep(delay)
        sent = await resend(failed)
