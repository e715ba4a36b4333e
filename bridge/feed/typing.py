"""Typing signals: relayed to a chat's other connected viewers, at most one per user and chat
every ``TYPING_INTERVAL_S``, never stored.

The throttle is applied where typing is received, not where it is sent, so it holds per user
across instances: a second signal within the interval, from anywhere, goes no further.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from bridge import policy
from bridge.errors import Forbidden
from bridge.feed.connection import Conn
from bridge.feed.transport import Feed, Typing
from bridge.forum import views

if TYPE_CHECKING:
    from bridge.feed.hub import Hub

TYPING_INTERVAL_S = 2.0  # at most one typing relay per user per chat in this long


class TypingRelay:
    def __init__(self, hub: Hub, feed: Feed):
        self._hub = hub
        self._feed = feed
        self._seen: dict[tuple[str, int], float] = {}

    async def send(self, conn: Conn, chat_id: int) -> None:
        """Relay that ``conn``'s user is typing in ``chat_id`` (Forbidden if they may not
        post there). Throttled silently to one per user and chat per TYPING_INTERVAL_S."""
        user = conn.user
        if not policy.can_type(user.role, chat_id in conn.chats):
            raise Forbidden("you may not type in this chat")
        seen = self._seen.get((user.id, chat_id))
        if seen is not None and time.monotonic() - seen < TYPING_INTERVAL_S:
            return
        frame = orjson.dumps(
            {
                "type": "typing",
                "chat_id": chat_id,
                "user": views.person(user.id, user.name, user.role),
            }
        )
        await self._feed.publish_typing(Typing(chat_id, user.id, frame))

    def receive(self, typing: Typing) -> None:
        """The feed's typing subscriber (from this instance or another)."""
        key = (typing.user_id, typing.chat_id)
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen < TYPING_INTERVAL_S:
            return
        self._seen[key] = now
        hub = self._hub
        for conn in hub.subscribers(typing.chat_id):
            if conn.user.id != typing.user_id:
                hub.push(conn, typing.frame)

    def prune(self) -> None:
        """Forget signals older than the interval (the hub's periodic check calls this)."""
        cutoff = time.monotonic() - TYPING_INTERVAL_S
        for key in [k for k, seen in self._seen.items() if seen < cutoff]:
            del self._seen[key]
