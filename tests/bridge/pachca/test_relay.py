"""Pachca -> forum, end to end: signed webhooks in, forum messages and feed events out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from store.db import Database
from store.models import Message, OutboxJob
from tests.fakes.webhook_kit import (
    BOT_USER_ID,
    STUDENT_PACHCA_ID,
    TEACHER_PACHCA_ID,
    TUTOR_PACHCA_ID,
    Forum,
    build_forum,
    chat_messages,
    counts,
    deliver_ok,
    events,
    message_rows,
    next_message_id,
    outbox_jobs,
    pachca_section,
)
from tests.fakes.webhooks import iso, message_event
from tests.world import World

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


pytestmark = pytest.mark.config_sections(pachca=pachca_section())


@pytest.fixture
async def forum(world: World, database: Database) -> Forum:
    return await build_forum(world, database)


async def contents(world: World, forum: Forum, chat_id: int | None = None) -> list[str]:
    messages = await chat_messages(world, forum.student, chat_id or forum.subject_chat)
    return [m["content"] for m in messages]


async def test_teacher_reply_reaches_the_students_chat(
    client: TestClient, world: World, forum: Forum
) -> None:
    since = (await events(client, world))[-1]["event_id"]
    pachca_id = next_message_id()
    await deliver_ok(
        client, forum.teacher_says("Check exercise 4 again", id=pachca_id, created_at=T0)
    )

    [message] = await chat_messages(world, forum.student, forum.subject_chat)
    assert message["content"] == "Check exercise 4 again"
    assert message["source"] == "pachca"
    assert message["sender"] == {"id": forum.teacher, "name": "Tom Teacher", "role": "teacher"}
    assert message["created_at"] == T0.isoformat()
    assert message["edited_at"] is None
    assert message["client_id"] is None  # only web clients give one
    # The feed carries the same message object the REST list shows.
    [event] = await events(client, world, since)
    assert event["type"] == "message.created"
    assert event["chat_id"] == forum.subject_chat
    assert event["message"] == message
    chat = await client.get(
        f"/api/v1/chats/{forum.subject_chat}", headers=world.auth(forum.student)
    )
    assert (await chat.json())["chat"]["last_message"]["id"] == message["id"]


async def test_teacher_reply_reaches_the_students_websocket(
    client: TestClient, world: World, forum: Forum
) -> None:
    ws = await client.ws_connect(f"/api/v1/ws?token={world.token(forum.student)}")
    try:
        ready = await ws.receive_json(timeout=10)
        assert ready["type"] == "ready"
        await deliver_ok(client, forum.teacher_says("Live from Pachca"))
        frame = await ws.receive_json(timeout=10)
    finally:
        await ws.close()
    assert frame["type"] == "message.created"
    assert frame["chat_id"] == forum.subject_chat
    assert (frame["message"]["content"], frame["message"]["source"]) == (
        "Live from Pachca",
        "pachca",
    )


async def test_the_same_event_three_times_makes_one_message(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    before = await counts(database)
    body = forum.teacher_says("Once only")
    for _ in range(3):
        await deliver_ok(client, {**body})
    assert await contents(world, forum) == ["Once only"]
    after = await counts(database)
    assert after["messages"] == before["messages"] + 1
    assert after["events"] == before["events"] + 1
    assert after["webhook_deliveries"] == before["webhook_deliveries"] + 1
    # One job reads it for files (copy_files); a Pachca message is never posted back.
    assert after["outbox"] == before["outbox"] + 1


async def test_a_late_older_edit_does_not_overwrite_a_newer_one(
    client: TestClient, world: World, forum: Forum
) -> None:
    pachca_id = next_message_id()
    await deliver_ok(client, forum.teacher_says("v0", id=pachca_id, created_at=T0))
    newer = T0 + timedelta(minutes=2)
    older = T0 + timedelta(minutes=1)
    common = {"id": pachca_id, "created_at": T0, "event": "update"}
    await deliver_ok(client, forum.teacher_says("v2", changed_at=newer, **common))
    await deliver_ok(client, forum.teacher_says("v1", changed_at=older, **common))

    [message] = await chat_messages(world, forum.student, forum.subject_chat)
    assert message["content"] == "v2"
    assert message["edited_at"] == newer.isoformat()
    updates = [e for e in await events(client, world) if e["type"] == "message.updated"]
    assert [e["message"]["content"] for e in updates] == ["v2"]


async def test_edits_in_order_are_mirrored(client: TestClient, world: World, forum: Forum) -> None:
    pachca_id = next_message_id()
    await deliver_ok(client, forum.teacher_says("v0", id=pachca_id, created_at=T0))
    for n in (1, 2):
        changed = T0 + timedelta(minutes=n)
        body = forum.teacher_says(
            f"v{n}", id=pachca_id, event="update", created_at=T0, changed_at=changed
        )
        await deliver_ok(client, body)
    assert await contents(world, forum) == ["v2"]


async def test_an_update_before_its_new_event_stands_for_it(
    client: TestClient, world: World, forum: Forum
) -> None:
    since = (await events(client, world))[-1]["event_id"]
    pachca_id = next_message_id()
    edited = T0 + timedelta(minutes=1)
    await deliver_ok(
        client,
        forum.teacher_says(
            "edited", id=pachca_id, event="update", created_at=T0, changed_at=edited
        ),
    )
    await deliver_ok(client, forum.teacher_says("first", id=pachca_id, created_at=T0))
    [message] = await chat_messages(world, forum.student, forum.subject_chat)
    assert message["content"] == "edited"
    assert message["edited_at"] == edited.isoformat()
    [created] = await events(client, world, since)
    assert created["type"] == "message.created" and created["message"] == message


async def test_delete_is_mirrored_and_last_message_recomputed(
    client: TestClient, world: World, forum: Forum
) -> None:
    first, second = next_message_id(), next_message_id()
    await deliver_ok(client, forum.teacher_says("stays", id=first, created_at=T0))
    await deliver_ok(client, forum.teacher_says("goes", id=second, created_at=T0))
    [kept, gone] = await chat_messages(world, forum.student, forum.subject_chat)

    delete = forum.teacher_says("goes", id=second, event="delete", created_at=T0)
    for _ in range(2):  # redelivered: still one deletion
        await deliver_ok(client, delete)

    assert await chat_messages(world, forum.student, forum.subject_chat) == [kept]
    chat = await client.get(
        f"/api/v1/chats/{forum.subject_chat}", headers=world.auth(forum.student)
    )
    assert (await chat.json())["chat"]["last_message"]["id"] == kept["id"]
    deletions = [e for e in await events(client, world) if e["type"] == "message.deleted"]
    assert [e["message_id"] for e in deletions] == [gone["id"]]


async def test_tutor_reply_in_a_subject_thread_is_refused(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    before = await counts(database)
    await deliver_ok(client, forum.teacher_says("I am not your teacher", user_id=TUTOR_PACHCA_ID))
    assert await contents(world, forum) == []
    assert (await counts(database))["messages"] == before["messages"]
    # In the tutor's own thread the same person is relayed.
    body = forum.teacher_says("Tutor here", user_id=TUTOR_PACHCA_ID)
    body["chat_id"] = forum.tutor_thread_chat_id
    await deliver_ok(client, body)
    assert await contents(world, forum, forum.tutor_chat) == ["Tutor here"]


async def test_unlinked_pachca_user_is_refused(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    before = await counts(database)
    await deliver_ok(client, forum.teacher_says("Who am I?", user_id=424242))
    assert await contents(world, forum) == []
    assert (await counts(database))["messages"] == before["messages"]


async def test_bot_echo_is_dropped(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    before = await counts(database)
    for content in ("A student's message, relayed by the bot", "/help"):
        await deliver_ok(client, forum.teacher_says(content, user_id=BOT_USER_ID))
    assert await contents(world, forum) == []
    assert await counts(database) == before  # not even a delivery key, nor an answer


async def test_echo_of_a_relayed_web_message_is_dropped(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    web = await world.post(forum.student, forum.subject_chat, "My homework")
    pachca_id = next_message_id()
    async with database.write() as conn:  # what the outbox records after posting it
        await conn.run(
            update(Message.__table__)
            .where(Message.__table__.c.id == web["id"])
            .values(pachca_message_id=pachca_id)
        )
    # The student has a Pachca account too, and the echo claims to be theirs: only the known
    # message id can tell it is the bridge's own copy.
    await world.put_user(
        forum.student,
        role="student",
        name="Sam Student",
        tutor_id=forum.tutor,
        pachca_user_id=STUDENT_PACHCA_ID,
    )
    since = (await events(client, world))[-1]["event_id"]
    for event, content in (("new", "My homework"), ("update", "changed"), ("delete", "")):
        body = forum.teacher_says(
            content,
            id=pachca_id,
            event=event,
            user_id=STUDENT_PACHCA_ID,
            created_at=T0,
            changed_at=T0 + timedelta(hours=1),
        )
        await deliver_ok(client, body)
    [message] = await chat_messages(world, forum.student, forum.subject_chat)
    assert (message["id"], message["content"], message["source"]) == (
        web["id"],
        "My homework",
        "web",
    )
    assert await events(client, world, since) == []


async def test_teacher_reply_to_a_web_message_keeps_the_reply_link(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    web = await world.post(forum.student, forum.subject_chat, "Question")
    pachca_id = next_message_id()
    async with database.write() as conn:
        await conn.run(
            update(Message.__table__)
            .where(Message.__table__.c.id == web["id"])
            .values(pachca_message_id=pachca_id)
        )
    await deliver_ok(client, forum.teacher_says("Answer", parent_message_id=pachca_id))
    [_, answer] = await chat_messages(world, forum.student, forum.subject_chat)
    assert answer["reply_to_id"] == web["id"]


async def test_file_only_message_waits_for_the_copy_of_its_files(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    # Its files are copied by an outbox job, which creates the message (tests/e2e).
    await deliver_ok(client, forum.teacher_says(""))
    assert await contents(world, forum) == []
    async with database.read() as conn:
        jobs = await conn.rows(select(OutboxJob.__table__))
    [copy] = [j for j in jobs if j["kind"] == "copy_files"]
    assert copy["payload"]["create"]["sender_id"] == forum.teacher


async def test_inactive_chat_takes_no_pachca_messages(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    enrollment = f"/api/v1/enrollments/{forum.enrollment_id}"
    body = (await (await client.get(enrollment, headers=world.service)).json())["enrollment"]
    put = {
        "student_id": body["student_id"],
        "teacher_id": body["teacher_id"],
        "subject": body["subject"],
        "active": False,
    }
    resp = await client.put(enrollment, json=put, headers=world.service)
    assert resp.status == 200
    await deliver_ok(client, forum.teacher_says("Too late"))
    assert await contents(world, forum) == []


async def test_messages_in_unmapped_chats_and_plain_direct_messages_are_dropped(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    before = await counts(database)
    await deliver_ok(client, forum.teacher_says("Elsewhere", chat_id=123_456))
    await deliver_ok(
        client,
        message_event(
            id=next_message_id(),
            entity_type="user",
            entity_id=BOT_USER_ID,
            chat_id=700_001,
            user_id=TEACHER_PACHCA_ID,
            content="hello bot",
        ),
    )
    after = await counts(database)
    assert (after["messages"], after["outbox"]) == (before["messages"], before["outbox"])
    assert await contents(world, forum) == []


async def test_edit_by_someone_other_than_the_author_is_dropped(
    client: TestClient, world: World, forum: Forum
) -> None:
    pachca_id = next_message_id()
    await deliver_ok(client, forum.teacher_says("mine", id=pachca_id, created_at=T0))
    body = forum.teacher_says(
        "hijacked",
        id=pachca_id,
        event="update",
        user_id=TUTOR_PACHCA_ID,
        created_at=T0,
        changed_at=T0 + timedelta(minutes=1),
    )
    await deliver_ok(client, body)
    assert await contents(world, forum) == ["mine"]


async def test_values_the_database_cannot_hold_are_acknowledged_not_stored(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    before = await counts(database)
    await deliver_ok(client, forum.teacher_says("huge id", id=2**63))
    await deliver_ok(client, forum.teacher_says("odd time", created_at="0001-01-01T00:00:00+05:00"))
    assert await counts(database) == before


async def test_created_at_in_the_future_is_clamped_to_now(
    client: TestClient, world: World, database: Database, forum: Forum
) -> None:
    await deliver_ok(
        client,
        forum.teacher_says("from the future", created_at=iso(datetime(2999, 1, 1, tzinfo=UTC))),
    )
    [row] = await message_rows(database)
    assert row["created_at"] <= datetime.now(UTC)
    assert await outbox_jobs(database, "send_text") == []
