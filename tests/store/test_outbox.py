"""The outbox queue's rules (store/outbox.py), on SQLite and PostgreSQL: which jobs a worker may
claim, leases, attempts, dead letters and retries."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bridge.runtime import utcnow
from store import forum, migrate
from store import outbox as q
from store import users as user_store
from store.db import Database
from store.models import OutboxJob
from tests.conftest import PG_URL

LEASE = timedelta(seconds=60)


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    await migrate.upgrade(database)
    yield database


async def make_chats(db: Database, n: int) -> list[int]:
    now = utcnow()
    async with db.write() as conn:
        for uid, role in (("s", "student"), ("t", "teacher")):
            await user_store.upsert_user(conn, {"id": uid, "role": role, "name": uid}, now)
        await forum.claim_enrollment(
            conn,
            {
                "id": "e",
                "student_id": "s",
                "teacher_id": "t",
                "subject_id": "m",
                "subject_name": "Maths",
                "active": True,
                "created_at": now,
                "updated_at": now,
            },
        )
        chats = []
        for i in range(n):
            chats.append(
                await forum.insert_chat(
                    conn,
                    {
                        "enrollment_id": "e",
                        # (enrollment, type) is unique: distinct types stand in for chats.
                        "type": f"t{i}",
                        "title": f"chat {i}",
                        "subject_id": "m",
                        "subject_name": "Maths",
                        "is_active": True,
                        "created_at": now,
                        "last_activity_at": now,
                    },
                )
            )
    return chats


async def add(
    db: Database,
    chat_id: int | None,
    kind: str = "post_message",
    *,
    lane: str = "user:1",  # for a job outside a chat
    **at: Any,
) -> int:
    now = at.get("now", utcnow())
    async with db.write() as conn:
        await q.enqueue(conn, kind, {"n": 1}, chat_id=chat_id, now=now, lane=lane)
        newest: int = await conn.value(select(OutboxJob.id).order_by(OutboxJob.id.desc()))
    return newest


async def claim(db: Database, *, now: datetime | None = None, limit: int = 10) -> list[int]:
    now = now or utcnow()
    async with db.write() as conn:
        rows = await q.claim(conn, now=now, lease_until=now + LEASE, limit=limit)
    return [r["id"] for r in rows]


async def job(db: Database, job_id: int) -> Any:
    async with db.read() as conn:
        return await q.get_job(conn, job_id)


async def test_only_the_oldest_pending_job_of_each_chat_is_claimed(db: Database) -> None:
    a, b = await make_chats(db, 2)
    a1, a2 = await add(db, a), await add(db, a)
    b1 = await add(db, b)
    loose = await add(db, None, "send_text")  # no chat: no order to keep

    assert await claim(db) == [a1, b1, loose]
    # a2 waits while a1 is leased...
    assert await claim(db) == []
    # ...and while a1 waits for a retry.
    now = utcnow()
    async with db.write() as conn:
        await q.reschedule(conn, a1, next_attempt_at=now + LEASE, error="500", now=now)
    assert await claim(db) == []
    async with db.write() as conn:
        assert await q.complete(conn, a1, now=now)
    assert await claim(db) == [a2]


async def test_a_dead_job_does_not_hold_back_the_rest_of_its_chat(db: Database) -> None:
    [a] = await make_chats(db, 1)
    a1, a2 = await add(db, a), await add(db, a)
    assert await claim(db) == [a1]
    async with db.write() as conn:
        await q.bury(conn, a1, error="HTTP 400", now=utcnow())
    assert await claim(db) == [a2]


async def test_claims_are_due_jobs_oldest_first_up_to_the_limit(db: Database) -> None:
    chats = await make_chats(db, 3)
    now = utcnow()
    later = await add(db, chats[0], now=now + timedelta(seconds=30))
    ids = [await add(db, c, now=now) for c in chats[1:]]
    assert await claim(db, now=now, limit=1) == ids[:1]
    assert await claim(db, now=now) == ids[1:]
    assert await claim(db, now=now + timedelta(seconds=31)) == [later]


async def test_a_claim_counts_an_attempt_and_sets_a_lease(db: Database) -> None:
    [a] = await make_chats(db, 1)
    j = await add(db, a)
    now = utcnow()
    await claim(db, now=now)
    row = await job(db, j)
    assert row["attempts"] == 1
    assert row["lease_until"] == now + LEASE
    assert row["status"] == "pending"


async def test_an_expired_lease_lets_another_worker_take_the_job(db: Database) -> None:
    [a] = await make_chats(db, 1)
    j = await add(db, a)
    now = utcnow()
    assert await claim(db, now=now) == [j]
    assert await claim(db, now=now + LEASE - timedelta(seconds=1)) == []
    assert await claim(db, now=now + LEASE) == [j]
    assert (await job(db, j))["attempts"] == 2


async def test_expire_leases_shows_abandoned_jobs_as_waiting(db: Database) -> None:
    [a] = await make_chats(db, 1)
    j = await add(db, a)
    now = utcnow()
    await claim(db, now=now)
    async with db.write() as conn:
        assert await q.expire_leases(conn, now=now) == 0
        assert await q.expire_leases(conn, now=now + LEASE) == 1
    row = await job(db, j)
    assert row["lease_until"] is None
    assert "lease expired" in row["last_error"]


async def test_a_postponed_run_gives_its_attempt_back(db: Database) -> None:
    [a] = await make_chats(db, 1)
    j = await add(db, a)
    now = utcnow()
    await claim(db, now=now)
    async with db.write() as conn:
        await q.reschedule(conn, j, next_attempt_at=now, error="429", now=now, refund_attempt=True)
    row = await job(db, j)
    assert (row["attempts"], row["lease_until"], row["last_error"]) == (0, None, "429")


async def test_released_jobs_are_due_again_at_once(db: Database) -> None:
    [a] = await make_chats(db, 1)
    j = await add(db, a)
    await claim(db)
    async with db.write() as conn:
        await q.release(conn, [j], now=utcnow())
    assert await claim(db) == [j]
    assert (await job(db, j))["attempts"] == 1


async def test_retry_revives_a_dead_job_but_not_a_done_one(db: Database) -> None:
    [a] = await make_chats(db, 1)
    dead, done = await add(db, a), await add(db, a)
    now = utcnow()
    await claim(db)
    async with db.write() as conn:
        await q.bury(conn, dead, error="gave up", now=now)
    await claim(db)
    async with db.write() as conn:
        await q.complete(conn, done, now=now)
        revived = await q.retry(conn, dead, now=now)
        assert await q.retry(conn, done, now=now) is None
        assert await q.retry(conn, 999_999, now=now) is None
    assert revived is not None
    assert (revived["status"], revived["attempts"]) == ("pending", 0)
    assert await claim(db) == [dead]


async def test_note_waiting_marks_new_jobs_only_once(db: Database) -> None:
    [a] = await make_chats(db, 1)
    first = await add(db, a)
    now = utcnow()
    async with db.write() as conn:
        through = await q.note_waiting(conn, "disabled", after_id=0, now=now)
    assert through == first
    second = await add(db, a)
    async with db.write() as conn:
        assert await q.note_waiting(conn, "disabled", after_id=through, now=now) == second
        assert await q.note_waiting(conn, "disabled", after_id=second, now=now) == second
    assert (await job(db, first))["last_error"] == "disabled"
    assert (await job(db, second))["last_error"] == "disabled"


async def test_depth_and_pruning_of_done_jobs(db: Database) -> None:
    [a] = await make_chats(db, 1)
    old, new, dead = await add(db, a), await add(db, a), await add(db, a)
    pending = await add(db, a)
    now = utcnow()
    async with db.write() as conn:
        await q.complete(conn, old, now=now - timedelta(days=2))
        await q.complete(conn, new, now=now)
        await q.bury(conn, dead, error="x", now=now - timedelta(days=2))
        assert await q.depth(conn) == {"pending": 1, "done": 2, "dead": 1}
        assert await q.prune_done(conn, now - timedelta(days=1)) == 1
        assert await q.depth(conn) == {"pending": 1, "done": 1, "dead": 1}
    assert await job(db, old) is None
    assert await job(db, dead) is not None  # dead letters stay until dealt with
    assert await job(db, pending) is not None


@pytest.mark.skipif(not PG_URL, reason="several instances share the table on PostgreSQL only")
async def test_concurrent_claims_never_take_the_same_job(db: Database) -> None:
    chats = await make_chats(db, 20)
    for c in chats:
        await add(db, c)
        await add(db, c)

    async def worker() -> list[int]:
        taken: list[int] = []
        for _ in range(10):
            taken += await claim(db, limit=3)
        return taken

    results = await asyncio.gather(*(worker() for _ in range(4)))
    taken = [j for r in results for j in r]
    assert len(taken) == len(set(taken))  # nobody got a job twice
    assert len(taken) == 20  # the first job of each chat; the second waits behind it


# --- lanes: one job per lane at a time, lanes taken oldest first ----------------------------


async def add_many(db: Database, n: int, *, lane: str) -> list[int]:
    now = utcnow()
    job = {"chat_id": None, "lane": lane, "message_id": None, "kind": "send_text"}
    times = {"next_attempt_at": now, "created_at": now, "updated_at": now}
    async with db.write() as conn:
        await conn.run(
            OutboxJob.__table__.insert(),
            [
                {**job, "payload": {"n": i}, "status": "pending", "attempts": 0, **times}
                for i in range(n)
            ],
        )
        rows = await conn.rows(
            select(OutboxJob.id).where(OutboxJob.lane == lane).order_by(OutboxJob.id)
        )
    return [r["id"] for r in rows]


async def test_a_busy_lane_does_not_hold_back_the_others(db: Database) -> None:
    """500 bot answers waiting for one Pachca user: a new chat's first job is claimed with the
    first of them, not after them; the user's answers go one at a time, in order."""
    [chat] = await make_chats(db, 1)
    answers = await add_many(db, 500, lane=q.entity_lane("user", 4001))
    opening = await add(db, chat, "open_thread")
    other_user = await add(db, None, "send_text", lane=q.entity_lane("user", 4002))

    assert await claim(db, limit=8) == [answers[0], opening, other_user]
    assert await claim(db, limit=8) == []  # each lane's head is leased
    now = utcnow()
    async with db.write() as conn:
        await q.complete(conn, answers[0], now=now)
    assert await claim(db, limit=8) == [answers[1]]


