"""Migration 0003 turns the comma-joined ``events.audience`` into ``event_audience`` rows,
keeping every existing audience and never reusing an event id (SQLite rebuilds the table)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import inspect

from store import migrate
from store.db import Database

NOW = datetime(2026, 1, 1, tzinfo=UTC)

old_events = sa.table(
    "events",
    sa.column("id", sa.BigInteger()),
    sa.column("chat_id", sa.BigInteger()),
    sa.column("type", sa.String()),
    sa.column("payload", sa.Text()),
    sa.column("audience", sa.Text()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
rows = sa.table("event_audience", sa.column("event_id"), sa.column("user_id"))


def event(audience: str | None) -> dict[str, object]:
    return {
        "chat_id": 7,
        "type": "chat.updated",
        "payload": "{}",
        "audience": audience,
        "created_at": NOW,
    }


async def columns(db: Database, table: str) -> set[str]:
    found = await migrate.run_sync(db, lambda c: inspect(c).get_columns(table))
    return {c["name"] for c in found}


async def test_audience_strings_become_rows_and_ids_are_not_reused(database: Database) -> None:
    await migrate.upgrade(database, "0002")
    async with database.write() as conn:
        for audience in (",a,b,", None, ",%,T1,x_y,", ",c,"):
            await conn.run(old_events.insert().values(event(audience)))
        # The newest event is pruned: its id must not come back after the rebuild.
        await conn.run(sa.delete(old_events).where(old_events.c.id == 4))

    await migrate.upgrade(database)

    assert "audience" not in await columns(database, "events")
    async with database.write() as conn:
        found = [
            (r["event_id"], r["user_id"])
            for r in await conn.rows(sa.select(rows.c.event_id, rows.c.user_id))
        ]
        assert sorted(found) == [(1, "a"), (1, "b"), (3, "%"), (3, "T1"), (3, "x_y")]
        new = await conn.value(
            sa.insert(old_events)
            .values({k: v for k, v in event(None).items() if k != "audience"})
            .returning(old_events.c.id)
        )
        assert new == 5


async def test_downgrade_puts_the_strings_back(database: Database) -> None:
    await migrate.upgrade(database, "0002")
    async with database.write() as conn:
        for audience in (",a,b,", None):
            await conn.run(old_events.insert().values(event(audience)))
    await migrate.upgrade(database, "0003")

    await migrate.downgrade(database, "0002")

    assert "audience" in await columns(database, "events")
    async with database.read() as conn:
        found = [
            (r["id"], r["audience"])
            for r in await conn.rows(sa.select(old_events.c.id, old_events.c.audience))
        ]
    tables = await migrate.run_sync(database, lambda c: inspect(c).get_table_names())
    assert sorted(found) == [(1, ",a,b,"), (2, None)]
    assert "event_audience" not in tables
