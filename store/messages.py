"""Messages: writes, the paged list, and the Pachca id mapping."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import Message, User

messages = Message.__table__
users = User.__table__

_with_sender = select(
    messages,
    users.c.name.label("sender_name"),
    users.c.role.label("sender_role"),
).join(users, users.c.id == messages.c.sender_id)


async def insert_message(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(messages.insert().values(**values).returning(messages.c.id))
    return result.scalar_one()


async def get_message(conn: AsyncConnection, message_id: int) -> RowMapping | None:
    """A live (not deleted) message with its sender's name and role."""
    rows = await conn.execute(
        _with_sender.where(messages.c.id == message_id, messages.c.deleted_at.is_(None))
    )
    return rows.mappings().first()


async def get_any_message(conn: AsyncConnection, message_id: int) -> RowMapping | None:
    """A message even when deleted (the outbox still has to delete its Pachca copy)."""
    rows = await conn.execute(select(messages).where(messages.c.id == message_id))
    return rows.mappings().first()


async def by_client_id(conn: AsyncConnection, sender_id: str, client_id: str) -> RowMapping | None:
    rows = await conn.execute(
        _with_sender.where(messages.c.sender_id == sender_id, messages.c.client_id == client_id)
    )
    return rows.mappings().first()


async def by_pachca_id(conn: AsyncConnection, pachca_message_id: int) -> RowMapping | None:
    rows = await conn.execute(_with_sender.where(messages.c.pachca_message_id == pachca_message_id))
    return rows.mappings().first()


async def is_live_in_chat(conn: AsyncConnection, message_id: int, chat_id: int) -> bool:
    rows = await conn.execute(
        select(messages.c.id).where(
            messages.c.id == message_id,
            messages.c.chat_id == chat_id,
            messages.c.deleted_at.is_(None),
        )
    )
    return rows.first() is not None


async def update_message(conn: AsyncConnection, message_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(messages).where(messages.c.id == message_id).values(**values))


async def newest_live(conn: AsyncConnection, chat_id: int) -> RowMapping | None:
    rows = await conn.execute(
        select(messages.c.id, messages.c.created_at)
        .where(messages.c.chat_id == chat_id, messages.c.deleted_at.is_(None))
        .order_by(messages.c.id.desc())
        .limit(1)
    )
    return rows.mappings().first()


async def page(
    conn: AsyncConnection,
    chat_id: int,
    *,
    limit: int,
    offset: int,
    before_id: int | None = None,
) -> tuple[list[RowMapping], int]:
    """One page, oldest first, and the chat's total of live messages.

    The total rides along as a window function, so a page is one query; only a page past
    the end (no rows to carry it) costs a second, cheap count.
    """
    live = (messages.c.chat_id == chat_id) & messages.c.deleted_at.is_(None)
    total = func.count().over().label("total")
    if before_id is None:
        stmt = (
            _with_sender.add_columns(total)
            .where(live)
            .order_by(messages.c.id)
            .limit(limit)
            .offset(offset)
        )
        rows = list((await conn.execute(stmt)).mappings())
    else:
        # The `limit` messages just before before_id: newest-first in SQL, then reversed.
        # The window runs over the whole chat, so compute the total in a separate clause.
        stmt = (
            _with_sender.add_columns(
                select(func.count())
                .select_from(messages)
                .where(live)
                .scalar_subquery()
                .label("total")
            )
            .where(live, messages.c.id < before_id)
            .order_by(messages.c.id.desc())
            .limit(limit)
        )
        rows = list((await conn.execute(stmt)).mappings())
        rows.reverse()
    if rows:
        return rows, rows[0]["total"]
    count = await conn.execute(select(func.count()).select_from(messages).where(live))
    return rows, count.scalar_one()
