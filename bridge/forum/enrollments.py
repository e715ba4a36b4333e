"""Enrollments and the forum chats they own (docs/api.md).

Each enrollment has a ``forum_subject`` chat (student + teacher) and, while the student has a
tutor, a ``forum_tutor`` chat (student + tutor). ``sync_chats`` makes the stored chats match
that, and is shared by enrollment upserts and tutor changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.errors import NotFound, UnknownUser
from bridge.feed import events as ev
from bridge.feed.transport import CHAT_CHANGED, Control
from bridge.forum import views
from bridge.forum.inputs import EnrollmentIn
from bridge.pachca import membership
from bridge.pachca.jobs import ADD_MEMBER, OPEN_THREAD
from bridge.policy import ChatType, Role
from bridge.runtime import Runtime, utcnow
from store import forum
from store import outbox as outbox_store
from store import users as user_store
from store.tx import Tx


@dataclass(frozen=True, slots=True)
class Desired:
    type: ChatType
    partner_role: str  # teacher | tutor
    partner_id: str
    active: bool


def chat_title(chat_type: str, subject_name: str, student_name: str) -> str:
    if chat_type == ChatType.TUTOR:
        return f"{subject_name} · {student_name} (tutor)"
    return f"{subject_name} · {student_name}"


async def sync_chats(
    rt: Runtime,
    conn: Tx,
    enrollment: Mapping[str, Any],
    student: Mapping[str, Any],
    now: datetime,
) -> list[ev.FeedEvent]:
    """Create or adjust the enrollment's chats; return the events to publish after commit:
    one for each chat created or changed (``changed_chats`` picks the changed ones)."""
    desired = [
        Desired(ChatType.SUBJECT, Role.TEACHER, enrollment["teacher_id"], enrollment["active"])
    ]
    tutor_id = student["tutor_id"]
    existing = {c["type"]: c for c in await forum.chats_of_enrollment(conn, enrollment["id"])}
    if tutor_id:
        desired.append(Desired(ChatType.TUTOR, Role.TUTOR, tutor_id, enrollment["active"]))

    created: list[int] = []
    updated: dict[int, set[str] | None] = {}  # chat id -> explicit audience (None: viewers)
    for want in desired:
        title = chat_title(want.type, enrollment["subject_name"], student["name"])
        chat = existing.get(want.type)
        if chat is None:
            chat_id = await forum.insert_chat(
                conn,
                {
                    "enrollment_id": enrollment["id"],
                    "type": want.type.value,
                    "title": title,
                    "subject_id": enrollment["subject_id"],
                    "subject_name": enrollment["subject_name"],
                    "is_active": want.active,
                    "created_at": now,
                    "last_activity_at": now,
                },
            )
            await forum.add_participant(conn, chat_id, student["id"], Role.STUDENT)
            await forum.add_participant(conn, chat_id, want.partner_id, want.partner_role)
            await outbox_store.enqueue(
                conn, OPEN_THREAD, {"chat_id": chat_id}, chat_id=chat_id, now=now
            )
            created.append(chat_id)
            continue

        chat_id = chat["id"]
        changes: dict[str, Any] = {}
        if chat["is_active"] != want.active:
            changes["is_active"] = want.active
        if (chat["title"], chat["subject_id"], chat["subject_name"]) != (
            title,
            enrollment["subject_id"],
            enrollment["subject_name"],
        ):
            changes.update(
                title=title,
                subject_id=enrollment["subject_id"],
                subject_name=enrollment["subject_name"],
            )
        if changes:
            await forum.update_chats(conn, [chat_id], changes)
            updated[chat_id] = None
            if "is_active" in changes:
                await membership.activity_changed(conn, chat_id, want.active, now)
        members = await forum.participant_ids(conn, chat_id)
        # The student can change too (a PUT naming another student_id): replaced the same way.
        for part, user_id in ((Role.STUDENT, student["id"]), (want.partner_role, want.partner_id)):
            old = [uid for uid, role in members.items() if role == part]
            if old == [user_id]:
                continue
            for uid in old:
                await forum.remove_participant(conn, chat_id, uid)
            await forum.add_participant(conn, chat_id, user_id, part)
            if part != Role.STUDENT:  # students are on the web, not in the Pachca thread
                # The old teacher or tutor leaves the thread first, then the new one joins.
                await membership.partner_replaced(conn, chat_id, old, now)
                await outbox_store.enqueue(
                    conn,
                    ADD_MEMBER,
                    {"chat_id": chat_id, "user_id": user_id},
                    chat_id=chat_id,
                    now=now,
                )
            # Those who lost the chat hear of it too, so their clients can drop it.
            updated[chat_id] = {*members, *(updated.get(chat_id) or ()), user_id}

    tutor_chat = existing.get(ChatType.TUTOR)
    if not tutor_id and tutor_chat is not None and tutor_chat["is_active"]:
        # No tutor any more: the conversation stays readable but takes no new messages.
        await forum.update_chats(conn, [tutor_chat["id"]], {"is_active": False})
        updated[tutor_chat["id"]] = None
        await membership.activity_changed(conn, tutor_chat["id"], False, now)

    return await chat_events(rt, conn, created, updated, now)


async def chat_events(
    rt: Runtime,
    conn: Tx,
    created: list[int],
    updated: dict[int, set[str] | None],
    now: datetime,
) -> list[ev.FeedEvent]:
    ids = [*created, *updated]
    if not ids:
        return []
    records = {r.chat["id"]: r for r in await forum.load_chats(conn, "", chat_ids=ids)}
    out = []
    for chat_id in ids:
        record = records[chat_id]
        meta = ev.ChatMeta(record.chat["type"], frozenset(p["id"] for p in record.participants))
        kind = ev.CHAT_CREATED if chat_id in created else ev.CHAT_UPDATED
        body = {"chat": views.chat_obj(record, links=rt.file_links, with_unread=False)}
        audience = updated.get(chat_id)
        out.append(
            await rt.events.append(conn, kind, chat_id, body, now, audience=audience, chat=meta)
        )
    return out


def changed_chats(events: Iterable[ev.FeedEvent]) -> list[int]:
    """The chats ``sync_chats``'s events say changed. A created chat is left out: no instance
    can have kept its access before (chat ids are never reused, unknown chats never kept)."""
    return [e.chat_id for e in events if e.type != ev.CHAT_CREATED]


def tell_chats_changed(rt: Runtime, chat_ids: Iterable[int]) -> None:
    """After the commit that changed these chats' access (participants, activity, the chat
    itself), and before their events go out: every instance forgets its copy of it
    (bridge/forum/access_cache.py), so that the next post there sees the change."""
    for chat_id in sorted(set(chat_ids)):
        rt.feed.publish_control(Control(CHAT_CHANGED, chat_id=chat_id))


class Enrollments:
    def __init__(self, rt: Runtime):
        self.rt = rt

    async def upsert(self, enrollment_id: str, body: EnrollmentIn) -> dict[str, Any]:
        now = utcnow()
        async with self.rt.db.write() as conn:
            people = await user_store.get_users(conn, [body.student_id, body.teacher_id])
            student, teacher = people.get(body.student_id), people.get(body.teacher_id)
            if student is None or student["role"] != Role.STUDENT:
                raise UnknownUser(f"student_id {body.student_id!r} names no known student")
            if teacher is None or teacher["role"] != Role.TEACHER:
                raise UnknownUser(f"teacher_id {body.teacher_id!r} names no known teacher")
            values = {
                "student_id": body.student_id,
                "teacher_id": body.teacher_id,
                "subject_id": body.subject.id,
                "subject_name": body.subject.name,
                "active": body.active,
            }
            current = await forum.claim_enrollment(
                conn, {"id": enrollment_id, **values, "created_at": now, "updated_at": now}
            )
            if current is not None and any(current[k] != v for k, v in values.items()):
                await forum.update_enrollment(conn, enrollment_id, {**values, "updated_at": now})
            enrollment = {"id": enrollment_id, **values}
            events = await sync_chats(self.rt, conn, enrollment, student, now)
            result = await self._render(conn, enrollment_id)
        tell_chats_changed(self.rt, changed_chats(events))
        await self.rt.publish(events)
        return result

    async def get(self, enrollment_id: str) -> dict[str, Any]:
        async with self.rt.db.read() as conn:
            return await self._render(conn, enrollment_id)

    async def delete(self, enrollment_id: str) -> None:
        now = utcnow()
        async with self.rt.db.write() as conn:
            if await forum.get_enrollment(conn, enrollment_id) is None:
                raise NotFound("no such enrollment")
            chats = await forum.chats_of_enrollment(conn, enrollment_id)
            # The chats as they were last seen, for the chat.deleted events (their audience:
            # the participants, who may no longer see the chat once it is gone).
            records = await forum.load_chats(conn, "", enrollment_id=enrollment_id)
            records.sort(key=lambda r: r.chat["id"])
            for chat in chats:  # before the chats (and their pending jobs) go
                await membership.enrollment_deleting(conn, chat, now)
            await forum.delete_enrollment(conn, enrollment_id)
            events = [
                await self.rt.events.append(
                    conn,
                    ev.CHAT_DELETED,
                    r.chat["id"],
                    {"chat": views.chat_obj(r, links=self.rt.file_links, with_unread=False)},
                    now,
                    audience={p["id"] for p in r.participants},
                )
                for r in records
            ]
        tell_chats_changed(self.rt, (c["id"] for c in chats))
        await self.rt.publish(events)

    async def _render(self, conn: Tx, enrollment_id: str) -> dict[str, Any]:
        row = await forum.get_enrollment(conn, enrollment_id)
        if row is None:
            raise NotFound("no such enrollment")
        records = await forum.load_chats(conn, "", enrollment_id=enrollment_id)
        records.sort(key=lambda r: r.chat["id"])
        return {
            "enrollment": views.enrollment_obj(row),
            "chats": [views.chat_obj(r, links=self.rt.file_links) for r in records],
        }
