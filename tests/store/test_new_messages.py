"""store/new_messages.py: a new message and what goes with it, written one at a time (``add``,
both databases) or many in one statement (``NEW_MESSAGES.many``, PostgreSQL) - the same rows
either way - and events of a batch held back from readers like any other (store/events.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from store import events as event_log
from store.db import Database
from store.models import Chat, Event, Message, OutboxJob, WaitingChat
from store.new_messages import NEW_MESSAGES, NewMessage, add
from tests.store.test_event_visibility import Writer, seen, seen_at_last
from tests.world import World

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
T1, T2 = T0 + timedelta(seconds=5), T0 + timedelta(seconds=60)


def new(chat_id: int, sender: str, content: str, at: datetime, **parts: Any) -> NewMessage:
    return NewMessage(
        {
            "chat_id": chat_id,
            "sender_id": sender,
            "content": content,
            "created_at": at,
            "reply_to_id": None,
            "source": "web",
            "client_id": f"{sender}-{content}",
        },
        last_at=at,
        now=at,
        job="post_message",
        event=event_log.AboutNewRow("message.created", '{"message":{"id":', "}}", at),
        **parts,
    )


async def chats(world: World, n: int) -> list[tuple[int, str, str]]:
    """``n`` subject chats: (chat id, student, teacher)."""
    out = []
    for _ in range(n):
        student, teacher = await world.user("student"), await world.user("teacher")
        out.append(((await world.enroll(student, teacher)).subject_chat["id"], student, teacher))
    return out


async def rows_of(db: Database, chat_id: int) -> dict[str, Any]:
    """What a chat's messages wrote, with ids as positions among the chat's messages."""
    async with db.read() as tx:
        messages = await tx.rows(
            select(
                Message.id,
                Message.sender_id,
                Message.content,
                Message.created_at,
                Message.edited_at,
                Message.deleted_at,
                Message.reply_to_id,
                Message.source,
                Message.client_id,
                Message.pachca_message_id,
            )
            .where(Message.chat_id == chat_id)
            .order_by(Message.id)
        )
        chat = await tx.first(
            select(Chat.last_message_id, Chat.last_activity_at).where(Chat.id == chat_id)
        )
        waiting = await tx.rows(
            select(
                WaitingChat.since,
                WaitingChat.first_message_id,
                WaitingChat.reminders_sent,
                WaitingChat.last_reminded_at,
            ).where(WaitingChat.chat_id == chat_id)
        )
        jobs = await tx.rows(
            select(
                OutboxJob.lane,
                OutboxJob.kind,
                OutboxJob.payload,
                OutboxJob.status,
                OutboxJob.attempts,
                OutboxJob.next_attempt_at,
                OutboxJob.created_at,
                OutboxJob.message_id,
            )
            .where(OutboxJob.chat_id == chat_id, OutboxJob.kind == "post_message")
            .order_by(OutboxJob.id)
        )
        events = await tx.rows(
            select(Event.type, Event.payload, Event.created_at)
            .where(Event.chat_id == chat_id, Event.type == "message.created")
            .order_by(Event.id)
        )
    ids = {m.pop("id"): n for n, m in enumerate(messages)}
    assert chat is not None
    chat["last_message_id"] = ids[chat["last_message_id"]]
    for w in waiting:
        w["first_message_id"] = ids.get(w["first_message_id"])
    for job in jobs:
        payload = job["payload"]
        payload = json.loads(payload) if isinstance(payload, str) else payload
        job["payload"] = {"message_id": ids[payload["message_id"]]}
        job["lane"] = job["lane"].replace(str(chat_id), "<chat>")
    for event in events:
        event["payload"] = ids[json.loads(event["payload"])["message"]["id"]]
    for m in messages:  # the senders and client ids differ between chats by name only
        m["sender_id"] = m["sender_id"].split("-")[0]
        m["client_id"] = m["client_id"].rsplit("-", 1)[1] if m["client_id"] else None
    return {"messages": messages, "chat": chat, "waiting": waiting, "jobs": jobs, "events": events}


@pytest.fixture
def postgres_only(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("one statement for many messages is PostgreSQL's (SQLite commits in groups)")


async def remind(db: Database, chat_id: int, at: datetime) -> None:
    async with db.write() as tx:
        await tx.run(
            text(
                "UPDATE waiting_chats SET last_reminded_at = :at, reminders_sent = 1"
                " WHERE chat_id = :c"
            ),
            {"at": at, "c": chat_id},
        )


def expected(teacher_reminded: bool) -> dict[str, Any]:
    """What a student's question, the same student's second question and the teacher's answer
    leave in a chat (ids as positions among the chat's messages)."""
    said = [("student", "question", T0), ("student", "again", T1), ("teacher", "answer", T2)]
    return {
        "messages": [
            {
                "sender_id": sender,
                "content": content,
                "created_at": at,
                "edited_at": None,
                "deleted_at": None,
                "reply_to_id": None,
                "source": "web",
                "client_id": content,
                "pachca_message_id": None,
            }
            for sender, content, at in said
        ],
        "chat": {"last_message_id": 2, "last_activity_at": T2},
        # The answer ends the wait: the row goes, unless a reminder went out (it is kept for
        # the reminders' pace, waiting no more).
        "waiting": [
            {"since": None, "first_message_id": None, "reminders_sent": 0, "last_reminded_at": T2}
        ]
        if teacher_reminded
        else [],
        "jobs": [
            {
                "lane": "chat:<chat>",
                "kind": "post_message",
                "payload": {"message_id": n},
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": at,
                "created_at": at,
                "message_id": None,
            }
            for n, (_, _, at) in enumerate(said)
        ],
        "events": [
            {"type": "message.created", "payload": n, "created_at": at}
            for n, (_, _, at) in enumerate(said)
        ],
    }


@pytest.mark.parametrize("together", [False, True], ids=["one at a time", "together"])
async def test_a_new_message_writes_its_chat_its_wait_its_job_and_its_event(
    world: World, database: Database, together: bool
) -> None:
    # In two chats a student asks twice (a wait starts, then goes on) and the teacher answers;
    # in the second chat a reminder went out before the answer. One message per transaction
    # (both databases), or each round's two messages in one statement (PostgreSQL).
    if together and database.is_sqlite:
        pytest.skip("one statement for many messages is PostgreSQL's (SQLite commits in groups)")
    (a, sa, ta), (b, sb, tb) = await chats(world, 2)
    rounds = [((sa, sb), "question", T0), ((sa, sb), "again", T1), ((ta, tb), "answer", T2)]
    for senders, content, at in rounds:
        teacher = content == "answer"
        if teacher:
            await remind(database, b, at)
        units = [
            new(chat_id, sender, content, at, starts_wait=not teacher, ends_wait=teacher)
            for chat_id, sender in zip((a, b), senders, strict=True)
        ]
        if together:
            async with database.write() as tx:
                written = await NEW_MESSAGES.many(tx, units)
        else:
            written = []
            for unit in units:
                async with database.write() as tx:
                    written.append(await add(tx, unit))
        if content == "again":
            waiting = (await rows_of(database, a))["waiting"]
            assert waiting == [  # still since the first question
                {"since": T0, "first_message_id": 0, "reminders_sent": 0, "last_reminded_at": None}
            ]
        assert [x.waited_since for x in written] == ([T0, T0] if teacher else [None, None])

    assert await rows_of(database, a) == expected(teacher_reminded=False)
    assert await rows_of(database, b) == expected(teacher_reminded=True)


@pytest.mark.usefixtures("postgres_only")
async def test_a_batch_committed_late_holds_back_later_events_until_it_commits(
    world: World, database: Database
) -> None:
    # The batch takes its event ids, then stays open while a single message commits with a
    # larger event id: readers take neither until the batch commits.
    (a, sa, _), (b, sb, _), (c, sc, _) = await chats(world, 3)
    before, _ids = await seen(database)
    held = await Writer(database).begin()
    early = await NEW_MESSAGES.many(held.tx, [new(a, sa, "x", T0), new(b, sb, "y", T0)])
    async with database.write() as tx:
        late = await add(tx, new(c, sc, "z", T0))
    assert early[0].event_id is not None and late.event_id is not None
    assert early[0].event_id < early[1].event_id < late.event_id  # type: ignore[operator]

    head, ids = await seen(database)
    assert head < early[0].event_id and late.event_id not in ids

    await held.commit()
    _head, ids = await seen(database)
    expected = sorted({*ids, early[0].event_id, early[1].event_id, late.event_id})
    await seen_at_last(database, (late.event_id, expected))
    assert before < early[0].event_id
