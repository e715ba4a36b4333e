"""The shared pieces every service works with, built once by the composition root."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.auth import Tokens
from bridge.config import LiveConfig
from bridge.feed.events import EventLog, FeedEvent
from bridge.feed.transport import Feed
from bridge.forum.file_links import FileLinks
from bridge.pachca.clients import PachcaClients
from bridge.ratelimit import PostRateLimiter
from store.blobs import BlobStore, make_blob_store
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
    # Told each answer time in seconds, as an answer is written (the /metrics histogram).
    observe_answer: Callable[[float], None] = field(default=lambda _seconds: None)
    events: EventLog = field(init=False)
    # The Pachca API client for the config in force (None while disabled).
    pachca: PachcaClients = field(init=False)
    # Where files' bytes are (files.storage, chosen at start) and their signed links.
    blobs: BlobStore = field(init=False)
    file_links: FileLinks = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventLog()
        self.pachca = PachcaClients(self.live)
        files = self.live.current.files
        self.blobs = make_blob_store(files.storage, files.path, files.s3)
        self.file_links = FileLinks(self.live, self.tokens)

    def count_write(self, user_id: str) -> None:
        """Charge one write against the user's ``limits.posts_per_minute``; RateLimited when
        none is left. Every write of a user that can reach Pachca calls this once - posts,
        edits, deletions, reactions and uploads - after the request's
        other checks and before anything is written, so a refused write writes nothing."""
        self.limiter.check(user_id, self.live.current.limits.posts_per_minute)

    def uncount_write(self, user_id: str) -> None:
        """Give back what ``count_write`` charged, for a write that wrote nothing new."""
        self.limiter.refund(user_id, self.live.current.limits.posts_per_minute)

    async def publish(self, events: Sequence[FeedEvent]) -> None:
        """Hand committed events to the feed. Never called inside a transaction."""
        if events:
            await self.feed.publish(events)
