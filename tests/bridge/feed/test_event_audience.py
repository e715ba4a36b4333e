"""Event audiences are rows compared exactly: an id matches itself only, whatever characters
it holds, in a `since` replay and in the sequencer's gap fill alike; and a replay page is two
indexed queries, whatever the size of the log."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bridge.feed.events import EventLog
from bridge.feed.history import History
from bridge.feed.sequencer import load_events
from handlers.keys import SERVICES
from store import events as log
from store import migrate
from store.db import Database
from store.models import EventAudience
from tests.eventually import log_settled
from tests.world import World

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ODD = frozenset({"x,y", "%", "S_", "T1"})


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    await migrate.upgrade(database)
    yield database


async def append(db: Database, chat_id: int, audience: frozenset[str] | None) -> int:
    async with db.write() as conn:
        event = await EventLog().append(conn, "chat.deleted", chat_id, {}, NOW, audience=audience)
    assert event.audience == audience
    return event.id


async def viewer_ids(db: Database, user_id: str, chat_ids: list[int] | None = None) -> list[int]:
    async with db.read() as conn:
        rows = await log.for_viewer(
            conn, 0, through=10**9, limit=100, chat_ids=chat_ids or [], user_id=user_id
        )
    return [r["id"] for r in rows]


async def test_replay_matches_ids_exactly(db: Database) -> None:
    addressed = await append(db, 1, ODD)
    for user_id in sorted(ODD):
        assert await viewer_ids(db, user_id) == [addressed], user_id
    for user_id in ("x", "y", "t1", "S1", "_", "%%", ",", "x,", "x,y,%", "anyone"):
        assert await viewer_ids(db, user_id) == [], user_id


async def test_replay_merges_chats_and_audience_in_id_order(db: Database) -> None:
    ids = [
        await append(db, 1, None),  # the viewer's chat
        await append(db, 2, frozenset({"me"})),  # addressed to the viewer
        await append(db, 3, None),  # someone else's
        await append(db, 1, frozenset({"me", "other"})),  # both: once
        await append(db, 2, None),
    ]
    assert await viewer_ids(db, "me", [1]) == [ids[0], ids[1], ids[3]]
    async with db.read() as conn:
        first_two = await log.for_viewer(
            conn, 0, through=10**9, limit=2, chat_ids=[1], user_id="me"
        )
        after = await log.for_viewer(
            conn, ids[1], through=10**9, limit=2, chat_ids=[1], user_id="me"
        )
    assert [r["id"] for r in first_two] == ids[:2]
    assert [r["id"] for r in after] == [ids[3]]


async def test_gap_fill_reads_audiences_back_exactly(db: Database) -> None:
    plain = await append(db, 1, None)
    addressed = await append(db, 2, ODD)

    await log_settled(db)
    events = await load_events(db, 0, None)
    assert [(e.id, e.audience) for e in events] == [(plain, None), (addressed, ODD)]


async def test_pruning_removes_the_audience_rows_too(db: Database) -> None:
    await append(db, 1, ODD)
    async with db.write() as conn:
        await log.prune_before(conn, NOW + timedelta(seconds=1))
    async with db.read() as conn:
        left = await conn.value(select(func.count()).select_from(EventAudience))
    assert left == 0


async def test_a_replay_page_is_two_indexed_queries(client: TestClient, world: World) -> None:
    rt = client.server.app[SERVICES].rt
    student, teacher = await world.user("student"), await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    await world.post(student, chat_id, "hello")
    seen: list[tuple[str, Any]] = []

    def capture(statement: str, parameters: Any) -> None:
        seen.append((statement, list(parameters)))

    stop = rt.db.on_statement(capture)
    try:
        page = await History(rt).replay(
            0, through=10**9, chat_ids=[chat_id], user_id=student, limit=500
        )
    finally:
        stop()
    assert page is not None and [e.type for e in page][-1] == "message.created"
    on_log = [(s, p) for s, p in seen if "FROM events" in s]
    assert len(on_log) == 2
    assert not any(" LIKE " in s.upper() for s, _ in seen)
    if not rt.db.is_sqlite:
        return  # PostgreSQL's plans depend on table statistics: bench/replay.py watches them
    raw = sqlite3.connect(str(rt.db.url.database))
    try:
        for statement, parameters in on_log:
            plan = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            steps = [row[3] for row in plan]
            # Every read of the log goes through an index, never a walk through the table.
            assert not any(step.startswith("SCAN") for step in steps), steps
    finally:
        raw.close()
