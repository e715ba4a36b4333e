"""The list endpoints run a bounded number of SQL statements, whatever the data: at
most 3 per list request, authentication included (docs/api.md).

Statements are counted where the database receives them: `count_queries` sees what goes
through SQLAlchemy's cursor, but the request hot path (store/hotpath.py: authentication, chat
access) runs statements on the driver connection itself, around SQLAlchemy. So on SQLite every
statement is taken from SQLite's own trace callback, and on PostgreSQL the driver's query
logger adds what SQLAlchemy did not see. Transaction control (BEGIN/COMMIT/ROLLBACK) and the
pool's liveness pings are not statements of the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event

from store.db import Database
from tests.world import World

MAX_STATEMENTS = 3
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END")


def is_request_statement(sql: str) -> bool:
    text = sql.strip().rstrip(";").strip()
    return bool(text) and not text.upper().startswith(CONTROL)


class Statements:
    """Every statement the app sends while counting."""

    def __init__(self, database: Database, sqlalchemy_counter: Any):
        self.database = database
        self.sqlalchemy = sqlalchemy_counter  # the conftest's count_queries counter
        self.raw: list[str] = []  # seen by the driver (SQLite: all; PostgreSQL: non-Core only)
        self.counting = False

    def trace(self, sql: str) -> None:
        if self.counting and is_request_statement(sql):
            self.raw.append(sql)

    def pg_logged(self, record: Any) -> None:
        self.trace(record.query)

    def start(self) -> None:
        self.raw.clear()
        self.sqlalchemy.reset()
        self.counting = True

    async def stop(self) -> list[str]:
        await asyncio.sleep(0)  # asyncpg calls its query loggers on the next loop turn
        await asyncio.sleep(0)
        self.counting = False
        core = [s for s in self.sqlalchemy.statements if is_request_statement(s)]
        if self.database.is_sqlite:
            # SQLite's trace sees Core's statements too; they must be among them.
            assert len(core) <= len(self.raw), (core, self.raw)
            return list(self.raw)
        return core + self.raw


@pytest.fixture
async def statements(
    database: Database,
    count_queries: Callable[[], Any],
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Statements]:
    counter = Statements(database, count_queries())
    sync_engine = database.engine.sync_engine
    if database.is_sqlite:
        # The pool holds SQLite's one connection; trace everything it runs.
        async with database.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            sqlite_conn = raw._conn  # type: ignore[union-attr]
        sqlite_conn.set_trace_callback(counter.trace)
        yield counter
        sqlite_conn.set_trace_callback(None)
        return

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(counter.pg_logged)

    # The hot path's own asyncpg pool (store/db.py pg_connection) is logged as well.
    plain_pool = database.pg_connection

    @asynccontextmanager
    async def logged_pg_connection() -> AsyncIterator[Any]:
        async with plain_pool() as conn:
            conn.add_query_logger(counter.pg_logged)
            try:
                yield conn
            finally:
                conn.remove_query_logger(counter.pg_logged)

    event.listen(sync_engine, "checkout", on_checkout)
    monkeypatch.setattr(database, "pg_connection", logged_pg_connection)
    yield counter
    event.remove(sync_engine, "checkout", on_checkout)


async def count(statements: Statements, request: Any) -> tuple[int, list[str]]:
    statements.start()
    resp = await request
    assert resp.status == 200, await resp.text()
    await resp.read()
    seen = await statements.stop()
    return len(seen), seen


async def populate_chats(world: World, n_enrollments: int) -> tuple[str, str, str]:
    """A student with a tutor and n enrollments, each with its own teacher: 2n chats, every
    one with messages from both sides and read marks of both participants."""
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    first_teacher = ""
    for i in range(n_enrollments):
        teacher = await world.user("teacher")
        first_teacher = first_teacher or teacher
        enrolled = await world.enroll(student, teacher)
        for chat in enrolled.body["chats"]:
            partner = teacher if chat["type"] == "forum_subject" else tutor
            mine = await world.post(student, chat["id"], f"question {i}")
            theirs = await world.post(partner, chat["id"], f"answer {i}")
            for user, message in ((partner, mine), (student, theirs)):
                resp = await world.client.post(
                    f"/api/v1/chats/{chat['id']}/read",
                    json={"message_id": message["id"]},
                    headers=world.auth(user),
                )
                assert resp.status == 204
    return student, first_teacher, tutor


async def populate_messages(world: World, n_messages: int) -> tuple[str, str, int]:
    student = await world.user("student")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    last: dict[str, int] = {}
    for i in range(n_messages):
        author = student if i % 2 == 0 else teacher
        last[author] = (await world.post(author, chat_id, f"message {i}"))["id"]
        if i % 5 == 4:  # read marks at various points
            reader = teacher if author == student else student
            resp = await world.client.post(
                f"/api/v1/chats/{chat_id}/read",
                json={"message_id": last[author]},
                headers=world.auth(reader),
            )
            assert resp.status == 204
    return student, teacher, chat_id


@pytest.mark.parametrize("viewer", ["student", "teacher", "tutor", "admin", "parent"])
async def test_chat_list_statements_do_not_grow_with_chats(
    client: TestClient, world: World, statements: Statements, viewer: str
) -> None:
    counts = {}
    for size in (1, 50):
        student, teacher, tutor = await populate_chats(world, size)
        user = {
            "student": student,
            "teacher": teacher,
            "tutor": tutor,
            "admin": await world.user("admin"),
            "parent": await world.user("parent", children=[student]),
        }[viewer]
        n, seen = await count(statements, client.get("/api/v1/chats", headers=world.auth(user)))
        assert n <= MAX_STATEMENTS, seen
        counts[size] = n
    assert counts[1] == counts[50], counts

    # The list was really the big one: the admin sees every chat made above.
    admin = await world.user("admin")
    resp = await client.get("/api/v1/chats", headers=world.auth(admin))
    assert len((await resp.json())["chats"]) == 2 * (1 + 50)


@pytest.mark.parametrize(
    "params",
    [{}, {"limit": "200"}, {"limit": "10", "offset": "20"}, {"before_id": "LAST", "limit": "20"}],
    ids=["default", "limit_200", "offset", "before_id"],
)
@pytest.mark.parametrize("viewer", ["student", "admin"])
async def test_message_list_statements_do_not_grow_with_messages(
    client: TestClient, world: World, statements: Statements, viewer: str, params: dict[str, str]
) -> None:
    counts = {}
    for size in (1, 50):
        student, _teacher, chat_id = await populate_messages(world, size)
        user = student if viewer == "student" else await world.user("admin")
        query = dict(params)
        if query.get("before_id") == "LAST":
            query["before_id"] = str(10**9)
        n, seen = await count(
            statements,
            client.get(f"/api/v1/chats/{chat_id}/messages", params=query, headers=world.auth(user)),
        )
        assert n <= MAX_STATEMENTS, seen
        counts[size] = n
    assert counts[1] == counts[50], counts


@pytest.mark.parametrize("params", [{}, {"offset": "500"}], ids=["empty_chat", "past_the_end"])
async def test_an_empty_page_is_just_as_cheap(
    client: TestClient, world: World, statements: Statements, params: dict[str, str]
) -> None:
    student, _teacher, chat_id = await populate_messages(world, 0 if not params else 3)
    n, seen = await count(
        statements,
        client.get(f"/api/v1/chats/{chat_id}/messages", params=params, headers=world.auth(student)),
    )
    assert n <= MAX_STATEMENTS, seen
