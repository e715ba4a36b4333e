"""Questions waiting for an answer (docs/api.md, admin/waiting).

A chat waits while it is active and its newest message is its student's, since the first of
the student's messages after the last answer - a message from the teacher or tutor, from the
web or from Pachca. The message writers keep that state in their own transactions
(store/new_messages.py, ``message_deleted``); an edit changes nobody's turn, so it changes nothing.
The admin list, the bot's ``/waiting`` and the reminders (bridge/ops/reminders.py) read it.
"""

from __future__ import annotations

from datetime import datetime

from typing_extensions import TypedDict

from bridge.errors import InvalidRequest
from bridge.forum.views import IsoTime, PersonObj, iso
from bridge.policy import PARTNER_ROLES, Role
from bridge.runtime import Runtime, utcnow
from store import waiting as waiting_store
from store.tx import Row, Tx

MAX_LIMIT = 500


def starts_wait(sender_role: str) -> bool:
    """Whether a new message of ``sender_role`` starts a wait (unless one runs): a student's.
    The message writer starts it with the message itself (store/new_messages.py)."""
    return sender_role == Role.STUDENT


def ends_wait(sender_role: str) -> bool:
    """Whether a new message of ``sender_role`` answers the chat's wait: a teacher's or a
    tutor's. The message writer ends it with the message itself and observes the answer
    time (bridge/forum/messages.py)."""
    return sender_role in PARTNER_ROLES


async def message_deleted(tx: Tx, chat_id: int, sender_role: str) -> None:
    """A message of ``sender_role`` was deleted: the wait follows what is left - it ends when
    the student's only waiting message goes, starts at the next one when the first goes, and
    starts again when the answer goes."""
    if sender_role == Role.STUDENT or sender_role in PARTNER_ROLES:
        await waiting_store.recompute(tx, chat_id, PARTNER_ROLES)


def waited_s(since: datetime, now: datetime) -> int:
    return max(0, int((now - since).total_seconds()))


class WaitingObj(TypedDict):
    chat_id: int
    title: str
    waiting_since: IsoTime
    waiting_s: int
    assignee: PersonObj | None  # the chat's teacher or tutor
    reminders_sent: int


class WaitingPage(TypedDict):
    chats: list[WaitingObj]


def waiting_obj(row: Row, now: datetime) -> WaitingObj:
    assignee: PersonObj | None = None
    if row["assignee_id"] is not None:
        assignee = {
            "id": row["assignee_id"],
            "name": row["assignee_name"],
            "role": row["assignee_role"],
        }
    return {
        "chat_id": row["chat_id"],
        "title": row["title"],
        "waiting_since": iso(row["since"]),
        "waiting_s": waited_s(row["since"], now),
        "assignee": assignee,
        "reminders_sent": row["reminders_sent"],
    }


def describe_wait(seconds: float) -> str:
    """A wait for people: "3 d 4 h", "2 h 5 min", "12 min", "40 s"."""
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{s} s"


def reminder_text(row: Row, now: datetime, link: str | None) -> str:
    """The bot's reminder to the teacher or tutor (it starts with a word, never a slash)."""
    student = row["student_name"] or "A student"
    text = (
        f"Waiting for your answer: {student} ({row['subject_name']}) has waited "
        f'{describe_wait(waited_s(row["since"], now))} in "{row["title"]}".'
    )
    return f"{text}\n{link}" if link else f"{text}\nIts Pachca thread is not open yet."


class WaitingList:
    """What admins see of the waiting chats (service token)."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    async def list(self, *, limit: int | None) -> WaitingPage:
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
        async with self.rt.db.read() as conn:
            rows = await waiting_store.longest_first(conn, PARTNER_ROLES, limit=limit)
        now = utcnow()
        return {"chats": [waiting_obj(r, now) for r in rows]}
