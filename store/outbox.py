"""The outbox table: jobs for Pachca, written in the same transaction as their cause.

A job is ``pending`` until it is ``done`` or ``dead``. A worker *leases* a pending job by setting
``lease_until``; until then no one else takes it, and if the worker dies the lease simply runs
out. ``attempts`` counts the times a job was started (a claim), so a job that crashes its worker
every time still reaches the dead-letter limit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, and_, case, delete, event, exists, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.models import OutboxJob

outbox = OutboxJob.__table__

PENDING, DONE, DEAD = "pending", "done", "dead"
STATUSES = (PENDING, DONE, DEAD)

# An attempt handed back (never below zero, in SQL both dialects speak).
_one_attempt_less = case((outbox.c.attempts > 0, outbox.c.attempts - 1), else_=0)

# Set on a connection whose transaction made a job due, so its commit can wake the worker.
_DUE_FLAG = "outbox_job_due"


def new_job(
    kind: str, payload: dict[str, Any], *, chat_id: int | None, now: datetime
) -> dict[str, Any]:
    """The row of a pending job, due now (for writers that insert it themselves)."""
    return {
        "chat_id": chat_id,
        "kind": kind,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: dict[str, Any],
    *,
    chat_id: int | None,
    now: datetime,
) -> None:
    await conn.execute(
        outbox.insert().values(
            chat_id=chat_id,
            kind=kind,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    conn.info[_DUE_FLAG] = True


def on_commit_of_due_jobs(engine: AsyncEngine, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after each commit that enqueued (or re-queued) a job; returns a
    function that stops it. Lets the worker start at once without anyone calling it from the
    request path."""

    def committed(conn: Connection) -> None:
        if conn.info.pop(_DUE_FLAG, False):
            callback()

    def rolled_back(conn: Connection) -> None:
        conn.info.pop(_DUE_FLAG, None)

    target = engine.sync_engine
    event.listen(target, "commit", committed)
    event.listen(target, "rollback", rolled_back)

    def remove() -> None:
        event.remove(target, "commit", committed)
        event.remove(target, "rollback", rolled_back)

    return remove


def _claimable(now: datetime) -> Any:
    """Due, not leased by a live worker, and the oldest pending job of its chat: a later job
    of a chat never runs while an earlier one is pending (waiting, leased or being retried)."""
    earlier = outbox.alias("earlier")
    blocked = exists().where(
        earlier.c.chat_id == outbox.c.chat_id,
        earlier.c.status == PENDING,
        earlier.c.id < outbox.c.id,
    )
    return and_(
        outbox.c.status == PENDING,
        outbox.c.next_attempt_at <= now,
        or_(outbox.c.lease_until.is_(None), outbox.c.lease_until <= now),
        ~blocked,
    )


