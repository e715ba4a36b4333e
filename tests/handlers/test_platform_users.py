"""The platform backend's user API (docs/api.md): service tokens, idempotent upserts,
tutor assignment and its tutor chats, link codes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.contract import expect_error
from tests.world import World, unique

USER_KEYS = {"id", "role", "name", "email", "pachca_user_id", "tutor_id", "children"}


async def all_events(client: TestClient, world: World) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/events", params={"limit": "1000"}, headers=world.service)
    assert resp.status == 200
    return (await resp.json())["events"]


async def get_user(client: TestClient, world: World, user_id: str) -> Any:
    return await client.get(f"/api/v1/users/{user_id}", headers=world.service)


async def enrollment(client: TestClient, world: World, enrollment_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/enrollments/{enrollment_id}", headers=world.service)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def tutor_chat(body: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in body["chats"] if c["type"] == "forum_tutor"), None)


async def visible_ids(client: TestClient, world: World, user: str) -> set[int]:
    resp = await client.get("/api/v1/chats", headers=world.auth(user))
    assert resp.status == 200
    return {c["id"] for c in (await resp.json())["chats"]}


# --- service token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    ["none", "wrong", "user_jwt", "basic", "scheme_only"],
)
async def test_user_endpoints_require_the_service_token(
    client: TestClient, world: World, auth: str
) -> None:
    existing = await world.user("student")
    headers = {
        "none": {},
        "wrong": {"Authorization": "Bearer not-the-service-token"},
        # A valid web-client token of a real (even admin) user is still not a service token.
        "user_jwt": world.auth(await world.user("admin")),
        "basic": {"Authorization": "Basic dGVzdC1zZXJ2aWNlLXRva2Vu"},
        "scheme_only": {"Authorization": "Bearer"},
    }[auth]
    fresh = unique("student")
    for method, path, body in [
        ("PUT", f"/api/v1/users/{fresh}", {"role": "student", "name": "New"}),
        ("PUT", f"/api/v1/users/{existing}", {"role": "admin", "name": "Escalated"}),
        ("GET", f"/api/v1/users/{existing}", None),
        ("POST", f"/api/v1/users/{existing}/link-code", None),
    ]:
        resp = await client.request(method, path, json=body, headers=headers)
        await expect_error(resp, 401, "unauthorized")
    await expect_error(await get_user(client, world, fresh), 404, "not_found")
    assert (await (await get_user(client, world, existing)).json())["user"]["role"] == "student"


# --- upserts ------------------------------------------------------------------------------


async def test_put_returns_every_field_with_absent_ones_null(
    client: TestClient, world: World
) -> None:
    user_id = unique("teacher")
    resp = await client.put(
        f"/api/v1/users/{user_id}", json={"role": "teacher", "name": "Ирина"}, headers=world.service
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "user": {
            "id": user_id,
            "role": "teacher",
            "name": "Ирина",
            "email": None,
            "pachca_user_id": None,
            "tutor_id": None,
            "children": None,
        }
    }


async def test_put_with_every_field_and_get_returns_the_same(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    student = unique("student")
    body = {
        "role": "student",
        "name": "Stu Dent",
        "email": "stu@example.org",
        "pachca_user_id": 424242,
        "tutor_id": tutor,
    }
    put = await world.put_user(student, **body)
    assert put == {"id": student, "children": None, **body}
    got = await get_user(client, world, student)
    assert got.status == 200
    assert await got.json() == {"user": put}

    child = await world.user("student")
    parent = unique("parent")
    put = await world.put_user(parent, role="parent", name="Mum", children=[student, child])
    assert set(put) == USER_KEYS
    assert put["children"] == [student, child] and put["tutor_id"] is None


async def test_repeating_a_put_changes_nothing_and_creates_nothing(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    teacher = await world.user("teacher")
    student = await world.user("student", tutor_id=tutor)
    enrolled = await world.enroll(student, teacher)
    before_events = await all_events(client, world)
    before_enrollment = await enrollment(client, world, enrolled.enrollment_id)

    body = {"role": "student", "name": f"Student {student}", "tutor_id": tutor}
    first = await world.put_user(student, **body)
    for _ in range(3):
        assert await world.put_user(student, **body) == first
    assert await all_events(client, world) == before_events
    assert await enrollment(client, world, enrolled.enrollment_id) == before_enrollment


async def test_put_replaces_the_record(client: TestClient, world: World) -> None:
    user_id = await world.user("teacher", email="old@example.org", pachca_user_id=77)
    updated = await world.put_user(user_id, role="teacher", name="Renamed")
    assert updated == {
        "id": user_id,
        "role": "teacher",
        "name": "Renamed",
        "email": None,
        "pachca_user_id": None,
        "tutor_id": None,
        "children": None,
    }


async def test_a_renamed_participant_shows_the_new_name(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher", name="Old Name")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    message = await world.post(teacher, chat_id, "hi")
    await world.put_user(teacher, role="teacher", name="New Name")
    resp = await client.get(f"/api/v1/chats/{chat_id}", headers=world.auth(student))
    chat = (await resp.json())["chat"]
    assert {"id": teacher, "name": "New Name", "role": "teacher"} in chat["participants"]
    assert chat["last_message"]["sender"]["name"] == "New Name"
    resp = await client.get(f"/api/v1/chats/{chat_id}/messages", headers=world.auth(student))
    assert (await resp.json())["messages"][0]["id"] == message["id"]
    assert (await resp.json())["messages"][0]["sender"]["name"] == "New Name"


async def test_a_pachca_account_belongs_to_one_user(client: TestClient, world: World) -> None:
    first = await world.user("teacher", pachca_user_id=5005)
    second = await world.user("teacher", pachca_user_id=5005)
    assert (await (await get_user(client, world, second)).json())["user"]["pachca_user_id"] == 5005
    assert (await (await get_user(client, world, first)).json())["user"]["pachca_user_id"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"role": "student"},
        {"name": "No Role"},
        {"role": "superuser", "name": "X"},
        {"role": "Student", "name": "X"},
        {"role": "student", "name": ""},
        {"role": "student", "name": 5},
        {"role": "student", "name": "X", "pachca_user_id": "12"},
        {"role": "student", "name": "X", "pachca_user_id": 0},
        {"role": "student", "name": "X", "pachca_user_id": 2**63},
        {"role": "student", "name": "X\x00"},
        {"role": "student", "name": "X", "tutor_id": "t" * 65},
        {"role": "parent", "name": "X", "children": ["a\x00"]},
        {"role": "parent", "name": "X", "children": ["c" * 65]},
        {"role": "student", "name": "X", "email": 1},
        {"role": "parent", "name": "X", "children": "kid"},
        {"role": "parent", "name": "X", "children": [1, 2]},
        {"role": "student", "name": "X", "nickname": "x"},
        {"role": "teacher", "name": "X", "tutor_id": "someone"},
        {"role": "student", "name": "X", "children": []},
        [],
    ],
    ids=[
        "empty",
        "no_name",
        "no_role",
        "unknown_role",
        "role_case",
        "empty_name",
        "int_name",
        "string_pachca_id",
        "zero_pachca_id",
        "huge_pachca_id",
        "nul_in_name",
        "long_tutor_id",
        "nul_in_children",
        "long_child_id",
        "int_email",
        "string_children",
        "int_children",
        "unknown_field",
        "tutor_id_on_teacher",
        "children_on_student",
        "array_body",
    ],
)
async def test_invalid_user_bodies_are_400_and_write_nothing(
    client: TestClient, world: World, body: Any
) -> None:
    user_id = unique("user")
    resp = await client.put(f"/api/v1/users/{user_id}", json=body, headers=world.service)
    await expect_error(resp, 400, "invalid_request")
    await expect_error(await get_user(client, world, user_id), 404, "not_found")


async def test_malformed_json_is_400(client: TestClient, world: World) -> None:
    resp = await client.put(
        f"/api/v1/users/{unique('user')}",
        data=b'{"role": "student",',
        headers={**world.service, "Content-Type": "application/json"},
    )
    await expect_error(resp, 400, "invalid_request")


@pytest.mark.parametrize("kind", ["missing", "teacher", "student"])
async def test_a_tutor_id_naming_no_tutor_is_422(
    client: TestClient, world: World, kind: str
) -> None:
    tutor_id = unique("ghost") if kind == "missing" else await world.user(kind)
    user_id = unique("student")
    resp = await client.put(
        f"/api/v1/users/{user_id}",
        json={"role": "student", "name": "S", "tutor_id": tutor_id},
        headers=world.service,
    )
    await expect_error(resp, 422, "unknown_user")
    await expect_error(await get_user(client, world, user_id), 404, "not_found")


@pytest.mark.parametrize("kind", ["missing", "teacher"])
async def test_children_naming_no_known_student_are_422(
    client: TestClient, world: World, kind: str
) -> None:
    student = await world.user("student")
    other = unique("ghost") if kind == "missing" else await world.user(kind)
    parent = unique("parent")
    resp = await client.put(
        f"/api/v1/users/{parent}",
        json={"role": "parent", "name": "P", "children": [student, other]},
        headers=world.service,
    )
    body = await expect_error(resp, 422, "unknown_user")
    assert other in body["error"]["message"]
    await expect_error(await get_user(client, world, parent), 404, "not_found")


@pytest.mark.parametrize("role", ["teacher", "tutor"])
async def test_a_partner_who_still_has_chats_keeps_the_role(
    client: TestClient, world: World, role: str
) -> None:
    partner = await world.user(role, name="Pat")
    if role == "tutor":
        student = await world.user("student", tutor_id=partner)
        enrolled = await world.enroll(student, await world.user("teacher"))
        chat = enrolled.tutor_chat
    else:
        enrolled = await world.enroll(await world.user("student"), partner)
        chat = enrolled.subject_chat
    assert chat is not None
    before = await all_events(client, world)
    resp = await client.put(
        f"/api/v1/users/{partner}", json={"role": "student", "name": "Pat"}, headers=world.service
    )
    body = await expect_error(resp, 409, "conflict")
    assert str(chat["id"]) in body["error"]["message"]
    assert enrolled.enrollment_id in body["error"]["message"]
    assert (await (await get_user(client, world, partner)).json())["user"]["role"] == role
    assert await all_events(client, world) == before
    # The same PUT with the same role still works (a rename, say); and once the enrollment
    # is gone the role may change.
    assert (await world.put_user(partner, role=role, name="Pat P."))["name"] == "Pat P."
    resp = await client.delete(
        f"/api/v1/enrollments/{enrolled.enrollment_id}", headers=world.service
    )
    assert resp.status == 204
    assert (await world.put_user(partner, role="student", name="Pat"))["role"] == "student"


@pytest.mark.parametrize("bad_id", ["u" * 65, "a%00b"], ids=["too_long", "nul"])
async def test_a_user_id_no_record_can_have_is_400_to_put_and_404_to_read(
    client: TestClient, world: World, bad_id: str
) -> None:
    resp = await client.put(
        f"/api/v1/users/{bad_id}", json={"role": "student", "name": "S"}, headers=world.service
    )
    await expect_error(resp, 400, "invalid_request")
    await expect_error(await get_user(client, world, bad_id), 404, "not_found")
    resp = await client.post(f"/api/v1/users/{bad_id}/link-code", headers=world.service)
    await expect_error(resp, 404, "not_found")


async def test_a_64_character_user_id_is_fine(client: TestClient, world: World) -> None:
    user_id = unique("s").ljust(64, "x")
    assert (await world.put_user(user_id, role="student", name="Long Id"))["id"] == user_id
    resp = await client.get("/api/v1/chats", headers=world.auth(user_id))
    assert resp.status == 200


async def test_get_of_an_unknown_user_is_404(client: TestClient, world: World) -> None:
    await expect_error(await get_user(client, world, unique("nobody")), 404, "not_found")


# --- tutors and tutor chats -----------------------------------------------------------------


async def test_setting_a_tutor_creates_tutor_chats_for_every_enrollment(
    client: TestClient, world: World
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    tutor = await world.user("tutor")
    first = await world.enroll(student, teacher)
    second = await world.enroll(student, teacher, subject=(unique("subj"), "Physics"))
    assert first.tutor_chat is None and second.tutor_chat is None
    assert await visible_ids(client, world, tutor) == set()
    since = (await all_events(client, world))[-1]["event_id"]

    await world.put_user(student, role="student", name=f"Student {student}", tutor_id=tutor)

    tutor_chats = []
    for enrolled in (first, second):
        body = await enrollment(client, world, enrolled.enrollment_id)
        chat = tutor_chat(body)
        assert chat is not None
        assert chat["is_active"] is True
        assert chat["enrollment_id"] == enrolled.enrollment_id
        assert {(p["id"], p["role"]) for p in chat["participants"]} == {
            (student, "student"),
            (tutor, "tutor"),
        }
        tutor_chats.append(chat["id"])
    assert await visible_ids(client, world, tutor) == set(tutor_chats)
    assert set(tutor_chats) <= await visible_ids(client, world, student)
    # The teacher sees subject chats only.
    assert await visible_ids(client, world, teacher) == {
        first.subject_chat["id"],
        second.subject_chat["id"],
    }
    created = [e for e in await all_events(client, world) if e["event_id"] > since]
    assert sorted(e["chat_id"] for e in created if e["type"] == "chat.created") == sorted(
        tutor_chats
    )
    for chat_id in tutor_chats:
        await world.post(tutor, chat_id, "Hello from your tutor")
        await world.post(student, chat_id, "Hi!")


async def test_changing_the_tutor_reassigns_the_tutor_chats(
    client: TestClient, world: World
) -> None:
    old_tutor = await world.user("tutor")
    new_tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=old_tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    chat = enrolled.tutor_chat
    assert chat is not None
    history = await world.post(old_tutor, chat["id"], "Notes from before")

    await world.put_user(student, role="student", name=f"Student {student}", tutor_id=new_tutor)

    body = await enrollment(client, world, enrolled.enrollment_id)
    moved = tutor_chat(body)
    assert moved is not None and moved["id"] == chat["id"]  # the same chat, history kept
    assert {p["id"] for p in moved["participants"]} == {student, new_tutor}
    assert len(body["chats"]) == 2

    assert chat["id"] not in await visible_ids(client, world, old_tutor)
    resp = await client.get(f"/api/v1/chats/{chat['id']}", headers=world.auth(old_tutor))
    await expect_error(resp, 403, "forbidden")
    resp = await client.post(
        f"/api/v1/chats/{chat['id']}/messages",
        json={"content": "still here?"},
        headers=world.auth(old_tutor),
    )
    await expect_error(resp, 403, "forbidden")

    assert await visible_ids(client, world, new_tutor) == {chat["id"]}
    resp = await client.get(f"/api/v1/chats/{chat['id']}/messages", headers=world.auth(new_tutor))
    assert (await resp.json())["messages"] == [history]
    await world.post(new_tutor, chat["id"], "I'm your new tutor")


async def test_removing_the_tutor_makes_tutor_chats_read_only(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    chat = enrolled.tutor_chat
    assert chat is not None
    kept = await world.post(student, chat["id"], "thanks for everything")

    await world.put_user(student, role="student", name=f"Student {student}")

    body = await enrollment(client, world, enrolled.enrollment_id)
    assert tutor_chat(body)["is_active"] is False  # type: ignore[index]
    assert body["chats"][0]["is_active"] is True  # the subject chat goes on
    for user in (student, tutor):
        resp = await client.post(
            f"/api/v1/chats/{chat['id']}/messages", json={"content": "x"}, headers=world.auth(user)
        )
        await expect_error(resp, 400, "chat_inactive")
        resp = await client.get(f"/api/v1/chats/{chat['id']}/messages", headers=world.auth(user))
        assert (await resp.json())["messages"] == [kept]
    await world.post(student, enrolled.subject_chat["id"], "subject chat still open")

    # A tutor again: the same chat opens again, now with the newly named tutor.
    another = await world.user("tutor")
    await world.put_user(student, role="student", name=f"Student {student}", tutor_id=another)
    reopened = tutor_chat(await enrollment(client, world, enrolled.enrollment_id))
    assert reopened is not None and reopened["id"] == chat["id"]
    assert reopened["is_active"] is True
    assert {p["id"] for p in reopened["participants"]} == {student, another}
    await world.post(another, chat["id"], "hello")


async def test_a_tutor_chat_follows_the_enrollments_activity(
    client: TestClient, world: World
) -> None:
    tutor = await world.user("tutor")
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher, active=False)
    await world.put_user(student, role="student", name="S", tutor_id=tutor)
    chat = tutor_chat(await enrollment(client, world, enrolled.enrollment_id))
    assert chat is not None and chat["is_active"] is False


# --- link codes -----------------------------------------------------------------------------


async def test_link_codes_are_one_per_request_and_expire(client: TestClient, world: World) -> None:
    teacher = await world.user("teacher")
    codes = []
    for _ in range(2):
        resp = await client.post(f"/api/v1/users/{teacher}/link-code", headers=world.service)
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert set(body) == {"code", "expires_at"}
        assert isinstance(body["code"], str) and body["code"]
        assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC)
        codes.append(body["code"])
    assert codes[0] != codes[1]


async def test_link_code_for_an_unknown_user_is_404(client: TestClient, world: World) -> None:
    resp = await client.post(f"/api/v1/users/{unique('nobody')}/link-code", headers=world.service)
    await expect_error(resp, 404, "not_found")
