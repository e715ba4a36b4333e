"""Helpers for the Pachca webhook tests: signed deliveries, a forum chat mapped to a Pachca
thread (the outbox's job, done here directly in the database), and row counts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from store.db import Database
from store.models import Chat, Event, Message, OutboxJob, User, WebhookDelivery
from tests.fakes.webhooks import message_event, signed, thread_ref
from tests.world import World

SECRET = "test-signing-secret"
BOT_USER_ID = 1  # FakePachca's default bot user
TEACHER_PACHCA_ID = 3001
TUTOR_PACHCA_ID = 3002
STUDENT_PACHCA_ID = 3003

_message_ids = itertools.count(500_001)
_thread_ids = itertools.count(5001)
_thread_chat_ids = itertools.count(900_001)


def pachca_section(**overrides: Any) -> dict[str, Any]:
    return {"signing_secret": SECRET, "bot_user_id": BOT_USER_ID, **overrides}


def next_message_id() -> int:
    return next(_message_ids)


async def deliver(
    client: TestClient,
    body: dict[str, Any],
    secret: str = SECRET,
    headers: dict[str, str] | None = None,
) -> ClientResponse:
    raw, signed_headers = signed(body, secret)
    return await client.post(
        "/webhooks/pachca", data=raw, headers={**signed_headers, **(headers or {})}
    )


async def deliver_ok(client: TestClient, body: dict[str, Any]) -> None:
    resp = await deliver(client, body)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"ok": True}


async def map_thread(
    database: Database,
    chat_id: int,
    *,
    thread_id: int | None = None,
    thread_chat_id: int | None = None,
) -> tuple[int, int]:
    """Record the Pachca thread of a forum chat, as the outbox does once it has opened it."""
    thread_id = thread_id or next(_thread_ids)
    thread_chat_id = thread_chat_id or next(_thread_chat_ids)
    async with database.write() as tx:
        await tx.run(
            update(Chat.__table__)
            .where(Chat.__table__.c.id == chat_id)
            .values(pachca_thread_id=thread_id, pachca_thread_chat_id=thread_chat_id)
        )
    return thread_id, thread_chat_id


async def count(database: Database, model: Any) -> int:
    async with database.read() as tx:
        found: int = await tx.value(select(func.count()).select_from(model.__table__))
    return found


async def counts(database: Database) -> dict[str, int]:
    """Rows a webhook may create: messages, delivery keys, outbox jobs, feed events."""
    return {
        m.__tablename__: await count(database, m)
        for m in (Message, WebhookDelivery, OutboxJob, Event)
    }


async def outbox_jobs(database: Database, kind: str | None = None) -> list[dict[str, Any]]:
    table = OutboxJob.__table__
    stmt = select(table).order_by(table.c.id)
    if kind is not None:
        stmt = stmt.where(table.c.kind == kind)
    async with database.read() as tx:
        return await tx.rows(stmt)


async def message_rows(database: Database) -> list[dict[str, Any]]:
    table = Message.__table__
    async with database.read() as tx:
        return await tx.rows(select(table).order_by(table.c.id))


async def pachca_user_id(database: Database, user_id: str) -> int | None:
    table = User.__table__
    async with database.read() as tx:
        found: int | None = await tx.value(
            select(table.c.pachca_user_id).where(table.c.id == user_id)
        )
    return found


async def events(client: TestClient, world: World, since: int = 0) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v1/events?since={since}&limit=1000", headers=world.service)
    assert resp.status == 200
    return (await resp.json())["events"]


@dataclass
class Forum:
    """A student with a teacher (and a tutor), the subject chat mapped to a Pachca thread."""

    enrollment_id: str
    student: str
    teacher: str
    tutor: str
    subject_chat: int
    tutor_chat: int
    thread_id: int
    thread_chat_id: int
    tutor_thread_chat_id: int

    def teacher_says(self, content: str = "Hello from Pachca", **fields: Any) -> dict[str, Any]:
        """A `message/new` webhook: the teacher writing in the subject chat's thread."""
        fields.setdefault("id", next_message_id())
        fields.setdefault("user_id", TEACHER_PACHCA_ID)
        return message_event(
            fields.pop("event", "new"),
            content=content,
            chat_id=fields.pop("chat_id", self.thread_chat_id),
            entity_type="thread",
            entity_id=fields.pop("entity_id", self.thread_id),
            thread=thread_ref(),
            **fields,
        )


async def build_forum(world: World, database: Database) -> Forum:
    tutor = await world.user("tutor", name="Tina Tutor", pachca_user_id=TUTOR_PACHCA_ID)
    teacher = await world.user("teacher", name="Tom Teacher", pachca_user_id=TEACHER_PACHCA_ID)
    student = await world.user("student", name="Sam Student", tutor_id=tutor)
    enrolled = await world.enroll(student, teacher)
    subject_chat = enrolled.subject_chat["id"]
    tutor_chat = enrolled.tutor_chat
    assert tutor_chat is not None
    thread_id, thread_chat_id = await map_thread(database, subject_chat)
    _, tutor_thread_chat_id = await map_thread(database, tutor_chat["id"])
    return Forum(
        enrolled.enrollment_id,
        student,
        teacher,
        tutor,
        subject_chat,
        tutor_chat["id"],
        thread_id,
        thread_chat_id,
        tutor_thread_chat_id,
    )


async def chat_messages(world: World, user_id: str, chat_id: int) -> list[dict[str, Any]]:
    resp = await world.client.get(
        f"/api/v1/chats/{chat_id}/messages?limit=200", headers=world.auth(user_id)
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["messages"]
