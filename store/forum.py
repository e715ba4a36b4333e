"""Enrollments, forum chats and their participants, and the bounded list queries over them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
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

from store.files import files_column
from store.models import Chat, Enrollment, Message, Participant, User
from store.reactions import reactions_column
from store.tx import Prepared, Row, Tx, prepared
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

    chat: Row
    participants: list[Row] = field(default_factory=list)  # user columns + role, last read
    last_message: Row | None = None  # message columns + sender_* columns
    unread_count: int = 0


# --- enrollments -------------------------------------------------------------------------

_GET_ENROLLMENT = prepared(
    select(enrollments).where(enrollments.c.id == bindparam("enrollment_id"))
)
_CLAIM_INSERT = prepared(
    lambda dialect: (
        insert_for(dialect, enrollments)
        .on_conflict_do_nothing(index_elements=[enrollments.c.id])
        .returning(enrollments.c.id)
    )
)
_CLAIM_HOLD = prepared(
    select(enrollments).where(enrollments.c.id == bindparam("enrollment_id")).with_for_update()
)
_UPDATE_ENROLLMENT = prepared(
    update(enrollments).where(enrollments.c.id == bindparam("enrollment_id"))
)
_DELETE_ENROLLMENT = prepared(
    delete(enrollments).where(enrollments.c.id == bindparam("enrollment_id"))
)
_ENROLLMENTS_OF_STUDENT = prepared(
    select(enrollments).where(enrollments.c.student_id == bindparam("student_id"))
)


async def get_enrollment(tx: Tx, enrollment_id: str) -> Row | None:
    return await tx.first(_GET_ENROLLMENT, {"enrollment_id": enrollment_id})


async def claim_enrollment(tx: Tx, values: dict[str, Any]) -> Row | None:
    """Insert the enrollment unless it exists, and hold its row for the rest of the transaction.

    Returns the row as it stood (None when this call created it). Concurrent PUTs of one id
    queue here instead of colliding on the primary key: on PostgreSQL the INSERT waits for
    another transaction's uncommitted insert of the id and FOR UPDATE orders the rest; SQLite
    has a single writer anyway.
    """
    for _ in range(2):  # twice: a concurrent DELETE may remove the row between the two
        if await tx.first(_CLAIM_INSERT, values) is not None:
            return None
        current = await tx.first(_CLAIM_HOLD, {"enrollment_id": values["id"]})
        if current is not None:
            return current
    raise RuntimeError(f"enrollment {values['id']!r} keeps disappearing")


async def update_enrollment(tx: Tx, enrollment_id: str, values: dict[str, Any]) -> None:
    await tx.run(_UPDATE_ENROLLMENT, {**values, "enrollment_id": enrollment_id})


async def delete_enrollment(tx: Tx, enrollment_id: str) -> None:
    # Chats, participants, messages and pending outbox jobs go with it (ON DELETE CASCADE).
    await tx.run(_DELETE_ENROLLMENT, {"enrollment_id": enrollment_id})


async def enrollments_of_student(tx: Tx, student_id: str) -> list[Row]:
    return await tx.rows(_ENROLLMENTS_OF_STUDENT, {"student_id": student_id})


# --- chats and participants --------------------------------------------------------------

_CHATS_OF_ENROLLMENT = prepared(
    select(chats).where(chats.c.enrollment_id == bindparam("enrollment_id")).order_by(chats.c.id)
)
_INSERT_CHAT = prepared(chats.insert().returning(chats.c.id))
_PARTICIPANT_IDS = prepared(
    select(participants.c.user_id, participants.c.role).where(
        participants.c.chat_id == bindparam("chat_id")
    )
)
_ADD_PARTICIPANT = prepared(participants.insert())
_REMOVE_PARTICIPANT = prepared(
    delete(participants).where(
        participants.c.chat_id == bindparam("chat_id"),
        participants.c.user_id == bindparam("user_id"),
    )
)
_MARK_READ = prepared(
    update(participants)
    .where(
        participants.c.chat_id == bindparam("in_chat"),
        participants.c.user_id == bindparam("reader"),
        participants.c.last_read_message_id < bindparam("message_id"),
    )
    .values(last_read_message_id=bindparam("message_id"))
)


async def chats_of_enrollment(tx: Tx, enrollment_id: str) -> list[Row]:
    return await tx.rows(_CHATS_OF_ENROLLMENT, {"enrollment_id": enrollment_id})


async def insert_chat(tx: Tx, values: dict[str, Any]) -> int:
    chat_id: int = await tx.value(_INSERT_CHAT, values)
    return chat_id


async def update_chats(tx: Tx, chat_ids: list[int], values: dict[str, Any]) -> None:
    if chat_ids:
        await tx.run(update(chats).where(chats.c.id.in_(chat_ids)).values(**values))


async def participant_ids(tx: Tx, chat_id: int) -> dict[str, str]:
    """user id -> role in the chat."""
    rows = await tx.rows(_PARTICIPANT_IDS, {"chat_id": chat_id})
    return {r["user_id"]: r["role"] for r in rows}


async def add_participant(tx: Tx, chat_id: int, user_id: str, role: str) -> None:
    await tx.run(
        _ADD_PARTICIPANT,
        {"chat_id": chat_id, "user_id": user_id, "role": role, "last_read_message_id": 0},
    )


async def remove_participant(tx: Tx, chat_id: int, user_id: str) -> None:
    await tx.run(_REMOVE_PARTICIPANT, {"chat_id": chat_id, "user_id": user_id})


async def mark_read(tx: Tx, chat_id: int, user_id: str, message_id: int) -> bool:
    """Move the read mark forward (never back). True when it moved."""
    moved = await tx.run(
        _MARK_READ, {"in_chat": chat_id, "reader": user_id, "message_id": message_id}
    )
    return moved > 0


# A chat and its participants (one row each; one row with nulls if none): one query that
# answers existence, the policy's questions and read receipts. Every chat request runs it but
# a post, which checks against a kept copy of ``chat_rights`` (bridge/forum/access_cache.py).
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
CHAT_ACCESS = prepared(CHAT_WITH_PARTICIPANTS.where(chats.c.id == bindparam("chat_id")))


async def chat_access(tx: Tx, chat_id: int) -> list[Row]:
    """The chat joined with its participants (one row each; one row with nulls if none)."""
    return await tx.rows(CHAT_ACCESS, {"chat_id": chat_id})


# What posting decides on (bridge/forum/access_cache.py): the chat's type and activity and the
# part each participant plays (one row each; one row with nulls if none). No names, no read marks.
_CHAT_RIGHTS = prepared(
    select(
        chats.c.id,
        chats.c.type,
        chats.c.is_active,
        participants.c.user_id.label("p_user_id"),
        participants.c.role.label("p_role"),
    )
    .outerjoin(participants, participants.c.chat_id == chats.c.id)
    .where(chats.c.id == bindparam("chat_id"))
)
_READ_MARKS = prepared(
    select(participants.c.user_id, participants.c.last_read_message_id).where(
        participants.c.chat_id == bindparam("chat_id")
    )
)


async def chat_rights(tx: Tx, chat_id: int) -> list[Row]:
    """The chat's id, type and activity joined with its participants' ids and roles (one row
    each; one row with nulls if none; none when there is no such chat)."""
    return await tx.rows(_CHAT_RIGHTS, {"chat_id": chat_id})


async def read_marks(tx: Tx, chat_id: int) -> list[tuple[str, int]]:
    """(participant id, the last message they read) of each of the chat's participants."""
    rows = await tx.rows(_READ_MARKS, {"chat_id": chat_id})
    return [(r["user_id"], r["last_read_message_id"]) for r in rows]


