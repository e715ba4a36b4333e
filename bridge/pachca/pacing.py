"""Staying under Pachca's rate limits (FACTS "Rate limits"): calls spaced per Pachca chat and
overall, and paused after a 429 for as long as Pachca asked.

Each key gets evenly spaced slots (a token bucket holding one token): a call reserves the next
free slot of its chat and of the global line, then sleeps until it. Reserving before sleeping
keeps concurrent callers from all waking at once. In-process only: with several instances each
keeps its own pace, and a 429 from Pachca covers the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

GLOBAL = "*"
_MAX_KEYS = 10_000


class WaitTooLong(Exception):
    """The next free slot is further away than the caller is willing to wait."""

    def __init__(self, wait: float):
        super().__init__(f"rate limit: next slot in {wait:.1f} s")
        self.wait = wait


class Pacer:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}  # key -> earliest time of its next call
        self._paused: dict[str, float] = {}  # key -> Retry-After runs out

    async def acquire(
        self, chat_key: str | None, *, per_chat: float, overall: float, max_wait: float
    ) -> None:
        """Wait for a slot for one call; ``chat_key`` names the Pachca chat of a message
        call (None for calls that only count against the global rate)."""
        now = self._clock()
        keys = [GLOBAL] if chat_key is None else [GLOBAL, chat_key]
        at = max([now, *(self._next.get(k, now) for k in keys)])
        at = max([at, *(self._paused.get(k, now) for k in keys)])
        wait = at - now
        if wait > max_wait:
            raise WaitTooLong(wait)
        self._next[GLOBAL] = at + 1.0 / overall
        if chat_key is not None:
            self._next[chat_key] = at + 1.0 / per_chat
        if len(self._next) > _MAX_KEYS:
            self._forget_idle(now)
        if wait > 0:
            await self._sleep(wait)

    def pause(self, chat_key: str | None, seconds: float) -> None:
        """Pachca said 429: no call to this chat (or, for None, to anything) for ``seconds``."""
        key = GLOBAL if chat_key is None else chat_key
        until = self._clock() + max(seconds, 0.0)
        self._paused[key] = max(self._paused.get(key, until), until)

    def _forget_idle(self, now: float) -> None:
        # A slot in the past carries no information: the key would start afresh anyway.
        self._next = {k: t for k, t in self._next.items() if t > now}
        self._paused = {k: t for k, t in self._paused.items() if t > now}
