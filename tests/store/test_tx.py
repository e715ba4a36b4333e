"""The store's executor (store/tx.py) and transactions (store/db.py): rows read and written as
SQLAlchemy Core reads and writes them, constraint errors, group commit on SQLite, commit
signals and the statement hook, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, func, select, text

from store import events, forum, messages, migrate, outbox, users
from store.db import Database
from store.errors import Conflict, DatabaseUnavailable
from store.models import Chat, Event, Message, OutboxJob, Participant
from store.tx import Tx, prepared

NOW = datetime(2026, 11, 25, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    await migrate.upgrade(database)
    yield database


async def seed(db: Database) -> int:
    async with db.write() as tx:
        for uid, role in (("s", "student"), ("t", "teacher")):
            await users.upsert_user(
                tx,
                {
                    "id": uid,
                    "role": role,
                    "name": uid,
                    "email": None,
                    "pachca_user_id": None,
                    "tutor_id": None,
                    "children": None,
                },
                NOW,
            )
        await forum.claim_enrollment(
            tx,
            {
                "id": "e",
                "student_id": "s",
                "teacher_id": "t",
                "subject_id": "m",
                "subject_name": "M",
                "active": True,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
        chat_id = await forum.insert_chat(
            tx,
            {
                "enrollment_id": "e",
                "type": "forum_subject",
                "title": "t",
                "subject_id": "m",
                "subject_name": "M",
                "is_active": True,
                "created_at": NOW,
                "last_activity_at": NOW,
            },
        )
        await forum.add_participant(tx, chat_id, "s", "student")
    return chat_id


async def post(tx: Tx, chat_id: int, client_id: str | None = None) -> tuple[int, int]:
    """What a web post writes: the message, the chat's last message, its outbox job, its event."""
    message_id = await messages.insert_message(
        tx,
        {
            "chat_id": chat_id,
            "sender_id": "s",
            "content": "Привет 👋\n\t",
            "created_at": NOW,
            "reply_to_id": None,
            "source": "web",
            "client_id": client_id,
        },
    )
    await forum.set_last_message(tx, chat_id, message_id, NOW)
    await outbox.enqueue(tx, "post_message", {"message_id": message_id}, chat_id=chat_id, now=NOW)
    event_id = await events.append(
        tx,
        chat_id=chat_id,
        type="message.created",
        payload=f'{{"id":{message_id}}}',
        audience=None,
        created_at=NOW,
    )
    return message_id, event_id


async def count(db: Database, model: type) -> int:
    async with db.read() as tx:
        found: int = await tx.value(select(func.count()).select_from(model.__table__))
    return found


def core_rows(table: Any) -> Any:
    """Read a table with SQLAlchemy Core itself, on a connection of its own."""

    def read(connection: Connection) -> list[dict[str, Any]]:
        return [dict(r) for r in connection.execute(select(table)).mappings()]

    return read


# --- values: as Core writes and reads them ------------------------------------------------


async def test_rows_written_here_read_back_by_core_unchanged(db: Database) -> None:
    chat_id = await seed(db)
    async with db.write() as tx:
        message_id, event_id = await post(tx, chat_id)

    [msg] = await migrate.run_sync(db, core_rows(Message.__table__))
    [chat] = await migrate.run_sync(db, core_rows(Chat.__table__))
    [job] = await migrate.run_sync(db, core_rows(OutboxJob.__table__))
    [event] = await migrate.run_sync(db, core_rows(Event.__table__))
    assert msg["id"] == message_id and msg["content"] == "Привет 👋\n\t"
    assert msg["created_at"] == NOW and msg["created_at"].tzinfo is not None
    assert (chat["last_message_id"], chat["last_activity_at"]) == (message_id, NOW)
    assert chat["is_active"] is True
    assert job["payload"] == {"message_id": message_id} and job["kind"] == "post_message"
    assert job["next_attempt_at"] == NOW and job["attempts"] == 0
    assert event["id"] == event_id and event["payload"] == f'{{"id":{message_id}}}'

    # ...and read here exactly as Core read them.
    async with db.read() as tx:
        assert await tx.rows(select(Message.__table__)) == [msg]
        assert await tx.rows(select(Chat.__table__)) == [chat]
        assert await tx.rows(select(OutboxJob.__table__)) == [job]


