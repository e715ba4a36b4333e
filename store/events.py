"""The event log: the feed's history and the source of ``since`` replay.

An event's explicit audience is rows of ``event_audience``, compared with ``=``: a user id
matches itself only, whatever characters it holds (no patterns, no case folding, no
separators).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Text, bindparam, cast, delete, func, literal_column, select, text

from store.models import Event, EventAudience
from store.tx import Row, Tx, prepared
from store.users import get_setting, set_setting

events = Event.__table__
audiences = EventAudience.__table__


def _insert(dialect: str) -> Any:
    columns = ["chat_id", "type", "payload", "created_at"]
    if dialect != "postgresql":
        return events.insert().returning(events.c.id)
    return _insert_from_select([bindparam(c, type_=events.c[c].type) for c in columns])


def _insert_from_select(values: list[Any]) -> Any:
    """PostgreSQL: the event insert, its ``chat_id``, ``type``, ``payload`` and ``created_at``
    given as SQL expressions."""
    # The transaction takes its id (a CTE, materialized first) before the event takes its own
    # from the sequence: see ``append``.
    own = (
        select(cast(cast(func.pg_current_xact_id(), Text), BigInteger).label("xid"))
        .cte("own")
        .prefix_with("MATERIALIZED")
    )
    return (
        events.insert()
        .from_select(
            ["chat_id", "type", "payload", "created_at", "txid"], select(*values, own.c.xid)
        )
        .returning(events.c.id)
    )


_INSERT = prepared(_insert)
_INSERT_AUDIENCE = prepared(audiences.insert())

# Sent with the COMMIT of a transaction that appended events, in its round trip
# (store/postgres.py): the rows are written once more, by a subtransaction, whose id - a fresh
# one, handed out after the events took their ids - becomes the rows' xmin (see ``append``).
_SETTLE = (
    "SAVEPOINT event_horizon; UPDATE events SET txid = txid WHERE id = ANY('{%s}'::bigint[]);"
    " RELEASE event_horizon"
)


def settle_statement(event_ids: list[int]) -> str:
    """The statements that settle ``event_ids`` (ints only: nothing to quote)."""
    return _SETTLE % ",".join(str(int(i)) for i in event_ids)


@dataclass(frozen=True, slots=True)
class AboutNewRow:
    """An event about a row not written yet, to be appended by the statement that writes it
    (store/new_messages.py): its payload is ``head``, the row's id, then ``tail``."""

    type: str
    head: str
    tail: str
    created_at: datetime

    def payload(self, row_id: int) -> str:
        return f"{self.head}{row_id}{self.tail}"


async def append(
    tx: Tx,
    *,
    chat_id: int,
    type: str,
    payload: str,
    audience: Iterable[str] | None,
    created_at: datetime,
) -> int:
    """Append one event and its explicit audience (None: whoever may see the chat); its id.

    On PostgreSQL writers do not wait for each other, and sequence values are handed out
    before commit: two transactions may commit ids 10 and 11 in the order 11, 10, and a reader
    that took 11 at once would never see 10. So readers take an event only once every
    transaction that had a transaction id when the event took its own id has ended
    (``visible_head``):

    - each writer takes its transaction id before its event id (the insert's CTE), and the
      event row keeps it (``txid``);
    - at commit, in the COMMIT's round trip, a subtransaction writes the event rows again: the
      rows' ``xmin`` becomes that subtransaction's id, handed out after the event ids were
      taken, so greater than the transaction id of anyone holding a smaller event id;
    - a reader takes events up to the newest whose ``xmin`` is below
      ``pg_snapshot_xmin(pg_current_snapshot())``, the oldest transaction still running:
      every smaller id has then committed or rolled back for good.

    SQLite has a single writer: ids commit in order, and none of this is needed.
    """
    event_id: int = await tx.value(
        _INSERT, {"chat_id": chat_id, "type": type, "payload": payload, "created_at": created_at}
    )
    if tx.dialect.name == "postgresql":
        tx.appended_event(event_id)
    if audience:
        await tx.run(
            _INSERT_AUDIENCE,
            [{"event_id": event_id, "user_id": user_id} for user_id in sorted(set(audience))],
        )
    return event_id


