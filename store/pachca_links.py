"""What the outbox reads and writes to mirror the forum in Pachca: the chat <-> thread and
message <-> Pachca message mappings, and the Pachca accounts of a chat's teacher or tutor."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import Chat, Message, Participant, User

chats = Chat.__table__
messages = Message.__table__
participants = Participant.__table__
users = User.__table__

# The parts whose holders live in Pachca and are added to a chat's thread.
PARTNER_ROLES = ("teacher", "tutor")


async def chat_thread(conn: AsyncConnection, chat_id: int) -> RowMapping | None:
    """The chat with its Pachca thread ids (null until the thread is open)."""
    rows = await conn.execute(
        select(
            chats.c.id,
            chats.c.type,
            chats.c.title,
            chats.c.subject_id,
            chats.c.pachca_root_message_id,
            chats.c.pachca_thread_id,
            chats.c.pachca_thread_chat_id,
        ).where(chats.c.id == chat_id)
    )
    return rows.mappings().first()


async def set_chat_thread(conn: AsyncConnection, chat_id: int, **values: Any) -> None:
    """Store some of pachca_root_message_id, pachca_thread_id, pachca_thread_chat_id."""
    await conn.execute(update(chats).where(chats.c.id == chat_id).values(**values))


async def partners(conn: AsyncConnection, chat_id: int) -> list[RowMapping]:
    """The chat's teacher or tutor (user_id, role, pachca_user_id; id null when unlinked)."""
    rows = await conn.execute(
        select(participants.c.user_id, participants.c.role, users.c.pachca_user_id)
        .join(users, users.c.id == participants.c.user_id)
        .where(participants.c.chat_id == chat_id, participants.c.role.in_(PARTNER_ROLES))
        .order_by(participants.c.user_id)
    )
    return list(rows.mappings())


async def message_for_delivery(conn: AsyncConnection, message_id: int) -> RowMapping | None:
    """A message, deleted or not, with what relaying it needs: its author's name, its chat's
    thread, and the Pachca id of the message it replies to."""
    sender = users.alias("sender")
    replied = messages.alias("replied")
    rows = await conn.execute(
        select(
            messages.c.id,
            messages.c.chat_id,
            messages.c.content,
            messages.c.source,
            messages.c.deleted_at,
            messages.c.pachca_message_id,
            sender.c.name.label("sender_name"),
            chats.c.pachca_thread_id,
            replied.c.pachca_message_id.label("reply_to_pachca_id"),
        )
        .join(sender, sender.c.id == messages.c.sender_id)
        .join(chats, chats.c.id == messages.c.chat_id)
        .outerjoin(replied, replied.c.id == messages.c.reply_to_id)
        .where(messages.c.id == message_id)
    )
    return rows.mappings().first()


async def set_message_pachca_id(conn: AsyncConnection, message_id: int, pachca_id: int) -> None:
    await conn.execute(
        update(messages).where(messages.c.id == message_id).values(pachca_message_id=pachca_id)
    )
