"""Every failure renders the JSON error body; no HTML, no tracebacks."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.config import parse_config
from handlers.app import create_app
from store.db import Database
from tests.contract import expect_error
from tests.world import World


async def test_unknown_route_is_404_json(client: TestClient) -> None:
    await expect_error(await client.get("/no/such/thing"), 404, "not_found")


async def test_wrong_method_is_405_json(client: TestClient) -> None:
    resp = await client.delete("/api/v1/chats")
    await expect_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


async def test_body_over_the_limit_is_413_and_nothing_is_written(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    config_data["server"] = {"max_body_bytes": 1024}
    client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    world = World(client, service_token=config_data["auth"]["service_tokens"][0])
    resp = await client.put(
        "/api/v1/users/big", json={"role": "student", "name": "x" * 5000}, headers=world.service
    )
    await expect_error(resp, 413, "payload_too_large")
    await expect_error(
        await client.get("/api/v1/users/big", headers=world.service), 404, "not_found"
    )


async def test_malformed_json_is_400(client: TestClient, world: World) -> None:
    resp = await client.put(
        "/api/v1/users/u1",
        data=b"{not json",
        headers={**world.service, "Content-Type": "application/json"},
    )
    await expect_error(resp, 400, "invalid_request")


async def test_unexpected_failure_is_500_json_without_traceback(
    aiohttp_client: Any, config: Any, database: Database
) -> None:
    app = create_app(config, db=database)

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    body = await expect_error(resp, 500, "internal_error")
    assert "secret internals" not in body["error"]["message"]
    assert "Traceback" not in await resp.text()
