"""The outbox table: jobs for Pachca, written in the same transaction as their cause.

A job is ``pending`` until it is ``done`` or ``dead``. A worker *leases* a pending job by setting
``lease_until``; until then no one else takes it. The lease is short and the worker renews it
while the job runs (``renew``), so if the worker dies the lease runs out within seconds and
another instance takes the job. ``attempts`` counts the times a job was started (a claim), so
a job that crashes its worker every time still reaches the dead-letter limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)

from store.models import OutboxJob
from store.tx import Row, Tx, prepared

outbox = OutboxJob.__table__

PENDING, DONE, DEAD = "pending", "done", "dead"
STATUSES = (PENDING, DONE, DEAD)

# An attempt handed back (never below zero, in SQL both dialects speak).
_one_attempt_less = case((outbox.c.attempts > 0, outbox.c.attempts - 1), else_=0)

# The commit signal of a transaction that made a job due: the outbox worker subscribes to
# it (Database.on_signal), so it starts at once without anyone calling it from the request path.
OUTBOX_DUE = "outbox_due"


def chat_lane(chat_id: int) -> str:
    """The lane of a forum chat's jobs (see ``claim``)."""
    return f"chat:{chat_id}"


def entity_lane(entity_type: str, entity_id: int) -> str:
    """The lane of messages to one Pachca entity outside a forum chat (a bot's direct chat)."""
    return f"{entity_type}:{entity_id}"


def _lane(chat_id: int | None, lane: str | None) -> str:
    if chat_id is not None:
        return chat_lane(chat_id)
    if lane is None:
        raise ValueError("a job outside a forum chat needs a lane")
    return lane


_INSERT = prepared(outbox.insert())


