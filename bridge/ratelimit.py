"""Per-user posting rate (``limits.posts_per_minute``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bridge.errors import RateLimited


class PostRateLimiter:
    """A token bucket per user: ``per_minute`` posts, refilled smoothly.

    In-process: with several instances each enforces the limit on the requests it serves.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def check(self, user_id: str, per_minute: int) -> None:
        if per_minute <= 0:
            return
        now = self._clock()
        rate = per_minute / 60.0
        tokens, at = self._buckets.get(user_id, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - at) * rate)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            raise RateLimited("too many messages; slow down", retry_after=(1.0 - tokens) / rate)
        self._buckets[user_id] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:
            self._forget_full(now, rate, per_minute)

    def refund(self, user_id: str, per_minute: int) -> None:
        """Give back the one ``check`` charged, for a write that turned out to be none (a
        repeated client_id answered with its first message)."""
        found = self._buckets.get(user_id)
        if per_minute > 0 and found is not None:
            self._buckets[user_id] = (min(float(per_minute), found[0] + 1.0), found[1])

    def _forget_full(self, now: float, rate: float, capacity: int) -> None:
        # Buckets that have refilled carry no information; drop them to bound memory.
        self._buckets = {
            u: (t, a) for u, (t, a) in self._buckets.items() if t + (now - a) * rate < capacity
        }
