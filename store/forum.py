"""Enrollments, forum chats and their participants, and the bounded list queries over them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import Chat, Enrollment, Message, Participant, User
from store.users import insert_for

enrollments = Enrollment.__table__
chats = Chat.__table__
participants = Participant.__table__
messages = Message.__table__
users = User.__table__


@dataclass(frozen=True, slots=True)
class ChatFilter:
    """Which chats a query may return (built from the role policy's scope)."""

    viewer_id: str
    chat_types: frozenset[str]
    only_as_participant: bool


@dataclass(slots=True)
class ChatRecord:
    """A chat with everything its contract object needs, loaded in a fixed number of queries."""

    chat: RowMapping
    participants: list[RowMapping] = field(default_factory=list)  # user columns + role, last read
    last_message: RowMapping | None = None  # message columns + sender_* columns
    unread_count: int = 0


# --- enrollments -------------------------------------------------------------------------


async def get_enrollment(conn: AsyncConnection, enrollment_id: str) -> RowMapping | None:
    rows = await conn.execute(select(enrollments).where(enrollments.c.id == enrollment_id))
    return rows.mappings().first()


async def insert_enrollment(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(enrollments.insert().values(**values))


async def claim_enrollment(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping | None:
    """Insert the enrollment unless it exists, and hold its row for the rest of the transaction.

    Returns the row as it stood (None when this call created it). Concurrent PUTs of one id
    queue here instead of colliding on the primary key: on PostgreSQL the INSERT waits for
    another transaction's uncommitted insert of the id and FOR UPDATE orders the rest; SQLite
    has a single writer anyway.
    """
    for _ in range(2):  # twice: a concurrent DELETE may remove the row between the two
        inserted = await conn.execute(
            insert_for(conn, enrollments)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[enrollments.c.id])
            .returning(enrollments.c.id)
        )
        if inserted.first() is not None:
            return None
        rows = await conn.execute(
            select(enrollments).where(enrollments.c.id == values["id"]).with_for_update()
        )
        current = rows.mappings().first()
        if current is not None:
            return current
    raise RuntimeError(f"enrollment {values['id']!r} keeps disappearing")


async def update_enrollment(conn: AsyncConnection, enrollment_id: str, values: dict[str, Any]):
    await conn.execute(
        update(enrollments).where(enrollments.c.id == enrollment_id).values(**values)
    )


async def delete_enrollment(conn: AsyncConnection, enrollment_id: str) -> None:
    # Chats, participants, messages and pending outbox jobs go with it (ON DELETE CASCADE).
    await conn.execute(delete(enrollments).where(enrollments.c.id == enrollment_id))


async def enrollments_of_student(conn: AsyncConnection, student_id: str) -> list[RowMapping]:
    rows = await conn.execute(select(enrollments).where(enrollments.c.student_id == student_id))
    return list(rows.mappings())


# --- chats and participants --------------------------------------------------------------


async def chats_of_enrollment(conn: AsyncConnection, enrollment_id: str) -> list[RowMapping]:
    rows = await conn.execute(
        select(chats).where(chats.c.enrollment_id == enrollment_id).order_by(chats.c.id)
    )
    return list(rows.mappings())


async def insert_chat(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(chats.insert().values(**values).returning(chats.c.id))
    return result.scalar_one()


async def update_chats(conn: AsyncConnection, chat_ids: list[int], values: dict[str, Any]):
    if chat_ids:
        await conn.execute(update(chats).where(chats.c.id.in_(chat_ids)).values(**values))


async def participant_ids(conn: AsyncConnection, chat_id: int) -> dict[str, str]:
    """user id -> role in the chat."""
    rows = await conn.execute(
        select(participants.c.user_id, participants.c.role).where(participants.c.chat_id == chat_id)
    )
    return {user_id: role for user_id, role in rows}


async def add_participant(conn: AsyncConnection, chat_id: int, user_id: str, role: str) -> None:
    await conn.execute(
        participants.insert().values(
            chat_id=chat_id, user_id=user_id, role=role, last_read_message_id=0
        )
    )


async def remove_participant(conn: AsyncConnection, chat_id: int, user_id: str) -> None:
    await conn.execute(
        delete(participants).where(
            participants.c.chat_id == chat_id, participants.c.user_id == user_id
        )
    )


async def mark_read(conn: AsyncConnection, chat_id: int, user_id: str, message_id: int) -> bool:
    """Move the read mark forward (never back). True when it moved."""
    result = await conn.execute(
        update(participants)
        .where(
            participants.c.chat_id == chat_id,
            participants.c.user_id == user_id,
            participants.c.last_read_message_id < message_id,
        )
        .values(last_read_message_id=message_id)
    )
    return result.rowcount > 0


async def chat_access(conn: AsyncConnection, chat_id: int) -> list[RowMapping]:
    """The chat joined with its participants (one row each; one row with nulls if none).

    One query that answers existence, the policy's questions and read receipts.
    """
    return list((await conn.execute(CHAT_ACCESS, {"chat_id": chat_id})).mappings())


# Built once: every chat request runs it (store/hotpath.py runs it raw on the POST path).
CHAT_WITH_PARTICIPANTS = (
    select(
        chats,
        participants.c.user_id.label("p_user_id"),
        participants.c.role.label("p_role"),
        participants.c.last_read_message_id.label("p_last_read"),
        users.c.name.label("p_name"),
    )
    .outerjoin(participants, participants.c.chat_id == chats.c.id)
    .outerjoin(users, users.c.id == participants.c.user_id)
)
CHAT_ACCESS = CHAT_WITH_PARTICIPANTS.where(chats.c.id == bindparam("chat_id"))


async def chat_by_thread_chat(conn: AsyncConnection, thread_chat_id: int) -> RowMapping | None:
    rows = await conn.execute(select(chats).where(chats.c.pachca_thread_chat_id == thread_chat_id))
    return rows.mappings().first()


def visible_chats(flt: ChatFilter) -> ColumnElement[bool]:
    """The WHERE clause of the chats a viewer may see."""
    return _visible(tuple(sorted(flt.chat_types)), flt.only_as_participant, flt.viewer_id)


def _visible(
    chat_types: tuple[str, ...], only_as_participant: bool, viewer: Any
) -> ColumnElement[bool]:
    if not chat_types:
        return false()
    clause = chats.c.type.in_(chat_types)
    if only_as_participant:
        clause = and_(
            clause,
            exists().where(participants.c.chat_id == chats.c.id, participants.c.user_id == viewer),
        )
    return clause


async def visible_chat_ids(conn: AsyncConnection, flt: ChatFilter) -> list[int]:
    rows = await conn.execute(select(chats.c.id).where(visible_chats(flt)).order_by(chats.c.id))
    return list(rows.scalars())


@cache
def _chat_list(
    chat_types: tuple[str, ...] | None, only_as_participant: bool, by_ids: bool, by_enrollment: bool
) -> Select[Any]:
    """The chat list statement for one shape of filter, built once (building it per request
    cost more than running it). Values come as bind parameters: viewer, chat_ids,
    enrollment_id."""
    viewer_id = bindparam("viewer")
    conditions: list[ColumnElement[bool]] = [true()]
    if chat_types is not None:
        conditions.append(_visible(chat_types, only_as_participant, viewer_id))
    if by_ids:
        conditions.append(chats.c.id.in_(bindparam("chat_ids", expanding=True)))
    if by_enrollment:
        conditions.append(chats.c.enrollment_id == bindparam("enrollment_id"))

    last = messages.alias("last")
    sender = users.alias("sender")
    viewer = participants.alias("viewer")
    unread = (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.chat_id == chats.c.id,
            messages.c.deleted_at.is_(None),
            messages.c.sender_id != viewer_id,
            messages.c.id > func.coalesce(viewer.c.last_read_message_id, 0),
        )
        .scalar_subquery()
    )
    return (
        select(
            chats,
            unread.label("unread_count"),
            *[c.label(f"m_{c.name}") for c in last.c],
            sender.c.name.label("m_sender_name"),
            sender.c.role.label("m_sender_role"),
        )
        .outerjoin(viewer, and_(viewer.c.chat_id == chats.c.id, viewer.c.user_id == viewer_id))
        .outerjoin(last, last.c.id == chats.c.last_message_id)
        .outerjoin(sender, sender.c.id == last.c.sender_id)
        .where(*conditions)
        .order_by(chats.c.last_activity_at.desc(), chats.c.id.desc())
    )


_PEOPLE = (  # the participants of a set of chats, built once
    select(
        participants.c.chat_id,
        participants.c.role,
        participants.c.last_read_message_id,
        users.c.id,
        users.c.name,
        users.c.role.label("user_role"),
    )
    .join(users, users.c.id == participants.c.user_id)
    .where(participants.c.chat_id.in_(bindparam("chat_ids", expanding=True)))
    .order_by(participants.c.chat_id, participants.c.role, users.c.id)
)


async def load_chats(
    conn: AsyncConnection,
    viewer_id: str,
    *,
    flt: ChatFilter | None = None,
    chat_ids: Iterable[int] | None = None,
    enrollment_id: str | None = None,
) -> list[ChatRecord]:
    """Chats with participants, last message and the viewer's unread count: two queries.

    Ordered by newest activity first. Filters combine: the policy's filter, explicit ids, an
    enrollment.
    """
    stmt = _chat_list(
        tuple(sorted(flt.chat_types)) if flt is not None else None,
        flt.only_as_participant if flt is not None else False,
        chat_ids is not None,
        enrollment_id is not None,
    )
    params: dict[str, Any] = {"viewer": viewer_id}
    if chat_ids is not None:
        params["chat_ids"] = list(chat_ids)
    if enrollment_id is not None:
        params["enrollment_id"] = enrollment_id
    records: list[ChatRecord] = []
    by_id: dict[int, ChatRecord] = {}
    for row in (await conn.execute(stmt, params)).mappings():
        record = ChatRecord(chat=row, unread_count=row["unread_count"])
        if row["m_id"] is not None:
            record.last_message = row
        records.append(record)
        by_id[row["id"]] = record
    if not records:
        return records

    people = await conn.execute(_PEOPLE, {"chat_ids": list(by_id)})
    grouped: dict[int, list[RowMapping]] = defaultdict(list)
    for p in people.mappings():
        grouped[p["chat_id"]].append(p)
    for chat_id, rows in grouped.items():
        by_id[chat_id].participants = rows
    return records


async def set_last_message(
    conn: AsyncConnection, chat_id: int, message_id: int | None, at: datetime | None
) -> None:
    values: dict[str, Any] = {"last_message_id": message_id}
    if at is not None:
        values["last_activity_at"] = at
    await conn.execute(update(chats).where(chats.c.id == chat_id).values(**values))


async def partner_chats(conn: AsyncConnection, user_id: str) -> list[int]:
    """Chats where the user takes part as teacher or tutor (the ones mirrored to Pachca
    threads they must be a member of)."""
    rows = await conn.execute(
        select(participants.c.chat_id).where(
            participants.c.user_id == user_id, participants.c.role.in_(["teacher", "tutor"])
        )
    )
    return list(rows.scalars())
