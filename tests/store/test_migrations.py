"""Migrations run up from empty on SQLite and PostgreSQL, and leave the schema current."""

from __future__ import annotations

from sqlalchemy import func, inspect

from store import migrate
from store import outbox as q
from store.db import Database
from store.models import Base


async def test_upgrade_from_empty_creates_every_table(database: Database) -> None:
    assert await migrate.current_revision(database) is None
    assert not await migrate.is_current(database)

    await migrate.upgrade(database)

    assert await migrate.current_revision(database) == migrate.head_revision()
    assert await migrate.is_current(database)
    tables = set(await migrate.run_sync(database, lambda c: inspect(c).get_table_names()))
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

    assert await migrate.run_sync(database, diff) == []


async def test_0004_gives_waiting_jobs_their_lanes_and_keeps_ids_unique(
    database: Database,
) -> None:
    """Jobs queued before outbox lanes existed get one: their chat's, or the Pachca user a
    bot answer goes to; an edit job names its message; no job id is handed out twice."""
    from sqlalchemy import delete, select

    from bridge.runtime import utcnow
    from store.models import Chat, Enrollment, OutboxJob, User

    await migrate.upgrade(database, "0002")

    now = utcnow()
    outbox = OutboxJob.__table__
    job = {"attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
    async with database.write() as conn:
        for uid, role in (("s", "student"), ("t", "teacher")):
            await conn.run(
                User.__table__.insert().values(
                    id=uid, role=role, name=uid, created_at=now, updated_at=now
                )
            )
        await conn.run(
            Enrollment.__table__.insert().values(
                id="e",
                student_id="s",
                teacher_id="t",
                subject_id="m",
                subject_name="Maths",
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        chat = await conn.value(
            Chat.__table__.insert()
            .values(
                enrollment_id="e",
                type="forum_subject",
                title="Maths · s",
                subject_id="m",
                subject_name="Maths",
                is_active=True,
                created_at=now,
                last_activity_at=now,
            )
            .returning(Chat.__table__.c.id)
        )
        answer = {"entity_type": "user", "entity_id": 4001, "content": "hi"}
        rows = [
            (chat, "post_message", {"message_id": 4}, "pending"),
            (None, "send_text", answer, "pending"),
            (None, "send_text", answer, "done"),
            (chat, "edit_message", {"message_id": 5}, "pending"),
            (chat, "delete_message", {"message_id": 6}, "pending"),
        ]
        ids = []
        for chat_id, kind, payload, status in rows:
            stmt = outbox.insert().values(
                chat_id=chat_id, kind=kind, payload=payload, status=status, **job
            )
            ids.append(await conn.value(stmt.returning(outbox.c.id)))
        await conn.run(delete(outbox).where(outbox.c.id == ids[-1]))  # the newest, gone

    await migrate.upgrade(database)

    async with database.read() as conn:
        got = [
            (r["id"], r["lane"], r["message_id"])
            for r in await conn.rows(select(outbox.c.id, outbox.c.lane, outbox.c.message_id))
        ]
    assert sorted(got) == [
        (ids[0], f"chat:{chat}", None),
        (ids[1], "user:4001", None),
        (ids[2], f"job:{ids[2]}", None),  # finished: never runs again
        (ids[3], f"chat:{chat}", 5),
    ]
    async with database.write() as conn:
        await q.enqueue(conn, "send_text", {}, chat_id=None, lane="user:1", now=now)
        newest = await conn.value(select(func.max(outbox.c.id)))
    assert newest > ids[-1]
