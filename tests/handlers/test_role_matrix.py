"""The whole role x endpoint matrix of docs/api.md, end to end over REST.

Every kind of user, against every chat endpoint, on a subject chat and a tutor chat, as a
participant or not. The expected outcomes are written out here from the contract, not derived
from bridge/policy.py, so a wrong rule there fails here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from store import users as user_store
from store.db import Database
from tests.world import World

SUBJECT, TUTOR = "subject", "tutor"

# Who sees which chat of the scene below. Everyone not listed sees nothing.
SEES: dict[str, set[str]] = {
    "student": {SUBJECT, TUTOR},  # a participant of both
    "teacher": {SUBJECT},  # the enrollment's teacher; not in the tutor chat
    "tutor": {TUTOR},  # the student's tutor; not in the subject chat
    "other_student": set(),  # has chats of their own elsewhere
    "other_teacher": set(),
    "other_tutor": set(),
    "parent": set(),  # the student's own parent
    "admin": {SUBJECT, TUTOR},  # every chat, read-only
    # Participants whose role no longer allows the chat (their role changed afterwards; the API
    # refuses such a change now, 409, but a database from before may hold one):
    "tutor_in_subject": set(),  # was the teacher, now a tutor: tutors never see subject chats
    "teacher_in_tutor": set(),  # was the tutor, now a teacher: teachers never see tutor chats
}
# Who takes part in which chat (read marks are theirs only).
PARTICIPATES: dict[str, set[str]] = {
    "student": {SUBJECT, TUTOR},
    "teacher": {SUBJECT},
    "tutor": {TUTOR},
    "tutor_in_subject": {SUBJECT},
    "teacher_in_tutor": {TUTOR},
}
ACTIONS = [
    "list",
    "get",
    "messages",
    "post",
    "edit_own",
    "edit_others",
    "delete_own",
    "delete_others",
    "read",
    "react",
    "unreact",
]
# A reaction's path (👍, percent-encoded).
REACTION = "/api/v1/messages/{}/reactions/%F0%9F%91%8D"


def may_see(actor: str, chat: str) -> bool:
    return chat in SEES[actor]


def may_post(actor: str, chat: str) -> bool:
    return may_see(actor, chat) and actor != "admin"


def expected(actor: str, chat: str, action: str) -> int:
    sees, posts = may_see(actor, chat), may_post(actor, chat)
    return {
        "list": 200,
        "get": 200 if sees else 403,
        "messages": 200 if sees else 403,
        "post": 201 if posts else 403,
        # Without a message of their own (they cannot post) an actor tries someone else's.
        "edit_own": 200 if posts else 403,
        "edit_others": 403,
        "delete_own": 204 if posts else (204 if actor == "admin" else 403),
        "delete_others": 204 if actor == "admin" else 403,
        "read": 204 if posts and chat in PARTICIPATES.get(actor, set()) else 403,
        "react": 204 if posts else 403,
        "unreact": 204 if posts else 403,
    }[action]


@dataclass
class Scene:
    users: dict[str, str]
    chats: dict[str, dict[str, int]]  # actor -> {"subject": id, "tutor": id} of their scene
    # One message per chat by someone other than the actor, to edit or delete.
    others: dict[int, dict[str, int]]  # chat id -> {author role -> message id}


async def change_role_in_the_database(database: Database, user_id: str, role: str) -> None:
    """As an older version let the platform do: the API refuses it now (409)."""
    async with database.write() as tx:
        row = await user_store.get_user(tx, user_id)
        assert row is not None
        values = {k: row[k] for k in ("id", "name", "email", "pachca_user_id", "tutor_id")}
        values |= {"role": role, "children": row["children"]}
        await user_store.upsert_user(tx, values, datetime.now(UTC))


async def build(world: World, actor: str, database: Database) -> Scene:
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    assert enrolled.tutor_chat is not None
    main = {SUBJECT: enrolled.subject_chat["id"], TUTOR: enrolled.tutor_chat["id"]}
    users = {"student": student, "teacher": teacher, "tutor": tutor}
    chats = {name: main for name in SEES}

    if actor.startswith("other_"):
        # Outsiders with chats of their own, so "sees nothing here" is not "has nothing".
        other_tutor = await world.user("tutor")
        other_student = await world.user("student", tutor_id=other_tutor)
        other_teacher = await world.user("teacher")
        await world.enroll(other_student, other_teacher)
        users |= {
            "other_student": other_student,
            "other_teacher": other_teacher,
            "other_tutor": other_tutor,
        }
    elif actor == "parent":
        users["parent"] = await world.user("parent", children=[student])
    elif actor == "admin":
        users["admin"] = await world.user("admin")
    elif actor in ("tutor_in_subject", "teacher_in_tutor"):
        former_tutor = await world.user("tutor")
        student2 = await world.user("student", tutor_id=former_tutor)
        former_teacher = await world.user("teacher")
        second = await world.enroll(student2, former_teacher)
        assert second.tutor_chat is not None
        await change_role_in_the_database(database, former_teacher, "tutor")
        await change_role_in_the_database(database, former_tutor, "teacher")
        users |= {"tutor_in_subject": former_teacher, "teacher_in_tutor": former_tutor}
        users["student2"] = student2
        chats[actor] = {SUBJECT: second.subject_chat["id"], TUTOR: second.tutor_chat["id"]}

    others: dict[int, dict[str, int]] = {}
    for chat_id in {*main.values(), *chats[actor].values()}:
        author = student if chat_id in main.values() else users["student2"]
        others[chat_id] = {"student": (await world.post(author, chat_id, "by the student"))["id"]}
    return Scene(users, chats, others)


async def chat_state(client: TestClient, world: World, scene: Scene, chat_id: int) -> Any:
    """Everything a refused request must leave as it was: the messages and the event log."""
    admin = await world.user("admin")
    resp = await client.get(
        f"/api/v1/chats/{chat_id}/messages", params={"limit": "200"}, headers=world.auth(admin)
    )
    events = await client.get("/api/v1/events", params={"limit": "1000"}, headers=world.service)
    body = await events.json()
    return (await resp.json())["messages"], body["events"][-1]["event_id"]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("chat", [SUBJECT, TUTOR])
@pytest.mark.parametrize("actor", list(SEES))
async def test_role_matrix(
    client: TestClient, world: World, database: Database, actor: str, chat: str, action: str
) -> None:
    scene = await build(world, actor, database)
    user = scene.users[actor]
    chat_id = scene.chats[actor][chat]
    headers = world.auth(user)
    want = expected(actor, chat, action)
    others_message = scene.others[chat_id]["student"]
    if actor == "student" and action in ("edit_others", "delete_others"):
        # For the student, "someone else" is the other participant.
        author = scene.users["teacher" if chat == SUBJECT else "tutor"]
        others_message = (await world.post(author, chat_id, "by the partner"))["id"]

    own_message = others_message
    if action in ("edit_own", "delete_own") and may_post(actor, chat):
        own_message = (await world.post(user, chat_id, "my own"))["id"]

    if action == "unreact" and may_post(actor, chat):
        # Something to take back: the actor's own reaction.
        resp = await client.put(REACTION.format(others_message), headers=headers)
        assert resp.status == 204, await resp.text()

    before = await chat_state(client, world, scene, chat_id)
    if action == "list":
        resp = await client.get("/api/v1/chats", headers=headers)
        assert resp.status == 200
        listed = {c["id"] for c in (await resp.json())["chats"]}
        assert (chat_id in listed) is may_see(actor, chat)
        return
    if action == "get":
        resp = await client.get(f"/api/v1/chats/{chat_id}", headers=headers)
    elif action == "messages":
        resp = await client.get(f"/api/v1/chats/{chat_id}/messages", headers=headers)
    elif action == "post":
        resp = await client.post(
            f"/api/v1/chats/{chat_id}/messages", json={"content": "hello"}, headers=headers
        )
    elif action == "edit_own":
        resp = await client.patch(
            f"/api/v1/messages/{own_message}", json={"content": "edited"}, headers=headers
        )
    elif action == "edit_others":
        resp = await client.patch(
            f"/api/v1/messages/{others_message}", json={"content": "edited"}, headers=headers
        )
    elif action == "delete_own":
        resp = await client.delete(f"/api/v1/messages/{own_message}", headers=headers)
    elif action == "delete_others":
        resp = await client.delete(f"/api/v1/messages/{others_message}", headers=headers)
    elif action == "react":
        resp = await client.put(REACTION.format(others_message), headers=headers)
    elif action == "unreact":
        resp = await client.delete(REACTION.format(others_message), headers=headers)
    else:
        resp = await client.post(
            f"/api/v1/chats/{chat_id}/read", json={"message_id": others_message}, headers=headers
        )

    assert resp.status == want, f"{actor} {action} on the {chat} chat: {await resp.text()}"
    if want == 403:
        body = await resp.json()
        assert body["error"]["code"] == "forbidden" and body["error"]["message"]
        assert await chat_state(client, world, scene, chat_id) == before
    elif action in ("get", "messages"):
        body = await resp.json()
        assert ("chat" in body) if action == "get" else body["total"] >= 1
    elif action in ("react", "unreact"):
        messages, _ = await chat_state(client, world, scene, chat_id)
        [message] = [m for m in messages if m["id"] == others_message]
        held = [{"emoji": "👍", "user_ids": [user]}] if action == "react" else []
        assert message["reactions"] == held
