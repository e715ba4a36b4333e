"""The Redis pub/sub feed: several instances behind a load balancer, one database.

Events published in this process reach local subscribers at once (no round trip through
Redis for local sockets) and go to Redis from a background sender, so a slow or absent Redis
never delays or fails the request that committed them. Each instance ignores its own echo.

Redis pub/sub is at-most-once. That is fine here: the event log is the record, and the hub's
sequencer fills any gap from it (on the next event, on the periodic check, and right after this
feed re-subscribes, see ``on_resync``).

Wire format of one pub/sub message (frames are compact JSON, so they hold no raw newline):
``header JSON \\n frame \\n frame ...`` where the header is
``{"o": origin, "e": [[id, chat_id, type, audience|null, chat_type|null, participants|null], ...]}``
for events, or ``{"o": origin, "t": [chat_id, user_id]}`` followed by one frame for typing, or
``{"o": origin, "c": [kind, user_id|null]}`` alone for a control message (``feed.Control``),
with ``"h": chat_id`` besides for a chat's (an instance that does not know that key ignores it,
and the kind too).
The frames travel as the very bytes the publisher serialised. Audiences and participants
are JSON lists of the ids themselves, so an id compares exactly whatever characters it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bridge.feed.events import ChatMeta, FeedEvent
from bridge.feed.transport import Control, MemoryFeed, Typing

log = structlog.get_logger("bridge.feed")

SEND_QUEUE_LIMIT = 10_000  # payloads waiting for Redis; beyond that they are dropped (and filled)
SEND_BATCH = 256  # payloads per pipeline round trip
SUBSCRIBE_WAIT_S = 2.0  # start() waits this long for the subscription before going on
MAX_BACKOFF_S = 5.0


def encode_events(origin: str, events: Sequence[FeedEvent]) -> bytes:
    meta = [
        [
            e.id,
            e.chat_id,
            e.type,
            sorted(e.audience) if e.audience is not None else None,
            e.chat.type if e.chat is not None else None,
            sorted(e.chat.participants) if e.chat is not None else None,
        ]
        for e in events
    ]
    header = orjson.dumps({"o": origin, "e": meta})
    return b"\n".join([header, *(e.frame for e in events)])


def encode_typing(origin: str, typing: Typing) -> bytes:
    header = orjson.dumps({"o": origin, "t": [typing.chat_id, typing.user_id]})
    return header + b"\n" + typing.frame


def encode_control(origin: str, control: Control) -> bytes:
    header: dict[str, Any] = {"o": origin, "c": [control.kind, control.user_id]}
    if control.chat_id is not None:
        header["h"] = control.chat_id
    return orjson.dumps(header)


def decode(data: bytes) -> tuple[str, list[FeedEvent] | Typing | Control]:
    """``(origin, events, typing or control)``; raises ValueError on anything malformed."""
    header_raw, *frames = data.split(b"\n")
    header: Any = orjson.loads(header_raw)
    origin = header["o"]
    if "c" in header:
        kind, user_id = header["c"]
        chat_id = header.get("h")
        if (
            frames
            or not isinstance(kind, str)
            or not isinstance(user_id, str | None)
            or not (chat_id is None or (isinstance(chat_id, int) and not isinstance(chat_id, bool)))
        ):
            raise ValueError("malformed control message")
        return origin, Control(kind, user_id, chat_id)
    if "t" in header:
        chat_id, user_id = header["t"]
        (frame,) = frames
        return origin, Typing(int(chat_id), str(user_id), frame)
    meta = header["e"]
    if len(meta) != len(frames):
        raise ValueError("frame count does not match the header")
    events = []
    for (event_id, chat_id, type_, audience, chat_type, participants), frame in zip(
        meta, frames, strict=True
    ):
        events.append(
            FeedEvent(
                int(event_id),
                int(chat_id),
                str(type_),
                frame,
                frozenset(audience) if audience is not None else None,
                ChatMeta(chat_type, frozenset(participants)) if chat_type is not None else None,
            )
        )
    return origin, events


def _stop_if_cancelled(exc: Exception) -> None:
    """Raise CancelledError if this task is being cancelled: a client that answers a cancel
    with an error of its own (a timeout racing it) would otherwise leave the loop running and
    ``stop`` waiting for it for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


class RedisFeed(MemoryFeed):
    def __init__(self, url: str, channel: str):
        super().__init__()
        self.url = url
        self.channel = channel
        self.origin = uuid.uuid4().hex
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._dropped = 0

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="feed-redis-listen"),
            asyncio.create_task(self._send(), name="feed-redis-send"),
        ]
        try:
            async with asyncio.timeout(SUBSCRIBE_WAIT_S):
                await self._subscribed.wait()
        except TimeoutError:
            # Serve anyway: local sockets work, and the listener keeps trying.
            log.warning("redis feed not subscribed yet; retrying in the background")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def publish(self, events: Sequence[FeedEvent]) -> None:
        if not events:
            return
        await self._deliver(events)
        self._enqueue(encode_events(self.origin, events))

    async def publish_typing(self, typing: Typing) -> None:
        self._deliver_typing(typing)
        self._enqueue(encode_typing(self.origin, typing))

    def publish_control(self, control: Control) -> None:
        self._deliver_control(control, remote=False)
        self._enqueue(encode_control(self.origin, control))

    def _enqueue(self, payload: bytes) -> None:
        try:
            self._outgoing.put_nowait(payload)
        except asyncio.QueueFull:
            # Redis is away; the other instances fill what they miss from the event log.
            self._dropped += 1
            if self._dropped in (1, 100) or self._dropped % 10_000 == 0:
                log.warning("redis feed backlog full; dropping", dropped=self._dropped)

    async def _send(self) -> None:
        client = Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        try:
            while True:
                batch = [await self._outgoing.get()]
                while len(batch) < SEND_BATCH and not self._outgoing.empty():
                    batch.append(self._outgoing.get_nowait())
                try:
                    if len(batch) == 1:
                        await client.publish(self.channel, batch[0])
                    else:
                        async with client.pipeline(transaction=False) as pipe:
                            for payload in batch:
                                pipe.publish(self.channel, payload)
                            await pipe.execute()
                except Exception as exc:
                    _stop_if_cancelled(exc)
                    log.warning("redis feed publish failed", error=type(exc).__name__)
                    await asyncio.sleep(0.5)
        finally:
            await client.aclose()

    async def _listen(self) -> None:
        # No silent reconnects inside redis-py: a lost connection must surface here, so
        # that what was missed meanwhile is caught up from the log.
        client = Redis.from_url(
            self.url,
            socket_connect_timeout=2,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name=f"bridge-feed-{self.origin}",
        )
        backoff = 0.1
        connected_before = False
        try:
            while True:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    if connected_before:
                        log.info("redis feed re-subscribed")
                        self._resynced()
                    connected_before = True
                    backoff = 0.1
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=None
                        )
                        if message is not None and message.get("type") == "message":
                            await self._received(message["data"])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _stop_if_cancelled(exc)
                    log.warning("redis feed connection lost", error=type(exc).__name__)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
        finally:
            await client.aclose()

    async def _received(self, data: bytes) -> None:
        try:
            origin, body = decode(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("malformed feed message ignored", error=type(exc).__name__)
            return
        if origin == self.origin:
            return  # our own echo: local subscribers had it at publish time
        try:
            if isinstance(body, Typing):
                self._deliver_typing(body)
            elif isinstance(body, Control):
                self._deliver_control(body, remote=True)
            else:
                await self._deliver(body)
        except Exception:
            # A subscriber's failure is not the connection's: keep listening.
            log.exception("feed subscriber failed")
