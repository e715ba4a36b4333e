"""Health, readiness and metrics (docs/operations.md)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import text

from bridge.config import parse_config
from handlers.app import create_app
from handlers.keys import SERVICES
from store.db import Database


async def test_healthz(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_when_database_answers_and_schema_is_current(client: TestClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_readyz_503_when_database_is_gone(client: TestClient, database: Database) -> None:
    # The service's database stops answering: its server refuses connections.
    gone = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    client.app[SERVICES].rt.db = gone
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    await gone.dispose()


async def test_readyz_503_when_schema_is_behind(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    async with database.write() as conn:
        await conn.run(text("UPDATE alembic_version SET version_num = 'old'"))
    resp = await client.get("/readyz")
    assert resp.status == 503


async def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    await client.get("/healthz")
    await client.get("/api/v1/chats")  # 401
    text_body = await (await client.get("/metrics")).text()
    assert 'bridge_http_requests_total{route="/healthz",status="200"} 1.0' in text_body
    assert 'bridge_http_requests_total{route="/api/v1/chats",status="401"} 1.0' in text_body
    assert "bridge_websockets_connected" in text_body
