"""The shared pieces every service works with, built once by the composition root."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.auth import Tokens
from bridge.config import LiveConfig
from bridge.events import EventLog, FeedEvent
from bridge.feed import Feed
from bridge.ratelimit import PostRateLimiter
from store.db import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    live: LiveConfig
    db: Database
    feed: Feed
    tokens: Tokens
    limiter: PostRateLimiter = field(default_factory=PostRateLimiter)
    events: EventLog = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventLog(self.db)

    async def publish(self, events: Sequence[FeedEvent]) -> None:
        """Hand committed events to the feed. Never called inside a transaction."""
        if events:
            await self.feed.publish(events)
