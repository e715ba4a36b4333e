"""Chats waiting for an answer: the state the message writers keep, the waiting lists, and
the reminder claims.

A row of ``waiting_chats`` has ``since`` while its chat's newest message is the student's;
an answer clears it. The row stays (``since`` null) only while its last reminder still counts
against the repeat interval, so a question asked right after an answer is not reminded about
again too soon; ``prune_answered`` removes it after that. Every query here is an index range
bounded by what it returns (``since`` for the lists, ``last_reminded_at, since`` for what is
due), or a chat's own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update

from store.models import Chat, Message, Participant, User, WaitingChat
from store.tx import Row, Tx, prepared
from store.users import insert_for

waiting = WaitingChat.__table__
chats = Chat.__table__
messages = Message.__table__
participants = Participant.__table__
users = User.__table__

# The part played by whoever asks; the parts that answer are the caller's (the policy's).
STUDENT = "student"

# --- kept by the message writers ----------------------------------------------------------------

# A student's message: the chat waits from now, unless it already does.
_START = prepared(
    lambda dialect: (stmt := insert_for(dialect, waiting)).on_conflict_do_update(
        index_elements=[waiting.c.chat_id],
        set_={
            "since": stmt.excluded.since,
            "first_message_id": stmt.excluded.first_message_id,
            "reminders_sent": 0,
        },
        where=waiting.c.since.is_(None),
    )
)
_STATE = prepared(
    select(waiting.c.since, waiting.c.last_reminded_at).where(
        waiting.c.chat_id == bindparam("chat_id")
    )
)
# A chat no longer waiting whose reminders constrain nothing: no row at all.
_FORGET = prepared(
    delete(waiting).where(
        waiting.c.chat_id == bindparam("chat_id"), waiting.c.last_reminded_at.is_(None)
    )
)
# (A bind named like a column would be taken for a value to set.)
_ANSWERED = prepared(
    update(waiting)
    .where(waiting.c.chat_id == bindparam("for_chat"))
    .values(since=None, first_message_id=None, reminders_sent=0)
)


async def start(tx: Tx, chat_id: int, message_id: int, at: datetime) -> None:
    """The student wrote ``message_id`` at ``at``: the chat waits since then, unless it
    already waits since earlier."""
    await tx.run(
        _START,
        {"chat_id": chat_id, "since": at, "first_message_id": message_id, "reminders_sent": 0},
    )


async def end(tx: Tx, chat_id: int) -> datetime | None:
    """The chat was answered: it waits no more. Returns since when it had waited."""
    state = await tx.first(_STATE, {"chat_id": chat_id})
    if state is None or state["since"] is None:
        return None
    await _stop(tx, chat_id, state["last_reminded_at"])
    since: datetime = state["since"]
    return since


async def _stop(tx: Tx, chat_id: int, last_reminded_at: datetime | None) -> None:
    if last_reminded_at is None:
        await tx.run(_FORGET, {"chat_id": chat_id})
    else:
        await tx.run(_ANSWERED, {"for_chat": chat_id})


_answer = messages.alias("answer")
_answerer = users.alias("answerer")
# The first live message after the chat's newest live answer, with its sender's role: the
# question a chat waits on, when a student asked it. Bounded to the chat's own messages.
_FIRST_UNANSWERED = prepared(
    select(messages.c.id, messages.c.created_at, users.c.role)
    .join(users, users.c.id == messages.c.sender_id)
    .where(
        messages.c.chat_id == bindparam("chat_id"),
        messages.c.deleted_at.is_(None),
        messages.c.id
        > func.coalesce(
            select(func.max(_answer.c.id))
            .join(_answerer, _answerer.c.id == _answer.c.sender_id)
            .where(
                _answer.c.chat_id == bindparam("chat_id"),
                _answer.c.deleted_at.is_(None),
                _answerer.c.role.in_(bindparam("answering", expanding=True)),
            )
            .scalar_subquery(),
            0,
        ),
    )
    .order_by(messages.c.id)
    .limit(1)
)
_MOVE = prepared(
    lambda dialect: (stmt := insert_for(dialect, waiting)).on_conflict_do_update(
        index_elements=[waiting.c.chat_id],
        set_={
            "since": stmt.excluded.since,
            "first_message_id": stmt.excluded.first_message_id,
            # A wait that starts again (an answer deleted) starts its count afresh.
            "reminders_sent": case((waiting.c.since.is_(None), 0), else_=waiting.c.reminders_sent),
        },
    )
)


async def recompute(tx: Tx, chat_id: int, answering: Sequence[str]) -> None:
    """After a message of the chat was deleted: the chat waits on the first live message after
    its newest live answer (by one of ``answering``) when a student wrote it, else not at all."""
    first = await tx.first(_FIRST_UNANSWERED, {"chat_id": chat_id, "answering": list(answering)})
    if first is not None and first["role"] == STUDENT:
        await tx.run(
            _MOVE,
            {
                "chat_id": chat_id,
                "since": first["created_at"],
                "first_message_id": first["id"],
                "reminders_sent": 0,
            },
        )
        return
    state = await tx.first(_STATE, {"chat_id": chat_id})
    if state is not None and state["since"] is not None:
        await _stop(tx, chat_id, state["last_reminded_at"])


# --- the waiting lists --------------------------------------------------------------------------

_assignee = participants.alias("assignee")
_assignee_user = users.alias("assignee_user")
_student = participants.alias("student")
_student_user = users.alias("student_user")


def _waiting_chats(answering: Any) -> Any:
    """Active waiting chats with their assignee (teacher or tutor, when there is one), their
    student and their thread."""
    return (
        select(
            waiting.c.chat_id,
            waiting.c.since,
            waiting.c.last_reminded_at,
            waiting.c.reminders_sent,
            chats.c.title,
            chats.c.type,
            chats.c.subject_name,
            chats.c.pachca_thread_chat_id,
            _assignee_user.c.id.label("assignee_id"),
            _assignee_user.c.name.label("assignee_name"),
            _assignee.c.role.label("assignee_role"),
            _assignee_user.c.pachca_user_id.label("assignee_pachca_user_id"),
            _student_user.c.name.label("student_name"),
        )
        .join(chats, and_(chats.c.id == waiting.c.chat_id, chats.c.is_active.is_(True)))
        .outerjoin(
            _assignee,
            and_(_assignee.c.chat_id == waiting.c.chat_id, _assignee.c.role.in_(answering)),
        )
        .outerjoin(_assignee_user, _assignee_user.c.id == _assignee.c.user_id)
        .outerjoin(
            _student, and_(_student.c.chat_id == waiting.c.chat_id, _student.c.role == STUDENT)
        )
        .outerjoin(_student_user, _student_user.c.id == _student.c.user_id)
    )


_ANSWERING = bindparam("answering", expanding=True)
_LONGEST_FIRST = prepared(
    _waiting_chats(_ANSWERING)
    .where(waiting.c.since.is_not(None))
    .order_by(waiting.c.since, waiting.c.chat_id)
    .limit(bindparam("limit"))
)
_OF_ASSIGNEE = prepared(
    _waiting_chats(_ANSWERING)
    .where(waiting.c.since.is_not(None), _assignee.c.user_id == bindparam("user_id"))
    .order_by(waiting.c.since, waiting.c.chat_id)
    .limit(bindparam("limit"))
)
_WAITING_COUNT = prepared(
    select(func.count().label("n"))
    .select_from(waiting)
    .join(chats, and_(chats.c.id == waiting.c.chat_id, chats.c.is_active.is_(True)))
    .where(waiting.c.since.is_not(None))
)


async def longest_first(tx: Tx, answering: Sequence[str], *, limit: int) -> list[Row]:
    """Active chats waiting, longest wait first: one statement."""
    return await tx.rows(_LONGEST_FIRST, {"answering": list(answering), "limit": limit})


async def of_assignee(tx: Tx, user_id: str, answering: Sequence[str], *, limit: int) -> list[Row]:
    """The active chats waiting for ``user_id``'s answer, longest wait first."""
    return await tx.rows(
        _OF_ASSIGNEE, {"answering": list(answering), "user_id": user_id, "limit": limit}
    )


