"""The event log: the feed's history and the source of ``since`` replay.

An event's explicit audience is rows of ``event_audience``, compared with ``=``: a user id
matches itself only, whatever characters it holds (no patterns, no case folding, no
separators).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, literal_column, select, text

from store.models import Event, EventAudience
from store.tx import Row, Tx, prepared
from store.users import get_setting, set_setting

events = Event.__table__
audiences = EventAudience.__table__

# Serialises event appends on PostgreSQL, so that event ids commit in id order (see append).
EVENT_LOG_LOCK = 0x70616368  # "pach"
_LOCK = prepared(text("SELECT pg_advisory_xact_lock(:key)"))
_INSERT = prepared(events.insert().returning(events.c.id))
_INSERT_AUDIENCE = prepared(audiences.insert())


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

    Call it last in the transaction. On PostgreSQL it first takes the event-log lock, held
    until the transaction ends: sequence values are handed out before commit, so two
    transactions could commit ids 10 and 11 in the order 11, 10, and a feed reader that
    replayed up to 11 would miss 10. Holding the lock from the insert to the commit makes id
    order commit order. SQLite has a single writer and needs nothing.
    """
    if tx.dialect.name == "postgresql":
        await tx.run(_LOCK, {"key": EVENT_LOG_LOCK})
    event_id: int = await tx.value(
        _INSERT, {"chat_id": chat_id, "type": type, "payload": payload, "created_at": created_at}
    )
    if audience:
        await tx.run(
            _INSERT_AUDIENCE,
            [{"event_id": event_id, "user_id": user_id} for user_id in sorted(set(audience))],
        )
    return event_id


_AFTER = prepared(
    select(events)
    .where(events.c.id > bindparam("since"))
    .order_by(events.c.id)
    .limit(bindparam("limit"))
)


async def after(tx: Tx, since: int, *, limit: int) -> list[Row]:
    """Every event after ``since``, in id order (the platform backend, admins, gap fills)."""
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
        )
        .order_by(_by_id_not_by_key(dialect))
        .limit(bindparam("limit"))
    )
    return select(events).where(events.c.id.in_(first_ids)).order_by(events.c.id)


_CHAT_EVENTS = prepared(_chat_events)
_ADDRESSED = prepared(
    select(events)
    .join(audiences, audiences.c.event_id == events.c.id)
    .where(audiences.c.user_id == bindparam("user_id"), audiences.c.event_id > bindparam("since"))
    .order_by(audiences.c.event_id)
    .limit(bindparam("limit"))
)


async def for_viewer(
    tx: Tx, since: int, *, limit: int, chat_ids: list[int], user_id: str
) -> list[Row]:
    """The first ``limit`` events after ``since`` for one viewer, in id order: those of
    ``chat_ids`` (the viewer's chats) and those addressed to ``user_id``.

    Two queries, each on its own index ((chat_id, id) and (user_id, event_id)), merged here:
    one query with OR could use neither and read the log from ``since`` on."""
    found: dict[int, Row] = {}
    if chat_ids:
        rows = await tx.rows(_CHAT_EVENTS, {"chat_ids": chat_ids, "since": since, "limit": limit})
        found.update((r["id"], r) for r in rows)
    rows = await tx.rows(_ADDRESSED, {"user_id": user_id, "since": since, "limit": limit})
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


_LAST_ID = prepared(select(func.coalesce(func.max(events.c.id), 0)))


async def last_id(tx: Tx) -> int:
    """The newest event id ever appended, even when pruning has emptied the log: ids are
    never reused, so that one is remembered as how far pruning went."""
    newest: int = await tx.value(_LAST_ID)
    return newest or await pruned_through(tx)


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
