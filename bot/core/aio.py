"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Cancel tasks and wait until they end, cancelling again while any is still running.

    On Python 3.11 `asyncio.wait_for` (used inside redis-py and fakeredis) can swallow a
    cancellation that lands as its inner future completes, so one `cancel()` is not always enough.
    """
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in pending:
        log.warning("task %s did not stop within %.0fs", task.get_name(), timeout)