async def enqueue(
    tx: Tx,
    kind: str,
    payload: dict[str, Any],
    *,
    chat_id: int | None,
    now: datetime,
    lane: str | None = None,
    message_id: int | None = None,
) -> None:
    """Queue a job, due now. Its lane is its forum chat's, else ``lane`` (required then)."""
    await tx.run(
        _INSERT,
        {
            "chat_id": chat_id,
            "lane": _lane(chat_id, lane),
            "message_id": message_id,
            "kind": kind,
            "payload": payload,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )
    tx.signal(OUTBOX_DUE)


async def enqueue_many(tx: Tx, jobs: list[dict[str, Any]], *, now: datetime) -> None:
    """Queue several jobs, due now, in one statement (a scheduled run's batch): each a dict
    of ``kind``, ``payload``, ``chat_id`` and ``lane`` (used when ``chat_id`` is None)."""
    if not jobs:
        return
    rows = [
        {
            "chat_id": job["chat_id"],
            "lane": _lane(job["chat_id"], job.get("lane")),
            "message_id": None,
            "kind": job["kind"],
            "payload": job["payload"],
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "lease_until": None,
            "last_error": None,
            "created_at": now,
            "updated_at": now,
        }
        for job in jobs
    ]
    # Built per call: its size is the batch's (a cold path, once per scheduled run).
    await tx.run(outbox.insert().values(rows))
    tx.signal(OUTBOX_DUE)


_JOIN_WAITING = prepared(
    update(outbox)
    .where(
        outbox.c.message_id == bindparam("for_message"),
        outbox.c.kind == bindparam("for_kind"),
        outbox.c.status == PENDING,
        outbox.c.lease_until.is_(None),
    )
    .values(updated_at=bindparam("now"))
)


async def enqueue_unless_waiting(
    tx: Tx,
    kind: str,
    payload: dict[str, Any],
    *,
    chat_id: int,
    message_id: int,
    now: datetime,
) -> bool:
    """Enqueue a job about ``message_id`` unless one of the same kind waits for it, not yet
    leased: a job that reads the message's state when it runs (an edit) covers every change
    made before it starts. True when a job was added.

    The waiting job is claimed by an UPDATE, which holds its row until commit: on
    PostgreSQL a worker's claim skips it meanwhile (SKIP LOCKED), and a claim in progress
    makes this wait and then see the lease, so no change is left behind a job that already
    read the message.
    """
    joined = await tx.run(_JOIN_WAITING, {"for_message": message_id, "for_kind": kind, "now": now})
    if joined > 0:
        return False
    await enqueue(tx, kind, payload, chat_id=chat_id, now=now, message_id=message_id)
    return True


# What a lane head carries: enough to tell whether it may run now.
_HEAD_COLUMNS = ("lane", "id", "next_attempt_at", "lease_until")


def _lane_heads() -> Any:
    """The oldest pending job of every lane that has one (a CTE of ``_HEAD_COLUMNS``).

    A loose index scan over ``ix_outbox_status_lane_id`` (pending jobs ordered by lane, then
    id): from one lane's head, the next entry past that lane is the next lane's head, one
    index seek away. The cost follows the number of lanes with pending jobs, not the number
    of jobs: a lane with thousands queued costs what a lane with one does.
    """
    first = (
        select(*(outbox.c[c] for c in _HEAD_COLUMNS))
        .where(outbox.c.status == PENDING)
        .order_by(outbox.c.lane, outbox.c.id)
        .limit(1)
        .subquery("first_head")
    )
    heads = select(*first.c).cte("heads", recursive=True)
    after = outbox.alias("after")
    next_head_id = (
        select(after.c.id)
        .where(after.c.status == PENDING, after.c.lane > heads.c.lane)
        # (lane, id), not id alone: only the lane index yields this order, so the planner
        # cannot choose to walk the primary key past a long lane instead.
        .order_by(after.c.lane, after.c.id)
        .limit(1)
        .scalar_subquery()
    )
    head = outbox.alias("head")
    return heads.union_all(
        select(*(head.c[c] for c in _HEAD_COLUMNS)).select_from(
            heads.join(head, head.c.id == next_head_id)
        )
    )


def _may_run(job: Any, now: Any) -> Any:
    """Due, and not leased by a live worker. A lane whose head may not run is skipped whole:
    its later jobs must not overtake the head."""
    return and_(
        job.c.next_attempt_at <= now,
        or_(job.c.lease_until.is_(None), job.c.lease_until <= now),
    )


def _claim_statement(dialect: str) -> Any:
    """Lease the claimable jobs (see ``claim``); built once per dialect, run with bind
    parameters. The lane heads alone decide what may run: filtering the table instead lets a
    planner without statistics pick the index on next_attempt_at and scan every pending job.
    """
    now = bindparam("now", type_=outbox.c.next_attempt_at.type)
    limit = bindparam("limit")
    heads = _lane_heads()
    runnable = select(heads.c.id).where(_may_run(heads, now))
    if dialect == "postgresql":
        # Lock them, looked up by primary key from an array computed first (as a join, the
        # planner - which cannot know how few heads there are - may walk the whole table),
        # skipping those another worker is claiming right now. The conditions are repeated
        # on the locked rows: PostgreSQL checks them again on the newest version of a row,
        # so a claim committed since this statement's snapshot is seen.
        candidates = (
            select(outbox.c.id)
            .where(
                outbox.c.id == any_(func.array(runnable.scalar_subquery())),
                outbox.c.status == PENDING,
                _may_run(outbox, now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    else:
        candidates = runnable.order_by(heads.c.id).limit(limit)  # one writer: no locks
    return (
        update(outbox)
        .where(outbox.c.id.in_(candidates.scalar_subquery()))
        .values(
            lease_until=bindparam("lease_until", type_=outbox.c.lease_until.type),
            attempts=outbox.c.attempts + 1,
            updated_at=now,
        )
        .returning(*outbox.c)
    )


_CLAIM = prepared(_claim_statement)


async def claim(tx: Tx, *, now: datetime, lease_until: datetime, limit: int) -> list[Row]:
    """Lease up to ``limit`` claimable jobs, counting an attempt on each.

    At most one job per lane (its head), lanes taken by the age of their head, oldest
    first: however many jobs one chat or one Pachca user has queued, every other lane's
    next job is among the next claims.

    On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``, so instances
    sharing the table never take the same job; SQLite has a single writer and needs nothing
    (the dialect renders no locking clause).
    """
    params = {"now": now, "lease_until": lease_until, "limit": limit}
    rows = await tx.rows(_CLAIM, params)
    rows.sort(key=lambda r: r["id"])
    return rows


_RENEW = prepared(
    update(outbox)
    .where(
        outbox.c.id == bindparam("job_id"),
        outbox.c.status == PENDING,
        outbox.c.lease_until == bindparam("held", type_=outbox.c.lease_until.type),
    )
    .values(lease_until=bindparam("until", type_=outbox.c.lease_until.type))
)


async def renew(tx: Tx, job_id: int, *, held: datetime, until: datetime) -> bool:
    """Extend a lease its worker still holds (``held``: the ``lease_until`` it was given) to
    ``until``; False when the lease is no longer its own - it ran out and another worker took
    the job, or the job is no longer pending."""
    changed = await tx.run(_RENEW, {"job_id": job_id, "held": held, "until": until})
    return changed > 0


# The values given besides ``job_id`` are the columns set, on a job still pending.
_SET_PENDING = prepared(
    update(outbox).where(outbox.c.id == bindparam("job_id"), outbox.c.status == PENDING)
)


async def complete(tx: Tx, job_id: int, *, now: datetime) -> bool:
    """Mark a job done; False when it is gone (its chat was deleted) or no longer pending."""
    changed = await tx.run(
        _SET_PENDING,
        {
            "status": DONE,
            "lease_until": None,
            "last_error": None,
            "updated_at": now,
            "job_id": job_id,
        },
    )
    return changed > 0


_REFUND = prepared(
    update(outbox)
    .where(outbox.c.id == bindparam("job_id"), outbox.c.status == PENDING)
    .values(attempts=_one_attempt_less)
)


async def reschedule(
    tx: Tx,
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
        "job_id": job_id,
    }
    await tx.run(_REFUND if refund_attempt else _SET_PENDING, values)


async def bury(tx: Tx, job_id: int, *, error: str, now: datetime) -> None:
    """Dead-letter a job: kept, visible to admins, retryable by hand."""
    await tx.run(
        _SET_PENDING,
        {
            "status": DEAD,
            "lease_until": None,
            "last_error": error,
            "updated_at": now,
            "job_id": job_id,
        },
    )


async def release(tx: Tx, job_ids: list[int], *, now: datetime) -> None:
    """Give back leases of jobs stopped mid-run (a shutdown): due again at once, and the
    interrupted run does not count."""
    if not job_ids:
        return
    await tx.run(
        update(outbox)
        .where(outbox.c.id.in_(job_ids), outbox.c.status == PENDING)
        .values(lease_until=None, next_attempt_at=now, attempts=_one_attempt_less, updated_at=now)
    )
    tx.signal(OUTBOX_DUE)


async def note_waiting(tx: Tx, reason: str, *, after_id: int, now: datetime) -> int:
    """Record why pending jobs are not being attempted (Pachca disabled, no token) on those
    with an id above ``after_id``; returns the highest pending id, to pass next time, so
    repeated calls touch only new jobs."""
    highest = await tx.value(
        select(func.max(outbox.c.id)).where(outbox.c.status == PENDING, outbox.c.id > after_id)
    )
    if highest is None:
        return after_id
    await tx.run(
        update(outbox)
        .where(
            outbox.c.status == PENDING,
            outbox.c.id > after_id,
            outbox.c.id <= highest,
            or_(outbox.c.last_error.is_(None), outbox.c.last_error != reason),
        )
        .values(last_error=reason, updated_at=now)
    )
    highest_id: int = highest
    return highest_id


async def expire_leases(tx: Tx, *, now: datetime) -> int:
    """Clear leases that ran out (their worker died or hung) so the jobs show as waiting;
    the number cleared. Claims already ignore expired leases; this makes them visible."""
    cleared = await tx.run(
        update(outbox)
        .where(outbox.c.status == PENDING, outbox.c.lease_until <= now)
        .values(
            lease_until=None,
            last_error="lease expired: the worker stopped before finishing",
            updated_at=now,
        )
    )
    if cleared:
        tx.signal(OUTBOX_DUE)
    return cleared


async def prune_done(tx: Tx, cutoff: datetime) -> int:
    """Delete jobs done before ``cutoff``; dead ones stay until someone deals with them."""
    return await tx.run(delete(outbox).where(outbox.c.status == DONE, outbox.c.updated_at < cutoff))


_UNFINISHED_PAYLOADS = prepared(
    select(outbox.c.payload)
    .where(
        outbox.c.chat_id == bindparam("chat_id"),
        outbox.c.kind == bindparam("kind"),
        outbox.c.status.in_([PENDING, DEAD]),
    )
    .order_by(outbox.c.id)
)


async def unfinished_payloads(tx: Tx, chat_id: int, kind: str) -> list[dict[str, Any]]:
    """The payloads of a chat's jobs of one kind that have not run to the end (pending or
    dead): what deleting the chat would drop undone."""
    rows = await tx.rows(_UNFINISHED_PAYLOADS, {"chat_id": chat_id, "kind": kind})
    return [r["payload"] for r in rows]


async def get_job(tx: Tx, job_id: int) -> Row | None:
    return await tx.first(select(outbox).where(outbox.c.id == job_id))


async def list_jobs(tx: Tx, status: str, *, limit: int, after_id: int = 0) -> list[Row]:
    """Jobs of one status in id order (the order they run in), after ``after_id``."""
    return await tx.rows(
        select(outbox)
        .where(outbox.c.status == status, outbox.c.id > after_id)
        .order_by(outbox.c.id)
        .limit(limit)
    )


async def retry(tx: Tx, job_id: int, *, now: datetime) -> Row | None:
    """Put a dead (or waiting) job back in the queue, due now, with a fresh attempt budget.
    None when there is no such job or it is done. A lease is left alone: a job being run
    stays its worker's."""
    row = await tx.first(
        update(outbox)
        .where(outbox.c.id == job_id, outbox.c.status.in_([PENDING, DEAD]))
        .values(status=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        .returning(*outbox.c)
    )
    if row is not None:
        tx.signal(OUTBOX_DUE)
    return row


async def depth(tx: Tx) -> dict[str, int]:
    """Jobs per status (every status present, zero when none)."""
    rows = await tx.rows(
        select(outbox.c.status, func.count().label("jobs")).group_by(outbox.c.status)
    )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({r["status"]: r["jobs"] for r in rows})
    return counts
