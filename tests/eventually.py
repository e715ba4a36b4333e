"""Waiting for background work in tests: poll a condition with a bounded wait, never sleep a
fixed time and assert."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    *,
    within: float = 15.0,
    every: float = 0.02,
    what: str = "condition",
) -> T:
    """The first truthy value of ``condition()`` (sync or async), polled for ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}; last: {last!r}")
        await asyncio.sleep(every)


async def log_settled(db: Any) -> None:
    """Wait until readers of the event log may take every committed event. On PostgreSQL they
    stop below any transaction still running on the server (store/events.py) - another test's,
    in another schema, included - so a test that reads the log right after writing waits for
    that first; on SQLite the log is always settled."""
    from sqlalchemy import func, select

    from store import events as event_log

    async def settled() -> bool:
        async with db.read() as tx:
            newest = await tx.value(select(func.coalesce(func.max(event_log.events.c.id), 0)))
            return bool(await event_log.visible_head(tx) >= newest)

    await eventually(settled, what="the event log to settle")
