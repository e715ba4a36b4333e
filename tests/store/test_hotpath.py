"""The raw-driver write path of a web message: same rows as Core would write, all or nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from store import forum, migrate, users
from store.db import Database
from store.hotpath import Conflict, HotPath
from store.models import Chat, Event, Message, OutboxJob
from store.outbox import chat_lane

NOW = datetime(2026, 11, 25, 8, 30, 15, 123456, tzinfo=UTC)


async def seed(db: Database) -> int:
    await migrate.upgrade(db)
    async with db.write() as conn:
        for uid, role in (("s", "student"), ("t", "teacher")):
            await users.upsert_user(
                conn,
                {
                    "id": uid,
                    "role": role,
                    "name": uid,
                    "email": None,
                    "pachca_user_id": None,
                    "tutor_id": None,
                    "children": None,
                },
                NOW,
            )
        await forum.insert_enrollment(
            conn,
            {
                "id": "e",
                "student_id": "s",
                "teacher_id": "t",
                "subject_id": "m",
                "subject_name": "M",
                "active": True,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
        return await forum.insert_chat(
            conn,
            {
                "enrollment_id": "e",
                "type": "forum_subject",
                "title": "t",
                "subject_id": "m",
                "subject_name": "M",
                "is_active": True,
                "created_at": NOW,
                "last_activity_at": NOW,
            },
        )


def post(chat_id: int, client_id: str | None = None) -> tuple[dict, dict, dict]:
    message = {
        "chat_id": chat_id,
        "sender_id": "s",
        "content": "Привет 👋\n\t",
        "created_at": NOW,
        "reply_to_id": None,
        "source": "web",
        "client_id": client_id,
    }
    outbox = {
        "chat_id": chat_id,
        "lane": chat_lane(chat_id),
        "kind": "post_message",
        "payload": {},
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": NOW,
        "created_at": NOW,
        "updated_at": NOW,
    }
    event = {"chat_id": chat_id, "type": "message.created", "audience": None, "created_at": NOW}
    return message, outbox, event


async def count(db: Database, model: type) -> int:
    async with db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(model.__table__))).scalar_one()


async def test_write_stores_what_core_reads_back(database: Database) -> None:
    chat_id = await seed(database)
    message_id, event_id = await HotPath(database).write_post(
        *post(chat_id), payload_for=lambda mid: f'{{"id":{mid}}}'
    )
    async with database.read() as conn:
        msg = (await conn.execute(select(Message.__table__))).mappings().one()
        chat = (await conn.execute(select(Chat.__table__))).mappings().one()
        job = (await conn.execute(select(OutboxJob.__table__))).mappings().one()
        event = (await conn.execute(select(Event.__table__))).mappings().one()
    assert msg["id"] == message_id and msg["content"] == "Привет 👋\n\t"
    assert msg["created_at"] == NOW
    assert (chat["last_message_id"], chat["last_activity_at"]) == (message_id, NOW)
    assert job["payload"] == {"message_id": message_id} and job["kind"] == "post_message"
    assert job["next_attempt_at"] == NOW
    assert event["id"] == event_id and event["payload"] == f'{{"id":{message_id}}}'


async def test_constraint_failure_writes_nothing(database: Database) -> None:
    chat_id = await seed(database)
    writer = HotPath(database)
    await writer.write_post(*post(chat_id, client_id="c1"), payload_for=lambda _: "{}")
    with pytest.raises(Conflict):
        await writer.write_post(*post(chat_id, client_id="c1"), payload_for=lambda _: "{}")
    with pytest.raises(Conflict):  # the chat is gone
        await writer.write_post(*post(chat_id + 1000), payload_for=lambda _: "{}")
    assert await count(database, Message) == 1
    assert await count(database, OutboxJob) == 1
    assert await count(database, Event) == 1


async def test_concurrent_posts_commit_together_and_a_refused_one_spares_the_rest(
    database: Database,
) -> None:
    chat_id = await seed(database)
    writer = HotPath(database)
    posts = [post(chat_id, client_id=f"c{i}") for i in range(20)]
    posts.append(post(chat_id, client_id="c7"))  # the same client_id again: refused

    results = await asyncio.gather(
        *(writer.write_post(*p, payload_for=lambda mid: f'{{"id":{mid}}}') for p in posts),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, Conflict)]
    written = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) == 1 and len(written) == 20
    assert len({m for m, _ in written}) == 20 and len({e for _, e in written}) == 20
    assert await count(database, Message) == 20
    assert await count(database, OutboxJob) == 20
    assert await count(database, Event) == 20
    async with database.read() as conn:
        events = (await conn.execute(select(Event.__table__))).mappings().all()
    # Each event carries its own message's id.
    assert {e["payload"] for e in events} == {f'{{"id":{m}}}' for m, _ in written}


async def test_a_replaced_connection_is_looked_up_again(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite's single shared connection only")
    chat_id = await seed(database)
    writer = HotPath(database)
    await writer.write_post(*post(chat_id), payload_for=lambda _: "{}")
    # The pool drops its connection (as after a disk error) and opens a new one.
    async with database.sqlite_turn() as raw:
        raw.close()
    with pytest.raises(OperationalError):
        await writer.write_post(*post(chat_id), payload_for=lambda _: "{}")
    await database.engine.dispose()

    await writer.write_post(*post(chat_id), payload_for=lambda _: "{}")
    assert await count(database, Message) == 2
