"""Reactions: users' emoji on messages, and the emoji the bot holds on their Pachca copies.

Message objects carry their reactions through ``reactions_column``: one correlated subquery
column that the message statements add (the page, the chat list's last message, single
messages), so listing messages stays one statement however many reactions there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, bindparam, delete, func, literal_column, select, update

from store.models import BotReaction, Message, Reaction
from store.tx import Row, Tx, prepared

reactions = Reaction.__table__
bot_reactions = BotReaction.__table__
messages = Message.__table__

WEB, PACHCA = "web", "pachca"


def reactions_column(dialect: str, message_id: ColumnElement[Any], name: str) -> Any:
    """A column ``name`` holding the reactions of the message ``message_id`` names, as a JSON
    list of ``[id, emoji, user_id]`` (``[]`` without any; order them by id to get the order they
    were made in: SQLite before 3.44 cannot order inside an aggregate)."""
    if dialect == "postgresql":
        item = func.json_build_array(reactions.c.id, reactions.c.emoji, reactions.c.user_id)
        aggregate = func.coalesce(func.json_agg(item), literal_column("'[]'::json"), type_=JSON)
    else:
        item = func.json_array(reactions.c.id, reactions.c.emoji, reactions.c.user_id)
        aggregate = func.json_group_array(item, type_=JSON)
    return (
        select(aggregate).where(reactions.c.message_id == message_id).scalar_subquery().label(name)
    )


_LOCK_LIVE_MESSAGE = prepared(
    select(messages.c.id, messages.c.chat_id)
    .where(messages.c.id == bindparam("message_id"), messages.c.deleted_at.is_(None))
    .with_for_update()
)
_OF_USER = prepared(
    select(reactions.c.emoji, reactions.c.source, reactions.c.created_at)
    .where(
        reactions.c.message_id == bindparam("message_id"),
        reactions.c.user_id == bindparam("user_id"),
    )
    .order_by(reactions.c.id)
)
_INSERT = prepared(reactions.insert())
# One user's reaction with one emoji (bind names apart from the columns, for UPDATE).
_ONE = (
    reactions.c.message_id == bindparam("of_message"),
    reactions.c.user_id == bindparam("of_user"),
    reactions.c.emoji == bindparam("of_emoji"),
)
_DELETE = prepared(delete(reactions).where(*_ONE).returning(reactions.c.source))
_SET_CREATED_AT = prepared(update(reactions).where(*_ONE).values(created_at=bindparam("at")))
_WEB_EMOJI = prepared(
    select(reactions.c.emoji)
    .where(reactions.c.message_id == bindparam("message_id"), reactions.c.source == WEB)
    .group_by(reactions.c.emoji)
    .order_by(func.min(reactions.c.id))
)
_HAS_WEB = prepared(
    select(reactions.c.id)
    .where(reactions.c.message_id == bindparam("message_id"), reactions.c.source == WEB)
    .limit(1)
)
_BOT_EMOJI = prepared(
    select(bot_reactions.c.emoji).where(bot_reactions.c.message_id == bindparam("message_id"))
)
_BOT_ADD = prepared(bot_reactions.insert())
_BOT_REMOVE = prepared(
    delete(bot_reactions).where(
        bot_reactions.c.message_id == bindparam("message_id"),
        bot_reactions.c.emoji == bindparam("emoji"),
    )
)


async def lock_live_message(tx: Tx, message_id: int) -> Row | None:
    """The live message (id, chat_id), its row held until the transaction ends: a message's
    reactions change one writer at a time (on PostgreSQL; SQLite has one writer anyway), so
    the per-user limit holds under concurrent requests. None when it is gone or deleted."""
    return await tx.first(_LOCK_LIVE_MESSAGE, {"message_id": message_id})


async def of_user(tx: Tx, message_id: int, user_id: str) -> dict[str, Row]:
    """The user's reactions on the message: emoji -> (source, created_at), oldest first."""
    rows = await tx.rows(_OF_USER, {"message_id": message_id, "user_id": user_id})
    return {r["emoji"]: r for r in rows}


async def add(
    tx: Tx, message_id: int, user_id: str, emoji: str, *, source: str, created_at: datetime
) -> None:
    await tx.run(
        _INSERT,
        {
            "message_id": message_id,
            "user_id": user_id,
            "emoji": emoji,
            "source": source,
            "created_at": created_at,
        },
    )


async def remove(tx: Tx, message_id: int, user_id: str, emoji: str) -> str | None:
    """Delete the reaction; its source, or None when the user did not hold it."""
    row = await tx.first(_DELETE, {"of_message": message_id, "of_user": user_id, "of_emoji": emoji})
    return row["source"] if row is not None else None


async def set_created_at(
    tx: Tx, message_id: int, user_id: str, emoji: str, created_at: datetime
) -> None:
    await tx.run(
        _SET_CREATED_AT,
        {"of_message": message_id, "of_user": user_id, "of_emoji": emoji, "at": created_at},
    )


async def web_emoji(tx: Tx, message_id: int) -> list[str]:
    """The emoji web users hold on the message, in the order first used."""
    return [r["emoji"] for r in await tx.rows(_WEB_EMOJI, {"message_id": message_id})]


async def has_web_reactions(tx: Tx, message_id: int) -> bool:
    return await tx.first(_HAS_WEB, {"message_id": message_id}) is not None


async def bot_emoji(tx: Tx, message_id: int) -> set[str]:
    """The emoji the bot holds on the message's Pachca copy."""
    return {r["emoji"] for r in await tx.rows(_BOT_EMOJI, {"message_id": message_id})}


async def set_bot_emoji(
    tx: Tx, message_id: int, *, added: Iterable[str], removed: Iterable[str]
) -> None:
    """Record what the bot now holds on the message's Pachca copy."""
    gone = [{"message_id": message_id, "emoji": e} for e in removed]
    new = [{"message_id": message_id, "emoji": e} for e in added]
    if gone:
        await tx.run(_BOT_REMOVE, gone)
    if new:
        await tx.run(_BOT_ADD, new)