def _visible(
    chat_types: tuple[str, ...], only_as_participant: bool, viewer: Any
) -> ColumnElement[bool]:
    """The WHERE clause of the chats a viewer may see (the policy's scope)."""
    if not chat_types:
        return false()
    clause = chats.c.type.in_(chat_types)
    if only_as_participant:
        clause = and_(
            clause,
            exists().where(participants.c.chat_id == chats.c.id, participants.c.user_id == viewer),
        )
    return clause


@cache
def _visible_ids(chat_types: tuple[str, ...], only_as_participant: bool) -> Prepared:
    visible = _visible(chat_types, only_as_participant, bindparam("viewer"))
    return prepared(select(chats.c.id).where(visible).order_by(chats.c.id))


async def visible_chat_ids(tx: Tx, flt: ChatFilter) -> list[int]:
    stmt = _visible_ids(tuple(sorted(flt.chat_types)), flt.only_as_participant)
    return [r["id"] for r in await tx.rows(stmt, {"viewer": flt.viewer_id})]


@cache
def _chat_list(
    chat_types: tuple[str, ...] | None, only_as_participant: bool, by_ids: bool, by_enrollment: bool
) -> Prepared:
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
    statement = (
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
    return prepared(
        lambda dialect: statement.add_columns(
            reactions_column(dialect, last.c.id, "m_reactions"),
            files_column(dialect, last.c.id, "m_files"),
        )
    )


_PEOPLE = prepared(  # the participants of a set of chats
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
    tx: Tx,
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
    for row in await tx.rows(stmt, params):
        record = ChatRecord(chat=row, unread_count=row["unread_count"])
        if row["m_id"] is not None:
            record.last_message = row
        records.append(record)
        by_id[row["id"]] = record
    if not records:
        return records

    grouped: dict[int, list[Row]] = defaultdict(list)
    for p in await tx.rows(_PEOPLE, {"chat_ids": list(by_id)}):
        grouped[p["chat_id"]].append(p)
    for chat_id, rows in grouped.items():
        by_id[chat_id].participants = rows
    return records


# The values given besides ``chat_id`` are the columns set.
_SET_CHAT = prepared(update(chats).where(chats.c.id == bindparam("chat_id")))


async def set_last_message(
    tx: Tx, chat_id: int, message_id: int | None, at: datetime | None
) -> None:
    """Make ``message_id`` the chat's last message (None: it has none), its activity time
    ``at`` (None: unchanged)."""
    values: dict[str, Any] = {"last_message_id": message_id}
    if at is not None:
        values["last_activity_at"] = at
    await tx.run(_SET_CHAT, {**values, "chat_id": chat_id})


_PARTNER_CHATS = prepared(
    select(participants.c.chat_id).where(
        participants.c.user_id == bindparam("user_id"),
        participants.c.role.in_(bindparam("roles", expanding=True)),
    )
)


async def partner_chats(tx: Tx, user_id: str, roles: Sequence[str]) -> list[int]:
    """Chats where the user takes part in one of ``roles`` (the policy's partner roles: the
    chats mirrored to Pachca threads they must be a member of)."""
    rows = await tx.rows(_PARTNER_CHATS, {"user_id": user_id, "roles": list(roles)})
    return [r["chat_id"] for r in rows]
