"""Event ids without a lock on PostgreSQL: writers commit in any order, and readers take an
event only once nothing before it can still appear (store/events.py ``append``). A reader that
saw event N never later finds a smaller id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from store import events as event_log
from store.db import Database
from store.migrate import upgrade
from store.tx import Tx
from tests.eventually import eventually

pytestmark = pytest.mark.usefixtures("schema")


@pytest.fixture
async def schema(database: Database) -> AsyncIterator[None]:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: ids commit in order without any of this")
    await upgrade(database)
    yield


async def append(tx: Tx, chat_id: int = 1) -> int:
    return await event_log.append(
        tx, chat_id=chat_id, type="read", payload="{}", audience=None, created_at=datetime.now(UTC)
    )


async def seen(db: Database) -> tuple[int, list[int]]:
    """What readers may take now: the head, and the ids of every event in the log."""
    async with db.read() as tx:
        head = await event_log.visible_head(tx)
        rows = await event_log.after(tx, 0, limit=1000)
    return head, [r["id"] for r in rows]


async def seen_at_last(db: Database, expected: tuple[int, list[int]]) -> None:
    """Readers come to take ``expected``. Not at once, perhaps: any transaction running in the
    cluster (another test's, another database's) holds every reader back until it ends."""

    async def taken() -> bool:
        found = await seen(db)
        assert found[0] <= expected[0] and set(found[1]) <= set(expected[1]), found
        return found == expected

    await eventually(taken, what=f"readers to take {expected}")


class Writer:
    """A transaction on a connection of its own, held open until ``commit`` or ``rollback``."""

    def __init__(self, db: Database):
        self._block = db.write()
        self.tx: Tx

    async def begin(self) -> Writer:
        self.tx = await self._block.__aenter__()
        return self

    async def commit(self) -> None:
        await self._block.__aexit__(None, None, None)

    async def rollback(self) -> None:
        error = RuntimeError("rolled back")
        assert not await self._block.__aexit__(RuntimeError, error, None)


async def test_a_later_event_committed_first_waits_for_the_earlier_one(database: Database):
    async with database.write() as tx:
        before = await append(tx)
    first = await Writer(database).begin()
    early = await append(first.tx)  # takes the smaller id, and stays open
    async with database.write() as tx:
        late = await append(tx)  # commits first
    assert early < late

    await seen_at_last(database, (before, [before]))
    assert await seen(database) == (before, [before])  # still: `late` waits for `early`

    await first.commit()
    await seen_at_last(database, (late, [before, early, late]))


async def test_a_transaction_that_began_first_but_took_its_event_id_last(database: Database):
    # The case a rule on each event's own transaction id gets wrong: the first transaction has
    # the older transaction id but takes the larger event id, and commits while the other,
    # holding the smaller event id, is still running.
    first = await Writer(database).begin()
    await first.tx.value(text("SELECT pg_current_xact_id()"))  # its transaction id, first
    second = await Writer(database).begin()
    smaller = await append(second.tx)
    larger = await append(first.tx)
    await first.commit()
    assert smaller < larger

    head, ids = await seen(database)
    assert larger not in ids and head < smaller

    await second.commit()
    await seen_at_last(database, (larger, [smaller, larger]))


async def test_a_rolled_back_event_does_not_hold_the_others_back(database: Database):
    doomed = await Writer(database).begin()
    gone = await append(doomed.tx)
    async with database.write() as tx:
        kept = await append(tx)
    await doomed.rollback()
    await seen_at_last(database, (kept, [kept]))
    assert gone < kept


async def test_many_concurrent_writers_readers_never_see_an_id_appear_behind(database: Database):
    # Readers poll while writers commit in whatever order the scheduler gives: every id a
    # reader takes is above everything it took before, and in the end every event is taken.
    writers, each = 6, 30
    taken: list[int] = []
    violations: list[tuple[int, int]] = []

    async def reader() -> None:
        last = 0
        while len(taken) < writers * each:
            async with database.read() as tx:
                rows = await event_log.after(tx, last, limit=1000)
            for r in rows:
                if r["id"] <= last:
                    violations.append((last, r["id"]))
                last = r["id"]
                taken.append(r["id"])
            await asyncio.sleep(0.001)

    async def writer() -> list[int]:
        ids = []
        for _ in range(each):
            async with database.write() as tx:
                ids.append(await append(tx))
                await asyncio.sleep(0)  # let others take ids before this one commits
        return ids

    watching = asyncio.create_task(reader())
    written = await asyncio.gather(*(writer() for _ in range(writers)))
    async with asyncio.timeout(30):
        await watching
    assert violations == []
    assert sorted(taken) == sorted(i for ids in written for i in ids)
