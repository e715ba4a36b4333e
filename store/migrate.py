"""Schema migrations: bring the database to the newest revision, and tell whether it is there."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from store.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every migration not yet applied (each in its own transaction), up to
    ``revision`` (tests start from an older schema with it)."""

    def run(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    async with db.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


async def downgrade(db: Database, revision: str) -> None:
    """Undo migrations down to ``revision`` (tests check that each one can be undone)."""

    def run(connection: Connection) -> None:
        command.downgrade(_alembic_config(connection), revision)

    async with db.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


async def current_revision(db: Database) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.connect() as conn:
        return await conn.run_sync(read)


async def is_current(db: Database) -> bool:
    return await current_revision(db) == head_revision()
