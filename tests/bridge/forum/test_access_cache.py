"""Chats' access kept per instance (bridge/forum/access_cache.py): what is kept, for how long,
and what drops it - a chat's control message, a feed resync, a full cache - with a clock the
test moves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.errors import NotFound
from bridge.feed.transport import CHAT_CHANGED, USER_CHANGED, Control, MemoryFeed
from bridge.forum import access_cache
from bridge.forum.access_cache import AccessCache
from bridge.services import forget_changed_chats
from store.db import Database
from tests.world import World


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(database: Database, clock: Clock, client: TestClient) -> AccessCache:
    # client: the app has migrated the database before the test reads it.
    return AccessCache(database, ttl_s=5.0, clock=clock)


@pytest.fixture
def reads(count_queries: Callable[[], Any]) -> Callable[[], int]:
    """How many statements the cache sent to the database since the last call."""
    counter = count_queries()

    def taken() -> int:
        n = counter.count
        counter.reset()
        return n

    return taken


async def two_chats(world: World) -> tuple[str, str, str, int, int]:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    assert enrolled.tutor_chat is not None
    return student, teacher, tutor, enrolled.subject_chat["id"], enrolled.tutor_chat["id"]


async def test_a_chat_is_read_once_and_kept_for_ttl_seconds(
    world: World, cache: AccessCache, clock: Clock, reads: Callable[[], int]
) -> None:
    student, teacher, _tutor, chat_id, _ = await two_chats(world)
    reads()
    rights = await cache.get(chat_id)
    assert reads() == 1
    assert (rights.id, rights.type, rights.is_active) == (chat_id, "forum_subject", True)
    assert dict(rights.roles) == {student: "student", teacher: "teacher"}

    clock.now += 4.9
    assert await cache.get(chat_id) == rights
    assert chat_id in cache
    assert reads() == 0

    clock.now += 0.1  # 5 s after the read: expired
    assert chat_id not in cache
    assert await cache.get(chat_id) == rights
    assert reads() == 1


async def test_unknown_chats_are_never_kept(
    world: World, cache: AccessCache, reads: Callable[[], int]
) -> None:
    await two_chats(world)
    reads()
    for _ in range(2):
        with pytest.raises(NotFound):
            await cache.get(10**9)
        assert reads() == 1
    assert len(cache) == 0


async def test_forget_drops_one_chat_and_clear_drops_all(
    world: World, cache: AccessCache, reads: Callable[[], int]
) -> None:
    _student, _teacher, _tutor, subject_chat, tutor_chat = await two_chats(world)
    await cache.get(subject_chat)
    await cache.get(tutor_chat)
    reads()
    cache.forget(subject_chat)
    assert subject_chat not in cache and tutor_chat in cache
    await cache.get(subject_chat)
    await cache.get(tutor_chat)
    assert reads() == 1
    cache.clear()
    assert len(cache) == 0
    await cache.get(subject_chat)
    await cache.get(tutor_chat)
    assert reads() == 2


async def test_a_read_that_spans_a_change_is_not_kept(
    world: World, cache: AccessCache, reads: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The read may have seen the chat as it was before the change: it answers this request,
    # but is not kept for the next.
    _student, _teacher, _tutor, subject_chat, tutor_chat = await two_chats(world)
    load = access_cache.load_rights

    async def change_meanwhile(conn: Any, chat_id: int) -> Any:
        rights = await load(conn, chat_id)
        cache.forget(tutor_chat)  # any chat's change told while the read is under way
        return rights

    monkeypatch.setattr(access_cache, "load_rights", change_meanwhile)
    await cache.get(subject_chat)
    assert subject_chat not in cache
    monkeypatch.setattr(access_cache, "load_rights", load)
    reads()
    await cache.get(subject_chat)
    await cache.get(subject_chat)
    assert reads() == 1


async def test_the_cache_is_capped(world: World, cache: AccessCache) -> None:
    _student, _teacher, _tutor, subject_chat, tutor_chat = await two_chats(world)
    other = (await world.enroll(*(await two_chats(world))[:2])).subject_chat["id"]
    cache.MAX_ENTRIES = 2
    for chat_id in (subject_chat, tutor_chat, other):
        await cache.get(chat_id)
        assert len(cache) <= 2
    assert other in cache


async def test_the_feed_drops_a_changed_chat_and_a_resync_drops_all(
    world: World, cache: AccessCache
) -> None:
    _student, _teacher, _tutor, subject_chat, tutor_chat = await two_chats(world)
    feed = MemoryFeed()
    forget_changed_chats(feed, cache)
    await cache.get(subject_chat)
    await cache.get(tutor_chat)

    feed.publish_control(Control(USER_CHANGED, "someone"))
    feed.publish_control(Control(CHAT_CHANGED))  # no chat named: nothing to drop
    assert subject_chat in cache and tutor_chat in cache
    feed.publish_control(Control(CHAT_CHANGED, chat_id=subject_chat))
    assert subject_chat not in cache and tutor_chat in cache

    await cache.get(subject_chat)
    feed._resynced()  # the backend may have lost control messages
    assert len(cache) == 0
