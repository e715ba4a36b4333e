"""GET /api/v1/admin/waiting (service token): the chats whose student waits for an answer,
longest wait first - and what it and one reminder run cost, the same with 10 waiting chats
as with 1,000 (docs/api.md)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bridge.config import parse_config
from bridge.runtime import utcnow
from bridge.services import Services
from handlers.keys import SERVICES
from store import migrate
from store.db import Database
from store.models import Chat, Enrollment, Message, OutboxJob, Participant, User, WaitingChat
from tests.conftest import QueryCounter
from tests.handlers.test_query_counts import Statements, count_answer
from tests.world import World, unique

URL = "/api/v1/admin/waiting"
_pachca_ids = itertools.count(70_000)


async def listing(world: World, query: str = "") -> list[dict[str, Any]]:
    resp = await world.client.get(URL + query, headers=world.service)
    assert resp.status == 200, await resp.text()
    chats: list[dict[str, Any]] = (await resp.json())["chats"]
    return chats


async def test_needs_a_service_token(client: TestClient, world: World) -> None:
    admin = await world.user("admin")
    for headers in ({}, world.auth(admin), {"Authorization": "Bearer nope"}):
        resp = await client.get(URL, headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_lists_waiting_chats_longest_wait_first(client: TestClient, world: World) -> None:
    teacher = await world.user("teacher", name="Tess")
    chats = []
    for name in ("Ann", "Bob", "Cid"):
        student = await world.user("student", name=name)
        chat = (await world.enroll(student, teacher)).subject_chat
        chats.append((student, chat))
    (ann, ann_chat), (bob, bob_chat), (cid, cid_chat) = chats
    asked = await world.post(cid, cid_chat["id"], "Cid asks first")
    await world.post(ann, ann_chat["id"], "Ann asks second")
    await world.post(cid, cid_chat["id"], "Cid asks again: still the same wait")
    await world.post(bob, bob_chat["id"], "Bob asks, and is answered")
    await world.post(teacher, bob_chat["id"], "Answered, Bob")

    body = await listing(world)

    assert [c["chat_id"] for c in body] == [cid_chat["id"], ann_chat["id"]]
    first = body[0]
    assert first["title"] == cid_chat["title"]
    assert first["waiting_since"] == asked["created_at"]
    assert isinstance(first["waiting_s"], int) and first["waiting_s"] >= 0
    assert first["assignee"] == {"id": teacher, "name": "Tess", "role": "teacher"}
    assert first["reminders_sent"] == 0
    assert set(first) == {
        "chat_id",
        "title",
        "waiting_since",
        "waiting_s",
        "assignee",
        "reminders_sent",
    }
    assert [c["chat_id"] for c in await listing(world, "?limit=1")] == [cid_chat["id"]]


async def test_metrics_count_the_chats_waiting(client: TestClient, world: World) -> None:
    teacher = await world.user("teacher")
    for asked in (True, True, False):
        student = await world.user("student")
        chat = (await world.enroll(student, teacher)).subject_chat
        await world.post(student, chat["id"], "A question")
        if not asked:
            await world.post(teacher, chat["id"], "Answered")

    assert await client.app[SERVICES].reminders.refresh_gauge() == 2
    text = await (await client.get("/metrics")).text()
    assert "bridge_chats_waiting 2.0" in text


@pytest.mark.parametrize("limit", ["0", "501", "-1", "many"])
async def test_a_bad_limit_is_refused(client: TestClient, world: World, limit: str) -> None:
    resp = await client.get(f"{URL}?limit={limit}", headers=world.service)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_request"


# --- cost ---------------------------------------------------------------------------------------


async def seed_waiting(db: Database, n: int, since: datetime) -> list[int]:
    """``n`` active chats, each waiting on one student message, all taught by one teacher
    linked in Pachca: written straight to the tables (the API would take minutes)."""
    tag = unique("w")
    teacher, student = f"{tag}-teacher", f"{tag}-student"
    person = {"created_at": since, "updated_at": since}
    async with db.write() as tx:
        await tx.run(
            User.__table__.insert().values(
                [
                    {"id": teacher, "role": "teacher", "name": "T", **person}
                    | {"pachca_user_id": next(_pachca_ids)},
                    {"id": student, "role": "student", "name": "S", **person}
                    | {"pachca_user_id": None},
                ]
            )
        )
        enrollments = [f"{tag}-e{i}" for i in range(n)]
        common = {"subject_id": "m", "subject_name": "Maths", **person}
        await tx.run(
            Enrollment.__table__.insert().values(
                [
                    {"id": e, "student_id": student, "teacher_id": teacher, "active": True} | common
                    for e in enrollments
                ]
            )
        )
        await tx.run(
            Chat.__table__.insert().values(
                [
                    {
                        "enrollment_id": e,
                        "type": "forum_subject",
                        "title": f"S - Maths {e}",
                        "subject_id": "m",
                        "subject_name": "Maths",
                        "is_active": True,
                        "created_at": since,
                        "last_activity_at": since,
                    }
                    for e in enrollments
                ]
            )
        )
        chats = Chat.__table__
        rows = await tx.rows(
            select(chats.c.id).where(chats.c.enrollment_id.in_(enrollments)).order_by(chats.c.id)
        )
        chat_ids = [r["id"] for r in rows]
        await tx.run(
            Participant.__table__.insert().values(
                [
                    {"chat_id": c, "user_id": u, "role": r, "last_read_message_id": 0}
                    for c in chat_ids
                    for u, r in ((student, "student"), (teacher, "teacher"))
                ]
            )
        )
        await tx.run(
            Message.__table__.insert().values(
                [
                    {
                        "chat_id": c,
                        "sender_id": student,
                        "content": "?",
                        "created_at": since,
                        "source": "web",
                    }
                    for c in chat_ids
                ]
            )
        )
        messages = Message.__table__
        first = {
            r["chat_id"]: r["id"]
            for r in await tx.rows(
                select(messages.c.chat_id, messages.c.id).where(messages.c.chat_id.in_(chat_ids))
            )
        }
        await tx.run(
            WaitingChat.__table__.insert().values(
                [
                    {
                        "chat_id": c,
                        "since": since + timedelta(milliseconds=i),
                        "first_message_id": first[c],
                        "reminders_sent": 0,
                    }
                    for i, c in enumerate(chat_ids)
                ]
            )
        )
    return chat_ids


@pytest.fixture
async def statements(count_queries: Any, client: TestClient) -> Statements:
    # The reminders' own schedule (the gauge) must not run while counting.
    scheduler = client.app[SERVICES].reminders.scheduler
    assert scheduler is not None
    scheduler.pause()
    services = client.app[SERVICES]
    return Statements(count_queries(), services.principals, services.access)


async def test_the_list_costs_one_statement_with_10_or_1000_waiting(
    client: TestClient, world: World, database: Database, statements: Statements
) -> None:
    counts = {}
    since = utcnow() - timedelta(days=1)
    for size in (10, 990):
        await seed_waiting(database, size, since)
        since -= timedelta(days=1)  # the bigger seed waits longer: it leads the list
        body, n, seen = await count_answer(
            statements, world.client.get(URL + "?limit=500", headers=world.service)
        )
        counts[size] = n
        assert n == 1, seen
        assert body["chats"][0]["assignee"]["role"] == "teacher"
    assert counts[10] == counts[990]
    assert len(await listing(world, "?limit=500")) == 500


async def test_a_reminder_run_costs_the_same_with_10_or_1000_waiting(
    database: Database, config_data: dict[str, Any], count_queries: Any
) -> None:
    """One run, on services that are built but not started (nothing else runs statements)."""
    config = parse_config(
        {
            **config_data,
            "pachca": {"enabled": True, "token": "t", "api_url": "http://127.0.0.1:9"},
            "reminders": {"enabled": True, "after_s": 60, "repeat_s": 3600},
        }
    )
    await migrate.upgrade(database)
    services = Services.build(config, db=database)
    counter: QueryCounter = count_queries()
    counts = {}
    now = utcnow()
    total_queued = 0
    for size in (10, 1000):
        await seed_waiting(database, size, now - timedelta(hours=2))
        counter.reset()
        run = await services.reminders.run_once(now=now)
        counts[size] = counter.count
        total_queued += len(run.queued)
        assert run.queued, counter.statements
        now += timedelta(seconds=1)
    assert counts[10] == counts[1000], counts
    # Forget old answered rows, two index ranges of what is due, the claim, the jobs.
    assert counts[10] == 5, counter.statements
    # The first run took all 10; the second one batch of the 1,000 (the rest wait their turn).
    assert total_queued == 10 + services.reminders.tuning.batch
    async with database.read() as conn:
        queued = await conn.rows(select(OutboxJob.__table__.c.kind))
    assert len(queued) == total_queued
