"""Listing and reading chats (docs/api.md): the chat object, who sees which
chats, and the order of the list."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.contract import CHAT_KEYS, expect_error
from tests.world import World, unique


async def list_chats(client: TestClient, world: World, user: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/chats", headers=world.auth(user))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"chats"}
    return body["chats"]


async def get_chat(client: TestClient, world: World, user: str, chat_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/chats/{chat_id}", headers=world.auth(user))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"chat"}
    return body["chat"]


async def test_list_and_get_return_the_same_chat_object(client: TestClient, world: World) -> None:
    tutor = await world.user("tutor", name="Tom Tutor")
    student = await world.user("student", name="Sasha", tutor_id=tutor)
    teacher = await world.user("teacher", name="Tanya")
    subject_id = unique("subj")
    enrolled = await world.enroll(student, teacher, subject=(subject_id, "Литература"))
    message = await world.post(teacher, enrolled.subject_chat["id"], "Read chapter 2")

    chats = await list_chats(client, world, student)
    assert len(chats) == 2
    for chat in chats:
        assert set(chat) == CHAT_KEYS
        assert chat["enrollment_id"] == enrolled.enrollment_id
        assert chat["subject"] == {"id": subject_id, "name": "Литература"}
        assert chat["is_active"] is True
        for person in chat["participants"]:
            assert set(person) == {"id", "name", "role"}
        assert await get_chat(client, world, student, chat["id"]) == chat
    by_type = {c["type"]: c for c in chats}
    subject_chat = by_type["forum_subject"]
    assert subject_chat["last_message"] == message
    assert subject_chat["unread_count"] == 1
    assert {(p["id"], p["name"], p["role"]) for p in subject_chat["participants"]} == {
        (student, "Sasha", "student"),
        (teacher, "Tanya", "teacher"),
    }
    tutor_chat = by_type["forum_tutor"]
    assert tutor_chat["last_message"] is None and tutor_chat["unread_count"] == 0
    assert {(p["id"], p["name"], p["role"]) for p in tutor_chat["participants"]} == {
        (student, "Sasha", "student"),
        (tutor, "Tom Tutor", "tutor"),
    }


async def test_newest_activity_first(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    a, b, c = [(await world.enroll(student, teacher)).subject_chat["id"] for _ in range(3)]

    async def order(user: str) -> list[int]:
        return [chat["id"] for chat in await list_chats(client, world, user)]

    # No messages yet: by creation, newest first.
    assert await order(student) == [c, b, a]
    await world.post(student, a, "a wakes up")
    assert await order(student) == [a, c, b]
    only_in_b = await world.post(teacher, b, "b now")
    assert await order(student) == [b, a, c]
    assert await order(teacher) == [b, a, c]

    # Without its only message, b falls back to its creation time.
    resp = await client.delete(f"/api/v1/messages/{only_in_b['id']}", headers=world.auth(teacher))
    assert resp.status == 204
    assert await order(student) == [a, c, b]


async def test_each_role_lists_only_what_it_may_see(client: TestClient, world: World) -> None:
    tutor = await world.user("tutor")
    other_tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    sibling = await world.user("student", tutor_id=other_tutor)
    teacher = await world.user("teacher")
    other_teacher = await world.user("teacher")
    parent = await world.user("parent", children=[student, sibling])
    admin = await world.user("admin")
    loner = await world.user("student")

    mine = await world.enroll(student, teacher)
    theirs = await world.enroll(sibling, other_teacher)
    shared_teacher = await world.enroll(sibling, teacher, active=False)

    def ids(*enrolled: Any, kind: str | None = None) -> set[int]:
        return {
            c["id"] for e in enrolled for c in e.body["chats"] if kind is None or c["type"] == kind
        }

    async def listed(user: str) -> set[int]:
        return {c["id"] for c in await list_chats(client, world, user)}

    assert await listed(student) == ids(mine)
    assert await listed(sibling) == ids(theirs, shared_teacher)
    assert await listed(teacher) == ids(mine, shared_teacher, kind="forum_subject")
    assert await listed(other_teacher) == ids(theirs, kind="forum_subject")
    assert await listed(tutor) == ids(mine, kind="forum_tutor")
    assert await listed(other_tutor) == ids(theirs, shared_teacher, kind="forum_tutor")
    assert await listed(parent) == set()  # parents see nothing, not even their children's
    assert await listed(loner) == set()
    everything = ids(mine, theirs, shared_teacher)
    assert len(everything) == 6
    assert await listed(admin) == everything  # inactive chats included


@pytest.mark.parametrize("role", ["student", "teacher", "tutor", "parent", "admin"])
async def test_a_user_with_no_chats_gets_an_empty_list(
    client: TestClient, world: World, role: str
) -> None:
    user = await world.user(role)
    assert await list_chats(client, world, user) == []


async def test_unread_count_is_per_viewer(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    admin = await world.user("admin")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    for i in range(3):
        await world.post(student, chat_id, f"s{i}")
    await world.post(teacher, chat_id, "t")
    assert (await get_chat(client, world, teacher, chat_id))["unread_count"] == 3
    assert (await get_chat(client, world, student, chat_id))["unread_count"] == 1
    # An admin keeps no read marks: every message is unread to them.
    assert (await get_chat(client, world, admin, chat_id))["unread_count"] == 4


async def test_parents_are_refused_every_chat_even_their_childs(
    client: TestClient, world: World
) -> None:
    student = await world.user("student")
    parent = await world.user("parent", children=[student])
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    message = await world.post(student, chat_id, "hi")
    headers = world.auth(parent)
    for resp in (
        await client.get(f"/api/v1/chats/{chat_id}", headers=headers),
        await client.get(f"/api/v1/chats/{chat_id}/messages", headers=headers),
        await client.post(
            f"/api/v1/chats/{chat_id}/messages", json={"content": "x"}, headers=headers
        ),
        await client.post(
            f"/api/v1/chats/{chat_id}/read", json={"message_id": message["id"]}, headers=headers
        ),
        await client.patch(
            f"/api/v1/messages/{message['id']}", json={"content": "x"}, headers=headers
        ),
        await client.delete(f"/api/v1/messages/{message['id']}", headers=headers),
    ):
        await expect_error(resp, 403, "forbidden")


async def test_admin_reads_everything_but_posts_nothing(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    admin = await world.user("admin")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    message = await world.post(student, chat_id, "visible to the admin")
    assert (await get_chat(client, world, admin, chat_id))["last_message"] == message
    resp = await client.get(f"/api/v1/chats/{chat_id}/messages", headers=world.auth(admin))
    assert (await resp.json())["messages"] == [message]
    resp = await client.post(
        f"/api/v1/chats/{chat_id}/messages",
        json={"content": "admin here"},
        headers=world.auth(admin),
    )
    await expect_error(resp, 403, "forbidden")
    resp = await client.get(f"/api/v1/chats/{chat_id}/messages", headers=world.auth(admin))
    assert (await resp.json())["total"] == 1


def arabic_indic(number: int) -> str:
    return "".join(chr(0x0660 + int(d)) for d in str(number))


async def test_path_ids_are_plain_ascii_digits(client: TestClient, world: World) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    message = await world.post(student, chat_id, "hello")
    auth = world.auth(student)
    assert (await client.get(f"/api/v1/chats/{chat_id}", headers=auth)).status == 200
    # Python's int() takes all of these; none of them is the chat's id as written.
    variants = [f"+{chat_id}", f"%20{chat_id}", f"{chat_id}%20", f"{chat_id}_0"]
    variants.append("".join(f"%{b:02X}" for b in arabic_indic(chat_id).encode()))
    for spelled in variants:
        for path in (f"/api/v1/chats/{spelled}", f"/api/v1/chats/{spelled}/messages"):
            await expect_error(await client.get(path, headers=auth), 404, "not_found")
    mid = "".join(f"%{b:02X}" for b in arabic_indic(message["id"]).encode())
    resp = await client.patch(f"/api/v1/messages/{mid}", json={"content": "x"}, headers=auth)
    await expect_error(resp, 404, "not_found")
