"""The waiting-chats migration fills the table from the messages already stored: a chat waits
when the first live message after its newest live answer (a teacher's or tutor's) is its
student's, since that message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from store import migrate
from store.db import Database
from store.models import Chat, Enrollment, Message, User, WaitingChat

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PARTICIPANTS = {"s": "student", "t": "teacher", "u": "tutor"}


async def test_existing_chats_waiting_now_are_found(database: Database) -> None:
    await migrate.upgrade(database, "0005")
    stamp = {"created_at": T0, "updated_at": T0}
    # Each chat's messages, oldest first: (sender, deleted).
    scripts: dict[str, list[tuple[str, bool]]] = {
        "answered": [("s", False), ("t", False)],
        "asked_again": [("s", False), ("t", False), ("s", False), ("s", False)],
        "answer_deleted": [("s", False), ("t", True)],
        "question_deleted": [("t", False), ("s", True)],
        "first_deleted": [("s", True), ("s", False)],
        "tutor_answered": [("s", False), ("u", False)],
        "empty": [],
    }
    async with database.write() as tx:
        for uid, role in PARTICIPANTS.items():
            await tx.run(User.__table__.insert().values(id=uid, role=role, name=uid, **stamp))
        chat_ids: dict[str, int] = {}
        for name in scripts:
            await tx.run(
                Enrollment.__table__.insert().values(
                    id=name,
                    student_id="s",
                    teacher_id="t",
                    subject_id="m",
                    subject_name="Maths",
                    active=True,
                    **stamp,
                )
            )
            chat_ids[name] = await tx.value(
                Chat.__table__.insert()
                .values(
                    enrollment_id=name,
                    type="forum_subject",
                    title=name,
                    subject_id="m",
                    subject_name="Maths",
                    is_active=True,
                    created_at=T0,
                    last_activity_at=T0,
                )
                .returning(Chat.__table__.c.id)
            )
        firsts: dict[str, int] = {}
        for name, script in scripts.items():
            for i, (sender, deleted) in enumerate(script):
                at = T0 + timedelta(minutes=i)
                message_id = await tx.value(
                    Message.__table__.insert()
                    .values(
                        chat_id=chat_ids[name],
                        sender_id=sender,
                        content=f"{name} {i}",
                        created_at=at,
                        deleted_at=at if deleted else None,
                        source="web",
                    )
                    .returning(Message.__table__.c.id)
                )
                firsts.setdefault(f"{name}@{i}", message_id)

    await migrate.upgrade(database)

    async with database.read() as conn:
        rows = await conn.rows(select(WaitingChat.__table__))
    waiting = {r["chat_id"]: r for r in rows}
    expected = {"asked_again": 2, "answer_deleted": 0, "first_deleted": 1}
    assert set(waiting) == {chat_ids[name] for name in expected}
    for name, index in expected.items():
        row = waiting[chat_ids[name]]
        assert row["first_message_id"] == firsts[f"{name}@{index}"]
        assert row["since"] == T0 + timedelta(minutes=index)
        assert row["last_reminded_at"] is None and row["reminders_sent"] == 0
