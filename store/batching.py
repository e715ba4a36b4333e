"""Group commit on PostgreSQL: writes of one kind that arrive together go in one statement.

Why
    On PostgreSQL a durable POST cost three round trips (BEGIN, the write, COMMIT) and a
    commit of its own; most of the service's CPU per post was the driver and the kernel
    sending those round trips, and most of the database's was per-transaction work. Posts that
    arrive while another batch is being written are gathered and written together: one
    BEGIN, one statement for all of them (``BatchedWrite.many``), one COMMIT. An idle service
    writes a batch of one at once; under load each batch takes what came while the
    previous one was in flight, so nobody waits for a batch to fill.

What a kind of write gives (``BatchedWrite``)
    ``many(tx, units)`` writes one or several units in one go and returns their results in
    order. ``one(tx, unit)`` writes one unit in the caller's transaction: the path on SQLite
    (which has its own group commit, store/sqlite.py), and for each unit again when a batch
    of several fails. ``key(unit)`` names what a unit changes in place (a chat's row): two
    units with one key never share a batch, so a batch changes each row once and in-place
    updates keep their order.

Failures
    A batch is all or nothing: one unit that a constraint refuses (a repeated client_id, a
    chat deleted meanwhile) fails the statement. Then each unit of it is written again on its
    own, in its own transaction, and gets its own result or error - the others are not held
    back by it. Every ``submit`` returns only after the commit that holds its unit.

One batch of a kind is in flight at a time: a unit that comes meanwhile waits for the next
(the time the database takes to commit is what it gathers in).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Generic, Protocol, TypeVar

from store.errors import DatabaseUnavailable
from store.tx import Tx

U = TypeVar("U")
R = TypeVar("R")

# A statement's parameters grow with the batch; beyond this the gain per unit is nil.
MAX_BATCH = 100


class BatchedWrite(Protocol[U, R]):
    def key(self, unit: U) -> Hashable: ...

    async def one(self, tx: Tx, unit: U) -> R: ...

    async def many(self, tx: Tx, units: Sequence[U]) -> list[R]: ...


class Batcher(Generic[U, R]):
    """Gathers the units of one kind of write and writes them in batches, one batch at a time,
    each in a transaction of ``write()``."""

    def __init__(
        self,
        kind: BatchedWrite[U, R],
        write: Callable[[], AbstractAsyncContextManager[Tx]],
        max_batch: int = MAX_BATCH,
    ):
        self._kind = kind
        self._write = write
        self._max = max_batch
        self._queue: deque[tuple[U, asyncio.Future[R]]] = deque()
        self._running: asyncio.Task[None] | None = None
        self._scheduled = False

    async def submit(self, unit: U) -> R:
        """Write ``unit``; its result, once committed (or its own error)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        self._schedule()
        return await future

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._running is not None or self._queue:
            if self._running is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._running)
            else:
                await asyncio.sleep(0)

    def _schedule(self) -> None:
        # On the loop's next turn: the units submitted in this turn go together.
        if not self._scheduled and self._running is None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._running is not None:
            return
        batch = self._take()
        if batch:
            self._running = asyncio.create_task(self._run(batch))

    def _take(self) -> list[tuple[U, asyncio.Future[R]]]:
        """The next batch: queued units in order, skipping those whose submitter has gone and
        leaving for later a unit whose key is already in it."""
        batch: list[tuple[U, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        later: deque[tuple[U, asyncio.Future[R]]] = deque()
        while self._queue and len(batch) < self._max:
            unit, future = self._queue.popleft()
            if future.done():  # cancelled before its turn: never written
                continue
            key = self._kind.key(unit)
            if key in keys:
                later.append((unit, future))
                continue
            keys.add(key)
            batch.append((unit, future))
        later.extend(self._queue)
        self._queue = later
        return batch

    async def _run(self, batch: list[tuple[U, asyncio.Future[R]]]) -> None:
        try:
            await self._together(batch)
        except BaseException:
            # Cancelled (the loop is closing): whoever still waits hears it, no one hangs.
            for _, future in batch:
                if not future.done():
                    future.set_exception(DatabaseUnavailable("the write was interrupted"))
            raise
        finally:
            self._running = None
            if self._queue:
                self._schedule()

    async def _together(self, batch: list[tuple[U, asyncio.Future[R]]]) -> None:
        units = [unit for unit, _ in batch]
        try:
            async with self._write() as tx:
                results = await self._kind.many(tx, units)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            # All or nothing, and nothing was written: each unit on its own, so that the one
            # refused does not take the others with it.
            for unit, future in batch:
                await self._alone(unit, future)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _alone(self, unit: U, future: asyncio.Future[R]) -> None:
        try:
            async with self._write() as tx:
                result = await self._kind.one(tx, unit)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
