"""One live connection as the hub sees it (``Conn``), and why the hub may close it.

Sending never waits: when nothing is queued and the socket takes data, a frame is written to
it at once; otherwise it goes onto the connection's bounded backlog, and a writer task, alive
only while the backlog is not empty, feeds the socket as it drains. Every frame is the
publisher's bytes, shared by all recipients.

The hub closes a connection for a ``CloseReason``; the WebSocket edge (handlers/ws.py) turns
the reason into its close code.
"""

from __future__ import annotations

import asyncio
from collections import deque
from enum import Enum

from bridge import policy
from bridge.auth import Principal
from bridge.feed.events import FeedEvent


class CloseReason(Enum):
    GOING_AWAY = "going away"  # the server is shutting down
    UNAUTHORIZED = "unauthorized"  # the token expired, or the user or token rules changed
    TOO_SLOW = "too slow"  # fell behind its send queue: reconnect with `since`
    TOO_MANY = "too many"  # the user already holds limits.sockets_per_user sockets here


class Conn:
    """One connected client. Kept small: thousands of these stay open at once.

    Subclasses (the WebSocket edge) implement ``transmit`` and ``terminate``, and may
    implement ``write_now``.
    """

    __slots__ = (
        "backlog",
        "buffer",
        "chats",
        "closing",
        "expiry",
        "floor",
        "token",
        "user",
        "writer",
    )

    def __init__(self, user: Principal, token: str = ""):
        self.user = user
        self.token = token  # verified again whenever the token rules change
        self.chats: set[int] = set()  # chats subscribed to (not kept for those who see all)
        self.floor = 0  # events up to this id came with the join (replay or snapshot)
        self.backlog: deque[bytes] | None = None  # frames waiting for the writer
        self.writer: asyncio.Task[None] | None = None
        self.buffer: list[FeedEvent] | None = None  # live events buffered while joining
        self.closing = False
        self.expiry: asyncio.TimerHandle | None = None

    async def transmit(self, frame: bytes) -> None:
        """Send one text frame, waiting for the socket if it pushes back."""
        raise NotImplementedError

    async def terminate(self, reason: CloseReason, message: str) -> None:
        """Close the socket for ``reason``; ``message`` says why, in words."""
        raise NotImplementedError

    def write_now(self, frame: bytes) -> bool:
        """Send one text frame without waiting if the socket can take it right now; False
        (nothing sent) otherwise. Only called while nothing is queued."""
        return False

    @property
    def sees_all(self) -> bool:
        """Whether the user sees every chat (an admin): no subscriptions are kept for them."""
        return policy.sees_every_chat(self.user.role)

    def enqueue(self, frame: bytes, limit: int) -> bool:
        """Queue a frame without waiting; False when ``limit`` frames are already queued."""
        backlog = self.backlog
        if backlog is None:
            if self.writer is None and self.write_now(frame):
                return True
            backlog = self.backlog = deque()
        elif len(backlog) >= limit:
            return False
        backlog.append(frame)
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write(backlog))
        return True

    async def _write(self, backlog: deque[bytes]) -> None:
        try:
            while backlog:
                await self.transmit(backlog.popleft())
        except Exception:
            # The peer is gone; its reader notices too and leaves the hub.
            self.closing = True
            backlog.clear()
        finally:
            self.writer = None
            if self.backlog is backlog:
                self.backlog = None  # an idle connection holds no queue
