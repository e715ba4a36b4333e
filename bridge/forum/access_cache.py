"""Chats' access as posting sees it (``ChatRights``: type, activity, participants and their
parts), kept per instance for a few seconds, so that a web post does not read the chat and its
participants each time.

Modelled on ``Principals`` (bridge/auth.py). Every change to a chat's access - an enrollment
put or deleted, a student's tutor changed (bridge/forum/enrollments.py, users.py) - is told to
every instance as a ``CHAT_CHANGED`` control message after its commit, and each forgets the
chat (``forget``, wired in bridge/services.py); a feed that may have lost messages clears
everything (``clear``). Control messages are at-most-once, so entries also expire after
``ttl_s``: the longest a change can go unseen on another instance. A user's role is not part
of an entry (the request's ``Principal`` carries it), so a role change needs nothing here.

Unknown chats (404) are never kept. Read marks are never kept: they change all the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bridge.forum.chats import ChatRights, load_rights
from store.db import Database


class AccessCache:
    MAX_ENTRIES = 50_000

    def __init__(
        self, db: Database, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ):
        self._db = db
        self.ttl_s = ttl_s
        self._clock = clock
        self._kept: dict[int, tuple[ChatRights, float]] = {}
        self._generation = 0  # moves on every forget/clear: a read that spans one is not kept

    async def get(self, chat_id: int) -> ChatRights:
        """The chat's rights, or NotFound."""
        now = self._clock()
        kept = self._kept.get(chat_id)
        if kept is not None and kept[1] > now:
            return kept[0]
        generation = self._generation
        async with self._db.read() as conn:  # one statement
            rights = await load_rights(conn, chat_id)
        if generation == self._generation:
            if len(self._kept) >= self.MAX_ENTRIES:
                self._kept.clear()
            self._kept[chat_id] = (rights, now + self.ttl_s)
        return rights

    def forget(self, chat_id: int) -> None:
        self._generation += 1
        self._kept.pop(chat_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._kept.clear()

    def __contains__(self, chat_id: object) -> bool:
        """Whether a copy of the chat's rights is kept and still fresh."""
        kept = self._kept.get(chat_id) if isinstance(chat_id, int) else None
        return kept is not None and kept[1] > self._clock()

    def __len__(self) -> int:
        return len(self._kept)
