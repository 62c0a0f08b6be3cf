"""Waiting for the broker to acknowledge a batch's outputs, re-sending what failed."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from workers.core.records import OutputRecord
from workers.logs import get_logger

log = get_logger("workers.delivery")

RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


async def await_delivery(
    outputs: list[OutputRecord],
    futures: list[Any],
    resend: Callable[[list[OutputRecord]], Awaitable[list[Any]]],
) -> None:
    """Return once every output is acknowledged; retries (with backoff) never give up.

    A broker that is down for a while therefore stalls the worker (and, through the
    in-flight limit, its consumption) instead of losing or skipping records.
    """
    attempt = 0
    while True:
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [o for o, r in zip(outputs, results, strict=True) if isinstance(r, BaseException)]
        if not failed:
            return
        errors = sorted({type(r).__name__ for r in results if isinstance(r, BaseException)})
        delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
        log.warning("publish failed; retrying", failed=len(failed), errors=errors, retry_in_s=delay)
        attempt += 1
        await asyncio.sleep(delay)
        outputs = failed
        futures = await resend(failed)