async def test_rows_written_by_core_are_stored_alike_and_read_back_unchanged(
    db: Database,
) -> None:
    chat_id = await seed(db)
    values = {"chat_id": chat_id, "sender_id": "s", "content": "x", "source": "web"}

    def core_insert(connection: Connection) -> None:
        connection.execute(
            Message.__table__.insert(), {**values, "created_at": NOW, "client_id": "core"}
        )

    await migrate.run_sync(db, core_insert)
    async with db.write() as tx:
        await messages.insert_message(tx, {**values, "created_at": NOW, "client_id": "here"})
    async with db.read() as tx:
        # The stored form itself is the same (SQLite keeps timestamps as text, compared as such).
        stored = await tx.rows(text("SELECT client_id, created_at FROM messages ORDER BY id"))
        rows = await tx.rows(select(Message.__table__).order_by(Message.__table__.c.id))
    assert [r["client_id"] for r in stored] == ["core", "here"]
    assert stored[0]["created_at"] == stored[1]["created_at"]
    assert [r["created_at"] for r in rows] == [NOW, NOW]


async def test_values_embedded_and_defaults_filled_in_as_core_does(db: Database) -> None:
    chat_id = await seed(db)
    participants = Participant.__table__
    async with db.write() as tx:
        # No last_read_message_id given: the column's default (0) is written.
        await tx.run(participants.insert(), {"chat_id": chat_id, "user_id": "t", "role": "teacher"})
        # A value embedded in the statement, and one given: both reach the driver.
        changed = await tx.run(
            participants.update()
            .where(participants.c.user_id == bindparam("who"))
            .values(last_read_message_id=7),
            {"who": "t"},
        )
        marks = await tx.rows(
            select(participants.c.user_id, participants.c.last_read_message_id).order_by(
                participants.c.user_id
            )
        )
    assert changed == 1
    assert marks == [
        {"user_id": "s", "last_read_message_id": 0},
        {"user_id": "t", "last_read_message_id": 7},
    ]


async def test_in_lists_of_any_length_on_one_prepared_statement(db: Database) -> None:
    await seed(db)
    by_ids = prepared(
        select(func.count().label("n")).where(
            Chat.__table__.c.id.in_(bindparam("ids", expanding=True))
        )
    )
    async with db.read() as tx:
        assert await tx.value(by_ids, {"ids": [1]}) == 1
        assert await tx.value(by_ids, {"ids": [1, 2, 3]}) == 1
        assert await tx.value(by_ids, {"ids": []}) == 0


async def test_value_first_and_textual_rows(db: Database) -> None:
    chat_id = await seed(db)
    async with db.read() as tx:
        created = await tx.value(select(Chat.__table__.c.created_at))
        missing = await tx.first(select(Chat.__table__).where(Chat.__table__.c.id == chat_id + 1))
        raw = await tx.rows(text("SELECT id AS chat, title FROM chats"))
    assert created == NOW and created.tzinfo is not None  # the result processor ran
    assert missing is None
    assert raw == [{"chat": chat_id, "title": "t"}]


# --- errors ------------------------------------------------------------------------------------


async def test_a_constraint_refusal_is_a_conflict_and_writes_nothing(db: Database) -> None:
    chat_id = await seed(db)
    async with db.write() as tx:
        await post(tx, chat_id, client_id="c1")
    with pytest.raises(Conflict):
        async with db.write() as tx:
            await post(tx, chat_id, client_id="c1")  # the same client_id again
    with pytest.raises(Conflict):
        async with db.write() as tx:
            await post(tx, chat_id + 1000)  # no such chat
    assert await count(db, Message) == 1
    assert await count(db, OutboxJob) == 1
    assert await count(db, Event) == 1


