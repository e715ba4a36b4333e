"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when
BRIDGE_TEST_DATABASE_URL is set), the real app, and a `world` to populate it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from bridge.config import Config, parse_config
from handlers.app import create_app
from store.db import Database
from tests.s3 import s3_bucket, s3_server  # noqa: F401 - fixtures
from tests.world import World

SERVICE_TOKEN = "test-service-token-of-32-characters"
JWT_SECRET = "test-jwt-secret-of-sufficient-length-32b"
PG_URL = os.environ.get("BRIDGE_TEST_DATABASE_URL", "")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own BRIDGE_* settings must not leak into the tests' configs.
    for key in list(os.environ):
        if key.startswith("BRIDGE_") and key != "BRIDGE_TEST_DATABASE_URL":
            monkeypatch.delenv(key)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database of its own for each test."""
    if not PG_URL:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")
        yield db
        await db.dispose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = Database(PG_URL)
    async with admin.write() as tx:
        await tx.run(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(PG_URL, connect_args={"server_settings": {"search_path": schema}})
    yield db
    await db.dispose()
    async with admin.write() as tx:
        await tx.run(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture
def config_data(
    database: Database, request: pytest.FixtureRequest, tmp_path: Path
) -> dict[str, Any]:
    """The test config as a mapping; tests adjust it before the app is built. A module (or a
    test) replaces whole sections with ``pytest.mark.config_sections(pachca={...})``."""
    data: dict[str, Any] = {
        "database": {"url": database.url.render_as_string(hide_password=False)},
        "auth": {"jwt_secret": JWT_SECRET, "service_tokens": [SERVICE_TOKEN]},
        "limits": {"posts_per_minute": 0},
        "files": {"path": str(tmp_path / "files")},
    }
    # Farthest first, so a test's own marker wins over its module's.
    for marker in reversed(list(request.node.iter_markers("config_sections"))):
        data.update(marker.kwargs)
    return data


@pytest.fixture
def config(config_data: dict[str, Any]) -> Config:
    return parse_config(config_data)


@pytest.fixture
async def client(database: Database, config: Config, aiohttp_client: Any) -> TestClient:
    # database first: set up first, torn down last, after the app and its background work stop.
    app = create_app(config, db=database)
    return await aiohttp_client(app)


@pytest.fixture
async def world(client: TestClient) -> World:
    return World(client, service_token=SERVICE_TOKEN)


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, statement: str, _args: Any) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)

    def reset(self) -> None:
        self.statements.clear()


@pytest.fixture
def count_queries(database: Database) -> Iterator[Callable[[], QueryCounter]]:
    """Count SQL statements the app sends to the driver (BEGIN/COMMIT/SAVEPOINT are not
    statements here), on either database: the store's statement hook sees every one."""
    counter = QueryCounter()
    stop = database.on_statement(counter)

    def start() -> QueryCounter:
        counter.reset()
        return counter

    yield start
    stop()
