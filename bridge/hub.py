"""The hub: this process's live WebSocket connections, and fan-out of feed events to them.

Each connection is subscribed to the chats its user may see (CONTRACT section 6, asked of
``bridge.policy``), re-decided as ``chat.created`` / ``chat.updated`` events arrive. Events
reach the hub through the sequencer, in event-id order and without gaps.

Sending never waits: when nothing is queued and the socket takes data, a frame is written to
it at once; otherwise it goes onto the connection's bounded backlog, and a writer task, alive
only while the backlog is not empty, feeds the socket as it drains. A connection whose backlog
is full has fallen behind: it is closed with ``CLOSE_TOO_SLOW`` and resumes with ``since``,
while everyone else carries on. Every frame is the publisher's bytes, shared by all recipients.

Joining (``join``) makes replay and live stream meet with no gap and no duplicate: the
connection buffers live events from the moment it registers, then reads the log head ``H`` and
its chats, replays ``(since, H]``, and goes live with the buffered events after ``H``.

A socket follows its user: it is closed with ``CLOSE_UNAUTHORIZED`` when the user's role
changes or the user is gone (a ``USER_CHANGED`` control message, from any instance), when the
token rules in force (key, audience, lifetime cap) no longer accept its token, and at the
token's expiry. A socket is not decided once at connect and then trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from bridge import events as ev
from bridge import policy, views
from bridge.auth import Principal, token_rules
from bridge.chats import chat_filter
from bridge.config import Config
from bridge.errors import Forbidden, Unauthorized
from bridge.feed import USER_CHANGED, Control, Feed, Typing
from bridge.history import History
from bridge.metrics import Metrics
from bridge.runtime import Runtime
from bridge.sequencer import Sequencer, head
from store import events as event_log
from store import forum
from store import users as user_store

logger = structlog.get_logger("bridge.feed")

CLOSE_GOING_AWAY = 1001  # server shutting down
CLOSE_UNAUTHORIZED = 4401  # bad token, unknown user, expired; the user or token rules changed
CLOSE_TOO_SLOW = 4408  # the client fell behind its send queue: reconnect with `since`
CLOSE_BAD_REQUEST = 4400  # a malformed `since`
CLOSE_TOO_MANY = 4429  # the user already holds limits.sockets_per_user sockets here

TYPING_INTERVAL_S = 2.0  # at most one typing relay per user per chat in this long
CHECK_INTERVAL_S = 2.0  # the sequencer's safety net, and typing-throttle housekeeping
REPLAY_PAGE = 500
RECHECK_BATCH = 500  # sockets re-verified (or users read) before letting others run
# Control messages travel at most once, like events: every this many checks (a minute) the
# sockets are checked against the users table and the token rules anyway, which bounds how
# long a lost message matters.
SWEEP_EVERY_CHECKS = 30
SHUTDOWN_FLUSH_S = 2.0  # on shutdown, how long queued frames get to go out
SHUTDOWN_TOTAL_S = 5.0

RESET_FRAME = b'{"type":"reset"}'


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
        self.chats: set[int] = set()  # chats subscribed to (not kept for admins: they see all)
        self.floor = 0  # events up to this id came with the join (replay or snapshot)
        self.backlog: deque[bytes] | None = None  # frames waiting for the writer
        self.writer: asyncio.Task[None] | None = None
        self.buffer: list[ev.FeedEvent] | None = None  # live events buffered while joining
        self.closing = False
        self.expiry: asyncio.TimerHandle | None = None

    async def transmit(self, frame: bytes) -> None:
        """Send one text frame, waiting for the socket if it pushes back."""
        raise NotImplementedError

    async def terminate(self, code: int, reason: str) -> None:
        """Close the socket with ``code``."""
        raise NotImplementedError

    def write_now(self, frame: bytes) -> bool:
        """Send one text frame without waiting if the socket can take it right now; False
        (nothing sent) otherwise. Only called while nothing is queued."""
        return False

    @property
    def is_admin(self) -> bool:
        return self.user.role == policy.Role.ADMIN

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


class Hub:
    def __init__(self, rt: Runtime, metrics: Metrics, *, queue_size: int):
        self.rt = rt
        self.queue_size = queue_size
        self.history = History(rt)
        self.sequencer = Sequencer(rt.db, self._dispatch)
        self.conns: set[Conn] = set()
        self._metrics = metrics
        self._event_counters: dict[str, Any] = {}
        self._pending: set[Conn] = set()
        self._by_chat: dict[int, set[Conn]] = {}
        self._by_user: dict[str, set[Conn]] = {}
        self._admins: set[Conn] = set()
        self._typing_seen: dict[tuple[str, int], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._checker: asyncio.Task[None] | None = None
        # How many user or token-rule changes this hub has heard of: a join that saw the
        # count move while its socket authenticated checks that socket again.
        self.changes = 0
        self._recheck: asyncio.Task[None] | None = None
        self._recheck_due = False
        self._recheck_roles = False

    # --- lifecycle ----------------------------------------------------------------------

    def attach(self, feed: Feed) -> None:
        feed.subscribe(self.receive)
        feed.subscribe_typing(self.receive_typing)
        feed.subscribe_control(self.receive_control)
        feed.on_resync(self._resynced)
        self.rt.live.subscribe(self.config_changed)

    async def start(self) -> None:
        self.sequencer.start(await head(self.rt.db))
        self._checker = asyncio.create_task(self._check_loop(), name="feed-check")

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        await self.sequencer.stop()
        if self._recheck is not None:
            self._recheck.cancel()
        for task in list(self._tasks):
            task.cancel()

    async def shutdown(self) -> None:
        """Close every socket with 1001, after giving queued frames a moment to go out."""

        async def close(conn: Conn) -> None:
            conn.closing = True  # takes no new frames
            if conn.writer is not None:
                await asyncio.wait({conn.writer}, timeout=SHUTDOWN_FLUSH_S)
            self._forget(conn)
            await conn.terminate(CLOSE_GOING_AWAY, "server shutting down")

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
            self._prune_typing()
            if not self.conns:
                continue  # nobody to deliver to; joiners read the log themselves
            checks += 1
            if checks % SWEEP_EVERY_CHECKS == 0:
                self._schedule_recheck(roles=True)
            try:
                await self.sequencer.check()
            except Exception as exc:
                logger.warning("feed check failed", error=repr(exc))

    # --- connections --------------------------------------------------------------------

    async def join(
        self,
        conn: Conn,
        since: int | None,
        expires_at: float | None,
        changes_seen: int | None = None,
    ) -> None:
        """Register ``conn``, replay what it missed, send ``ready``, and make it live.

        ``changes_seen`` is ``self.changes`` from before ``conn``'s user was authenticated:
        when it has moved since, a change may have slipped in between, and the user and
        token are checked again. A user already holding ``limits.sockets_per_user`` sockets
        here gets this one closed with ``CLOSE_TOO_MANY``."""
        same_user = self._by_user.get(conn.user.id)
        limit = self.rt.live.current.limits.sockets_per_user
        if same_user is not None and len(same_user) >= limit:
            conn.closing = True
            with contextlib.suppress(Exception):
                await conn.terminate(CLOSE_TOO_MANY, "too many open sockets for this user")
            return
        conn.buffer = []
        self._pending.add(conn)
        self.conns.add(conn)
        # Pending sockets count towards the limit, and a user change closes them too.
        self._by_user.setdefault(conn.user.id, set()).add(conn)
        self._metrics.websockets.inc()
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            conn.expiry = asyncio.get_running_loop().call_later(delay, self._expire, conn)
        if changes_seen is not None and changes_seen != self.changes:
            await self._revalidate([conn], roles=True)
            if conn.closing:
                return

        flt = chat_filter(conn.user)
        async with self.rt.db.read() as db:
            newest = await event_log.last_id(db)
            chat_ids = await forum.visible_chat_ids(db, flt) if flt.chat_types else []
        if since is not None:
            await self._replay(conn, since, newest, chat_ids)
        if not conn.closing:
            self._go_live(conn, newest, chat_ids)

    async def _replay(self, conn: Conn, since: int, newest: int, chat_ids: list[int]) -> None:
        # A `since` ahead of the log belongs to some other history: start afresh.
        reset = since > newest
        cursor = since
        while not reset and cursor < newest and not conn.closing:
            page = await self.history.replay(
                cursor,
                chat_ids=None if conn.is_admin else chat_ids,
                user_id=conn.user.id,
                limit=REPLAY_PAGE,
            )
            if page is None:
                reset = True  # pruned: the client refetches over REST
                break
            for event in page:
                if event.id > newest or conn.closing:
                    return
                # Straight to the socket, waiting on it: a long replay is paced by the client.
                await conn.transmit(event.frame)
            if len(page) < REPLAY_PAGE:
                break
            cursor = page[-1].id
        if reset and not conn.closing:
            await conn.transmit(RESET_FRAME)

    def _go_live(self, conn: Conn, newest: int, chat_ids: list[int]) -> None:
        # Synchronous from here to the end: no event can slip in between.
        self._pending.discard(conn)
        buffered, conn.buffer = conn.buffer or [], None
        conn.floor = newest
        if conn.is_admin:
            self._admins.add(conn)
        else:
            for chat_id in chat_ids:
                self._subscribe(conn, chat_id)
        user = conn.user
        ready = {
            "type": "ready",
            "user": views.person(user.id, user.name, user.role),
            "chat_ids": chat_ids,
            "last_event_id": newest,
        }
        self._push(conn, orjson.dumps(ready))
        for event in buffered:
            if self._decide(conn, event):
                self._push(conn, event.frame)

    def leave(self, conn: Conn) -> None:
        conn.closing = True
        if conn.writer is not None:
            conn.writer.cancel()
        self._forget(conn)

    def _forget(self, conn: Conn) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        self._pending.discard(conn)
        self._admins.discard(conn)
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

    def _expire(self, conn: Conn) -> None:
        conn.expiry = None
        self._drop(conn, CLOSE_UNAUTHORIZED, "token expired")

    # --- sockets follow the user ---------------------------------------------------------

    def receive_control(self, control: Control, remote: bool) -> None:
        """The feed's control subscriber (from this instance or another)."""
        if control.kind == USER_CHANGED and control.user_id is not None:
            self.user_changed(control.user_id)

    def user_changed(self, user_id: str) -> None:
        """The user's role changed, or the user is gone: close their sockets (joining ones
        included); the clients reconnect and get what the user may see now."""
        self.changes += 1
        for conn in list(self._by_user.get(user_id, ())):
            self._drop(conn, CLOSE_UNAUTHORIZED, "user changed: reconnect")

    def config_changed(self, old: Config, new: Config) -> None:
        """The LiveConfig listener: new token rules re-verify every open socket's token."""
        if token_rules(old.auth) != token_rules(new.auth):
            self.changes += 1
            self._schedule_recheck(roles=False)

    def _resynced(self) -> None:
        # The feed reconnected: control messages may have been lost with the events.
        self.sequencer.resync()
        self._schedule_recheck(roles=True)

    def _schedule_recheck(self, *, roles: bool) -> None:
        if not self.conns:
            return  # nobody to check; a join under way sees `changes` move and checks itself
        self._recheck_due = True
        self._recheck_roles = self._recheck_roles or roles
        if self._recheck is None:
            self._recheck = asyncio.get_running_loop().create_task(
                self._recheck_all(), name="feed-recheck"
            )

    async def _recheck_all(self) -> None:
        try:
            while self._recheck_due:
                roles, self._recheck_roles, self._recheck_due = self._recheck_roles, False, False
                await self._revalidate(list(self.conns), roles=roles)
        except Exception as exc:
            logger.warning("socket re-check failed", error=repr(exc))
        finally:
            self._recheck = None

    async def _revalidate(self, conns: list[Conn], *, roles: bool) -> None:
        """Close each of ``conns`` whose token the rules in force refuse, or (with ``roles``)
        whose user is gone or holds another role than the socket was opened for."""
        for n, conn in enumerate(conns, 1):
            if conn.closing:
                continue
            try:
                self.rt.tokens.verify(conn.token)
            except Unauthorized:
                self._drop(conn, CLOSE_UNAUTHORIZED, "token no longer accepted: reconnect")
            if n % RECHECK_BATCH == 0:
                await asyncio.sleep(0)  # thousands of signatures: let the loop breathe
        if not roles:
            return
        alive = [c for c in conns if not c.closing]
        user_ids = sorted({c.user.id for c in alive})
        found: dict[str, Any] = {}
        for start in range(0, len(user_ids), RECHECK_BATCH):
            async with self.rt.db.read() as db:
                found.update(
                    await user_store.get_users(db, user_ids[start : start + RECHECK_BATCH])
                )
        for conn in alive:
            row = found.get(conn.user.id)
            if row is None or row["role"] != conn.user.role:
                self._drop(conn, CLOSE_UNAUTHORIZED, "user changed: reconnect")

    def _drop(self, conn: Conn, code: int, reason: str) -> None:
        """Close ``conn`` from outside its handler. Safe to call while iterating the indexes:
        they change only when the closing task starts."""
        if conn.closing:
            return
        conn.closing = True
        if conn.writer is not None:
            conn.writer.cancel()
        if conn.backlog is not None:
            conn.backlog.clear()
        task = asyncio.get_running_loop().create_task(self._terminate(conn, code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _terminate(self, conn: Conn, code: int, reason: str) -> None:
        self._forget(conn)
        if code == CLOSE_TOO_SLOW:
            logger.info("feed client too slow; disconnected", user_id=conn.user.id)
        with contextlib.suppress(Exception):
            await conn.terminate(code, reason)

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
                buffer.append(event)
                if len(buffer) > self.queue_size:
                    self._drop(conn, CLOSE_TOO_SLOW, "fell behind while joining")
            if event.chat is None and event.audience is None and event.type != ev.CHAT_DELETED:
                # The hot path (messages, read marks): the chat's subscribers and the admins.
                subs = self._by_chat.get(event.chat_id)
                if subs:
                    for conn in subs:
                        if event.id > conn.floor:
                            self._push(conn, event.frame)
                for conn in self._admins:
                    if event.id > conn.floor:
                        self._push(conn, event.frame)
            else:
                for conn in self._affected(event):
                    if self._decide(conn, event):
                        self._push(conn, event.frame)

    def _affected(self, event: ev.FeedEvent) -> set[Conn]:
        """Everyone live whose view a chat event may change: subscribers, admins, the named
        participants and the explicit audience (joining sockets have it in their buffer)."""
        found = set(self._by_chat.get(event.chat_id, ()))
        found |= self._admins
        for group in (event.audience, event.chat.participants if event.chat else None):
            for user_id in group or ():
                found |= self._by_user.get(user_id, set())
        if self._pending:
            found -= self._pending
        return found

    def _decide(self, conn: Conn, event: ev.FeedEvent) -> bool:
        """Whether ``conn`` gets ``event``, updating its subscriptions on the way."""
        if event.id <= conn.floor:
            return False  # it came with the join
        if conn.is_admin:
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

    def _push(self, conn: Conn, frame: bytes) -> None:
        if not conn.closing and not conn.enqueue(frame, self.queue_size):
            self._drop(conn, CLOSE_TOO_SLOW, "too slow: reconnect with since")

    def _count(self, event_type: str) -> None:
        counter = self._event_counters.get(event_type)
        if counter is None:
            counter = self._event_counters[event_type] = self._metrics.feed_events.labels(
                event_type
            )
        counter.inc()

    # --- client frames ------------------------------------------------------------------

    def reply(self, conn: Conn, frame: bytes) -> None:
        """Answer a client frame through the queue, in order with everything else."""
        self._push(conn, frame)

    async def typing(self, conn: Conn, chat_id: int) -> None:
        """Relay that ``conn``'s user is typing in ``chat_id`` (Forbidden if they may not
        post there). Throttled silently to one per user and chat per TYPING_INTERVAL_S."""
        user = conn.user
        if not policy.RULES[policy.Role(user.role)].posts or chat_id not in conn.chats:
            raise Forbidden("you may not type in this chat")
        seen = self._typing_seen.get((user.id, chat_id))
        if seen is not None and time.monotonic() - seen < TYPING_INTERVAL_S:
            return
        frame = orjson.dumps(
            {
                "type": "typing",
                "chat_id": chat_id,
                "user": views.person(user.id, user.name, user.role),
            }
        )
        await self.rt.feed.publish_typing(Typing(chat_id, user.id, frame))

    def receive_typing(self, typing: Typing) -> None:
        # The throttle is applied where typing is received, so it holds per user across
        # instances: a second relay within the interval, from anywhere, goes no further.
        key = (typing.user_id, typing.chat_id)
        now = time.monotonic()
        seen = self._typing_seen.get(key)
        if seen is not None and now - seen < TYPING_INTERVAL_S:
            return
        self._typing_seen[key] = now
        for conn in self._by_chat.get(typing.chat_id, ()):
            if conn.user.id != typing.user_id:
                self._push(conn, typing.frame)

    def _prune_typing(self) -> None:
        cutoff = time.monotonic() - TYPING_INTERVAL_S
        for key in [k for k, seen in self._typing_seen.items() if seen < cutoff]:
            del self._typing_seen[key]
