"""Joining the feed: replay and live stream meet with no gap and no duplicate.

The connection buffers live events from the moment it registers with the hub, then reads the
log head ``H`` and its chats, replays ``(since, H]``, sends ``ready``, and goes live with the
buffered events after ``H``. The buffer holds at most ``feed.send_queue_size`` events: when
more arrive during a long replay (a client far behind, posts still coming), the hub lets the
buffer go and the joiner keeps reading the log from ``H`` to the new head, as many rounds as it
takes, arming a fresh buffer before each head read. So catching up is bounded by the log, not by
the live queue, and a client that reads faster than events arrive goes live. A ``since`` ahead
of the log, or before what the log still holds, gets ``reset`` instead of a replay: the client
refetches over REST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from bridge.feed.connection import Conn
from bridge.forum import views
from bridge.forum.chats import chat_filter
from bridge.runtime import Runtime
from store import events as event_log
from store import forum

if TYPE_CHECKING:
    from bridge.feed.hub import Hub

REPLAY_PAGE = 500
RESET_FRAME = b'{"type":"reset"}'


class Joining:
    def __init__(self, hub: Hub, rt: Runtime):
        self._hub = hub
        self._rt = rt

    async def join(
        self,
        conn: Conn,
        since: int | None,
        expires_at: float | None,
        changes_seen: int | None = None,
    ) -> None:
        """Register ``conn``, replay what it missed, send ``ready``, and make it live.

        ``changes_seen`` is ``hub.changes`` from before ``conn``'s user was authenticated:
        when it has moved since, a change may have slipped in between, and the user and
        token are checked again. A user already holding ``limits.sockets_per_user`` sockets
        here gets this one closed (``TOO_MANY``); once the server is shutting down, every
        joining socket is closed at once (``GOING_AWAY``)."""
        hub = self._hub
        if not await hub.admit(conn, expires_at):
            return
        if changes_seen is not None and changes_seen != hub.changes:
            await hub.following.revalidate([conn], roles=True)
            if conn.closing:
                return

        flt = chat_filter(conn.user)
        cursor = since
        while True:
            if conn.buffer is None:
                conn.buffer = []  # armed again before the head is read: no gap
            async with self._rt.db.read() as db:
                newest = await event_log.visible_head(db)
                chat_ids = await forum.visible_chat_ids(db, flt) if flt.chat_types else []
            # Whatever the sequencer has delivered went out before the buffer was armed.
            newest = max(newest, hub.sequencer.last or 0)
            if cursor is not None:
                cursor = await self._replay(conn, cursor, newest, chat_ids)
            if conn.closing:
                return
            if conn.buffer is not None:
                break
            # Live events passed the send-queue size while the replay went out: the buffer was
            # let go, and the log, read from where the replay stopped, takes its place.
        self._go_live(conn, newest, chat_ids)

    async def _replay(self, conn: Conn, since: int, newest: int, chat_ids: list[int]) -> int | None:
        """Send the events ``(since, newest]`` straight to the socket; where the next replay
        starts (``newest``), or None after a ``reset`` (nothing more to replay)."""
        # A `since` ahead of the log belongs to some other history: start afresh.
        reset = since > newest
        cursor = since
        history = self._hub.history
        while not reset and cursor < newest and not conn.closing:
            page = await history.replay(
                cursor,
                through=newest,
                chat_ids=None if conn.sees_all else chat_ids,
                user_id=conn.user.id,
                limit=REPLAY_PAGE,
            )
            if page is None:
                reset = True  # pruned: the client refetches over REST
                break
            for event in page:
                if event.id > newest or conn.closing:
                    return newest
                # Straight to the socket, waiting on it: a long replay is paced by the client.
                await conn.transmit(event.frame)
            if len(page) < REPLAY_PAGE:
                break
            cursor = page[-1].id
        if reset:
            if not conn.closing:
                await conn.transmit(RESET_FRAME)
            return None
        return newest

    def _go_live(self, conn: Conn, newest: int, chat_ids: list[int]) -> None:
        # Synchronous from here to the end: no event can slip in between.
        hub = self._hub
        buffered, conn.buffer = conn.buffer or [], None
        conn.floor = newest
        hub.go_live(conn, chat_ids)
        user = conn.user
        ready = {
            "type": "ready",
            "user": views.person(user.id, user.name, user.role),
            "chat_ids": chat_ids,
            "last_event_id": newest,
        }
        hub.push(conn, orjson.dumps(ready))
        for event in buffered:
            if hub.decide(conn, event):
                hub.push(conn, event.frame)
