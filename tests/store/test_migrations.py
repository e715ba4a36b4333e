"""Migrations run up from empty on SQLite and PostgreSQL, and leave the schema current."""

from __future__ import annotations

from sqlalchemy import inspect

from store import migrate
from store.db import Database
from store.models import Base


async def test_upgrade_from_empty_creates_every_table(database: Database) -> None:
    assert await migrate.current_revision(database) is None
    assert not await migrate.is_current(database)

    await migrate.upgrade(database)

    assert await migrate.current_revision(database) == migrate.head_revision()
    assert await migrate.is_current(database)
    async with database.read() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables


async def test_upgrade_twice_is_harmless(database: Database) -> None:
    await migrate.upgrade(database)
    await migrate.upgrade(database)
    assert await migrate.is_current(database)


async def test_migrations_match_the_models(database: Database) -> None:
    """Autogenerate finds nothing to do: models.py and the migrations describe one schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    await migrate.upgrade(database)

    def diff(connection):  # type: ignore[no-untyped-def]
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with database.read() as conn:
        assert await conn.run_sync(diff) == []
