"""Reactions over REST and on the feed (docs/api.md, docs/websocket.md): PUT and DELETE
/api/v1/messages/{id}/reactions/{emoji}, `reactions` in message objects, reaction events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from bridge.config import parse_config
from handlers.app import create_app
from store.db import Database
from tests.conftest import SERVICE_TOKEN
from tests.contract import expect_error
from tests.fakes.webhook_kit import events, outbox_jobs
from tests.world import World

THUMBS, HEART, EYES = "👍", "❤️", "👀"


@dataclass
class Pair:
    student: str
    teacher: str
    chat: int
    enrollment: Any


@pytest.fixture
async def pair(world: World) -> Pair:
    student = await world.user("student", name="Sam")
    teacher = await world.user("teacher", name="Tess")
    enrolled = await world.enroll(student, teacher)
    return Pair(student, teacher, enrolled.subject_chat["id"], enrolled)


def path(message_id: int, emoji: str) -> str:
    return f"/api/v1/messages/{message_id}/reactions/{quote(emoji, safe='')}"


async def react(world: World, user: str, message_id: int, emoji: str) -> Any:
    return await world.client.put(path(message_id, emoji), headers=world.auth(user))


async def unreact(world: World, user: str, message_id: int, emoji: str) -> Any:
    return await world.client.delete(path(message_id, emoji), headers=world.auth(user))


async def ok(resp: Any) -> None:
    assert resp.status == 204, await resp.text()


async def page(world: World, user: str, chat: int) -> list[dict[str, Any]]:
    resp = await world.client.get(f"/api/v1/chats/{chat}/messages", headers=world.auth(user))
    assert resp.status == 200
    return (await resp.json())["messages"]


async def reactions_of(world: World, user: str, chat: int, message_id: int) -> Any:
    return next(m for m in await page(world, user, chat) if m["id"] == message_id)["reactions"]


# --- the happy path --------------------------------------------------------------------------


async def test_a_reaction_shows_in_message_objects_and_on_the_event_log(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "Task 3 done")
    assert message["reactions"] == []
    since = (await events(client, world))[-1]["event_id"]

    await ok(await react(world, pair.teacher, message["id"], THUMBS))

    want = [{"emoji": THUMBS, "user_ids": [pair.teacher]}]
    assert await reactions_of(world, pair.student, pair.chat, message["id"]) == want
    [event] = await events(client, world, since)
    assert event == {
        "event_id": event["event_id"],
        "type": "reaction.added",
        "chat_id": pair.chat,
        "message_id": message["id"],
        "user_id": pair.teacher,
        "emoji": THUMBS,
    }
    # The chat list's last message carries them too.
    resp = await client.get("/api/v1/chats", headers=world.auth(pair.student))
    [chat] = (await resp.json())["chats"]
    assert chat["last_message"]["reactions"] == want

    await ok(await unreact(world, pair.teacher, message["id"], THUMBS))

    assert await reactions_of(world, pair.student, pair.chat, message["id"]) == []
    _added, removed = await events(client, world, since)
    assert removed["type"] == "reaction.removed"
    assert {k: removed[k] for k in ("message_id", "user_id", "emoji")} == {
        "message_id": message["id"],
        "user_id": pair.teacher,
        "emoji": THUMBS,
    }


async def test_repeating_changes_nothing_and_removing_what_is_not_held_is_204(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    await ok(await react(world, pair.teacher, message["id"], THUMBS))
    since = (await events(client, world))[-1]["event_id"]

    await ok(await react(world, pair.teacher, message["id"], THUMBS))
    await ok(await unreact(world, pair.teacher, message["id"], HEART))
    await ok(await unreact(world, pair.student, message["id"], THUMBS))

    assert await events(client, world, since) == []
    assert await reactions_of(world, pair.student, pair.chat, message["id"]) == [
        {"emoji": THUMBS, "user_ids": [pair.teacher]}
    ]


async def test_entries_follow_first_use_and_an_emoji_nobody_holds_disappears(
    world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    for user, emoji in (
        (pair.teacher, HEART),
        (pair.student, THUMBS),
        (pair.teacher, THUMBS),
        (pair.student, HEART),
        (pair.student, EYES),
    ):
        await ok(await react(world, user, message["id"], emoji))

    assert await reactions_of(world, pair.teacher, pair.chat, message["id"]) == [
        {"emoji": HEART, "user_ids": [pair.teacher, pair.student]},
        {"emoji": THUMBS, "user_ids": [pair.student, pair.teacher]},
        {"emoji": EYES, "user_ids": [pair.student]},
    ]

    await ok(await unreact(world, pair.teacher, message["id"], HEART))
    await ok(await unreact(world, pair.student, message["id"], HEART))
    await ok(await react(world, pair.teacher, message["id"], HEART))  # used again: now last

    assert await reactions_of(world, pair.teacher, pair.chat, message["id"]) == [
        {"emoji": THUMBS, "user_ids": [pair.student, pair.teacher]},
        {"emoji": EYES, "user_ids": [pair.student]},
        {"emoji": HEART, "user_ids": [pair.teacher]},
    ]


async def test_edited_and_repeated_messages_carry_their_reactions(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "hi", client_id="c-1")
    await ok(await react(world, pair.teacher, message["id"], THUMBS))
    want = [{"emoji": THUMBS, "user_ids": [pair.teacher]}]

    resp = await client.patch(
        f"/api/v1/messages/{message['id']}",
        json={"content": "hi again"},
        headers=world.auth(pair.student),
    )
    assert (await resp.json())["message"]["reactions"] == want
    [updated] = [e for e in await events(client, world) if e["type"] == "message.updated"]
    assert updated["message"]["reactions"] == want

    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/messages",
        json={"content": "hi", "client_id": "c-1"},
        headers=world.auth(pair.student),
    )
    assert resp.status == 200
    assert (await resp.json())["message"]["reactions"] == want


@pytest.mark.parametrize(
    "emoji",
    ["👍", "👍🏽", "❤️", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇷🇺", "1️⃣", "🧑🏿‍🤝‍🧑🏻", "🫠"],
    ids=["plain", "skin-tone", "variation", "zwj-family", "zwj-flag", "flag", "keycap",
         "zwj-skin-tones", "new"],
)  # fmt: skip
async def test_any_single_emoji_is_a_reaction(world: World, pair: Pair, emoji: str) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    await ok(await react(world, pair.student, message["id"], emoji))
    assert await reactions_of(world, pair.student, pair.chat, message["id"]) == [
        {"emoji": emoji, "user_ids": [pair.student]}
    ]


async def test_the_feed_carries_reactions_to_everyone_who_sees_the_chat(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    admin = await world.user("admin")
    sockets = {
        who: await client.ws_connect(f"/api/v1/ws?token={world.token(who)}")
        for who in (pair.student, pair.teacher, admin)
    }
    for ws in sockets.values():
        assert (await ws.receive_json(timeout=5))["type"] == "ready"

    await ok(await react(world, pair.teacher, message["id"], THUMBS))
    await ok(await unreact(world, pair.teacher, message["id"], THUMBS))

    for ws in sockets.values():
        added = await ws.receive_json(timeout=5)
        removed = await ws.receive_json(timeout=5)
        assert (added["type"], removed["type"]) == ("reaction.added", "reaction.removed")
        assert added["emoji"] == removed["emoji"] == THUMBS
        assert added["message_id"] == message["id"] and added["user_id"] == pair.teacher
        await ws.close()


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["like", "👍👍", " 👍", "a", "1", "\u200d", "👍 ", ":thumbsup:", "x" * 300],
    ids=["word", "two", "leading-space", "letter", "digit", "zwj-alone", "trailing-space",
         "shortcode", "long"],
)  # fmt: skip
async def test_anything_but_one_emoji_is_400_for_put_and_delete(
    client: TestClient, world: World, pair: Pair, text: str
) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    since = (await events(client, world))[-1]["event_id"]
    await expect_error(
        await react(world, pair.student, message["id"], text), 400, "invalid_request"
    )
    await expect_error(
        await unreact(world, pair.student, message["id"], text), 400, "invalid_request"
    )
    assert await events(client, world, since) == []


async def test_at_most_20_different_emoji_per_user_per_message(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    emoji = [chr(0x1F600 + i) for i in range(21)]
    for e in emoji[:20]:
        await ok(await react(world, pair.student, message["id"], e))
    since = (await events(client, world))[-1]["event_id"]

    await expect_error(
        await react(world, pair.student, message["id"], emoji[20]), 400, "invalid_request"
    )

    assert await events(client, world, since) == []
    await ok(await react(world, pair.student, message["id"], emoji[0]))  # held: still fine
    await ok(await react(world, pair.teacher, message["id"], emoji[20]))  # another's allowance
    await ok(await unreact(world, pair.student, message["id"], emoji[0]))
    await ok(await react(world, pair.student, message["id"], emoji[20]))  # room again


async def test_unknown_or_deleted_messages_are_404(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    resp = await client.delete(
        f"/api/v1/messages/{message['id']}", headers=world.auth(pair.student)
    )
    assert resp.status == 204
    for message_id in (message["id"], 10**9):
        await expect_error(await react(world, pair.student, message_id, THUMBS), 404, "not_found")
        await expect_error(await unreact(world, pair.student, message_id, THUMBS), 404, "not_found")
    resp = await client.put(
        "/api/v1/messages/x/reactions/%F0%9F%91%8D", headers=world.auth(pair.student)
    )
    await expect_error(resp, 404, "not_found")


async def test_an_inactive_chat_takes_no_reactions_either_way(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "hi")
    await ok(await react(world, pair.teacher, message["id"], THUMBS))
    body = pair.enrollment.body["enrollment"]
    subject = body["subject"]
    await world.enroll(
        pair.student,
        pair.teacher,
        subject=(subject["id"], subject["name"]),
        enrollment_id=pair.enrollment.enrollment_id,
        active=False,
    )
    since = (await events(client, world))[-1]["event_id"]

    await expect_error(await react(world, pair.student, message["id"], HEART), 400, "chat_inactive")
    await expect_error(
        await unreact(world, pair.teacher, message["id"], THUMBS), 400, "chat_inactive"
    )

    assert await events(client, world, since) == []
    assert await reactions_of(world, pair.student, pair.chat, message["id"]) == [
        {"emoji": THUMBS, "user_ids": [pair.teacher]}
    ]


async def test_the_order_of_checks(client: TestClient, world: World, pair: Pair) -> None:
    """401, then 404, then 403, then the emoji (400), then the chat's state (400)."""
    message = await world.post(pair.student, pair.chat, "hi")
    resp = await client.put(path(message["id"], "no"))
    await expect_error(resp, 401, "unauthorized")
    await expect_error(await react(world, pair.student, 10**9, "no"), 404, "not_found")
    outsider = await world.user("teacher")
    await expect_error(await react(world, outsider, message["id"], "no"), 403, "forbidden")
    subject = pair.enrollment.body["enrollment"]["subject"]
    await world.enroll(
        pair.student,
        pair.teacher,
        subject=(subject["id"], subject["name"]),
        enrollment_id=pair.enrollment.enrollment_id,
        active=False,
    )
    await expect_error(
        await react(world, pair.student, message["id"], "no"), 400, "invalid_request"
    )
    await expect_error(
        await react(world, pair.student, message["id"], THUMBS), 400, "chat_inactive"
    )


