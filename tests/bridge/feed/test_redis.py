"""The Redis feed: its wire format, and instances on one channel hearing each other."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis

from bridge.feed.events import ChatMeta, FeedEvent
from bridge.feed.redis import RedisFeed, decode, encode_control, encode_events, encode_typing
from bridge.feed.transport import AUTH_CHANGED, CHAT_CHANGED, USER_CHANGED, Control, Typing
from tests.eventually import eventually

REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

EVENTS = [
    FeedEvent(1, 5, "message.created", b'{"event_id":1,"type":"message.created","chat_id":5}'),
    FeedEvent(
        2,
        5,
        "chat.updated",
        b'{"event_id":2,"type":"chat.updated","chat_id":5,"chat":{"title":"a\\nb"}}',
        frozenset({"u1", "u2"}),
        ChatMeta("forum_tutor", frozenset({"u2", "u3"})),
    ),
]
TYPING = Typing(5, "u1", b'{"type":"typing","chat_id":5,"user":{"id":"u1"}}')


def test_events_survive_the_wire_byte_for_byte():
    origin, events = decode(encode_events("me", EVENTS))
    assert origin == "me"
    assert events == EVENTS


def test_typing_survives_the_wire():
    assert decode(encode_typing("me", TYPING)) == ("me", TYPING)


@pytest.mark.parametrize(
    "control",
    [Control(USER_CHANGED, "a,b\n%_T1"), Control(AUTH_CHANGED), Control(CHAT_CHANGED, chat_id=7)],
    ids=["user", "auth", "chat"],
)
def test_control_messages_survive_the_wire(control: Control):
    assert decode(encode_control("me", control)) == ("me", control)


def test_controls_without_a_chat_keep_their_wire_format():
    # Instances of the version before chat controls read these the same as ever, and read a
    # chat's control as a kind they do not know (which they ignore).
    assert encode_control("me", Control(USER_CHANGED, "u1")) == b'{"o":"me","c":["user","u1"]}'
    assert encode_control("me", Control(CHAT_CHANGED, chat_id=7)) == (
        b'{"o":"me","c":["chat",null],"h":7}'
    )


def test_audiences_keep_odd_ids_exactly():
    odd = FeedEvent(3, 5, "chat.deleted", b"{}", frozenset({"x,y", "%", "S_", "T1", "t1"}))
    assert decode(encode_events("me", [odd]))[1] == [odd]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b'{"o":"x"}',
        b'{"o":"x","e":[[1,2,"t",null,null,null]]}',
        b'{"o":"x","c":["user",1]}',
        b'{"o":"x","c":["user","u"]}\n{}',
        b'{"o":"x","c":["chat",null],"h":"7"}',
        b'{"o":"x","c":["chat",null],"h":true}',
    ],
)
def test_malformed_messages_are_rejected(data: bytes):
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode(data)


class Inbox:
    def __init__(self) -> None:
        self.events: list[FeedEvent] = []
        self.typing: list[Typing] = []
        self.control: list[tuple[Control, bool]] = []

    def on_control(self, control: Control, remote: bool) -> None:
        self.control.append((control, remote))

    def on_events(self, events: Sequence[FeedEvent]) -> None:
        self.events.extend(events)

    def on_typing(self, typing: Typing) -> None:
        self.typing.append(typing)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RedisFeed, Inbox, RedisFeed, Inbox]]:
    probe = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await probe.ping()
    except Exception:
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (set BRIDGE_TEST_REDIS_URL)")
    finally:
        await probe.aclose()
    channel = f"bridge-test-{uuid.uuid4().hex}"
    feeds = []
    for _ in range(2):
        feed, inbox = RedisFeed(REDIS_URL, channel), Inbox()
        feed.subscribe(inbox.on_events)
        feed.subscribe_typing(inbox.on_typing)
        feed.subscribe_control(inbox.on_control)
        await feed.start()
        feeds.append((feed, inbox))
    (a, a_in), (b, b_in) = feeds
    yield a, a_in, b, b_in
    await a.stop()
    await b.stop()


async def test_instances_hear_each_other_once(pair):
    a, a_in, b, b_in = pair
    await a.publish(EVENTS)
    assert a_in.events == EVENTS  # locally at once, before any round trip
    await eventually(lambda: b_in.events == EVENTS, what="the other instance")
    await a.publish_typing(TYPING)
    await eventually(lambda: b_in.typing == [TYPING], what="typing on the other instance")
    # A's own echo was ignored: its subscribers got everything exactly once.
    await b.publish([])
    await b.publish_typing(Typing(5, "u2", b"{}"))
    await eventually(lambda: len(a_in.typing) == 2, what="typing back")
    assert a_in.events == EVENTS
    assert a_in.typing == [TYPING, Typing(5, "u2", b"{}")]


async def test_control_messages_reach_every_instance_marked_local_or_remote(pair):
    a, a_in, b, b_in = pair
    changed = Control(USER_CHANGED, "u1")
    a.publish_control(changed)
    assert a_in.control == [(changed, False)]  # locally at once
    await eventually(lambda: b_in.control == [(changed, True)], what="the other instance")
    b.publish_control(Control(AUTH_CHANGED))
    await eventually(lambda: len(a_in.control) == 2, what="the first instance")
    assert a_in.control[1] == (Control(AUTH_CHANGED), True)
    assert b_in.control == [(changed, True), (Control(AUTH_CHANGED), False)]


async def test_a_dropped_connection_resubscribes_and_asks_for_a_resync(pair):
    a, _, b, b_in = pair
    resynced: list[bool] = []
    b.on_resync(lambda: resynced.append(True))
    admin = Redis.from_url(REDIS_URL)
    try:
        clients = await admin.client_list(_type="pubsub")
        mine = [c for c in clients if c.get("name") == f"bridge-feed-{b.origin}"]
        assert len(mine) == 1
        await admin.client_kill_filter(_id=mine[0]["id"])
    finally:
        await admin.aclose()
    await eventually(lambda: resynced == [True], what="a resync")
    await a.publish(EVENTS)
    await eventually(lambda: b_in.events == EVENTS, what="events after the reconnect")


async def test_stop_returns_even_when_the_client_turns_the_cancel_into_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A publish in flight when the feed stops, in a client that answers the cancel with a
    # timeout of its own: the sender must still end, or shutdown waits for ever.
    entered = asyncio.Event()

    async def publish(self: Redis, channel: str, message: bytes) -> int:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise TimeoutError from None
        return 0

    monkeypatch.setattr(Redis, "publish", publish)
    feed = RedisFeed("redis://127.0.0.1:1/0", f"test-{uuid.uuid4().hex}")  # never connects
    sender = asyncio.create_task(feed._send())
    feed._tasks = [sender]
    feed._enqueue(b"payload")
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(feed.stop())
    done, _ = await asyncio.wait([stopping], timeout=5)
    assert done and sender.done(), "the sender kept running after stop()"
