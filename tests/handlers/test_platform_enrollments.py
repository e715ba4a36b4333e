"""The platform backend's enrollment API (docs/api.md): chats made on enrollment,
idempotent upserts, teacher changes, deactivation, deletion and re-enrollment."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.contract import CHAT_KEYS, expect_error
from tests.world import World, unique


async def all_events(client: TestClient, world: World) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/events", params={"limit": "1000"}, headers=world.service)
    assert resp.status == 200
    return (await resp.json())["events"]


async def put_enrollment(client: TestClient, world: World, enrollment_id: str, body: Any) -> Any:
    return await client.put(
        f"/api/v1/enrollments/{enrollment_id}", json=body, headers=world.service
    )


async def get_enrollment(client: TestClient, world: World, enrollment_id: str) -> Any:
    return await client.get(f"/api/v1/enrollments/{enrollment_id}", headers=world.service)


async def visible(client: TestClient, world: World, user: str) -> dict[int, dict[str, Any]]:
    resp = await client.get("/api/v1/chats", headers=world.auth(user))
    assert resp.status == 200
    return {c["id"]: c for c in (await resp.json())["chats"]}


def body_for(student: str, teacher: str, subject_id: str, name: str = "Chemistry", **extra: Any):
    return {
        "student_id": student,
        "teacher_id": teacher,
        "subject": {"id": subject_id, "name": name},
        **extra,
    }


# --- service token ------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["none", "wrong", "user_jwt"])
async def test_enrollment_endpoints_require_the_service_token(
    client: TestClient, world: World, auth: str
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    headers = {
        "none": {},
        "wrong": {"Authorization": "Bearer nope"},
        "user_jwt": world.auth(await world.user("admin")),
    }[auth]
    fresh = unique("enr")
    for method, path, body in [
        ("PUT", f"/api/v1/enrollments/{fresh}", body_for(student, teacher, "s1")),
        ("PUT", f"/api/v1/enrollments/{enrolled.enrollment_id}", body_for(student, teacher, "s2")),
        ("GET", f"/api/v1/enrollments/{enrolled.enrollment_id}", None),
        ("DELETE", f"/api/v1/enrollments/{enrolled.enrollment_id}", None),
    ]:
        resp = await client.request(method, path, json=body, headers=headers)
        await expect_error(resp, 401, "unauthorized")
    await expect_error(await get_enrollment(client, world, fresh), 404, "not_found")
    resp = await get_enrollment(client, world, enrolled.enrollment_id)
    assert await resp.json() == enrolled.body


# --- creation -----------------------------------------------------------------------------


async def test_enrollment_creates_a_subject_chat_for_student_and_teacher(
    client: TestClient, world: World
) -> None:
    student = await world.user("student", name="Маша")
    teacher = await world.user("teacher", name="Mr. Brown")
    enrollment_id, subject_id = unique("enr"), unique("subj")
    resp = await put_enrollment(
        client, world, enrollment_id, body_for(student, teacher, subject_id, "Химия")
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["enrollment"] == {
        "id": enrollment_id,
        "student_id": student,
        "teacher_id": teacher,
        "subject": {"id": subject_id, "name": "Химия"},
        "active": True,
    }
    (chat,) = body["chats"]
    assert set(chat) == CHAT_KEYS
    assert chat["type"] == "forum_subject"
    assert chat["enrollment_id"] == enrollment_id
    assert chat["subject"] == {"id": subject_id, "name": "Химия"}
    assert chat["is_active"] is True
    assert isinstance(chat["title"], str) and chat["title"]
    assert sorted(chat["participants"], key=lambda p: p["role"]) == [
        {"id": student, "name": "Маша", "role": "student"},
        {"id": teacher, "name": "Mr. Brown", "role": "teacher"},
    ]
    assert chat["last_message"] is None and chat["unread_count"] == 0

    # Both see it; it is the same object they get from the web API.
    for user in (student, teacher):
        assert set(await visible(client, world, user)) == {chat["id"]}
    resp = await client.get(f"/api/v1/chats/{chat['id']}", headers=world.auth(student))
    assert (await resp.json())["chat"] == chat

    created = [e for e in await all_events(client, world) if e["type"] == "chat.created"]
    assert [e["chat_id"] for e in created] == [chat["id"]]
    # Feed events carry the chat without the per-viewer unread_count.
    assert created[0]["chat"] == {k: v for k, v in chat.items() if k != "unread_count"}


async def test_a_student_with_a_tutor_also_gets_a_tutor_chat(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    assert sorted(c["type"] for c in enrolled.body["chats"]) == ["forum_subject", "forum_tutor"]
    subject, tutor_chat = enrolled.subject_chat, enrolled.tutor_chat
    assert tutor_chat is not None and tutor_chat["id"] != subject["id"]
    assert {(p["id"], p["role"]) for p in tutor_chat["participants"]} == {
        (student, "student"),
        (tutor, "tutor"),
    }
    assert tutor_chat["subject"] == subject["subject"]
    assert tutor_chat["title"] != subject["title"]
    assert set(await visible(client, world, student)) == {subject["id"], tutor_chat["id"]}
    assert set(await visible(client, world, teacher)) == {subject["id"]}
    assert set(await visible(client, world, tutor)) == {tutor_chat["id"]}


async def test_several_enrollments_get_isolated_chats(client: TestClient, world: World) -> None:
    student = await world.user("student")
    other_student = await world.user("student")
    math_teacher = await world.user("teacher")
    physics_teacher = await world.user("teacher")
    math = await world.enroll(student, math_teacher, subject=(unique("subj"), "Math"))
    physics = await world.enroll(student, physics_teacher, subject=(unique("subj"), "Physics"))
    also_math = await world.enroll(other_student, math_teacher, subject=(unique("subj"), "Math"))
    # Same student and teacher in a second subject: a chat of its own too.
    math_two = await world.enroll(student, math_teacher, subject=(unique("subj"), "Algebra"))
    ids = [e.subject_chat["id"] for e in (math, physics, also_math, math_two)]
    assert len(set(ids)) == 4

    posted = {}
    for enrolled, author in (
        (math, student),
        (physics, physics_teacher),
        (also_math, other_student),
        (math_two, math_teacher),
    ):
        chat_id = enrolled.subject_chat["id"]
        posted[chat_id] = await world.post(author, chat_id, f"only in {chat_id}")
    for chat_id, message in posted.items():
        resp = await client.get(
            f"/api/v1/chats/{chat_id}/messages",
            headers=world.auth(message["sender"]["id"]),
        )
        assert (await resp.json())["messages"] == [message]

    assert set(await visible(client, world, student)) == {ids[0], ids[1], ids[3]}
    assert set(await visible(client, world, other_student)) == {ids[2]}
    assert set(await visible(client, world, math_teacher)) == {ids[0], ids[2], ids[3]}
    assert set(await visible(client, world, physics_teacher)) == {ids[1]}
    resp = await client.get(f"/api/v1/chats/{ids[0]}/messages", headers=world.auth(other_student))
    await expect_error(resp, 403, "forbidden")
    resp = await client.get(f"/api/v1/chats/{ids[0]}", headers=world.auth(physics_teacher))
    await expect_error(resp, 403, "forbidden")


async def test_repeating_the_put_changes_nothing(client: TestClient, world: World) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher, subject=("subj-x", "X"))
    events = await all_events(client, world)
    for _ in range(3):
        again = await world.enroll(
            student, teacher, subject=("subj-x", "X"), enrollment_id=enrolled.enrollment_id
        )
        assert again.body == enrolled.body
    assert await all_events(client, world) == events
    resp = await get_enrollment(client, world, enrolled.enrollment_id)
    assert await resp.json() == enrolled.body


async def test_get_enrollment_reflects_the_chats(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    message = await world.post(student, enrolled.subject_chat["id"], "hello")
    resp = await get_enrollment(client, world, enrolled.enrollment_id)
    assert resp.status == 200
    body = await resp.json()
    assert body["enrollment"] == enrolled.body["enrollment"]
    (chat,) = body["chats"]
    assert chat["id"] == enrolled.subject_chat["id"]
    assert chat["last_message"] == message


async def test_concurrent_puts_of_one_new_enrollment_make_one_set_of_chats(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrollment_id = unique("enr")
    body = body_for(student, teacher, "s-race")
    responses = await asyncio.gather(
        *[put_enrollment(client, world, enrollment_id, body) for _ in range(5)]
    )
    assert [r.status for r in responses] == [200] * 5, [await r.text() for r in responses]
    bodies = [await r.json() for r in responses]
    chat_ids = {tuple(c["id"] for c in b["chats"]) for b in bodies}
    assert len(chat_ids) == 1 and len(next(iter(chat_ids))) == 2
    created = [e for e in await all_events(client, world) if e["type"] == "chat.created"]
    assert len(created) == 2


@pytest.mark.parametrize("bad_id", ["e" * 65, "a%00b"], ids=["too_long", "nul"])
async def test_an_enrollment_id_no_record_can_have(
    client: TestClient, world: World, bad_id: str
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    resp = await put_enrollment(client, world, bad_id, body_for(student, teacher, "s"))
    await expect_error(resp, 400, "invalid_request")
    await expect_error(await get_enrollment(client, world, bad_id), 404, "not_found")
    resp = await client.delete(f"/api/v1/enrollments/{bad_id}", headers=world.service)
    await expect_error(resp, 404, "not_found")
    assert await all_events(client, world) == []


async def test_get_of_an_unknown_enrollment_is_404(client: TestClient, world: World) -> None:
    await expect_error(await get_enrollment(client, world, unique("enr")), 404, "not_found")


# --- changes ------------------------------------------------------------------------------


async def test_a_changed_teacher_replaces_the_teacher_participant(
    client: TestClient, world: World
) -> None:
    student = await world.user("student")
    old = await world.user("teacher")
    new = await world.user("teacher")
    enrolled = await world.enroll(student, old, subject=("subj-bio", "Biology"))
    chat_id = enrolled.subject_chat["id"]
    history = await world.post(old, chat_id, "Welcome to biology")
    since = (await all_events(client, world))[-1]["event_id"]

    changed = await world.enroll(
        student, new, subject=("subj-bio", "Biology"), enrollment_id=enrolled.enrollment_id
    )
    assert changed.body["enrollment"]["teacher_id"] == new
    (chat,) = changed.body["chats"]
    assert chat["id"] == chat_id
    assert {(p["id"], p["role"]) for p in chat["participants"]} == {
        (student, "student"),
        (new, "teacher"),
    }

    assert chat_id not in await visible(client, world, old)
    for method, path, body in [
        ("GET", f"/api/v1/chats/{chat_id}", None),
        ("GET", f"/api/v1/chats/{chat_id}/messages", None),
        ("POST", f"/api/v1/chats/{chat_id}/messages", {"content": "still mine?"}),
        ("PATCH", f"/api/v1/messages/{history['id']}", {"content": "edit"}),
    ]:
        resp = await client.request(method, path, json=body, headers=world.auth(old))
        await expect_error(resp, 403, "forbidden")

    assert set(await visible(client, world, new)) == {chat_id}
    resp = await client.get(f"/api/v1/chats/{chat_id}/messages", headers=world.auth(new))
    assert (await resp.json())["messages"] == [history]  # the history stays with the chat
    await world.post(new, chat_id, "I'm taking over")

    (updated,) = [
        e
        for e in await all_events(client, world)
        if e["event_id"] > since and e["type"] == "chat.updated"
    ]
    assert updated["chat_id"] == chat_id
    assert {p["id"] for p in updated["chat"]["participants"]} == {student, new}


async def test_a_changed_student_replaces_the_student_participant(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    first = await world.user("student", tutor_id=tutor)
    second = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(first, teacher, subject=("subj-geo", "Geo"))
    changed = await world.enroll(
        second, teacher, subject=("subj-geo", "Geo"), enrollment_id=enrolled.enrollment_id
    )
    for chat in changed.body["chats"]:
        students = [p["id"] for p in chat["participants"] if p["role"] == "student"]
        assert students == [second]
    ids = {c["id"] for c in changed.body["chats"]}
    assert set(await visible(client, world, second)) == ids
    assert set(await visible(client, world, first)) == set()


async def test_subject_changes_show_on_the_chats(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher, subject=("subj-1", "Old Name"))
    changed = await world.enroll(
        student, teacher, subject=("subj-1", "New Name"), enrollment_id=enrolled.enrollment_id
    )
    (chat,) = changed.body["chats"]
    assert chat["id"] == enrolled.subject_chat["id"]
    assert chat["subject"] == {"id": "subj-1", "name": "New Name"}
    assert "New Name" in chat["title"]


async def test_inactive_enrollment_makes_its_chats_read_only(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher, subject=("s", "S"))
    subject_chat, tutor_chat = enrolled.subject_chat, enrolled.tutor_chat
    assert tutor_chat is not None

    off = await world.enroll(
        student, teacher, subject=("s", "S"), enrollment_id=enrolled.enrollment_id, active=False
    )
    assert off.body["enrollment"]["active"] is False
    assert [c["is_active"] for c in off.body["chats"]] == [False, False]
    for chat_id, user in ((subject_chat["id"], teacher), (tutor_chat["id"], tutor)):
        for poster in (student, user):
            resp = await client.post(
                f"/api/v1/chats/{chat_id}/messages",
                json={"content": "hello?"},
                headers=world.auth(poster),
            )
            await expect_error(resp, 400, "chat_inactive")
        assert (await visible(client, world, user))[chat_id]["is_active"] is False

    on = await world.enroll(
        student, teacher, subject=("s", "S"), enrollment_id=enrolled.enrollment_id, active=True
    )
    assert [c["is_active"] for c in on.body["chats"]] == [True, True]
    await world.post(teacher, subject_chat["id"], "open again")
    await world.post(tutor, tutor_chat["id"], "open again")


async def test_an_enrollment_may_start_inactive(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher, active=False)
    assert enrolled.subject_chat["is_active"] is False
    resp = await client.post(
        f"/api/v1/chats/{enrolled.subject_chat['id']}/messages",
        json={"content": "x"},
        headers=world.auth(student),
    )
    await expect_error(resp, 400, "chat_inactive")


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "which",
    [
        "unknown_student",
        "unknown_teacher",
        "teacher_as_student",
        "student_as_teacher",
        "tutor_as_teacher",
    ],
)
async def test_an_unknown_student_or_teacher_is_422_and_writes_nothing(
    client: TestClient, world: World, which: str
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    body = {
        "unknown_student": body_for(unique("ghost"), teacher, "s"),
        "unknown_teacher": body_for(student, unique("ghost"), "s"),
        "teacher_as_student": body_for(teacher, teacher, "s"),
        "student_as_teacher": body_for(student, student, "s"),
        "tutor_as_teacher": body_for(student, await world.user("tutor"), "s"),
    }[which]
    events = await all_events(client, world)
    enrollment_id = unique("enr")
    resp = await put_enrollment(client, world, enrollment_id, body)
    await expect_error(resp, 422, "unknown_user")
    await expect_error(await get_enrollment(client, world, enrollment_id), 404, "not_found")
    assert await all_events(client, world) == events
    assert await visible(client, world, student) == {}


async def test_a_failed_update_leaves_the_enrollment_as_it_was(
    client: TestClient, world: World
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    resp = await put_enrollment(
        client, world, enrolled.enrollment_id, body_for(student, unique("ghost"), "other")
    )
    await expect_error(resp, 422, "unknown_user")
    assert (
        await (await get_enrollment(client, world, enrolled.enrollment_id)).json() == enrolled.body
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("student_id"),
        lambda b: b.pop("teacher_id"),
        lambda b: b.pop("subject"),
        lambda b: b["subject"].pop("name"),
        lambda b: b["subject"].update(id=""),
        lambda b: b["subject"].update(extra=1),
        lambda b: b.update(subject="Math"),
        lambda b: b.update(active="yes"),
        lambda b: b.update(active=None),
        lambda b: b.update(student_id=5),
        lambda b: b.update(tutor_id="t"),
        lambda b: b.update(student_id="s" * 65),
        lambda b: b["subject"].update(name="Math\x00"),
    ],
    ids=[
        "no_student",
        "no_teacher",
        "no_subject",
        "no_subject_name",
        "empty_subject_id",
        "subject_extra_field",
        "subject_string",
        "active_string",
        "active_null",
        "int_student",
        "unknown_field",
        "long_student_id",
        "nul_in_subject_name",
    ],
)
async def test_invalid_enrollment_bodies_are_400_and_write_nothing(
    client: TestClient, world: World, mutate: Any
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    body = body_for(student, teacher, "s1")
    mutate(body)
    enrollment_id = unique("enr")
    resp = await put_enrollment(client, world, enrollment_id, body)
    await expect_error(resp, 400, "invalid_request")
    await expect_error(await get_enrollment(client, world, enrollment_id), 404, "not_found")
    assert await all_events(client, world) == []


# --- deletion and re-enrollment -----------------------------------------------------------


async def test_delete_removes_the_enrollment_its_chats_and_their_messages(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    admin = await world.user("admin")
    enrolled = await world.enroll(student, teacher)
    kept = await world.enroll(student, teacher)  # another enrollment, untouched
    chat_ids = [c["id"] for c in enrolled.body["chats"]]
    messages = [await world.post(student, chat_id, "soon gone") for chat_id in chat_ids]
    survivor = await world.post(student, kept.subject_chat["id"], "stays")
    since = (await all_events(client, world))[-1]["event_id"]

    resp = await client.delete(
        f"/api/v1/enrollments/{enrolled.enrollment_id}", headers=world.service
    )
    assert resp.status == 204
    assert await resp.read() == b""

    await expect_error(
        await get_enrollment(client, world, enrolled.enrollment_id), 404, "not_found"
    )
    resp = await client.delete(
        f"/api/v1/enrollments/{enrolled.enrollment_id}", headers=world.service
    )
    await expect_error(resp, 404, "not_found")

    for user in (student, teacher, tutor, admin):
        assert not set(chat_ids) & set(await visible(client, world, user))
        for chat_id in chat_ids:
            for method, path, body in [
                ("GET", f"/api/v1/chats/{chat_id}", None),
                ("GET", f"/api/v1/chats/{chat_id}/messages", None),
                ("POST", f"/api/v1/chats/{chat_id}/messages", {"content": "x"}),
                ("POST", f"/api/v1/chats/{chat_id}/read", {"message_id": 1}),
            ]:
                resp = await client.request(method, path, json=body, headers=world.auth(user))
                await expect_error(resp, 404, "not_found")
    for message in messages:
        resp = await client.patch(
            f"/api/v1/messages/{message['id']}", json={"content": "x"}, headers=world.auth(student)
        )
        await expect_error(resp, 404, "not_found")
        resp = await client.delete(f"/api/v1/messages/{message['id']}", headers=world.auth(admin))
        await expect_error(resp, 404, "not_found")

    resp = await client.get(
        f"/api/v1/chats/{kept.subject_chat['id']}/messages", headers=world.auth(teacher)
    )
    assert (await resp.json())["messages"] == [survivor]

    deleted = [e for e in await all_events(client, world) if e["event_id"] > since]
    assert sorted(e["chat_id"] for e in deleted) == sorted(chat_ids)
    assert {e["type"] for e in deleted} == {"chat.deleted"}


async def test_delete_of_an_unknown_enrollment_is_404(client: TestClient, world: World) -> None:
    resp = await client.delete(f"/api/v1/enrollments/{unique('enr')}", headers=world.service)
    await expect_error(resp, 404, "not_found")
    assert await all_events(client, world) == []


async def test_re_enrollment_gets_fresh_chats(client: TestClient, world: World) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher, subject=("s", "S"))
    old_ids = {c["id"] for c in enrolled.body["chats"]}
    for chat_id in old_ids:
        await world.post(student, chat_id, "from the first time")
    resp = await client.delete(
        f"/api/v1/enrollments/{enrolled.enrollment_id}", headers=world.service
    )
    assert resp.status == 204

    again = await world.enroll(
        student, teacher, subject=("s", "S"), enrollment_id=enrolled.enrollment_id
    )
    new_ids = {c["id"] for c in again.body["chats"]}
    assert len(new_ids) == 2 and not new_ids & old_ids
    for chat in again.body["chats"]:
        assert chat["last_message"] is None and chat["unread_count"] == 0
        resp = await client.get(f"/api/v1/chats/{chat['id']}/messages", headers=world.auth(student))
        assert await resp.json() == {"messages": [], "total": 0, "limit": 50, "offset": 0}
    assert set(await visible(client, world, student)) == new_ids
