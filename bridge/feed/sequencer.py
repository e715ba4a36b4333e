"""Live events in event-id order, with nothing missing: what makes ``since`` safe to resume from.

Publishers hand events on after their commit, so they can arrive out of order (two requests,
or two instances over Redis, racing after their commits) or not at all (a lost pub/sub
message, a process that died between commit and publish). A client that saw event 11 before
10 and reconnected with ``since=11`` would never get 10. The sequencer therefore delivers
strictly in id order: an event that arrives ahead of a missing id is held back briefly; if the
missing one does not turn up, the gap is filled from the event log, the record of truth.

Reading the log up to the head readers may take (``store.events.visible_head``: on SQLite the
newest event, its single writer commits ids in order; on PostgreSQL the newest event no running
transaction can still precede) settles the gap: an id missing below it was rolled back. An
event held above that head waits, and the log is read again shortly, until the head passes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from bridge.feed.events import CHAT_CREATED, CHAT_UPDATED, ChatMeta, FeedEvent, event_from_log
from store import events as event_log
from store import forum
from store.db import Database
from store.tx import Tx

logger = structlog.get_logger("bridge.feed")

GAP_WAIT_S = 0.05  # how long an out-of-order event waits for the ones before it
FILL_PAGE = 500
MAX_HELD = 10_000  # more held events than this: fill at once rather than wait

Deliver = Callable[[list[FeedEvent]], None]


async def load_events(
    db: Database, after: int, through: int | None, limit: int = FILL_PAGE
) -> list[FeedEvent]:
    """Events ``(after, through]`` from the log (``through=None``: up to the head readers may
    take), with the chat metadata live events carry,
    so chat events read back re-decide visibility like live ones (from the chat as it is now;
    a chat deleted since has none and reaches only its current subscribers)."""
    async with db.read() as conn:
        rows = await event_log.after(conn, after, limit=limit, through=through)
        if not rows:
            return []
        metas = await _chat_metas(
            conn, {r["chat_id"] for r in rows if r["type"] in (CHAT_CREATED, CHAT_UPDATED)}
        )
        audiences = await event_log.audiences_between(conn, after, rows[-1]["id"])
    return [
        event_from_log(
            r,
            metas.get(r["chat_id"]) if r["type"] in (CHAT_CREATED, CHAT_UPDATED) else None,
            audiences.get(r["id"]),
        )
        for r in rows
    ]


async def _chat_metas(conn: Tx, chat_ids: set[int]) -> dict[int, ChatMeta]:
    metas = {}
    for chat_id in sorted(chat_ids):  # gap fills are rare and small: a query per chat is fine
        rows = await forum.chat_access(conn, chat_id)
        if rows:
            people = frozenset(r["p_user_id"] for r in rows if r["p_user_id"] is not None)
            metas[chat_id] = ChatMeta(rows[0]["type"], people)
    return metas


async def head(db: Database) -> int:
    """The newest event readers may take: everything up to it is settled for good."""
    async with db.read() as conn:
        return await event_log.visible_head(conn)


class Sequencer:
    def __init__(self, db: Database, deliver: Deliver, gap_wait_s: float = GAP_WAIT_S):
        self._db = db
        self._deliver = deliver
        self._gap_wait_s = gap_wait_s
        self.last: int | None = None  # highest id delivered; None until started
        self._held: dict[int, FeedEvent] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._filling: asyncio.Task[None] | None = None
        self._catch_up = False  # the next fill reads to the end of the log
        self._suspect: int | None = None  # a log head seen undelivered by the last check
        self._stopped = False

    def start(self, last_id: int) -> None:
        self.last = last_id

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
            self._filling = None

    def push(self, events: list[FeedEvent] | tuple[FeedEvent, ...]) -> None:
        last = self.last
        if last is None:
            return  # not started: nobody is connected yet, and joiners read the log
        if len(events) == 1 and events[0].id == last + 1 and not self._held:
            # The common case: the next event, nothing held.
            self.last = events[0].id
            self._deliver([events[0]])
            return
        for event in events:
            if event.id > last:
                self._held.setdefault(event.id, event)
        self._release()
        if self._held:
            self._schedule_fill(immediately=len(self._held) > MAX_HELD)

    def resync(self) -> None:
        """Catch up with everything in the log now (the transport may have lost messages)."""
        if self.last is None:
            return
        self._catch_up = True
        self._schedule_fill(immediately=True)

    async def check(self) -> None:
        """The periodic safety net: a log head that stays ahead of what was delivered for a
        whole check interval means lost messages, so fill up to it."""
        if self.last is None:
            return
        newest = await head(self._db)
        if self._suspect is not None and self.last < self._suspect:
            self._catch_up = True
            self._schedule_fill(immediately=True)
        self._suspect = newest if newest > self.last else None

    def _release(self) -> None:
        assert self.last is not None
        ready = []
        held = self._held
        nxt = self.last + 1
        while nxt in held:
            ready.append(held.pop(nxt))
            nxt += 1
        if ready:
            self.last = ready[-1].id
            self._deliver(ready)
        if not held and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule_fill(self, *, immediately: bool) -> None:
        if self._stopped or self._filling is not None:
            return  # a fill is running; it looks at the held events again when it ends
        if immediately:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._filling = asyncio.create_task(self._fill(), name="feed-gap-fill")
            self._filling.add_done_callback(self._fill_done)
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._gap_wait_s, self._fill_due)

    def _fill_due(self) -> None:
        self._timer = None
        self._schedule_fill(immediately=True)

    def _fill_done(self, task: asyncio.Task[None]) -> None:
        self._filling = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("feed gap fill failed", error=repr(task.exception()))
            # Try again later rather than hold events forever.
            self._schedule_fill(immediately=False)
        elif self._held or self._catch_up:
            self._schedule_fill(immediately=False)

    async def _fill(self) -> None:
        assert self.last is not None
        catch_up, self._catch_up = self._catch_up, False
        # Read the log up to the newest held event, or (catching up) to its end - but no
        # further than the head readers may take: past it, a transaction still running may
        # hold a smaller id (store/events.py). Events held above the head wait for the next
        # fill, which comes shortly (_fill_done).
        newest = await head(self._db)
        wanted = None if catch_up else max(self._held, default=self.last)
        target = newest if wanted is None else min(wanted, newest)
        while self.last < target:
            page = await load_events(self._db, self.last, target)
            for event in page:
                # A live copy carries the publisher's own metadata: prefer it.
                self._held.setdefault(event.id, event)
            full = len(page) == FILL_PAGE
            # Settled so far: the whole target, unless the page was cut short by its size.
            bound = target if not full else page[-1].id
            ready = sorted(i for i in self._held if self.last < i <= bound)
            # Ids up to the bound that the log lacks were rolled back: skipped for good. (Live
            # events may have been delivered past it while the log was read.)
            self.last = max(self.last, bound)
            if ready:
                self._deliver([self._held.pop(i) for i in ready])
            if not full:
                break
        # Events held above the bound arrived meanwhile: deliver what is now contiguous.
        for stale in [i for i in self._held if i <= self.last]:
            del self._held[stale]
        self._release()