async def test_reactions_count_against_the_rate_limit(
    database: Database, config_data: dict[str, Any], aiohttp_client: Any
) -> None:
    config_data["limits"] = {"posts_per_minute": 3}
    client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    world = World(client, service_token=SERVICE_TOKEN)
    student, teacher = await world.user("student"), await world.user("teacher")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    message = await world.post(teacher, chat, "one of the teacher's")
    await ok(await react(world, student, message["id"], THUMBS))
    await ok(await unreact(world, student, message["id"], THUMBS))
    await ok(await react(world, student, message["id"], THUMBS))
    # Repeats change nothing and cost nothing.
    await ok(await react(world, student, message["id"], THUMBS))
    await ok(await unreact(world, student, message["id"], HEART))

    resp = await react(world, student, message["id"], HEART)
    await expect_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    await expect_error(await unreact(world, student, message["id"], THUMBS), 429, "rate_limited")
    assert await reactions_of(world, student, chat, message["id"]) == [
        {"emoji": THUMBS, "user_ids": [student]}
    ]


async def test_web_reactions_queue_one_bot_job_per_message_while_it_waits(
    database: Database, world: World, pair: Pair
) -> None:
    """(Pachca is disabled here: the jobs wait.) Many changes to one message's reactions make
    one waiting job; reactions relayed from Pachca queue none (see tests/e2e)."""
    message = await world.post(pair.student, pair.chat, "hi")
    other = await world.post(pair.student, pair.chat, "another")
    for emoji in (THUMBS, HEART, EYES):
        await ok(await react(world, pair.teacher, message["id"], emoji))
        await ok(await react(world, pair.student, message["id"], emoji))
    await ok(await unreact(world, pair.teacher, message["id"], HEART))
    await ok(await react(world, pair.student, other["id"], THUMBS))

    jobs = await outbox_jobs(database, "sync_reactions")
    assert [(j["payload"], j["status"]) for j in jobs] == [
        ({"message_id": message["id"]}, "pending"),
        ({"message_id": other["id"]}, "pending"),
    ]