async def count_waiting(tx: Tx) -> int:
    """Active chats waiting now (for the gauge; counts them all)."""
    n: int = await tx.value(_WAITING_COUNT, {})
    return n


# --- reminders ----------------------------------------------------------------------------------

# Due: waiting since ``due`` or before, and never reminded (first) or last reminded at
# ``cut`` or before (again). Two index ranges, each bounded by the rows it returns.
_DUE_FIRST = prepared(
    _waiting_chats(_ANSWERING)
    .where(waiting.c.last_reminded_at.is_(None), waiting.c.since <= bindparam("due"))
    .order_by(waiting.c.since)
    .limit(bindparam("limit"))
)
_DUE_AGAIN = prepared(
    _waiting_chats(_ANSWERING)
    .where(waiting.c.last_reminded_at <= bindparam("cut"), waiting.c.since <= bindparam("due"))
    .order_by(waiting.c.last_reminded_at)
    .limit(bindparam("limit"))
)
_IS_DUE = or_(
    and_(waiting.c.last_reminded_at.is_(None), waiting.c.since <= bindparam("due")),
    and_(waiting.c.last_reminded_at <= bindparam("cut"), waiting.c.since <= bindparam("due")),
)
# Claimed for this run: a concurrent run (another instance) re-reads each row after this one
# commits (PostgreSQL re-checks the WHERE of a row it waited for), finds it no longer due,
# and leaves it. Those in ``sent`` count a reminder; the others were skipped.
_CLAIM = prepared(
    update(waiting)
    .where(waiting.c.chat_id.in_(bindparam("chat_ids", expanding=True)), _IS_DUE)
    .values(
        last_reminded_at=bindparam("now"),
        reminders_sent=waiting.c.reminders_sent
        + case((waiting.c.chat_id.in_(bindparam("sent", expanding=True)), 1), else_=0),
    )
    .returning(waiting.c.chat_id)
)
_PRUNE_ANSWERED = prepared(
    delete(waiting).where(waiting.c.since.is_(None), waiting.c.last_reminded_at <= bindparam("cut"))
)
_ONE = prepared(_waiting_chats(_ANSWERING).where(waiting.c.chat_id == bindparam("chat_id")))


