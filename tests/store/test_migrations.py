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


async def test_0004_gives_waiting_jobs_their_lanes_and_keeps_ids_unique(
    database: Database,
) -> None:
    """Jobs queued before outbox lanes existed get one: their chat's, or the Pachca user a
    bot answer goes to; an edit job names its message; no job id is handed out twice."""
    from alembic import command
    from sqlalchemy import Connection, delete, select

    from bridge.runtime import utcnow
    from store.models import Chat, Enrollment, OutboxJob, User

    def to_0002(connection: Connection) -> None:
        command.upgrade(migrate._alembic_config(connection), "0002")

    async with database.connect() as conn:
        await conn.run_sync(to_0002)
        await conn.commit()

    now = utcnow()
    outbox = OutboxJob.__table__
    job = {"attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
    async with database.write() as conn:
        for uid, role in (("s", "student"), ("t", "teacher")):
            await conn.execute(
                User.__table__.insert().values(
                    id=uid, role=role, name=uid, created_at=now, updated_at=now
                )
            )
        await conn.execute(
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
        chat = (
            await conn.execute(
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
        ).scalar_one()
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
            ids.append((await conn.execute(stmt.returning(outbox.c.id))).scalar_one())
        await conn.execute(delete(outbox).where(outbox.c.id == ids[-1]))  # the newest, gone

    await migrate.upgrade(database)

    async with database.read() as conn:
        got = (await conn.execute(select(outbox.c.id, outbox.c.lane, outbox.c.message_id))).all()
    assert sorted(got) == [
        (ids[0], f"chat:{chat}", None),
        (ids[1], "user:4001", None),
        (ids[2], f"job:{ids[2]}", None),  # finished: never runs again
        (ids[3], f"chat:{chat}", 5),
    ]
    async with database.write() as conn:
        await q.enqueue(conn, "send_text", {}, chat_id=None, lane="user:1", now=now)
        newest = (await conn.execute(select(func.max(outbox.c.id)))).scalar_one()
    assert newest > ids[-1]
