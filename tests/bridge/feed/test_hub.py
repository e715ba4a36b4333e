"""The hub's join: replay and live stream meet with no gap and no duplicate, even when events
are published in the middle of a join or long after their commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from bridge.auth import Principal
from bridge.feed.connection import CloseReason, Conn
from bridge.feed.events import FeedEvent
from bridge.feed.hub import Hub
from handlers.keys import SERVICES
from handlers.ws import CLOSE_CODES
from store import events as event_log
from tests.eventually import eventually, log_settled
from tests.world import World


class FakeConn(Conn):
    """A connection that records what it was sent."""

    __slots__ = ("closed", "frames")

    def __init__(self, user: Principal):
        super().__init__(user)
        self.frames: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def transmit(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))

    async def terminate(self, reason: CloseReason, message: str) -> None:
        self.closed = CLOSE_CODES[reason]  # the code the WebSocket edge would send


async def flushed(conn: FakeConn) -> list[dict[str, Any]]:
    """The frames, once the writer has nothing left to send."""
    await eventually(lambda: conn.writer is None and not conn.backlog, what="the writer to finish")
    return conn.frames


async def append_unpublished(client: TestClient, chat_id: int, text: str) -> FeedEvent:
    """Commit an event without publishing it (yet): a publisher that is slow after commit."""
    rt = client.server.app[SERVICES].rt
    async with rt.db.write() as conn:
        return await rt.events.append(
            conn, "message.created", chat_id, {"message": {"content": text}}, datetime.now(UTC)
        )


async def setup_chat(world: World) -> tuple[Principal, int]:
    student = await world.user("student", name="S")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    return Principal(student, "student", "S"), chat_id


async def test_an_event_published_late_is_not_sent_twice(client: TestClient, world: World):
    hub: Hub = client.server.app[SERVICES].hub
    rt = client.server.app[SERVICES].rt
    student, chat_id = await setup_chat(world)
    before = await append_unpublished(client, chat_id, "before")
    late = await append_unpublished(client, chat_id, "late")
    await rt.publish([before])

    conn = FakeConn(student)
    await hub.join(conn, since=before.id, expires_at=None)
    await rt.publish([late])  # its publisher finally gets round to it, after the join
    frames = await flushed(conn)
    assert [f.get("event_id") for f in frames] == [late.id, None]  # replayed once, then ready
    assert frames[1]["type"] == "ready"
    assert frames[1]["last_event_id"] == late.id
    hub.leave(conn)


async def test_an_event_published_during_the_join_follows_ready(
    client: TestClient, world: World, monkeypatch: Any
):
    hub: Hub = client.server.app[SERVICES].hub
    rt = client.server.app[SERVICES].rt
    student, chat_id = await setup_chat(world)
    start = await append_unpublished(client, chat_id, "start")
    await rt.publish([start])
    replay = hub.history.replay
    during: list[FeedEvent] = []

    async def replay_while_someone_posts(*args: Any, **kwargs: Any) -> Any:
        # After the join has read the log head, before it goes live.
        during.append(await append_unpublished(client, chat_id, "during"))
        await rt.publish(during)
        return await replay(*args, **kwargs)

    monkeypatch.setattr(hub.history, "replay", replay_while_someone_posts)
    conn = FakeConn(student)
    await hub.join(conn, since=start.id - 1, expires_at=None)
    frames = await flushed(conn)
    assert [(f["type"], f.get("event_id")) for f in frames] == [
        ("message.created", start.id),
        ("ready", None),
        ("message.created", during[0].id),
    ]
    hub.leave(conn)


async def test_a_socket_that_cannot_keep_up_is_dropped_alone(client: TestClient, world: World):
    hub: Hub = client.server.app[SERVICES].hub
    hub.queue_size = 3
    student, chat_id = await setup_chat(world)
    stuck = asyncio.Event()

    class Stalled(FakeConn):
        __slots__ = ()

        async def transmit(self, frame: bytes) -> None:
            await stuck.wait()  # a peer that stopped reading

    slow, fast = Stalled(student), FakeConn(student)
    for conn in (slow, fast):
        await hub.join(conn, since=None, expires_at=None)
    posts = 8
    for i in range(posts):
        await world.post(student.id, chat_id, f"m{i}")
        await flushed(fast)
    await eventually(lambda: slow.closed is not None, what="the slow socket to be closed")
    assert slow.closed == 4408
    assert slow not in hub.conns
    frames = await flushed(fast)
    assert len([f for f in frames if f["type"] == "message.created"]) == posts
    assert fast.closed is None
    hub.leave(fast)
    stuck.set()


async def test_a_client_far_behind_catches_up_while_posts_keep_coming(
    client: TestClient, world: World
):
    # The send queue holds 3; the client missed 40 events, and for every two frames it reads
    # someone posts another. Joining keeps reading the log until it reaches the head, rather
    # than closing the socket (4408) when more than 3 live events pile up meanwhile.
    hub: Hub = client.server.app[SERVICES].hub
    hub.queue_size = 3
    student, chat_id = await setup_chat(world)
    start = await world.post(student.id, chat_id, "start")
    posted = [(await world.post(student.id, chat_id, f"missed {i}"))["id"] for i in range(40)]
    ready = asyncio.Event()

    class UnderLoad(FakeConn):
        __slots__ = ()

        async def transmit(self, frame: bytes) -> None:
            await super().transmit(frame)
            if not ready.is_set() and len(self.frames) % 2 == 0:
                posted.append((await world.post(student.id, chat_id, "live"))["id"])
            if self.frames[-1]["type"] == "ready":
                ready.set()

    conn = UnderLoad(student)
    since = await first_event_of(client, start["id"])
    await hub.join(conn, since=since, expires_at=None)
    assert conn.closed is None
    frames = await flushed(conn)
    assert conn.closed is None
    assert any(f["type"] == "ready" for f in frames)
    messages = [f for f in frames if f["type"] == "message.created"]
    assert [f["message"]["id"] for f in messages] == posted  # in order, once each, no gap
    ids = [f["event_id"] for f in messages]
    assert ids == sorted(set(ids))
    hub.leave(conn)


async def first_event_of(client: TestClient, message_id: int) -> int:
    """The id of the event that created ``message_id``."""
    rt = client.server.app[SERVICES].rt
    await log_settled(rt.db)
    async with rt.db.read() as conn:
        rows = await event_log.after(conn, 0, limit=10_000)
    return next(
        r["id"]
        for r in rows
        if r["type"] == "message.created"
        and orjson.loads(r["payload"])["message"]["id"] == message_id
    )


async def test_live_events_committed_out_of_order_reach_sockets_in_order(
    client: TestClient, world: World
):
    # PostgreSQL: the writer holding the smaller event id commits last, and its publish is
    # lost. The later event waits (the log's head stays below the open transaction), then the
    # earlier one is read from the log and both go out in id order.
    rt = client.server.app[SERVICES].rt
    if rt.db.is_sqlite:
        pytest.skip("SQLite has one writer: ids commit in order")
    hub: Hub = client.server.app[SERVICES].hub
    student, chat_id = await setup_chat(world)
    conn = FakeConn(student)
    await hub.join(conn, since=None, expires_at=None)
    block = rt.db.write()
    open_tx = await block.__aenter__()
    early = await rt.events.append(
        open_tx, "message.created", chat_id, {"message": {"content": "early"}}, datetime.now(UTC)
    )
    late = await append_unpublished(client, chat_id, "late")
    await rt.publish([late])
    await asyncio.sleep(0.3)  # several gap fills' time: none may give up on `early`
    assert [f.get("event_id") for f in conn.frames if f["type"] != "ready"] == []
    await block.__aexit__(None, None, None)  # committed; its publish never comes

    await eventually(lambda: len(conn.frames) >= 3, what="both events")
    assert [f.get("event_id") for f in conn.frames if f["type"] != "ready"] == [early.id, late.id]
    hub.leave(conn)
