"""The feed transport: carries committed events (and ephemeral typing signals) to every
process that holds WebSocket connections.

The durable event log is the source of truth; a feed only carries events that were just
committed, as fast as it can. Whatever a backend loses (a Redis blip, a crash between commit
and publish) the hub's sequencer fills from the log, so no backend has to be reliable.

Backends: ``MemoryFeed`` (one process) and ``redis.RedisFeed`` (several instances sharing
one database). Both hand events published in this process to local subscribers at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.feed.events import FeedEvent

Subscriber = Callable[[Sequence[FeedEvent]], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Typing:
    """Someone is typing in a chat: relayed to the chat's other viewers, never stored."""

    chat_id: int
    user_id: str
    frame: bytes  # the complete JSON frame, serialised once


TypingSubscriber = Callable[[Typing], None]

USER_CHANGED = "user"
USER_UPDATED = "user.updated"  # its name changed: cached copies go (sockets stay open)
AUTH_CHANGED = "auth"
CHAT_CHANGED = "chat"  # its access changed: cached copies go (bridge/forum/access_cache.py)


@dataclass(frozen=True, slots=True)
class Control:
    """A change open sockets or cached copies must follow, told to every instance and never
    stored: a user's role changed or the user is gone (``USER_CHANGED`` with ``user_id``), a
    user's name changed (``USER_UPDATED``), the rules that accept web-client tokens changed
    (``AUTH_CHANGED``), or a chat's access changed - its participants, its activity, or the
    chat is gone (``CHAT_CHANGED`` with ``chat_id``)."""

    kind: str
    user_id: str | None = None
    chat_id: int | None = None


# (control, whether it came from another instance)
ControlSubscriber = Callable[[Control, bool], None]


class Feed(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, events: Sequence[FeedEvent]) -> None:
        """Hand committed events on. Never fails the caller: the log has them anyway."""
        ...

    def subscribe(self, subscriber: Subscriber) -> None: ...

    async def publish_typing(self, typing: Typing) -> None: ...

    def subscribe_typing(self, subscriber: TypingSubscriber) -> None: ...

    def publish_control(self, control: Control) -> None:
        """Tell local subscribers at once and other instances as soon as possible. Like
        events, a control message can be lost on the way (see ``on_resync``)."""
        ...

    def subscribe_control(self, subscriber: ControlSubscriber) -> None: ...

    def on_resync(self, callback: Callable[[], None]) -> None:
        """``callback`` runs when the backend may have missed messages (it reconnected):
        the listener then catches up from the event log."""
        ...


class MemoryFeed:
    """One process: publishing hands events straight to local subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._typing: list[TypingSubscriber] = []
        self._control: list[ControlSubscriber] = []
        self._resync: list[Callable[[], None]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def subscribe_typing(self, subscriber: TypingSubscriber) -> None:
        self._typing.append(subscriber)

    def subscribe_control(self, subscriber: ControlSubscriber) -> None:
        self._control.append(subscriber)

    def on_resync(self, callback: Callable[[], None]) -> None:
        self._resync.append(callback)

    async def publish(self, events: Sequence[FeedEvent]) -> None:
        if events:
            await self._deliver(events)

    async def publish_typing(self, typing: Typing) -> None:
        self._deliver_typing(typing)

    def publish_control(self, control: Control) -> None:
        self._deliver_control(control, remote=False)

    async def _deliver(self, events: Sequence[FeedEvent]) -> None:
        for subscriber in self._subscribers:
            result = subscriber(events)
            if result is not None:
                await result

    def _deliver_typing(self, typing: Typing) -> None:
        for subscriber in self._typing:
            subscriber(typing)

    def _deliver_control(self, control: Control, *, remote: bool) -> None:
        for subscriber in self._control:
            subscriber(control, remote)

    def _resynced(self) -> None:
        for callback in self._resync:
            callback()
