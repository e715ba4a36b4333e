"""limits.posts_per_minute (docs/api.md): 429 with Retry-After, nothing written."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bridge.config import parse_config
from handlers.app import create_app
from handlers.keys import SERVICES
from store.db import Database
from store.models import Event, OutboxJob
from tests.conftest import SERVICE_TOKEN
from tests.contract import expect_error
from tests.world import World


async def test_posting_over_the_limit_is_429_and_writes_nothing(
    database: Database, config_data: dict[str, Any], aiohttp_client: Any
) -> None:
    config_data["limits"] = {"posts_per_minute": 3}
    client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    world = World(client, service_token=SERVICE_TOKEN)
    student, teacher = await world.user("student"), await world.user("teacher")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    for n in range(3):
        await world.post(student, chat, f"message {n}")

    resp = await client.post(
        f"/api/v1/chats/{chat}/messages",
        json={"content": "one too many"},
        headers=world.auth(student),
    )
    await expect_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    page = await client.get(f"/api/v1/chats/{chat}/messages", headers=world.auth(student))
    assert (await page.json())["total"] == 3

    # The limit is per user: the teacher still posts.
    await world.post(teacher, chat, "teacher is not limited by the student's posts")

    # A reload to 0 turns the limit off at once.
    live = client.app[SERVICES].rt.live
    live.current = live.current.model_copy(
        update={"limits": live.current.limits.model_copy(update={"posts_per_minute": 0})}
    )
    await world.post(student, chat, "unlimited again")


async def limited(
    database: Database, config_data: dict[str, Any], aiohttp_client: Any, per_minute: int
) -> tuple[Any, World, str, str, int]:
    """An app with ``limits.posts_per_minute`` set, a student and a teacher sharing a chat."""
    config_data["limits"] = {"posts_per_minute": per_minute}
    client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    world = World(client, service_token=SERVICE_TOKEN)
    student, teacher = await world.user("student"), await world.user("teacher")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    return client, world, student, teacher, chat


async def written(database: Database) -> dict[str, int]:
    """Rows a write leaves behind: feed events and outbox jobs."""
    async with database.read() as conn:
        return {
            m.__tablename__: await conn.value(select(func.count()).select_from(m.__table__))
            for m in (Event, OutboxJob)
        }


async def test_edits_count_against_the_limit_and_one_over_it_writes_nothing(
    database: Database, config_data: dict[str, Any], aiohttp_client: Any
) -> None:
    client, world, student, teacher, chat = await limited(database, config_data, aiohttp_client, 3)
    message = await world.post(student, chat, "first")
    url = f"/api/v1/messages/{message['id']}"
    for n in range(2):
        resp = await client.patch(url, json={"content": f"edit {n}"}, headers=world.auth(student))
        assert resp.status == 200
    before = await written(database)

    resp = await client.patch(url, json={"content": "one too many"}, headers=world.auth(student))
    await expect_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    page = await client.get(f"/api/v1/chats/{chat}/messages", headers=world.auth(student))
    assert [m["content"] for m in (await page.json())["messages"]] == ["edit 1"]
    assert await written(database) == before

    # The limit comes after the other checks, as for posts: 404, 403 and 400 still win.
    teacher_message = await world.post(teacher, chat, "teacher's")
    for target, body, status in (
        ("999999", {"content": "x"}, 404),
        (str(teacher_message["id"]), {"content": "x"}, 403),
        (str(message["id"]), {"content": "   "}, 400),
        (str(message["id"]), {"nope": 1}, 400),
    ):
        resp = await client.patch(
            f"/api/v1/messages/{target}", json=body, headers=world.auth(student)
        )
        assert resp.status == status, (target, body)


async def test_deletions_count_against_the_limit_and_one_over_it_deletes_nothing(
    database: Database, config_data: dict[str, Any], aiohttp_client: Any
) -> None:
    client, world, student, teacher, chat = await limited(database, config_data, aiohttp_client, 3)
    kept, doomed = [await world.post(student, chat, f"message {n}") for n in range(2)]
    resp = await client.delete(f"/api/v1/messages/{doomed['id']}", headers=world.auth(student))
    assert resp.status == 204
    before = await written(database)

    resp = await client.delete(f"/api/v1/messages/{kept['id']}", headers=world.auth(student))
    await expect_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    page = await client.get(f"/api/v1/chats/{chat}/messages", headers=world.auth(student))
    assert [m["id"] for m in (await page.json())["messages"]] == [kept["id"]]
    assert await written(database) == before

    # Posting draws on the same allowance.
    resp = await client.post(
        f"/api/v1/chats/{chat}/messages", json={"content": "x"}, headers=world.auth(student)
    )
    await expect_error(resp, 429, "rate_limited")
    # 404 and 403 come first.
    teacher_message = await world.post(teacher, chat, "teacher's")
    for target, status in (("999999", 404), (str(teacher_message["id"]), 403)):
        resp = await client.delete(f"/api/v1/messages/{target}", headers=world.auth(student))
        assert resp.status == status, target


async def test_a_retried_client_id_is_no_write_and_never_counts(
    database: Database, config_data: dict[str, Any], aiohttp_client: Any
) -> None:
    # A retry of a post that went through writes nothing new and reaches no one: it is
    # answered with the first message, spends none of the allowance, and is answered so even
    # when the allowance is spent.
    client, world, student, _teacher, chat = await limited(database, config_data, aiohttp_client, 2)
    url = f"/api/v1/chats/{chat}/messages"
    headers = world.auth(student)
    first = await client.post(url, json={"content": "once", "client_id": "c-1"}, headers=headers)
    assert first.status == 201
    for _ in range(3):
        again = await client.post(
            url, json={"content": "once", "client_id": "c-1"}, headers=headers
        )
        assert again.status == 200, await again.text()
    second = await client.post(url, json={"content": "two", "client_id": "c-2"}, headers=headers)
    assert second.status == 201, await second.text()  # the retries took nothing

    at_limit = await client.post(url, json={"content": "once", "client_id": "c-1"}, headers=headers)
    assert at_limit.status == 200
    assert (await at_limit.json())["message"] == (await first.json())["message"]
    over = await client.post(url, json={"content": "three", "client_id": "c-3"}, headers=headers)
    await expect_error(over, 429, "rate_limited")
