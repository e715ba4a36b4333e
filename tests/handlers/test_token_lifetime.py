"""Web-client tokens may not live longer than auth.max_token_ttl_s (docs/api.md):
counted from `iat`, or from the moment the token is presented when it has none."""

from __future__ import annotations

import time
from typing import Any

import jwt
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from bridge.config import parse_config
from handlers.app import create_app
from store.db import Database
from tests.conftest import JWT_SECRET, SERVICE_TOKEN
from tests.world import World

YEAR = 365 * 86400


def signed(**claims: Any) -> str:
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def rest_status(client: TestClient, token: str) -> int:
    resp = await client.get("/api/v1/chats", headers={"Authorization": f"Bearer {token}"})
    return resp.status


async def socket_close_code(client: TestClient, token: str) -> int | None:
    ws = await client.ws_connect(f"/api/v1/ws?token={token}")
    msg = await ws.receive(timeout=10)
    if msg.type is WSMsgType.TEXT:
        assert msg.json()["type"] == "ready"
        await ws.close()
        return None
    assert msg.type is WSMsgType.CLOSE
    return ws.close_code


async def test_a_token_for_300_years_is_refused(client: TestClient, world: World) -> None:
    user = await world.user("student")
    token = world.token(user, ttl=300 * YEAR)
    assert await rest_status(client, token) == 401
    assert await socket_close_code(client, token) == 4401
    # The same user with an ordinary token is fine.
    assert await rest_status(client, world.token(user)) == 200
    assert await socket_close_code(client, world.token(user)) is None


async def test_lifetime_counts_from_iat(client: TestClient, world: World) -> None:
    user = await world.user("student")
    now = int(time.time())
    # Issued long ago but lives a day at most: fine, whatever is left of it.
    assert await rest_status(client, signed(sub=user, iat=now - 80000, exp=now + 6400)) == 200
    # Issued long ago and living a day and a second: refused although it expires soon.
    assert await rest_status(client, signed(sub=user, iat=now - 86000, exp=now + 401)) == 401
    body = await (
        await client.get(
            "/api/v1/chats",
            headers={"Authorization": f"Bearer {signed(sub=user, iat=now, exp=now + 2 * YEAR)}"},
        )
    ).json()
    assert body["error"]["code"] == "unauthorized"


async def test_without_iat_lifetime_counts_from_now(client: TestClient, world: World) -> None:
    user = await world.user("student")
    now = int(time.time())
    assert await rest_status(client, signed(sub=user, exp=now + 3600)) == 200
    assert await rest_status(client, signed(sub=user, exp=now + 2 * 86400)) == 401
    assert await socket_close_code(client, signed(sub=user, exp=now + 2 * 86400)) == 4401


async def test_the_cap_is_configurable(
    aiohttp_client: Any, database: Database, config_data: dict[str, Any]
) -> None:
    config_data["auth"]["max_token_ttl_s"] = 600
    client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    world = World(client, service_token=SERVICE_TOKEN)
    user = await world.user("student")
    assert await rest_status(client, world.token(user, ttl=600)) == 200
    assert await rest_status(client, world.token(user, ttl=601)) == 401