async def test_other_driver_errors_are_database_unavailable(db: Database) -> None:
    with pytest.raises(DatabaseUnavailable):
        async with db.read() as tx:
            await tx.rows(text("SELECT * FROM no_such_table"))
    async with db.read() as tx:  # and the connection goes on working
        assert await tx.value(text("SELECT 1")) == 1


async def test_an_unreachable_database_is_database_unavailable() -> None:
    gone = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseUnavailable):
            async with gone.read() as tx:
                await tx.value(text("SELECT 1"))
    finally:
        await gone.dispose()


# --- transactions ------------------------------------------------------------------------------


async def test_a_read_never_sees_what_is_not_committed(db: Database) -> None:
    chat_id = await seed(db)
    async with db.write() as tx:
        await post(tx, chat_id)
        assert await tx.value(select(func.count()).select_from(Message.__table__)) == 1
        assert await count(db, Message) == 0  # a read, meanwhile
    assert await count(db, Message) == 1


async def test_concurrent_writers_commit_together_and_a_refused_one_spares_the_rest(
    db: Database,
) -> None:
    chat_id = await seed(db)
    committed_when_done: list[int] = []

    async def writer(client_id: str, fail: bool = False) -> tuple[int, int]:
        try:
            async with db.write() as tx:
                result = await post(tx, chat_id, client_id=client_id)
                if fail:
                    raise ValueError("the caller changed its mind")
            return result
        finally:
            committed_when_done.append(await count(db, Message))

    results = await asyncio.gather(
        *(writer(f"c{i}") for i in range(20)),
        writer("c7"),  # the same client_id again: refused
        writer("c99", fail=True),  # raises in its block: its writes are undone
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, Conflict)]
    failed = [r for r in results if isinstance(r, ValueError)]
    written = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) == 1 and len(failed) == 1 and len(written) == 20
    assert len({m for m, _ in written}) == 20 and len({e for _, e in written}) == 20
    assert await count(db, Message) == 20
    assert await count(db, OutboxJob) == 20
    assert await count(db, Event) == 20
    async with db.read() as tx:
        logged = await tx.rows(select(Event.__table__))
    # Each event carries its own message's id.
    assert {e["payload"] for e in logged} == {f'{{"id":{m}}}' for m, _ in written}
    if db.is_sqlite:
        # One transaction for all: each writer returned (or raised, the refused one too) only
        # once every message was committed.
        assert committed_when_done == [20] * 22


async def test_writers_take_turns_in_arrival_order_even_when_their_blocks_wait(
    db: Database,
) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's one writer connection (PostgreSQL runs transactions side by side)")
    chat_id = await seed(db)
    steps: list[str] = []

    async def writer(name: str) -> None:
        async with db.write() as tx:
            steps.append(f"{name} in")
            await asyncio.sleep(0)  # a block that waits: nobody else's block runs meanwhile
            await post(tx, chat_id)
            await asyncio.sleep(0.01)
            steps.append(f"{name} out")

    await asyncio.gather(*(writer(n) for n in "abcde"))
    assert steps == [f"{n} {step}" for n in "abcde" for step in ("in", "out")]
    assert await count(db, Message) == 5


async def test_a_prepared_statement_is_compiled_once_per_dialect(db: Database) -> None:
    stmt = prepared(select(Chat.__table__).where(Chat.__table__.c.id == bindparam("chat_id")))
    first = stmt.compiled(db.dialect, {"chat_id": 1})
    assert stmt.compiled(db.dialect, {"chat_id": 2}) is first
    insert = prepared(Participant.__table__.insert())
    # An INSERT compiles per set of columns given, as Core compiles it.
    some = insert.compiled(db.dialect, {"chat_id": 1, "user_id": "s", "role": "student"})
    assert insert.compiled(db.dialect, {"chat_id": 2, "user_id": "t", "role": "x"}) is some
    assert insert.compiled(db.dialect, {"chat_id": 1, "user_id": "s"}) is not some


