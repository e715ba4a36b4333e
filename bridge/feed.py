"""The feed hub: fan-out of committed events to live subscribers (the WebSocket feed).

The durable event log is the source of truth; the hub only carries events that were just
committed to the processes that hold sockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bridge.events import FeedEvent

Subscriber = Callable[[Sequence[FeedEvent]], Awaitable[None] | None]


class Feed(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, events: Sequence[FeedEvent]) -> None: ...

    def subscribe(self, subscriber: Subscriber) -> None: ...


class MemoryFeed:
    """One process: publishing hands events straight to local subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, events: Sequence[FeedEvent]) -> None:
        if not events:
            return
        for subscriber in self._subscribers:
            result = subscriber(events)
            if result is not None:
                await result
