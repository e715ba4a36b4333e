"""Bot commands over webhooks: /help, /link CODE, /threads (docs/pachca.md).

Answers are queued as SEND_TEXT outbox jobs (the outbox worker sends them), addressed back where
the command came from.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bridge.config import Config
from handlers.app import create_app
from store.db import Database
from store.models import LinkCode, LinkFailure
from tests.fakes.webhook_kit import (
    BOT_USER_ID,
    TEACHER_PACHCA_ID,
    Forum,
    build_forum,
    chat_messages,
    count,
    counts,
    deliver_ok,
    map_thread,
    next_message_id,
    outbox_jobs,
    pachca_section,
    pachca_user_id,
)
from tests.fakes.webhooks import message_event
from tests.world import World

NEWCOMER_PACHCA_ID = 4001


pytestmark = pytest.mark.config_sections(pachca=pachca_section())


def direct(content: str, user_id: int = NEWCOMER_PACHCA_ID) -> dict[str, Any]:
    """A message to the bot in a direct chat."""
    return message_event(
        id=next_message_id(),
        entity_type="user",
        entity_id=BOT_USER_ID,
        chat_id=700_000 + user_id,
        user_id=user_id,
        content=content,
    )


async def answers(database: Database) -> list[dict[str, Any]]:
    return [job["payload"] for job in await outbox_jobs(database, "send_text")]


async def link_code(client: TestClient, world: World, user_id: str) -> str:
    resp = await client.post(f"/api/v1/users/{user_id}/link-code", headers=world.service)
    assert resp.status == 201
    return (await resp.json())["code"]


async def test_help_in_a_direct_chat_is_answered_there(
    client: TestClient, database: Database
) -> None:
    await deliver_ok(client, direct("/help"))
    [answer] = await answers(database)
    assert answer["entity_type"] == "user"
    assert answer["entity_id"] == NEWCOMER_PACHCA_ID
    for command in ("/link", "/threads", "/help"):
        assert command in answer["content"]


async def test_unknown_command_is_answered_with_help(
    client: TestClient, database: Database
) -> None:
    await deliver_ok(client, direct("/start"))
    [answer] = await answers(database)
    assert "/start" in answer["content"]
    assert "/link" in answer["content"]


async def test_link_with_a_good_code_ties_the_account_and_adds_the_teacher_to_threads(
    client: TestClient, world: World, database: Database
) -> None:
    teacher = await world.user("teacher", name="Nina Newcomer")
    student = await world.user("student")
    enrolled = await world.enroll(student, teacher)
    # Another platform user held this Pachca account before: it moves to its new owner.
    previous = await world.user("teacher", pachca_user_id=NEWCOMER_PACHCA_ID)
    before = len(await outbox_jobs(database, "add_member"))

    code = await link_code(client, world, teacher)
    await deliver_ok(client, direct(f"/link {code.lower()}"))

    assert await pachca_user_id(database, teacher) == NEWCOMER_PACHCA_ID
    assert await pachca_user_id(database, previous) is None
    [answer] = await answers(database)
    assert answer == {
        "entity_type": "user",
        "entity_id": NEWCOMER_PACHCA_ID,
        "content": "Done: your Pachca account is now linked to Nina Newcomer.",
    }
    added = (await outbox_jobs(database, "add_member"))[before:]
    assert [job["payload"] for job in added] == [
        {"chat_id": enrolled.subject_chat["id"], "user_id": teacher}
    ]


async def test_link_redelivered_is_answered_once(
    client: TestClient, world: World, database: Database
) -> None:
    teacher = await world.user("teacher")
    body = direct(f"/link {await link_code(client, world, teacher)}")
    for _ in range(3):
        await deliver_ok(client, {**body})
    [answer] = await answers(database)
    assert answer["content"].startswith("Done")


async def test_link_with_a_reused_code_is_refused(
    client: TestClient, world: World, database: Database
) -> None:
    teacher = await world.user("teacher")
    code = await link_code(client, world, teacher)
    await deliver_ok(client, direct(f"/link {code}"))
    await deliver_ok(client, direct(f"/link {code}", user_id=NEWCOMER_PACHCA_ID + 1))
    assert await pachca_user_id(database, teacher) == NEWCOMER_PACHCA_ID
    first, second = await answers(database)
    assert first["content"].startswith("Done")
    assert "already been used" in second["content"]
    assert second["entity_id"] == NEWCOMER_PACHCA_ID + 1


async def test_link_with_an_expired_code_is_refused(
    client: TestClient, world: World, database: Database
) -> None:
    teacher = await world.user("teacher")
    code = await link_code(client, world, teacher)
    async with database.write() as conn:
        await conn.run(
            update(LinkCode.__table__)
            .where(LinkCode.__table__.c.code == code)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await deliver_ok(client, direct(f"/link {code}"))
    assert await pachca_user_id(database, teacher) is None
    [answer] = await answers(database)
    assert "expired" in answer["content"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [("/link NOSUCHCODE", "not valid"), ("/link", "Usage: /link CODE")],
)
async def test_link_with_an_unknown_or_missing_code_is_explained(
    client: TestClient, database: Database, content: str, expected: str
) -> None:
    await deliver_ok(client, direct(content))
    [answer] = await answers(database)
    assert expected in answer["content"]


async def test_threads_lists_the_senders_open_threads_with_links(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    other_student = await world.user("student", name="Second Student")
    second = await world.enroll(other_student, forum.teacher, subject=("sci", "Science"))
    _, second_thread_chat = await map_thread(database, second.subject_chat["id"])
    unmapped_student = await world.user("student")
    await world.enroll(unmapped_student, forum.teacher)  # no Pachca thread yet: not listed

    await deliver_ok(client, direct("/threads", user_id=TEACHER_PACHCA_ID))
    [answer] = await answers(database)
    text = answer["content"]
    assert f"https://app.pachca.com/chats/{forum.thread_chat_id}" in text
    assert f"https://app.pachca.com/chats/{second_thread_chat}" in text
    assert "Science · Second Student" in text
    assert text.count("https://app.pachca.com/chats/") == 2
    # The tutor thread is the tutor's, not the teacher's.
    assert str(forum.tutor_thread_chat_id) not in text


async def test_threads_from_an_unlinked_user_asks_to_link(
    client: TestClient, database: Database
) -> None:
    await deliver_ok(client, direct("/threads"))
    [answer] = await answers(database)
    assert "/link CODE" in answer["content"]


async def test_command_in_a_forum_thread_is_answered_there_and_not_relayed(
    client: TestClient, world: World, database: Database
) -> None:
    forum: Forum = await build_forum(world, database)
    await deliver_ok(client, forum.teacher_says("/threads"))
    [answer] = await answers(database)
    assert answer["entity_type"] == "thread"
    assert answer["entity_id"] == forum.thread_id
    assert f"https://app.pachca.com/chats/{forum.thread_chat_id}" in answer["content"]
    [job] = await outbox_jobs(database, "send_text")
    assert job["chat_id"] == forum.subject_chat
    assert await chat_messages(world, forum.student, forum.subject_chat) == []


async def test_the_bots_own_answer_coming_back_is_not_a_command(
    client: TestClient, database: Database
) -> None:
    # Even with the bot's id unknown, an echoed answer cannot trigger another answer.
    from handlers.keys import SERVICES

    live = client.app[SERVICES].rt.live
    live.current = live.current.model_copy(
        update={"pachca": live.current.pachca.model_copy(update={"bot_user_id": None})}
    )
    await deliver_ok(client, direct("/help"))
    [answer] = await answers(database)
    before = await counts(database)
    await deliver_ok(client, direct(answer["content"], user_id=BOT_USER_ID))
    assert (await counts(database))["outbox"] == before["outbox"]


# --- link codes: format, revocation, and the lockout after wrong codes ----------------------


async def test_a_link_code_is_long_and_typed_in_any_case_with_or_without_dashes(
    client: TestClient, world: World, database: Database
) -> None:
    teacher = await world.user("teacher")
    code = await link_code(client, world, teacher)
    # 12 characters of a 32-letter alphabet (60 bits), grouped by four.
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){2}", code), code
    await deliver_ok(client, direct(f"/link {code.replace('-', '').lower()}"))
    assert await pachca_user_id(database, teacher) == NEWCOMER_PACHCA_ID


async def test_a_new_code_revokes_the_old_one(
    client: TestClient, world: World, database: Database
) -> None:
    teacher = await world.user("teacher")
    old = await link_code(client, world, teacher)
    new = await link_code(client, world, teacher)
    assert new != old

    await deliver_ok(client, direct(f"/link {old}"))
    assert await pachca_user_id(database, teacher) is None
    await deliver_ok(client, direct(f"/link {new}"))
    assert await pachca_user_id(database, teacher) == NEWCOMER_PACHCA_ID
    refused, linked = await answers(database)
    assert "not valid" in refused["content"]
    assert linked["content"].startswith("Done")


async def move_link_failures_back(database: Database, by: timedelta) -> None:
    """Age every recorded wrong /link code, as if ``by`` had passed."""
    table = LinkFailure.__table__
    async with database.write() as conn:
        for row in await conn.rows(select(table.c.id, table.c.failed_at)):
            await conn.run(
                update(table).where(table.c.id == row["id"]).values(failed_at=row["failed_at"] - by)
            )


async def test_five_wrong_codes_block_link_for_15_minutes_even_with_the_right_code(
    client: TestClient,
    world: World,
    database: Database,
    config: Config,
    aiohttp_client: Any,
) -> None:
    teacher = await world.user("teacher")
    code = await link_code(client, world, teacher)
    for n in range(5):
        await deliver_ok(client, direct(f"/link WRONG{n:03d}CODE"))
    said = [a["content"] for a in await answers(database)]
    assert len(said) == 5
    assert all("not valid" in text for text in said)
    assert not any("blocked" in text for text in said[:4])
    # The fifth answer says so once...
    assert "/link is blocked for 15 minutes" in said[4]

    # ...then /link is ignored, silently, the right code included: nothing linked, no answer.
    await deliver_ok(client, direct(f"/link {code}"))
    assert await pachca_user_id(database, teacher) is None
    assert len(await answers(database)) == 5
    # Other commands are still answered, and other Pachca users are not blocked.
    await deliver_ok(client, direct("/help"))
    assert len(await answers(database)) == 6
    other = await world.user("teacher")
    await deliver_ok(client, direct(f"/link {await link_code(client, world, other)}", 4002))
    assert await pachca_user_id(database, other) == 4002

    # The block is kept in the database: another instance (or a restart) keeps it.
    second = await aiohttp_client(create_app(config, db=database))
    await deliver_ok(second, direct(f"/link {code}"))
    assert await pachca_user_id(database, teacher) is None

    # Almost 15 minutes later, still blocked; once they have passed, the code works.
    await move_link_failures_back(database, timedelta(minutes=14, seconds=50))
    await deliver_ok(second, direct(f"/link {code}"))
    assert await pachca_user_id(database, teacher) is None
    await move_link_failures_back(database, timedelta(seconds=11))
    await deliver_ok(second, direct(f"/link {code}"))
    assert await pachca_user_id(database, teacher) == NEWCOMER_PACHCA_ID
    assert (await answers(database))[-1]["content"].startswith("Done")


async def test_wrong_codes_spread_over_more_than_15_minutes_block_nothing(
    client: TestClient, world: World, database: Database
) -> None:
    teacher = await world.user("teacher")
    for n in range(4):
        await deliver_ok(client, direct(f"/link WRONG{n:03d}CODE"))
    await move_link_failures_back(database, timedelta(minutes=15))
    await deliver_ok(client, direct("/link WRONG999CODE"))  # the fifth, but 15 minutes on
    await deliver_ok(client, direct(f"/link {await link_code(client, world, teacher)}"))
    assert await pachca_user_id(database, teacher) == NEWCOMER_PACHCA_ID
    assert not any("blocked" in a["content"] for a in await answers(database))


async def test_wrong_codes_sent_at_once_are_counted_one_after_another(
    client: TestClient, database: Database
) -> None:
    """Concurrent /link attempts of one Pachca user (instances share the database) cannot
    slip past the limit: exactly five are tried and answered, the rest are ignored."""
    await asyncio.gather(
        *(deliver_ok(client, direct(f"/link WRONG{n:03d}CODE")) for n in range(12))
    )
    assert len(await answers(database)) == 5
    assert await count(database, LinkFailure) == 5