async def claim(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> list[RowMapping]:
    """Lease up to ``limit`` claimable jobs, oldest first, counting an attempt on each.

    On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``, so instances
    sharing the table never take the same job; SQLite has a single writer and needs nothing
    (the dialect renders no locking clause).
    """
    candidates = (
        select(outbox.c.id)
        .where(_claimable(now))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(outbox)
        .where(outbox.c.id.in_(candidates.scalar_subquery()))
        .values(lease_until=lease_until, attempts=outbox.c.attempts + 1, updated_at=now)
        .returning(*outbox.c)
    )
    rows = list((await conn.execute(stmt)).mappings())
    rows.sort(key=lambda r: r["id"])
    return rows


async def complete(conn: AsyncConnection, job_id: int, *, now: datetime) -> bool:
    """Mark a job done; False when it is gone (its chat was deleted) or no longer pending."""
    result = await conn.execute(
        update(outbox)
        .where(outbox.c.id == job_id, outbox.c.status == PENDING)
        .values(status=DONE, lease_until=None, last_error=None, updated_at=now)
    )
    return result.rowcount > 0


async def reschedule(
    conn: AsyncConnection,
    job_id: int,
    *,
    next_attempt_at: datetime,
    error: str,
    now: datetime,
    refund_attempt: bool = False,
) -> None:
    """Back to waiting until ``next_attempt_at``. ``refund_attempt``: the run did not count
    (it was told to wait - a 429, a missing channel - rather than failing)."""
    values: dict[str, Any] = {
        "lease_until": None,
        "next_attempt_at": next_attempt_at,
        "last_error": error,
        "updated_at": now,
    }
    if refund_attempt:
        values["attempts"] = _one_attempt_less
    await conn.execute(
        update(outbox).where(outbox.c.id == job_id, outbox.c.status == PENDING).values(**values)
    )


async def bury(conn: AsyncConnection, job_id: int, *, error: str, now: datetime) -> None:
    """Dead-letter a job: kept, visible to admins, retryable by hand."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == job_id, outbox.c.status == PENDING)
        .values(status=DEAD, lease_until=None, last_error=error, updated_at=now)
    )


async def release(conn: AsyncConnection, job_ids: list[int], *, now: datetime) -> None:
    """Give back leases of jobs stopped mid-run (a shutdown): due again at once, and the
    interrupted run does not count."""
    if not job_ids:
        return
    await conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(job_ids), outbox.c.status == PENDING)
        .values(lease_until=None, next_attempt_at=now, attempts=_one_attempt_less, updated_at=now)
    )
    conn.info[_DUE_FLAG] = True


async def note_waiting(conn: AsyncConnection, reason: str, *, after_id: int, now: datetime) -> int:
    """Record why pending jobs are not being attempted (Pachca disabled, no token) on those
    with an id above ``after_id``; returns the highest pending id, to pass next time, so
    repeated calls touch only new jobs."""
    highest = (
        await conn.execute(
            select(func.max(outbox.c.id)).where(outbox.c.status == PENDING, outbox.c.id > after_id)
        )
    ).scalar()
    if highest is None:
        return after_id
    await conn.execute(
        update(outbox)
        .where(
            outbox.c.status == PENDING,
            outbox.c.id > after_id,
            outbox.c.id <= highest,
            or_(outbox.c.last_error.is_(None), outbox.c.last_error != reason),
        )
        .values(last_error=reason, updated_at=now)
    )
    return highest


async def expire_leases(conn: AsyncConnection, *, now: datetime) -> int:
    """Clear leases that ran out (their worker died or hung) so the jobs show as waiting;
    the number cleared. Claims already ignore expired leases; this makes them visible."""
    result = await conn.execute(
        update(outbox)
        .where(outbox.c.status == PENDING, outbox.c.lease_until <= now)
        .values(
            lease_until=None,
            last_error="lease expired: the worker stopped before finishing",
            updated_at=now,
        )
    )
    if result.rowcount:
        conn.info[_DUE_FLAG] = True
    return result.rowcount


async def prune_done(conn: AsyncConnection, cutoff: datetime) -> int:
    """Delete jobs done before ``cutoff``; dead ones stay until someone deals with them."""
    result = await conn.execute(
        delete(outbox).where(outbox.c.status == DONE, outbox.c.updated_at < cutoff)
    )
    return result.rowcount


async def get_job(conn: AsyncConnection, job_id: int) -> RowMapping | None:
    rows = await conn.execute(select(outbox).where(outbox.c.id == job_id))
    return rows.mappings().first()


async def list_jobs(
    conn: AsyncConnection, status: str, *, limit: int, after_id: int = 0
) -> list[RowMapping]:
    """Jobs of one status in id order (the order they run in), after ``after_id``."""
    rows = await conn.execute(
        select(outbox)
        .where(outbox.c.status == status, outbox.c.id > after_id)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return list(rows.mappings())


async def retry(conn: AsyncConnection, job_id: int, *, now: datetime) -> RowMapping | None:
    """Put a dead (or waiting) job back in the queue, due now, with a fresh attempt budget.
    None when there is no such job or it is done. A lease is left alone: a job being run
    stays its worker's."""
    result = await conn.execute(
        update(outbox)
        .where(outbox.c.id == job_id, outbox.c.status.in_([PENDING, DEAD]))
        .values(status=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        .returning(*outbox.c)
    )
    row = result.mappings().first()
    if row is not None:
        conn.info[_DUE_FLAG] = True
    return row


async def depth(conn: AsyncConnection) -> dict[str, int]:
    """Jobs per status (every status present, zero when none)."""
    rows = await conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: n for status, n in rows})
    return counts
