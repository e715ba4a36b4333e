"""limits.posts_per_minute (CONTRACT sections 2, 3): 429 with Retry-After, nothing written."""

from __future__ import annotations

from typing import Any

from bridge.config import parse_config
from handlers.app import create_app
from handlers.keys import SERVICES
from store.db import Database
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