# Whether the row version's xmin (a 32-bit transaction id) comes before the oldest running
# transaction (a 64-bit one): compared modulo 2^32, as PostgreSQL compares transaction ids.
_SETTLED = text(
    "((pg_snapshot_xmin(pg_current_snapshot())::text::bigint - settled.xmin::text::bigint)"
    " % 4294967296 + 4294967296) % 4294967296 BETWEEN 1 AND 2147483647"
)


def _visible_head(dialect: str) -> Any:
    """The newest event id readers may take (a scalar expression): on PostgreSQL the newest
    whose row is settled (see ``append``), walking back from the newest event past the few
    still settling; the newest event on SQLite."""
    if dialect != "postgresql":
        return select(func.coalesce(func.max(events.c.id), 0)).scalar_subquery()
    settled = events.alias("settled")
    newest_settled = (
        select(settled.c.id)
        .where(_SETTLED)
        .order_by(settled.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(newest_settled, 0)


def _after(dialect: str) -> Any:
    query = select(events).where(events.c.id > bindparam("since"))
    if dialect == "postgresql":
        query = query.where(events.c.id <= _visible_head(dialect))
    return query.order_by(events.c.id).limit(bindparam("limit"))


_AFTER = prepared(_after)
_BETWEEN = prepared(
    select(events)
    .where(events.c.id > bindparam("since"), events.c.id <= bindparam("through"))
    .order_by(events.c.id)
    .limit(bindparam("limit"))
)


async def after(tx: Tx, since: int, *, limit: int, through: int | None = None) -> list[Row]:
    """Every event after ``since`` that readers may take, in id order (the platform backend,
    admins, gap fills); with ``through``, up to that id (a head read before: every event up
    to it may be taken)."""
    if through is not None:
        return await tx.rows(_BETWEEN, {"since": since, "through": through, "limit": limit})
    return await tx.rows(_AFTER, {"since": since, "limit": limit})


def _by_id_not_by_key(dialect: str) -> Any:
    """The sort key of a viewer's chat events. On PostgreSQL it is ``id + 0``, so that no plan
    can walk the primary key in id order filtering by chat (reading the log from ``since``
    on): the generic plan of this prepared statement, used from its sixth run, did just that.
    SQLite plans it well as it is, and sorts a plain column faster."""
    if dialect == "postgresql":
        return events.c.id + literal_column("0")
    return events.c.id


def _chat_events(dialect: str) -> Any:
    # Several chats' index ranges come out ordered by chat, so they are sorted: the ids
    # only, from the index alone, then the chosen rows are read by key. Sorting whole rows
    # would read every event of the viewer's chats after `since` for each page.
    first_ids = (
        select(events.c.id)
        .where(
            events.c.chat_id.in_(bindparam("chat_ids", expanding=True)),
            events.c.id > bindparam("since"),
            events.c.id <= bindparam("through"),
        )
        .order_by(_by_id_not_by_key(dialect))
        .limit(bindparam("limit"))
    )
    return select(events).where(events.c.id.in_(first_ids)).order_by(events.c.id)


_CHAT_EVENTS = prepared(_chat_events)
_ADDRESSED = prepared(
    select(events)
    .join(audiences, audiences.c.event_id == events.c.id)
    .where(
        audiences.c.user_id == bindparam("user_id"),
        audiences.c.event_id > bindparam("since"),
        audiences.c.event_id <= bindparam("through"),
    )
    .order_by(audiences.c.event_id)
    .limit(bindparam("limit"))
)


async def for_viewer(
    tx: Tx, since: int, *, through: int, limit: int, chat_ids: list[int], user_id: str
) -> list[Row]:
    """The first ``limit`` events in ``(since, through]`` for one viewer, in id order: those
    of ``chat_ids`` (the viewer's chats) and those addressed to ``user_id``. ``through`` is a
    head read before (``visible_head``): both queries stop at the same event.

    Two queries, each on its own index ((chat_id, id) and (user_id, event_id)), merged here:
    one query with OR could use neither and read the log from ``since`` on."""
    found: dict[int, Row] = {}
    if chat_ids:
        rows = await tx.rows(
            _CHAT_EVENTS,
            {"chat_ids": chat_ids, "since": since, "through": through, "limit": limit},
        )
        found.update((r["id"], r) for r in rows)
    rows = await tx.rows(
        _ADDRESSED, {"user_id": user_id, "since": since, "through": through, "limit": limit}
    )
    found.update((r["id"], r) for r in rows)
    return [found[i] for i in sorted(found)[:limit]]


_AUDIENCES_BETWEEN = prepared(
    select(audiences.c.event_id, audiences.c.user_id).where(
        audiences.c.event_id > bindparam("after"), audiences.c.event_id <= bindparam("through")
    )
)


async def audiences_between(tx: Tx, after: int, through: int) -> dict[int, frozenset[str]]:
    """The explicit audiences of events ``(after, through]`` (events without one are absent)."""
    rows = await tx.rows(_AUDIENCES_BETWEEN, {"after": after, "through": through})
    found: dict[int, set[str]] = {}
    for r in rows:
        found.setdefault(r["event_id"], set()).add(r["user_id"])
    return {event_id: frozenset(users) for event_id, users in found.items()}


_HEAD = prepared(lambda dialect: select(_visible_head(dialect)))
_HEAD_AND_NEWEST = prepared(
    lambda dialect: select(
        _visible_head(dialect).label("head"),
        select(func.coalesce(func.max(events.c.id), 0)).scalar_subquery().label("newest"),
    )
)
SETTLE_POLL_S = 0.002


async def visible_head(tx: Tx) -> int:
    """The newest event id readers may take: every event up to it has committed or rolled back
    for good, so one taken later never has a smaller id (see ``append``). When pruning has
    emptied the log, the newest id it removed: ids are never reused, so a client's ``since``
    stays comparable (0 for a log that never held an event)."""
    newest: int = await tx.value(_HEAD)
    return newest or await pruned_through(tx)


async def settled_head(tx: Tx, wait_s: float) -> int:
    """``visible_head``, once the events committed before this call may be taken - waiting
    up to ``wait_s`` for them (PostgreSQL: a transaction still running that began before they
    took their ids holds them back, usually for milliseconds). So whoever writes and then reads
    the log finds their own events, and a transaction held open elsewhere on the server delays
    a read by ``wait_s`` at most (it then answers the older head)."""
    row = await tx.first(_HEAD_AND_NEWEST)
    assert row is not None
    head, newest = row["head"], row["newest"]
    deadline = time.monotonic() + wait_s
    while head < newest and time.monotonic() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)
        head = await tx.value(_HEAD)
    return head or await pruned_through(tx)


PRUNED_THROUGH = "events_pruned_through"


async def pruned_through(tx: Tx) -> int:
    """The highest event id ever pruned: a ``since`` below it has lost history."""
    value = await get_setting(tx, PRUNED_THROUGH)
    return int(value) if value else 0


async def prune_before(tx: Tx, cutoff: datetime) -> int:
    """Delete events older than ``cutoff``; remember how far history now starts."""
    newest_gone = await tx.value(select(func.max(events.c.id)).where(events.c.created_at < cutoff))
    if newest_gone is None:
        return 0
    await tx.run(delete(audiences).where(audiences.c.event_id <= newest_gone))
    removed = await tx.run(delete(events).where(events.c.id <= newest_gone))
    await set_setting(tx, PRUNED_THROUGH, str(newest_gone))
    return removed
