"""Messages: writes, the paged list, and the Pachca id mapping."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    func,
    select,
    true,
    update,
)

from store.files import files_column
from store.models import Chat, Message, OutboxJob, User, WaitingChat
from store.reactions import reactions_column
from store.tx import Row, Tx, prepared

messages = Message.__table__
users = User.__table__
chats = Chat.__table__
outbox = OutboxJob.__table__
waiting = WaitingChat.__table__

WITH_SENDER = select(
    messages,
    users.c.name.label("sender_name"),
    users.c.role.label("sender_role"),
).join(users, users.c.id == messages.c.sender_id)


def with_reactions(dialect: str) -> Select[Any]:
    """WITH_SENDER and the message's reactions (``reactions``) and files (``files``): what a
    message object needs."""
    return WITH_SENDER.add_columns(
        reactions_column(dialect, messages.c.id, "reactions"),
        files_column(dialect, messages.c.id, "files"),
    )


# Every posted or relayed message: its columns are the names of the values given.
INSERT_MESSAGE = prepared(messages.insert().returning(messages.c.id))
_GET = prepared(
    lambda dialect: with_reactions(dialect).where(
        messages.c.id == bindparam("message_id"), messages.c.deleted_at.is_(None)
    )
)
_BY_CLIENT_ID = prepared(
    lambda dialect: with_reactions(dialect).where(
        messages.c.sender_id == bindparam("sender_id"),
        messages.c.client_id == bindparam("client_id"),
    )
)
_LIVE_IN_CHAT = prepared(
    select(messages.c.id).where(
        messages.c.id == bindparam("message_id"),
        messages.c.chat_id == bindparam("chat_id"),
        messages.c.deleted_at.is_(None),
    )
)
# The values given besides ``message_id`` are the columns set.
_UPDATE = prepared(update(messages).where(messages.c.id == bindparam("message_id")))
_NEWEST_LIVE = prepared(
    select(messages.c.id, messages.c.created_at)
    .where(messages.c.chat_id == bindparam("chat_id"), messages.c.deleted_at.is_(None))
    .order_by(messages.c.id.desc())
    .limit(1)
)


async def insert_message(tx: Tx, values: dict[str, Any]) -> int:
    """Insert a message (``values``: its columns); its id."""
    message_id: int = await tx.value(INSERT_MESSAGE, values)
    return message_id


async def get_message(tx: Tx, message_id: int) -> Row | None:
    """A live (not deleted) message with its sender's name and role."""
    return await tx.first(_GET, {"message_id": message_id})


async def by_client_id(tx: Tx, sender_id: str, client_id: str) -> Row | None:
    return await tx.first(_BY_CLIENT_ID, {"sender_id": sender_id, "client_id": client_id})


async def is_live_in_chat(tx: Tx, message_id: int, chat_id: int) -> bool:
    return await tx.first(_LIVE_IN_CHAT, {"message_id": message_id, "chat_id": chat_id}) is not None


async def update_message(tx: Tx, message_id: int, values: dict[str, Any]) -> None:
    await tx.run(_UPDATE, {**values, "message_id": message_id})


async def newest_live(tx: Tx, chat_id: int) -> Row | None:
    return await tx.first(_NEWEST_LIVE, {"chat_id": chat_id})


async def page(
    tx: Tx,
    chat_id: int,
    *,
    limit: int,
    offset: int,
    before_id: int | None = None,
) -> tuple[list[Row], int]:
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
    rows = await tx.rows(stmt, params)
    return [r for r in rows if r["id"] is not None], rows[0]["total"]


def _page_statement(before: bool, dialect: str) -> Select[Any]:
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
            reactions_column(dialect, messages.c.id, "reactions"),
            files_column(dialect, messages.c.id, "files"),
        )
        .select_from(
            total.outerjoin(page_ids, true())
            .outerjoin(messages, messages.c.id == page_ids.c.page_id)
            .outerjoin(users, users.c.id == messages.c.sender_id)
        )
        .order_by(messages.c.id)
    )


_PAGE = prepared(lambda dialect: _page_statement(before=False, dialect=dialect))
_PAGE_BEFORE = prepared(lambda dialect: _page_statement(before=True, dialect=dialect))
