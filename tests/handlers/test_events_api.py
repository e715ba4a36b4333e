"""GET /api/v1/events (docs/api.md): the platform backend's mirror of forum activity,
in order, in the WebSocket frames' shape, paged by `since` and `limit`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from handlers.keys import SERVICES
from tests.contract import expect_error
from tests.eventually import log_settled
from tests.world import World, unique


async def events(client: TestClient, world: World, **params: Any) -> dict[str, Any]:
    await log_settled(client.server.app[SERVICES].rt.db)
    resp = await client.get(
        "/api/v1/events", params={k: str(v) for k, v in params.items()}, headers=world.service
    )
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"events", "last_event_id"}
    return body


@pytest.mark.parametrize("auth", ["none", "wrong", "user_jwt"])
async def test_events_require_the_service_token(
    client: TestClient, world: World, auth: str
) -> None:
    admin = await world.user("admin")
    headers = {
        "none": {},
        "wrong": {"Authorization": "Bearer wrong"},
        "user_jwt": world.auth(admin),
    }[auth]
    await expect_error(await client.get("/api/v1/events", headers=headers), 401, "unauthorized")


async def test_an_empty_log(client: TestClient, world: World) -> None:
    assert await events(client, world) == {"events": [], "last_event_id": 0}


async def test_every_kind_of_event_in_order_and_in_frame_shape(
    client: TestClient, world: World
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    new_teacher = await world.user("teacher")
    subject = (unique("subj"), "Music")
    enrolled = await world.enroll(student, teacher, subject=subject)
    chat = enrolled.subject_chat
    chat_id = chat["id"]
    posted = await world.post(student, chat_id, "first 🎵")
    resp = await client.patch(
        f"/api/v1/messages/{posted['id']}",
        json={"content": "edited 🎶"},
        headers=world.auth(student),
    )
    edited = (await resp.json())["message"]
    resp = await client.post(
        f"/api/v1/chats/{chat_id}/read",
        json={"message_id": posted["id"]},
        headers=world.auth(teacher),
    )
    assert resp.status == 204
    resp = await client.delete(f"/api/v1/messages/{posted['id']}", headers=world.auth(student))
    assert resp.status == 204
    changed = await world.enroll(
        student, new_teacher, subject=subject, enrollment_id=enrolled.enrollment_id
    )
    resp = await client.delete(
        f"/api/v1/enrollments/{enrolled.enrollment_id}", headers=world.service
    )
    assert resp.status == 204

    body = await events(client, world)
    log = body["events"]
    assert [e["type"] for e in log] == [
        "chat.created",
        "message.created",
        "message.updated",
        "read",
        "message.deleted",
        "chat.updated",
        "chat.deleted",
    ]
    ids = [e["event_id"] for e in log]
    assert ids == sorted(set(ids)) and all(isinstance(i, int) for i in ids)
    assert body["last_event_id"] == ids[-1]
    assert {e["chat_id"] for e in log} == {chat_id}

    created, message_created, updated, read, deleted, chat_updated, chat_deleted = log
    # Chat objects in events carry no unread_count: it differs per viewer.
    assert created == {
        "type": "chat.created",
        "event_id": ids[0],
        "chat_id": chat_id,
        "chat": {k: v for k, v in chat.items() if k != "unread_count"},
    }
    assert message_created == {
        "type": "message.created",
        "event_id": ids[1],
        "chat_id": chat_id,
        "message": posted,
    }
    assert updated == {
        "type": "message.updated",
        "event_id": ids[2],
        "chat_id": chat_id,
        "message": edited,
    }
    assert read == {
        "type": "read",
        "event_id": ids[3],
        "chat_id": chat_id,
        "user_id": teacher,
        "message_id": posted["id"],
    }
    assert deleted == {
        "type": "message.deleted",
        "event_id": ids[4],
        "chat_id": chat_id,
        "message_id": posted["id"],
    }
    assert chat_updated["chat"] == {
        k: v for k, v in changed.subject_chat.items() if k != "unread_count"
    }
    assert chat_deleted["type"] == "chat.deleted" and chat_deleted["chat_id"] == chat_id
    # The chat as it was last seen, like every chat event's `chat`.
    assert chat_deleted["chat"]["id"] == chat_id
    assert chat_deleted["chat"]["enrollment_id"] == enrolled.enrollment_id
    assert {p["id"] for p in chat_deleted["chat"]["participants"]} == {student, new_teacher}


async def test_chat_updated_follows_deactivation(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher, subject=("s", "S"))
    since = (await events(client, world))["last_event_id"]
    await world.enroll(
        student, teacher, subject=("s", "S"), enrollment_id=enrolled.enrollment_id, active=False
    )
    (event,) = (await events(client, world, since=since))["events"]
    assert event["type"] == "chat.updated"
    assert event["chat"]["is_active"] is False


async def test_since_and_limit_page_through_the_log(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    for i in range(11):
        await world.post(student, chat_id, f"m{i}")
    everything = (await events(client, world, limit=1000))["events"]
    assert len(everything) == 12

    seen: list[dict[str, Any]] = []
    since = 0
    while True:
        body = await events(client, world, since=since, limit=5)
        assert len(body["events"]) <= 5
        if not body["events"]:
            assert body["last_event_id"] == since
            break
        assert body["last_event_id"] == body["events"][-1]["event_id"]
        seen += body["events"]
        since = body["last_event_id"]
    assert seen == everything

    middle = everything[5]["event_id"]
    assert (await events(client, world, since=middle))["events"] == everything[6:]
    assert (await events(client, world, since=middle, limit=1))["events"] == [everything[6]]
    assert (await events(client, world, limit=1000))["events"] == everything  # unchanged by reads


@pytest.mark.parametrize(
    "params",
    [
        {"since": "-1"},
        {"since": "abc"},
        {"since": "1.0"},
        {"since": str(10**20)},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "many"},
        {"limit": "-1"},
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()),
)
async def test_bad_since_or_limit_is_400(
    client: TestClient, world: World, params: dict[str, str]
) -> None:
    resp = await client.get("/api/v1/events", params=params, headers=world.service)
    await expect_error(resp, 400, "invalid_request")


@pytest.mark.parametrize("limit", ["1", "1000"])
async def test_limit_bounds_are_inclusive(client: TestClient, world: World, limit: str) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    await world.enroll(student, teacher)
    await world.enroll(student, teacher)
    body = await events(client, world, limit=limit)
    assert len(body["events"]) == min(int(limit), 2)


async def test_failed_requests_append_no_events(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    admin = await world.user("admin")
    enrolled = await world.enroll(student, teacher)
    chat_id = enrolled.subject_chat["id"]
    message = await world.post(student, chat_id, "kept")
    before = await events(client, world)

    failures = [
        ("POST", f"/api/v1/chats/{chat_id}/messages", {"content": "  "}, student, 400),
        (
            "POST",
            f"/api/v1/chats/{chat_id}/messages",
            {"content": "x", "sender": "t"},
            student,
            400,
        ),
        (
            "POST",
            f"/api/v1/chats/{chat_id}/messages",
            {"content": "x", "reply_to_id": 10**9},
            student,
            400,
        ),
        ("POST", f"/api/v1/chats/{chat_id}/messages", {"content": "x"}, admin, 403),
        ("POST", f"/api/v1/chats/{chat_id}/read", {"message_id": message["id"]}, admin, 403),
        ("POST", f"/api/v1/chats/{chat_id}/read", {"message_id": 10**9}, teacher, 400),
        ("PATCH", f"/api/v1/messages/{message['id']}", {"content": "x"}, teacher, 403),
        ("PATCH", f"/api/v1/messages/{message['id']}", {"content": ""}, student, 400),
        ("DELETE", f"/api/v1/messages/{message['id']}", None, teacher, 403),
        ("DELETE", f"/api/v1/messages/{10**9}", None, student, 404),
    ]
    for method, path, body, user, status in failures:
        resp = await client.request(method, path, json=body, headers=world.auth(user))
        assert resp.status == status, (method, path, await resp.text())
    resp = await client.put(
        f"/api/v1/enrollments/{unique('enr')}",
        json={
            "student_id": student,
            "teacher_id": unique("ghost"),
            "subject": {"id": "s", "name": "S"},
        },
        headers=world.service,
    )
    assert resp.status == 422
    resp = await client.delete(f"/api/v1/enrollments/{unique('enr')}", headers=world.service)
    assert resp.status == 404
    resp = await client.put(
        f"/api/v1/users/{student}",
        json={"role": "student", "name": "S", "tutor_id": unique("ghost")},
        headers=world.service,
    )
    assert resp.status == 422

    assert await events(client, world) == before


async def test_since_beyond_the_newest_event_answers_the_real_newest_id(
    client: TestClient, world: World
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    await world.enroll(student, teacher)
    newest = (await events(client, world))["last_event_id"]
    assert newest > 0
    body = await events(client, world, since=newest + 1000)
    assert body == {"events": [], "last_event_id": newest}


async def test_a_write_then_a_read_finds_the_event_while_another_transaction_runs(
    client: TestClient, world: World
) -> None:
    # PostgreSQL: an event is readable once every transaction that began before it took its id
    # has ended. One still running elsewhere on the server (another service, another test)
    # briefly: the backend that just posted still finds its event, the read waits for it.
    db = client.server.app[SERVICES].rt.db
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: a committed event is readable at once")
    student = await world.user("student")
    enrolled = await world.enroll(student, await world.user("teacher"))
    await log_settled(db)
    holding, release = asyncio.Event(), asyncio.Event()

    async def elsewhere() -> None:
        async with db.write() as tx:
            await tx.value(text("SELECT pg_current_xact_id()"))  # it has a transaction id
            holding.set()
            await release.wait()

    other = asyncio.create_task(elsewhere())
    await holding.wait()
    posted = await world.post(student, enrolled.subject_chat["id"], "right after")
    asyncio.get_running_loop().call_later(0.05, release.set)
    resp = await client.get("/api/v1/events", params={"limit": "500"}, headers=world.service)
    body = await resp.json()
    await other
    created = [e for e in body["events"] if e["type"] == "message.created"]
    assert [e["message"]["id"] for e in created] == [posted["id"]]
    assert body["last_event_id"] == created[0]["event_id"]
