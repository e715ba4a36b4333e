"""`reaction` webhooks (docs/pachca.md): verified like every webhook, deduplicated, checked
against the policy, and applied in the order the reactions were made, whatever order they
arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from store.db import Database
from tests.fakes.webhook_kit import (
    BOT_USER_ID,
    TEACHER_PACHCA_ID,
    TUTOR_PACHCA_ID,
    Forum,
    build_forum,
    chat_messages,
    counts,
    deliver,
    deliver_ok,
    events,
    next_message_id,
    pachca_section,
)
from tests.fakes.webhooks import reaction_event
from tests.world import World

pytestmark = pytest.mark.config_sections(pachca=pachca_section())

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
THUMBS = "👍"


async def relayed(client: TestClient, forum: Forum) -> int:
    """A teacher's message relayed from the thread; its Pachca id."""
    pachca_id = next_message_id()
    await deliver_ok(client, forum.teacher_says("Well done", id=pachca_id))
    return pachca_id


def reaction(
    forum: Forum,
    message_id: int,
    event: str = "new",
    *,
    at: datetime = T0,
    code: str = THUMBS,
    user_id: int = TEACHER_PACHCA_ID,
    **fields: Any,
) -> dict[str, Any]:
    fields.setdefault("chat_id", forum.thread_chat_id)
    return reaction_event(
        event,  # type: ignore[arg-type]
        message_id=message_id,
        code=code,
        user_id=user_id,
        created_at=at,
        **fields,
    )


async def held(world: World, forum: Forum) -> list[Any]:
    [message] = await chat_messages(world, forum.student, forum.subject_chat)
    return message["reactions"]


async def reaction_events(client: TestClient, world: World) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["user_id"], e["emoji"])
        for e in await events(client, world)
        if e["type"].startswith("reaction.")
    ]


async def test_a_reaction_is_relayed_once_however_often_it_arrives(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    message = await relayed(client, forum)

    for _ in range(3):
        await deliver_ok(client, reaction(forum, message))  # a fresh webhook_timestamp each

    assert await held(world, forum) == [{"emoji": THUMBS, "user_ids": [forum.teacher]}]
    assert await reaction_events(client, world) == [("reaction.added", forum.teacher, THUMBS)]
    before = await counts(database)
    await deliver_ok(client, reaction(forum, message, "delete"))
    await deliver_ok(client, reaction(forum, message, "delete"))
    assert await held(world, forum) == []
    after = await counts(database)
    # One key and one event per distinct Pachca event; nothing for the bot to do.
    assert (after["webhook_deliveries"], after["events"], after["outbox"]) == (
        before["webhook_deliveries"] + 1,
        before["events"] + 1,
        before["outbox"],
    )


async def test_an_unsigned_reaction_is_refused(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    message = await relayed(client, forum)
    before = await counts(database)
    resp = await deliver(client, reaction(forum, message), secret="not-the-secret")
    assert resp.status == 401
    assert await counts(database) == before


async def test_a_delete_that_overtook_its_new_wins(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    message = await relayed(client, forum)

    await deliver_ok(client, reaction(forum, message, "delete"))
    await deliver_ok(client, reaction(forum, message, "new"))

    assert await held(world, forum) == []
    assert await reaction_events(client, world) == []


async def test_a_late_delete_does_not_undo_a_later_reaction(
    client: TestClient, world: World, database: Database
) -> None:
    """Made at T0, taken back, made again at T1: the events arrive as new(T0), new(T1),
    delete(T0). The reaction made at T1 stands; its own delete takes it away."""
    forum = await build_forum(world, database)
    message = await relayed(client, forum)
    later = T0 + timedelta(seconds=5)

    await deliver_ok(client, reaction(forum, message, "new", at=T0))
    await deliver_ok(client, reaction(forum, message, "new", at=later))
    await deliver_ok(client, reaction(forum, message, "delete", at=T0))

    assert await held(world, forum) == [{"emoji": THUMBS, "user_ids": [forum.teacher]}]
    await deliver_ok(client, reaction(forum, message, "delete", at=later))
    assert await held(world, forum) == []
    assert await reaction_events(client, world) == [
        ("reaction.added", forum.teacher, THUMBS),
        ("reaction.removed", forum.teacher, THUMBS),
    ]


async def test_a_reaction_without_a_chat_id_still_finds_its_message(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    message = await relayed(client, forum)
    await deliver_ok(client, reaction(forum, message, chat_id=None))
    assert await held(world, forum) == [{"emoji": THUMBS, "user_ids": [forum.teacher]}]


@pytest.mark.parametrize(
    "case",
    [
        "bot",
        "unlinked",
        "tutor_in_subject_thread",
        "custom_emoji",
        "unknown_message",
        "deleted_message",
        "inactive_chat",
        "out_of_range",
    ],
)
async def test_reactions_that_are_not_relayed(
    client: TestClient, world: World, database: Database, case: str
) -> None:
    forum = await build_forum(world, database)
    message = await relayed(client, forum)
    body = reaction(forum, message)
    if case == "bot":
        body["user_id"] = BOT_USER_ID
    elif case == "unlinked":
        body["user_id"] = 7777
    elif case == "tutor_in_subject_thread":
        body["user_id"] = TUTOR_PACHCA_ID
    elif case == "custom_emoji":
        body["code"] = "partyparrot"
    elif case == "unknown_message":
        body["message_id"] = 424_242
    elif case == "deleted_message":
        await deliver_ok(client, forum.teacher_says(id=message, event="delete"))
    elif case == "inactive_chat":
        resp = await client.put(
            f"/api/v1/enrollments/{forum.enrollment_id}",
            json={
                "student_id": forum.student,
                "teacher_id": forum.teacher,
                "subject": {"id": "s", "name": "S"},
                "active": False,
            },
            headers=world.service,
        )
        assert resp.status == 200
    elif case == "out_of_range":
        body["message_id"] = 2**63
    since = (await events(client, world))[-1]["event_id"]

    await deliver_ok(client, body)

    assert await events(client, world, since) == []
    if case != "deleted_message":
        assert await held(world, forum) == []


async def test_at_most_20_different_emoji_from_pachca_too(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    message = await relayed(client, forum)
    emoji = [chr(0x1F600 + i) for i in range(21)]
    for e in emoji:
        await deliver_ok(client, reaction(forum, message, code=e))
    [entries] = [await held(world, forum)]
    assert [e["emoji"] for e in entries] == emoji[:20]