async def test_a_failed_commit_fails_every_writer_of_the_batch(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's group commit")
    chat_id = await seed(db)

    async def bad() -> None:
        async with db.write() as tx:
            # The foreign key is checked at COMMIT: a message of a chat that does not exist
            # makes the shared COMMIT fail.
            await tx.run(text("PRAGMA defer_foreign_keys = ON"))
            await post(tx, chat_id + 1000)

    async def good() -> None:
        async with db.write() as tx:
            await post(tx, chat_id)

    results = await asyncio.gather(good(), bad(), good(), return_exceptions=True)
    assert [type(r) for r in results] == [DatabaseUnavailable] * 3
    assert await count(db, Message) == 0
    async with db.write() as tx:  # a new transaction on a new connection
        await post(tx, chat_id)
    assert await count(db, Message) == 1


async def test_a_closed_connection_is_replaced(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's own connections")
    chat_id = await seed(db)
    # The connections close under the store (as after a disk error).
    with pytest.raises(DatabaseUnavailable):
        async with db.write() as tx:
            await post(tx, chat_id)
            tx._conn.close()  # type: ignore[attr-defined]
    async with db.read() as tx:
        tx._conn.close()  # type: ignore[attr-defined]
        with pytest.raises(DatabaseUnavailable):
            await tx.value(text("SELECT 1"))

    async with db.write() as tx:
        await post(tx, chat_id)
    assert await count(db, Message) == 1


# --- signals and the statement hook ------------------------------------------------------------


async def test_signals_reach_subscribers_after_commit_only(db: Database) -> None:
    chat_id = await seed(db)
    woken: list[str] = []
    stop = db.on_signal(outbox.OUTBOX_DUE, lambda: woken.append("due"))
    with pytest.raises(ValueError):
        async with db.write() as tx:
            await post(tx, chat_id)  # enqueues a job...
            raise ValueError  # ...that is rolled back
    assert woken == []
    async with db.write() as tx:
        await post(tx, chat_id)
        assert woken == []  # not before the commit
    assert woken == ["due"]
    stop()
    async with db.write() as tx:
        await post(tx, chat_id)
    assert woken == ["due"]


async def test_every_statement_sent_is_seen_by_the_hook(db: Database) -> None:
    chat_id = await seed(db)
    seen: list[str] = []
    stop = db.on_statement(lambda sql, _args: seen.append(sql))
    async with db.write() as tx:
        await post(tx, chat_id)
    stop()
    # Insert, last message, outbox job, event; no BEGIN, SAVEPOINT or COMMIT (on PostgreSQL the
    # event is settled in the COMMIT's round trip, store/events.py).
    assert len(seen) == 4, seen
    assert not any(s.split()[0].upper() in ("BEGIN", "COMMIT", "SAVEPOINT") for s in seen)


@pytest.mark.parametrize("kind", ["read", "write"])
async def test_closing_while_a_connection_is_in_use_does_not_hang(db: Database, kind: str) -> None:
    # A shutdown (or a test's teardown) closes the database while a request still holds a
    # connection. PostgreSQL: the request gives it back to the pool it came from and the close
    # ends. SQLite: its one writer is closed under a write in flight, which fails (rolled back).
    holding, go_on = asyncio.Event(), asyncio.Event()

    async def request() -> None:
        async with db.read() if kind == "read" else db.write() as tx:
            await tx.value(select(func.count()).select_from(Chat))
            holding.set()
            await go_on.wait()

    task = asyncio.create_task(request())
    await holding.wait()
    closing = asyncio.create_task(db.dispose())
    await asyncio.sleep(0.05)
    go_on.set()
    if kind == "write" and db.dialect.name == "sqlite":
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(task, 10)
    else:
        await asyncio.wait_for(task, 10)
    await asyncio.wait_for(closing, 10)
