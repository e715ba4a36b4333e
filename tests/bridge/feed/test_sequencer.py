"""The sequencer: live events leave in event-id order, once each, with gaps filled from the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bridge.feed.events import EventLog, FeedEvent
from bridge.feed.sequencer import Sequencer, load_events
from store import migrate
from store.db import Database
from tests.eventually import eventually, log_settled
from tests.world import World


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    await migrate.upgrade(database)
    yield database


async def append(db: Database, count: int, chat_id: int = 7) -> list[FeedEvent]:
    log = EventLog()
    out = []
    for i in range(count):
        async with db.write() as conn:
            out.append(
                await log.append(conn, "message.created", chat_id, {"n": i}, datetime.now(UTC))
            )
    return out


class Collector:
    def __init__(self) -> None:
        self.events: list[FeedEvent] = []

    def __call__(self, events: list[FeedEvent]) -> None:
        self.events.extend(events)

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events]

    async def wait_for(self, count: int) -> None:
        await eventually(lambda: len(self.events) >= count, what=f"{count} events delivered")


@pytest.fixture
async def seq(db: Database) -> AsyncIterator[tuple[Sequencer, Collector]]:
    got = Collector()
    sequencer = Sequencer(db, got, gap_wait_s=0.02)
    sequencer.start(0)
    yield sequencer, got
    await sequencer.stop()


async def test_out_of_order_arrivals_leave_in_id_order(db: Database, seq):
    sequencer, got = seq
    e1, e2, e3 = await append(db, 3)
    sequencer.push([e3])
    sequencer.push([e2])
    assert got.ids == []  # held back: 1 has not arrived
    sequencer.push([e1])
    assert got.ids == [1, 2, 3]
    assert got.events == [e1, e2, e3]  # the live copies, as published


async def test_repeats_and_old_events_are_dropped(db: Database, seq):
    sequencer, got = seq
    e1, e2 = await append(db, 2)
    sequencer.push([e1, e2])
    sequencer.push([e1])
    sequencer.push([e2, e1])
    assert got.ids == [1, 2]


async def test_an_event_never_published_is_filled_from_the_log(db: Database, seq):
    sequencer, got = seq
    e1, e2, e3 = await append(db, 3)
    sequencer.push([e1])
    sequencer.push([e3])  # 2 was committed but its publish was lost
    await got.wait_for(3)
    assert got.ids == [1, 2, 3]
    assert got.events[1].frame == e2.frame
    assert got.events[2] is e3


async def test_resync_catches_up_with_everything_in_the_log(db: Database, seq):
    sequencer, got = seq
    await append(db, 4)
    sequencer.resync()
    await got.wait_for(4)
    assert got.ids == [1, 2, 3, 4]


async def test_the_periodic_check_fills_a_log_head_that_stays_ahead(db: Database, seq):
    sequencer, got = seq
    await append(db, 2)  # committed, never published, and nothing follows
    await sequencer.check()
    assert got.ids == []  # it may still be on its way
    await sequencer.check()
    await got.wait_for(2)
    assert got.ids == [1, 2]


async def test_fills_page_through_long_gaps(db: Database, seq, monkeypatch):
    monkeypatch.setattr("bridge.feed.sequencer.FILL_PAGE", 3)
    sequencer, got = seq
    events = await append(db, 8)
    sequencer.push([events[-1]])
    await got.wait_for(8)
    assert got.ids == list(range(1, 9))


async def test_chat_events_read_back_carry_the_chat(world: World, database: Database):
    student = await world.user("student")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    await log_settled(database)
    events = await load_events(database, 0, None)
    created = [e for e in events if e.type == "chat.created"]
    assert [e.chat_id for e in created] == [chat_id]
    assert created[0].chat is not None
    assert created[0].chat.type == "forum_subject"
    assert created[0].chat.participants == {student, teacher}


async def test_events_delivered_while_a_fill_reads_the_log_are_not_delivered_again(
    db: Database, seq, monkeypatch
):
    sequencer, got = seq
    e1, e2, e3, e4, e5, e6 = await append(db, 6)
    gate = asyncio.Event()
    reading = asyncio.Event()
    load = load_events

    async def slow_load(*args, **kwargs):
        reading.set()
        await gate.wait()  # a slow read of the log
        return await load(*args, **kwargs)

    monkeypatch.setattr("bridge.feed.sequencer.load_events", slow_load)
    sequencer.push([e1])
    sequencer.push([e3])  # 2 missing: a fill starts, and reads slowly
    await reading.wait()
    sequencer.push([e2])  # meanwhile 2 turns up live, and 4 and 5 follow
    sequencer.push([e4])
    sequencer.push([e5])
    assert got.ids == [1, 2, 3, 4, 5]
    gate.set()
    await eventually(lambda: sequencer._filling is None, what="the fill to end")
    sequencer.push([e6])
    await got.wait_for(6)
    assert got.ids == [1, 2, 3, 4, 5, 6]