async def test_lanes_are_taken_by_the_age_of_their_head_up_to_the_limit(db: Database) -> None:
    chats = await make_chats(db, 3)
    jobs = [await add(db, c) for c in reversed(chats)]  # lane order is not age order
    answer = await add(db, None, "send_text", lane="thread:77")
    assert await claim(db, limit=2) == jobs[:2]
    assert await claim(db, limit=2) == [jobs[2], answer]


@pytest.mark.skipif(bool(PG_URL), reason="counts SQLite's virtual machine steps")
async def test_the_claim_costs_the_same_however_many_jobs_wait_in_a_lane(db: Database) -> None:
    """The claim seeks from lane to lane in an index; it never walks a lane's jobs."""

    class Undo(Exception):
        """Rolls the claim back: the next measure is on the same jobs."""

    async def claim_steps() -> int:
        seen: list[tuple[str, list[Any]]] = []
        stop = db.on_statement(lambda sql, args: seen.append((sql, list(args))))
        try:
            now = utcnow()
            with pytest.raises(Undo):
                async with db.write() as conn:
                    await q.claim(conn, now=now, lease_until=now + LEASE, limit=8)
                    raise Undo
        finally:
            stop()
        [(sql, args)] = seen
        # The same statement again, on a connection of its own that counts SQLite's virtual
        # machine steps, and rolled back too.
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0  # go on

        raw = sqlite3.connect(str(db.url.database), isolation_level=None)
        try:
            raw.set_progress_handler(count, 100)  # called every 100 VM instructions
            raw.execute("BEGIN")
            claimed = raw.execute(sql, args).fetchall()
            raw.execute("ROLLBACK")
        finally:
            raw.close()
        assert claimed
        return steps

    [chat] = await make_chats(db, 1)
    await add(db, chat)
    await add_many(db, 10, lane="user:1")
    few = await claim_steps()
    await add_many(db, 3000, lane="user:1")
    many = await claim_steps()
    # Walking the lane would cost ~300 times as much; an index seek grows with log(n).
    assert many <= few * 1.5 + 10, (few, many)
