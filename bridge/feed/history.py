"""Reading the event log back: the platform's ``GET /events`` and the feed's ``since`` replay."""

from __future__ import annotations

from bridge.feed.events import FeedEvent, event_from_log, frame_from_log
from bridge.runtime import Runtime
from store import events as event_log

# How long GET /events waits for events already committed to become readable (PostgreSQL).
SETTLE_WAIT_S = 0.25


class History:
    def __init__(self, rt: Runtime):
        self.rt = rt

    async def page(self, since: int, limit: int) -> bytes:
        """``{"events": [...], "last_event_id": N}`` as JSON bytes, built from the stored
        frames without decoding them. Events committed before the request are in it (see
        ``settled_head``)."""
        async with self.rt.db.read() as conn:
            head = await event_log.settled_head(conn, SETTLE_WAIT_S)
            rows = await event_log.after(conn, since, limit=limit, through=head)
        # Nothing after `since`: the log's own head, also when `since` is ahead of it (a
        # client from another history, as the feed treats it).
        last = rows[-1]["id"] if rows else head
        frames = [frame_from_log(r["id"], r["payload"]) for r in rows]
        return b'{"events":[%s],"last_event_id":%d}' % (b",".join(frames), last)

    async def replay(
        self, since: int, *, through: int, chat_ids: list[int] | None, user_id: str, limit: int
    ) -> list[FeedEvent] | None:
        """Events ``(since, through]`` for these chats and addressed to ``user_id`` (or all,
        for ``chat_ids=None``), or None when history after ``since`` has been pruned (the
        client must reset). ``through``: a head readers may take (``visible_head``)."""
        async with self.rt.db.read() as conn:
            if since < await event_log.pruned_through(conn):
                return None
            if chat_ids is None:
                rows = await event_log.after(conn, since, limit=limit, through=through)
            else:
                rows = await event_log.for_viewer(
                    conn, since, through=through, limit=limit, chat_ids=chat_ids, user_id=user_id
                )
        # Replayed events go straight to the socket: their audience is not needed.
        return [event_from_log(r) for r in rows]
