"""Schema migrations: bring the database to the newest revision, and tell whether it is there.

Alembic runs on a SQLAlchemy engine made for the migration and disposed after it: the only
place the store still uses SQLAlchemy's engine. SQLite connections of that engine get the same
pragmas as the service's own (foreign keys on: the migrations are written for that).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from store.db import Database, keep_private, safe_url
from store.sqlite import pragmas
from store.tx import prepared

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"

T = TypeVar("T")

_HAS_VERSION_TABLE = prepared(
    lambda dialect: text(
        "SELECT to_regclass('alembic_version') IS NOT NULL"
        if dialect == "postgresql"
        else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    )
)
_VERSION = prepared(text(f"SELECT version_num FROM {VERSION_TABLE}"))


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@asynccontextmanager
async def _engine_connection(db: Database) -> AsyncIterator[AsyncConnection]:
    if db.is_sqlite:
        keep_private(db.url.database or "")
    engine = create_async_engine(db.url, poolclass=NullPool, connect_args=db.connect_args)
    if db.is_sqlite:
        event.listen(engine.sync_engine, "connect", lambda conn, _record: pragmas(conn))
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def run_sync(db: Database, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` on a SQLAlchemy connection of a short-lived engine, then commit: migrations,
    and schema inspection in tests."""
    async with _engine_connection(db) as conn:
        result = await conn.run_sync(fn)
        await conn.commit()
    return result


async def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every migration not yet applied (each in its own transaction), up to
    ``revision`` (tests start from an older schema with it)."""

    def run(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    await run_sync(db, run)


async def downgrade(db: Database, revision: str) -> None:
    """Undo migrations down to ``revision`` (tests check that each one can be undone)."""

    def run(connection: Connection) -> None:
        command.downgrade(_alembic_config(connection), revision)

    await run_sync(db, run)


async def current_revision(db: Database) -> str | None:
    """The schema's revision (None: never migrated), read through the service's own
    connections: /readyz asks it of the database the service uses."""
    async with db.read() as tx:
        if not await tx.value(_HAS_VERSION_TABLE):
            return None
        value: Any = await tx.value(_VERSION)
        return value


async def is_current(db: Database) -> bool:
    return await current_revision(db) == head_revision()


class SchemaNotReady(Exception):
    """The database is missing, unreachable, or not at the code's schema (commands other
    than ``serve`` and ``migrate`` use a database; they never create or migrate one)."""


async def open_current(url: str) -> Database:
    """The database at ``url``, which must exist and be migrated already; else
    SchemaNotReady, saying what to run. A SQLite file is never created here."""
    parsed = make_url(url)
    shown = safe_url(parsed)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path and path != ":memory:" and not os.path.isfile(path):  # noqa: ASYNC240
            raise SchemaNotReady(
                f"no database at {shown}: run `pachca-bridge migrate` (or `serve`) with this "
                "config first, or point --config or BRIDGE_DATABASE__URL at the service's"
            )
    db = Database(parsed)
    try:
        current = await is_current(db)
    except Exception as exc:
        await db.dispose()
        raise SchemaNotReady(f"cannot use the database {shown}: {type(exc).__name__}") from exc
    if not current:
        await db.dispose()
        raise SchemaNotReady(
            f"the database {shown} is not at the current schema: run `pachca-bridge migrate`"
        )
    return db
