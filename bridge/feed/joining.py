"""Joining the feed: replay and live stream meet with no gap and no duplicate.

The connection buffers live events from the moment it registers with the hub, then reads the
log head ``H`` and its chats, replays ``(since, H]``, sends ``ready``, and goes live with the
buffered events after ``H``. A ``since`` ahead of the log, or before what the log still holds,
gets ``reset`` instead of a replay: the client refetches over REST.
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
        async with self._rt.db.read() as db:
            newest = await event_log.last_id(db)
            chat_ids = await forum.visible_chat_ids(db, flt) if flt.chat_types else []
        if since is not None:
            await self._replay(conn, since, newest, chat_ids)
        if not conn.closing:
            self._go_live(conn, newest, chat_ids)

    async def _replay(self, conn: Conn, since: int, newest: int, chat_ids: list[int]) -> None:
        # A `since` ahead of the log belongs to some other history: start afresh.
        reset = since > newest
        cursor = since
        history = self._hub.history
        while not reset and cursor < newest and not conn.closing:
            page = await history.replay(
                cursor,
                chat_ids=None if conn.sees_all else chat_ids,
                user_id=conn.user.id,
                limit=REPLAY_PAGE,
            )
            if page is None:
                reset = True  # pruned: the client refetches over REST
                break
            for event in page:
                if event.id > newest or conn.closing:
                    return
                # Straight to the socket, waiting on it: a long replay is paced by the client.
                await conn.transmit(event.frame)
            if len(page) < REPLAY_PAGE:
                break
            cursor = page[-1].id
        if reset and not conn.closing:
            await conn.transmit(RESET_FRAME)

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
