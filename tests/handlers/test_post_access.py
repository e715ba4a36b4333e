"""A web post decides 404, 403 and read-only from the copy of the chat's access its instance
keeps (bridge/forum/access_cache.py). Every change to that access - an enrollment deactivated,
given another teacher or deleted, a student's tutor replaced or removed - is honoured by the
very next post: on the instance that made the change, and on every other one through the Redis
feed. Copies are made to last an hour here, so only their invalidation can explain a refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from handlers.keys import SERVICES
from store.db import Database
from tests.conftest import SERVICE_TOKEN
from tests.contract import expect_error
from tests.handlers.test_ws import Cluster, build
from tests.world import World, unique

KEEP_S = 3600.0


@dataclass
class School:
    student: str
    teacher: str
    tutor: str
    enrollment_id: str
    subject: tuple[str, str]
    subject_chat: int
    tutor_chat: int


async def school(world: World) -> School:
    tutor = await world.user("tutor")
    student = await world.user("student", name="Sam", tutor_id=tutor)
    teacher = await world.user("teacher")
    subject = (unique("subj"), "Physics")
    enrolled = await world.enroll(student, teacher, subject=subject)
    assert enrolled.tutor_chat is not None
    return School(
        student,
        teacher,
        tutor,
        enrolled.enrollment_id,
        subject,
        enrolled.subject_chat["id"],
        enrolled.tutor_chat["id"],
    )


@dataclass(frozen=True)
class Change:
    """A change of a chat's access: who posted in the chat before it, how it is made (through
    ``world``), and what that poster's next post (with ``content``) gets; ``make`` returns
    whoever may post there now instead, if anyone (their post must succeed)."""

    chat: Callable[[School], int]
    poster: Callable[[School], str]
    make: Callable[[World, School], Awaitable[str | None]]
    status: int
    code: str
    content: str = "after the change"


async def deactivate(world: World, s: School) -> None:
    await world.enroll(
        s.student, s.teacher, subject=s.subject, enrollment_id=s.enrollment_id, active=False
    )


async def replace_teacher(world: World, s: School) -> str:
    teacher = await world.user("teacher")
    await world.enroll(s.student, teacher, subject=s.subject, enrollment_id=s.enrollment_id)
    return teacher


async def delete(world: World, s: School) -> None:
    resp = await world.client.delete(
        f"/api/v1/enrollments/{s.enrollment_id}", headers=world.service
    )
    assert resp.status == 204, await resp.text()


async def replace_tutor(world: World, s: School) -> str:
    tutor = await world.user("tutor")
    await world.put_user(s.student, role="student", name="Sam", tutor_id=tutor)
    return tutor


async def remove_tutor(world: World, s: School) -> None:
    await world.put_user(s.student, role="student", name="Sam", tutor_id=None)


CHANGES = {
    "deactivated": Change(
        lambda s: s.subject_chat, lambda s: s.teacher, deactivate, 400, "chat_inactive"
    ),
    "teacher_replaced": Change(
        lambda s: s.subject_chat, lambda s: s.teacher, replace_teacher, 403, "forbidden"
    ),
    # A blank post: existence is checked before the body (docs/api.md), so it gets 404; a stale
    # copy of the deleted chat would let it reach the body's check (400 invalid_content).
    "deleted": Change(
        lambda s: s.subject_chat, lambda s: s.student, delete, 404, "not_found", content=" "
    ),
    "tutor_replaced": Change(
        lambda s: s.tutor_chat, lambda s: s.tutor, replace_tutor, 403, "forbidden"
    ),
    "tutor_removed": Change(
        lambda s: s.tutor_chat, lambda s: s.student, remove_tutor, 400, "chat_inactive"
    ),
}


def keep_long(*apps: web.Application) -> None:
    for app in apps:
        app[SERVICES].access.ttl_s = KEEP_S


def kept(app: web.Application, chat_id: int) -> bool:
    return chat_id in app[SERVICES].access


async def post(world: World, user: str, chat_id: int, content: str = "after the change") -> Any:
    return await world.client.post(
        f"/api/v1/chats/{chat_id}/messages", json={"content": content}, headers=world.auth(user)
    )


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
async def test_the_next_post_on_the_same_instance_sees_the_change(
    client: TestClient, world: World, change: str
) -> None:
    case = CHANGES[change]
    app = client.server.app
    keep_long(app)
    s = await school(world)
    chat_id, poster = case.chat(s), case.poster(s)
    await world.post(poster, chat_id, "before the change")
    assert kept(app, chat_id)  # the instance holds the chat's access now

    newcomer = await case.make(world, s)

    await expect_error(await post(world, poster, chat_id, case.content), case.status, case.code)
    if newcomer is not None:
        await world.post(newcomer, chat_id, "the new partner may post")


async def test_a_chat_made_active_again_takes_posts_at_once(
    client: TestClient, world: World
) -> None:
    keep_long(client.server.app)
    s = await school(world)
    await deactivate(world, s)
    await expect_error(await post(world, s.teacher, s.subject_chat), 400, "chat_inactive")
    assert kept(client.server.app, s.subject_chat)  # kept as read-only
    await world.enroll(s.student, s.teacher, subject=s.subject, enrollment_id=s.enrollment_id)
    await world.post(s.teacher, s.subject_chat, "open again")


async def test_a_repeated_client_id_answers_with_the_read_marks_of_now(
    client: TestClient, world: World
) -> None:
    # Read marks are never served from the kept copy: they change all the time.
    keep_long(client.server.app)
    s = await school(world)
    first = await world.post(s.student, s.subject_chat, "question", client_id="q-1")
    assert first["read_by"] == []
    resp = await client.post(
        f"/api/v1/chats/{s.subject_chat}/read",
        json={"message_id": first["id"]},
        headers=world.auth(s.teacher),
    )
    assert resp.status == 204
    assert kept(client.server.app, s.subject_chat)
    again = await client.post(
        f"/api/v1/chats/{s.subject_chat}/messages",
        json={"content": "question", "client_id": "q-1"},
        headers=world.auth(s.student),
    )
    assert again.status == 200, await again.text()
    assert (await again.json())["message"]["read_by"] == [s.teacher]


# --- several instances ----------------------------------------------------------------------


@pytest.fixture
async def cluster(
    aiohttp_client: Any, database: Database, config_data: dict[str, Any]
) -> AsyncIterator[Cluster]:
    """Two instances on one database and the Redis feed (skipped without Redis)."""
    c = await build("redis", aiohttp_client, database, config_data)
    yield c
    for ws in c.sockets:
        await ws.close()


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
async def test_a_change_through_one_instance_is_honoured_by_the_next_post_on_another(
    cluster: Cluster, change: str
) -> None:
    case = CHANGES[change]
    through = cluster.world  # the platform's calls go to the last instance
    other = World(cluster.clients[0], service_token=SERVICE_TOKEN)  # posts go to the first
    keep_long(*(cluster.app(i) for i in range(len(cluster.clients))))
    await cluster.watch()  # an admin socket on each instance: it sees every chat's events
    s = await school(through)
    chat_id, poster = case.chat(s), case.poster(s)
    await cluster.settle(lambda f: f["type"] == "chat.created" and f["chat_id"] == chat_id)
    await other.post(poster, chat_id, "before the change")
    assert kept(cluster.app(0), chat_id)

    newcomer = await case.make(through, s)
    # The change's control message goes out before the chat's event, on the same channel:
    # once the other instance has fanned the event out, it has forgotten the chat.
    await cluster.settle(
        lambda f: f["type"] in ("chat.updated", "chat.deleted") and f["chat_id"] == chat_id
    )

    await expect_error(await post(other, poster, chat_id, case.content), case.status, case.code)
    if newcomer is not None:
        await other.post(newcomer, chat_id, "the new partner may post")
