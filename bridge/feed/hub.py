"""The hub: this process's live WebSocket connections, and fan-out of feed events to them.

Each connection is subscribed to the chats its user may see (the role policy, asked of
``bridge.policy``), re-decided as ``chat.created`` / ``chat.updated`` events arrive. Events
reach the hub through the sequencer, in event-id order and without gaps, and go to each
connection's queue without waiting (bridge/feed/connection.py). A connection whose queue is
full has fallen behind: it is closed (``CloseReason.TOO_SLOW``) and resumes with ``since``,
while everyone else carries on.

Here: the registry of connections (live and joining), their subscriptions, fan-out and who
sees what. Beside it: joining (bridge/feed/joining.py), typing (bridge/feed/typing.py) and
sockets following their user (bridge/feed/following.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from bridge import policy
from bridge.feed import events as ev
from bridge.feed.connection import CloseReason, Conn
from bridge.feed.following import Following
from bridge.feed.history import History
from bridge.feed.joining import Joining
from bridge.feed.sequencer import Sequencer, head
from bridge.feed.transport import Feed
from bridge.feed.typing import TypingRelay
from bridge.ops.metrics import Metrics
from bridge.runtime import Runtime

logger = structlog.get_logger("bridge.feed")

CHECK_INTERVAL_S = 2.0  # the sequencer's safety net, and typing-throttle housekeeping
# Every this many checks (a minute) the open sockets are checked against the users table and
# the token rules, in case a control message was lost (bridge/feed/following.py).
SWEEP_EVERY_CHECKS = 30
SHUTDOWN_FLUSH_S = 2.0  # on shutdown, how long queued frames get to go out
SHUTDOWN_TOTAL_S = 5.0


class Hub:
    def __init__(
        self, rt: Runtime, metrics: Metrics, *, queue_size: int, history: History | None = None
    ):
        self.rt = rt
        self.queue_size = queue_size
        self.history = history or History(rt)
        self.sequencer = Sequencer(rt.db, self._dispatch)
        self.conns: set[Conn] = set()
        self.following = Following(self, rt)
        self.joining = Joining(self, rt)
        self.typing_relay = TypingRelay(self, rt.feed)
        self.stopping = False  # shutdown has begun: no socket joins any more
        self._metrics = metrics
        self._event_counters: dict[str, Any] = {}
        self._pending: set[Conn] = set()  # joining: buffering live events until they are live
        self._by_chat: dict[int, set[Conn]] = {}
        self._by_user: dict[str, set[Conn]] = {}
        self._see_all: set[Conn] = set()  # live connections of users who see every chat
        self._tasks: set[asyncio.Task[None]] = set()
        self._checker: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def attach(self, feed: Feed) -> None:
        feed.subscribe(self.receive)
        feed.subscribe_typing(self.typing_relay.receive)
        feed.subscribe_control(self.following.receive_control)
        feed.on_resync(self._resynced)
        self.rt.live.subscribe(self.following.config_changed)

    async def start(self) -> None:
        self.sequencer.start(await head(self.rt.db))
        self._checker = asyncio.create_task(self._check_loop(), name="feed-check")

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        await self.sequencer.stop()
        self.following.stop()
        for task in list(self._tasks):
            task.cancel()

    async def shutdown(self) -> None:
        """Close every socket, joining ones included (``GOING_AWAY``), after giving queued
        frames a moment to go out. A socket that comes to join after this is closed at once."""
        self.stopping = True

        async def close(conn: Conn) -> None:
            conn.closing = True  # takes no new frames
            if conn.writer is not None:
                await asyncio.wait({conn.writer}, timeout=SHUTDOWN_FLUSH_S)
            self._forget(conn)
            await conn.terminate(CloseReason.GOING_AWAY, "server shutting down")

        conns = list(self.conns)
        if not conns:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_TOTAL_S):
                await asyncio.gather(*(close(c) for c in conns), return_exceptions=True)

    async def _check_loop(self) -> None:
        checks = 0
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            self.typing_relay.prune()
            if not self.conns:
                continue  # nobody to deliver to; joiners read the log themselves
            checks += 1
            if checks % SWEEP_EVERY_CHECKS == 0:
                self.following.schedule_recheck(roles=True)
            try:
                await self.sequencer.check()
            except Exception as exc:
                logger.warning("feed check failed", error=repr(exc))

    def _resynced(self) -> None:
        # The feed reconnected: events, and control messages with them, may have been lost.
        self.sequencer.resync()
        self.following.schedule_recheck(roles=True)

    # --- what the WebSocket edge calls ----------------------------------------------------

    @property
    def changes(self) -> int:
        """How many user or token-rule changes this hub has heard of (see ``join``)."""
        return self.following.changes

    async def join(
        self,
        conn: Conn,
        since: int | None,
        expires_at: float | None,
        changes_seen: int | None = None,
    ) -> None:
        """Register ``conn``, replay what it missed, send ``ready``, and make it live
        (bridge/feed/joining.py)."""
        await self.joining.join(conn, since, expires_at, changes_seen)

    def reply(self, conn: Conn, frame: bytes) -> None:
        """Answer a client frame through the queue, in order with everything else."""
        self.push(conn, frame)

    async def typing(self, conn: Conn, chat_id: int) -> None:
        """Relay that ``conn``'s user is typing in ``chat_id`` (bridge/feed/typing.py)."""
        await self.typing_relay.send(conn, chat_id)

    def leave(self, conn: Conn) -> None:
        conn.closing = True
        if conn.writer is not None:
            conn.writer.cancel()
        self._forget(conn)

    # --- the registry ---------------------------------------------------------------------

    async def admit(self, conn: Conn, expires_at: float | None) -> bool:
        """Register a joining ``conn`` (it buffers live events until it goes live); False,
        with ``conn`` closed, when it may not join: the server is shutting down, or its user
        already holds ``limits.sockets_per_user`` sockets here."""
        refused = None
        if self.stopping:
            refused = (CloseReason.GOING_AWAY, "server shutting down")
        else:
            same_user = self._by_user.get(conn.user.id)
            limit = self.rt.live.current.limits.sockets_per_user
            if same_user is not None and len(same_user) >= limit:
                refused = (CloseReason.TOO_MANY, "too many open sockets for this user")
        if refused is not None:
            conn.closing = True
            with contextlib.suppress(Exception):
                await conn.terminate(*refused)
            return False
        conn.buffer = []
        self._pending.add(conn)
        self.conns.add(conn)
        # Pending sockets count towards the limit, and a user change closes them too.
        self._by_user.setdefault(conn.user.id, set()).add(conn)
        self._metrics.websockets.inc()
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            conn.expiry = asyncio.get_running_loop().call_later(delay, self._expire, conn)
        return True

    def go_live(self, conn: Conn, chat_ids: Iterable[int]) -> None:
        """A joined ``conn`` takes live events from now on: those of ``chat_ids`` (or every
        chat, for a user who sees all)."""
        self._pending.discard(conn)
        if conn.sees_all:
            self._see_all.add(conn)
        else:
            for chat_id in chat_ids:
                self._subscribe(conn, chat_id)

    def sockets_of(self, user_id: str) -> Iterable[Conn]:
        """The user's connections here, joining ones included."""
        return self._by_user.get(user_id, ())

    def subscribers(self, chat_id: int) -> Iterable[Conn]:
        """The live connections subscribed to a chat (not those who see every chat)."""
        return self._by_chat.get(chat_id, ())

    def drop(self, conn: Conn, reason: CloseReason, message: str) -> None:
        """Close ``conn`` from outside its handler. Safe to call while iterating the indexes:
        they change only when the closing task starts."""
        if conn.closing:
            return
        conn.closing = True
        if conn.writer is not None:
            conn.writer.cancel()
        if conn.backlog is not None:
            conn.backlog.clear()
        task = asyncio.get_running_loop().create_task(self._terminate(conn, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _terminate(self, conn: Conn, reason: CloseReason, message: str) -> None:
        self._forget(conn)
        if reason is CloseReason.TOO_SLOW:
            logger.info("feed client too slow; disconnected", user_id=conn.user.id)
        with contextlib.suppress(Exception):
            await conn.terminate(reason, message)

    def _expire(self, conn: Conn) -> None:
        conn.expiry = None
        self.drop(conn, CloseReason.UNAUTHORIZED, "token expired")

    def _forget(self, conn: Conn) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        self._pending.discard(conn)
        self._see_all.discard(conn)
        for chat_id in conn.chats:
            subs = self._by_chat.get(chat_id)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self._by_chat[chat_id]
        conn.chats.clear()
        same_user = self._by_user.get(conn.user.id)
        if same_user is not None:
            same_user.discard(conn)
            if not same_user:
                del self._by_user[conn.user.id]
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None
        conn.buffer = None
        self._metrics.websockets.dec()

    def _subscribe(self, conn: Conn, chat_id: int) -> None:
        conn.chats.add(chat_id)
        self._by_chat.setdefault(chat_id, set()).add(conn)

    def _unsubscribe(self, conn: Conn, chat_id: int) -> None:
        conn.chats.discard(chat_id)
        subs = self._by_chat.get(chat_id)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._by_chat[chat_id]

    # --- fan-out ------------------------------------------------------------------------

    def receive(self, events: Sequence[ev.FeedEvent]) -> None:
        """The feed's subscriber: events in whatever order the transport brought them."""
        self.sequencer.push(list(events))

    def _dispatch(self, events: list[ev.FeedEvent]) -> None:
        """Events in id order, each once: to joiners' buffers and to subscribed sockets."""
        for event in events:
            self._count(event.type)
            for conn in self._pending:
                buffer = conn.buffer
                if buffer is None or conn.closing:
                    continue
                if len(buffer) >= self.queue_size:
                    # Let the buffer go: the joiner reads these from the log instead.
                    conn.buffer = None
                else:
                    buffer.append(event)
            if event.chat is None and event.audience is None and event.type != ev.CHAT_DELETED:
                # The hot path (messages, read marks): the chat's subscribers and whoever
                # sees every chat.
                subs = self._by_chat.get(event.chat_id)
                if subs:
                    for conn in subs:
                        if event.id > conn.floor:
                            self.push(conn, event.frame)
                for conn in self._see_all:
                    if event.id > conn.floor:
                        self.push(conn, event.frame)
            else:
                for conn in self._affected(event):
                    if self.decide(conn, event):
                        self.push(conn, event.frame)

    def _affected(self, event: ev.FeedEvent) -> set[Conn]:
        """Everyone live whose view a chat event may change: subscribers, those who see every
        chat, the named participants and the explicit audience (joining sockets have it in
        their buffer)."""
        found = set(self._by_chat.get(event.chat_id, ()))
        found |= self._see_all
        for group in (event.audience, event.chat.participants if event.chat else None):
            for user_id in group or ():
                found |= self._by_user.get(user_id, set())
        if self._pending:
            found -= self._pending
        return found

    def decide(self, conn: Conn, event: ev.FeedEvent) -> bool:
        """Whether ``conn`` gets ``event``, updating its subscriptions on the way."""
        if event.id <= conn.floor:
            return False  # it came with the join
        if conn.sees_all:
            return True
        user_id = conn.user.id
        chat_id = event.chat_id
        had = chat_id in conn.chats
        addressed = event.audience is not None and user_id in event.audience
        if event.type == ev.CHAT_DELETED:
            if had:
                self._unsubscribe(conn, chat_id)
            return had or addressed
        if event.chat is not None:
            sees = policy.can_view(
                conn.user.role, event.chat.type, user_id in event.chat.participants
            )
            if sees and not had:
                self._subscribe(conn, chat_id)
            elif had and not sees:
                self._unsubscribe(conn, chat_id)  # still told, so its client drops the chat
            return sees or had or addressed
        return had or addressed

    def push(self, conn: Conn, frame: bytes) -> None:
        """Queue ``frame`` for ``conn``; a connection whose queue is full is dropped."""
        if not conn.closing and not conn.enqueue(frame, self.queue_size):
            self.drop(conn, CloseReason.TOO_SLOW, "too slow: reconnect with since")

    def _count(self, event_type: str) -> None:
        counter = self._event_counters.get(event_type)
        if counter is None:
            counter = self._event_counters[event_type] = self._metrics.feed_events.labels(
                event_type
            )
        counter.inc()
