"""The forum <-> Pachca mappings: the chat <-> thread and message <-> Pachca message ids, and
Pachca accounts of platform users. The outbox writes and reads them to mirror the forum in
Pachca; the relay looks Pachca's ids up to find the forum's side of a webhook event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, update

from store.forum import CHAT_WITH_PARTICIPANTS
from store.messages import with_reactions
from store.models import Chat, Message, Participant, User
from store.tx import Row, Tx, prepared

chats = Chat.__table__
messages = Message.__table__
participants = Participant.__table__
users = User.__table__

_CHAT_THREAD = prepared(
    select(
        chats.c.id,
        chats.c.type,
        chats.c.title,
        chats.c.subject_id,
        chats.c.pachca_root_message_id,
        chats.c.pachca_thread_id,
        chats.c.pachca_thread_chat_id,
    ).where(chats.c.id == bindparam("chat_id"))
)
# The values given besides ``chat_id`` are the columns set.
_SET_CHAT_THREAD = prepared(update(chats).where(chats.c.id == bindparam("chat_id")))
_PARTNERS = prepared(
    select(
        participants.c.user_id,
        participants.c.role,
        users.c.pachca_user_id,
        users.c.role.label("user_role"),
    )
    .join(users, users.c.id == participants.c.user_id)
    .where(
        participants.c.chat_id == bindparam("chat_id"),
        participants.c.role.in_(bindparam("roles", expanding=True)),
    )
    .order_by(participants.c.user_id)
)
_sender = users.alias("sender")
_replied = messages.alias("replied")
_MESSAGE_FOR_DELIVERY = prepared(
    select(
        messages.c.id,
        messages.c.chat_id,
        messages.c.content,
        messages.c.source,
        messages.c.deleted_at,
        messages.c.pachca_message_id,
        _sender.c.name.label("sender_name"),
        chats.c.pachca_thread_id,
        _replied.c.pachca_message_id.label("reply_to_pachca_id"),
    )
    .join(_sender, _sender.c.id == messages.c.sender_id)
    .join(chats, chats.c.id == messages.c.chat_id)
    .outerjoin(_replied, _replied.c.id == messages.c.reply_to_id)
    .where(messages.c.id == bindparam("message_id"))
)
_SET_MESSAGE_PACHCA_ID = prepared(
    update(messages)
    .where(messages.c.id == bindparam("message_id"))
    .values(pachca_message_id=bindparam("pachca_id"))
)


# --- Pachca's ids -> the forum -----------------------------------------------------------------

_MESSAGE = prepared(
    lambda dialect: with_reactions(dialect).where(
        messages.c.pachca_message_id == bindparam("pachca_id")
    )
)
_THREAD_CHAT = prepared(
    CHAT_WITH_PARTICIPANTS.where(chats.c.pachca_thread_chat_id == bindparam("thread_chat_id"))
)
_USER = prepared(select(users).where(users.c.pachca_user_id == bindparam("pachca_user_id")))


async def message_by_pachca_id(tx: Tx, pachca_message_id: int) -> Row | None:
    """The forum message mirroring a Pachca message (deleted or not), with its sender."""
    return await tx.first(_MESSAGE, {"pachca_id": pachca_message_id})


async def chat_of_thread(tx: Tx, thread_chat_id: int) -> list[Row]:
    """The forum chat a Pachca thread's chat mirrors, with its participants, as
    ``store.forum.chat_access`` reads it (no rows: none does)."""
    return await tx.rows(_THREAD_CHAT, {"thread_chat_id": thread_chat_id})


async def user_by_pachca_id(tx: Tx, pachca_user_id: int) -> Row | None:
    """The platform user a Pachca account is linked to."""
    return await tx.first(_USER, {"pachca_user_id": pachca_user_id})


# --- the forum -> Pachca ---------------------------------------------------------------------


async def chat_thread(tx: Tx, chat_id: int) -> Row | None:
    """The chat with its Pachca thread ids (null until the thread is open)."""
    return await tx.first(_CHAT_THREAD, {"chat_id": chat_id})


async def set_chat_thread(tx: Tx, chat_id: int, **values: Any) -> None:
    """Store some of pachca_root_message_id, pachca_thread_id, pachca_thread_chat_id."""
    await tx.run(_SET_CHAT_THREAD, {**values, "chat_id": chat_id})


async def partners(tx: Tx, chat_id: int, roles: Sequence[str]) -> list[Row]:
    """The chat's participants in one of ``roles`` (the policy's partner roles: teacher,
    tutor), with their Pachca account (user_id, role, pachca_user_id - null when unlinked -,
    and user_role, their platform role)."""
    return await tx.rows(_PARTNERS, {"chat_id": chat_id, "roles": list(roles)})


async def message_for_delivery(tx: Tx, message_id: int) -> Row | None:
    """A message, deleted or not, with what relaying it needs: its author's name, its chat's
    thread, and the Pachca id of the message it replies to."""
    return await tx.first(_MESSAGE_FOR_DELIVERY, {"message_id": message_id})


async def set_message_pachca_id(tx: Tx, message_id: int, pachca_id: int) -> None:
    await tx.run(_SET_MESSAGE_PACHCA_ID, {"message_id": message_id, "pachca_id": pachca_id})
