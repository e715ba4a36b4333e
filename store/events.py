"""The event log: the feed's history and the source of ``since`` replay.

An event's explicit audience is rows of ``event_audience``, compared with ``=``: a user id
matches itself only, whatever characters it holds (no patterns, no case folding, no
separators).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import Event, EventAudience
from store.users import get_setting, set_setting

events = Event.__table__
audiences = EventAudience.__table__


async def append(
    conn: AsyncConnection,
    *,
    chat_id: int,
    type: str,
    payload: str,
    audience: Iterable[str] | None,
    created_at: datetime,
) -> int:
    """Append one event and its explicit audience (None: whoever may see the chat)."""
    result = await conn.execute(
        events.insert()
        .values(chat_id=chat_id, type=type, payload=payload, created_at=created_at)
        .returning(events.c.id)
    )
    event_id: int = result.scalar_one()
    if audience:
        await conn.execute(
            audiences.insert(),
            [{"event_id": event_id, "user_id": user_id} for user_id in sorted(set(audience))],
        )
    return event_id


async def after(conn: AsyncConnection, since: int, *, limit: int) -> list[RowMapping]:
    """Every event after ``since``, in id order (the platform backend, admins, gap fills)."""
    rows = await conn.execute(
        select(events).where(events.c.id > since).order_by(events.c.id).limit(limit)
    )
    return list(rows.mappings())


async def for_viewer(
    conn: AsyncConnection, since: int, *, limit: int, chat_ids: list[int], user_id: str
) -> list[RowMapping]:
    """The first ``limit`` events after ``since`` for one viewer, in id order: those of
    ``chat_ids`` (the viewer's chats) and those addressed to ``user_id``.

    Two queries, each on its own index ((chat_id, id) and (user_id, event_id)), merged here:
    one query with OR could use neither and read the log from ``since`` on."""
    found: dict[int, RowMapping] = {}
    if chat_ids:
        # Several chats' index ranges come out ordered by chat, so they are sorted: the ids
        # only, from the index alone, then the chosen rows are read by key. Sorting whole
        # rows would read every event of the viewer's chats after `since` for each page.
        first_ids = (
            select(events.c.id)
            .where(events.c.chat_id.in_(chat_ids), events.c.id > since)
            .order_by(_by_id_not_by_key(conn))
            .limit(limit)
        )
        rows = await conn.execute(
            select(events).where(events.c.id.in_(first_ids)).order_by(events.c.id)
        )
        found.update((r["id"], r) for r in rows.mappings())
    rows = await conn.execute(
        select(events)
        .join(audiences, audiences.c.event_id == events.c.id)
        .where(audiences.c.user_id == user_id, audiences.c.event_id > since)
        .order_by(audiences.c.event_id)
        .limit(limit)
    )
    found.update((r["id"], r) for r in rows.mappings())
    return [found[i] for i in sorted(found)[:limit]]


def _by_id_not_by_key(conn: AsyncConnection) -> Any:
    """The sort key of a viewer's chat events. On PostgreSQL it is ``id + 0``, so that no plan
    can walk the primary key in id order filtering by chat (reading the log from ``since``
    on): the generic plan of this prepared statement, used from its sixth run, did just that.
    SQLite plans it well as it is, and sorts a plain column faster."""
    if conn.dialect.name == "postgresql":
        return events.c.id + literal_column("0")
    return events.c.id


async def audiences_between(
    conn: AsyncConnection, after: int, through: int
) -> dict[int, frozenset[str]]:
    """The explicit audiences of events ``(after, through]`` (events without one are absent)."""
    rows = await conn.execute(
        select(audiences.c.event_id, audiences.c.user_id).where(
            audiences.c.event_id > after, audiences.c.event_id <= through
        )
    )
    found: dict[int, set[str]] = {}
    for event_id, user_id in rows:
        found.setdefault(event_id, set()).add(user_id)
    return {event_id: frozenset(users) for event_id, users in found.items()}


async def last_id(conn: AsyncConnection) -> int:
    return (await conn.execute(select(func.coalesce(func.max(events.c.id), 0)))).scalar_one()


PRUNED_THROUGH = "events_pruned_through"


async def pruned_through(conn: AsyncConnection) -> int:
    """The highest event id ever pruned: a ``since`` below it has lost history."""
    value = await get_setting(conn, PRUNED_THROUGH)
    return int(value) if value else 0


async def prune_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Delete events older than ``cutoff``; remember how far history now starts."""
    newest_gone = (
        await conn.execute(select(func.max(events.c.id)).where(events.c.created_at < cutoff))
    ).scalar()
    if newest_gone is None:
        return 0
    await conn.execute(delete(audiences).where(audiences.c.event_id <= newest_gone))
    result = await conn.execute(delete(events).where(events.c.id <= newest_gone))
    await set_setting(conn, PRUNED_THROUGH, str(newest_gone))
    return result.rowcount
