"""Messages: writes, the paged list, and the Pachca id mapping."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, Select, bindparam, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import Message, User

messages = Message.__table__
users = User.__table__

_with_sender = select(
    messages,
    users.c.name.label("sender_name"),
    users.c.role.label("sender_role"),
).join(users, users.c.id == messages.c.sender_id)


_INSERT = messages.insert().returning(messages.c.id)  # built once: a hot path


async def insert_message(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(_INSERT, values)
    return result.scalar_one()


async def get_message(conn: AsyncConnection, message_id: int) -> RowMapping | None:
    """A live (not deleted) message with its sender's name and role."""
    rows = await conn.execute(
        _with_sender.where(messages.c.id == message_id, messages.c.deleted_at.is_(None))
    )
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
    """One page, oldest first, and the chat's total of live messages: always one query.

    The page's ids are outer-joined to the one-row count, so an empty page (an empty chat,
    an offset past the end) still carries the total and costs no second query.
    """
    params: dict[str, Any] = {"chat_id": chat_id, "limit": limit}
    if before_id is None:
        params["offset"] = offset
    else:
        params["before_id"] = before_id
    stmt = _PAGE_BEFORE if before_id is not None else _PAGE
    rows = list((await conn.execute(stmt, params)).mappings())
    return [r for r in rows if r["id"] is not None], rows[0]["total"]


def _page_statement(before: bool) -> Select[Any]:
    live = (messages.c.chat_id == bindparam("chat_id")) & messages.c.deleted_at.is_(None)
    total = select(func.count().label("total")).select_from(messages).where(live).subquery("n")
    ids = select(messages.c.id.label("page_id")).where(live)
    if not before:
        ids = ids.order_by(messages.c.id).limit(bindparam("limit")).offset(bindparam("offset"))
    else:
        # The `limit` messages just before before_id: the newest of those, then oldest first.
        ids = (
            ids.where(messages.c.id < bindparam("before_id"))
            .order_by(messages.c.id.desc())
            .limit(bindparam("limit"))
        )
    page_ids = ids.subquery("p")
    return (
        select(
            total.c.total,
            messages,
            users.c.name.label("sender_name"),
            users.c.role.label("sender_role"),
        )
        .select_from(
            total.outerjoin(page_ids, true())
            .outerjoin(messages, messages.c.id == page_ids.c.page_id)
            .outerjoin(users, users.c.id == messages.c.sender_id)
        )
        .order_by(messages.c.id)
    )


# Built once: building them per request cost more than running them.
_PAGE = _page_statement(before=False)
_PAGE_BEFORE = _page_statement(before=True)
