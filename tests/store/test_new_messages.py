"""store/new_messages.py: a new message and what goes with it, written one at a time (``add``,
both databases) or many in one statement (``NEW_MESSAGES.many``, PostgreSQL) - the same rows
either way - and events of a batch held back from readers like any other (store/events.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from store import events as event_log
from store.db import Database
from store.new_messages import NEW_MESSAGES, Added, NewMessage, add
from tests.store.test_event_visibility import Writer, seen, seen_at_last
from tests.world import World

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


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
            text(
                "SELECT id, sender_id, content, created_at, reply_to_id, source, client_id,"
                " edited_at, deleted_at, pachca_message_id FROM messages WHERE chat_id = :c"
                " ORDER BY id"
            ),
            {"c": chat_id},
        )
        chat = await tx.first(
            text("SELECT last_message_id, last_activity_at FROM chats WHERE id = :c"),
            {"c": chat_id},
        )
        waiting = await tx.rows(
            text(
                "SELECT since, first_message_id, reminders_sent, last_reminded_at"
                " FROM waiting_chats WHERE chat_id = :c"
            ),
            {"c": chat_id},
        )
        jobs = await tx.rows(
            text(
                "SELECT lane, kind, payload, status, attempts, next_attempt_at, created_at,"
                " message_id FROM outbox WHERE chat_id = :c AND kind = 'post_message' ORDER BY id"
            ),
            {"c": chat_id},
        )
        events = await tx.rows(
            text(
                "SELECT type, payload, created_at FROM events"
                " WHERE chat_id = :c AND type = 'message.created' ORDER BY id"
            ),
            {"c": chat_id},
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


@pytest.mark.usefixtures("postgres_only")
async def test_many_in_one_statement_writes_what_add_writes_one_at_a_time(
    world: World, database: Database
) -> None:
    # Four chats: the first two written one message at a time, the last two in batches. In
    # each, a student asks twice (a wait starts, then goes on) and the teacher answers; in the
    # second of each pair a reminder went out before the answer (the wait's row stays).
    (a, sa, ta), (b, sb, tb), (c, sc, tc), (d, sd, td) = await chats(world, 4)
    rounds = [
        [(sa, sb, sc, sd), "question", T0],
        [(sa, sb, sc, sd), "again", T0 + timedelta(seconds=5)],
        [(ta, tb, tc, td), "answer", T0 + timedelta(seconds=60)],
    ]
    answered: list[Added] = []
    for senders, content, at in rounds:
        teacher = content == "answer"
        if teacher:
            await remind(database, b, at)
            await remind(database, d, at)
        units = [
            new(chat_id, sender, content, at, starts_wait=not teacher, ends_wait=teacher)
            for chat_id, sender in zip((a, b, c, d), senders, strict=True)
        ]
        alone = []
        for unit in units[:2]:
            async with database.write() as tx:
                alone.append(await add(tx, unit))
        async with database.write() as tx:
            together = await NEW_MESSAGES.many(tx, units[2:])
        if teacher:
            answered = [*alone, *together]

    assert [x.waited_since for x in answered] == [T0] * 4
    assert await rows_of(database, c) == await rows_of(database, a)
    assert await rows_of(database, d) == await rows_of(database, b)
    assert (await rows_of(database, d))["waiting"] != []  # reminded: the row stays, not waiting


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
