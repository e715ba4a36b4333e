"""The event log: the feed's history and the source of ``since`` replay."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import RowMapping, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import Event
from store.users import get_setting, set_setting

events = Event.__table__


async def append(
    conn: AsyncConnection,
    *,
    chat_id: int,
    type: str,
    payload: str,
    audience: str | None,
    created_at: datetime,
) -> int:
    result = await conn.execute(
        events.insert()
        .values(
            chat_id=chat_id, type=type, payload=payload, audience=audience, created_at=created_at
        )
        .returning(events.c.id)
    )
    return result.scalar_one()


async def after(
    conn: AsyncConnection,
    since: int,
    *,
    limit: int,
    chat_ids: list[int] | None = None,
    audience_member: str | None = None,
) -> list[RowMapping]:
    """Events after ``since`` in id order.

    With ``chat_ids`` (a viewer's chats) only those chats' events, plus events addressed to
    ``audience_member`` explicitly; without, every event (the platform backend, admins).
    """
    stmt = select(events).where(events.c.id > since)
    if chat_ids is not None:
        clauses = [events.c.chat_id.in_(chat_ids)] if chat_ids else []
        if audience_member is not None:
            clauses.append(events.c.audience.contains(f",{audience_member},"))
        stmt = stmt.where(or_(*clauses)) if clauses else stmt.where(events.c.id < 0)
    rows = await conn.execute(stmt.order_by(events.c.id).limit(limit))
    return list(rows.mappings())


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
    result = await conn.execute(delete(events).where(events.c.id <= newest_gone))
    await set_setting(conn, PRUNED_THROUGH, str(newest_gone))
    return result.rowcount