async def due(
    tx: Tx, answering: Sequence[str], *, due: datetime, cut: datetime, limit: int
) -> list[Row]:
    """Up to ``limit`` active chats a reminder is due for (waiting since ``due`` or before,
    last reminded never or at ``cut`` or before), longest wait first: two statements."""
    params = {"answering": list(answering), "due": due, "cut": cut, "limit": limit}
    rows = await tx.rows(_DUE_FIRST, params) + await tx.rows(_DUE_AGAIN, params)
    rows.sort(key=lambda r: (r["since"], r["chat_id"]))
    return rows[:limit]


async def claim(
    tx: Tx,
    chat_ids: Sequence[int],
    sent: Sequence[int],
    *,
    now: datetime,
    due: datetime,
    cut: datetime,
) -> set[int]:
    """Mark the chats reminded at ``now`` where still due; the ids claimed. ``sent``: those
    whose reminder goes out (the others count no reminder)."""
    if not chat_ids:
        return set()
    rows = await tx.rows(
        _CLAIM,
        {"chat_ids": list(chat_ids), "sent": list(sent), "now": now, "due": due, "cut": cut},
    )
    return {r["chat_id"] for r in rows}


async def prune_answered(tx: Tx, cut: datetime) -> int:
    """Forget answered chats last reminded at ``cut`` or before: they constrain nothing."""
    return await tx.run(_PRUNE_ANSWERED, {"cut": cut})


async def reminder_facts(tx: Tx, chat_id: int, answering: Sequence[str]) -> Row | None:
    """A chat's waiting state with what a reminder says (None: never waited, or forgotten);
    ``since`` is null when answered, and an inactive chat has no row here."""
    return await tx.first(_ONE, {"chat_id": chat_id, "answering": list(answering)})
