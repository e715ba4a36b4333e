"""Reactions both ways, end to end (docs/pachca.md): web users' reactions held by the bot on
the Pachca copy, one per emoji whoever many hold it; people's reactions in Pachca become their
reactions in the forum. The real app, its outbox worker and the fake Pachca sending its
signed webhooks back."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from store.db import Database
from store.models import BotReaction, Message
from tests.e2e.mirror_kit import BOT, AppFactory, jobs, settled, thread_of
from tests.eventually import eventually
from tests.fakes.pachca import FakePachca
from tests.fakes.webhook_kit import events
from tests.world import World

TEACHER, TUTOR = 42, 43
THUMBS, HEART = "👍", "❤️"


async def pachca_id(db: Database, message_id: int) -> int | None:
    async with db.read() as conn:
        found: int | None = await conn.value(
            select(Message.pachca_message_id).where(Message.id == message_id)
        )
    return found


async def bot_holds(db: Database, message_id: int) -> set[str]:
    table = BotReaction.__table__
    async with db.read() as conn:
        rows = await conn.rows(select(table.c.emoji).where(table.c.message_id == message_id))
    return {r["emoji"] for r in rows}


def on_pachca(fake: FakePachca, message_id: int) -> list[tuple[int, str]]:
    return [(r["user_id"], r["code"]) for r in fake.reactions_of(message_id)]


def reaction_calls(fake: FakePachca) -> list[tuple[str, str]]:
    """The bot's reaction calls, in order: ("add"|"remove", emoji)."""
    out = []
    for r in fake.requests_to(path="/messages/*/reactions"):
        out.append(("add", r.json["code"]) if r.method == "POST" else ("remove", r.query["code"]))
    return out


async def react(world: World, user: str, message_id: int, emoji: str, *, on: bool = True) -> None:
    url = f"/api/v1/messages/{message_id}/reactions/{quote(emoji, safe='')}"
    send = world.client.put if on else world.client.delete
    resp = await send(url, headers=world.auth(user))
    assert resp.status == 204, await resp.text()


async def reactions_of(world: World, user: str, chat_id: int, message_id: int) -> Any:
    resp = await world.client.get(
        f"/api/v1/chats/{chat_id}/messages?limit=200", headers=world.auth(user)
    )
    return next(m for m in (await resp.json())["messages"] if m["id"] == message_id)["reactions"]


async def scene(world: World) -> tuple[str, str, int]:
    teacher = await world.user("teacher", name="Tess", pachca_user_id=TEACHER)
    student = await world.user("student", name="Sam")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    return student, teacher, chat


async def posted(world: World, db: Database, user: str, chat: int, text: str) -> tuple[int, int]:
    """A web message and the id of its Pachca copy, once posted."""
    message = await world.post(user, chat, text)
    copy = await eventually(lambda: pachca_id(db, message["id"]), what="the Pachca copy")
    return message["id"], copy


# --- web -> Pachca ------------------------------------------------------------------------------


async def test_the_bot_holds_an_emoji_while_a_web_user_does(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, chat = await scene(world)
    message, copy = await posted(world, database, student, chat, "Task 3")

    await react(world, student, message, THUMBS)
    await eventually(lambda: on_pachca(fake_pachca, copy) == [(BOT, THUMBS)], what="bot's 👍")
    await react(world, student, message, THUMBS, on=False)
    await eventually(lambda: on_pachca(fake_pachca, copy) == [], what="bot's 👍 taken back")

    await settled(database, fake_pachca)
    assert reaction_calls(fake_pachca) == [("add", THUMBS), ("remove", THUMBS)]
    assert await bot_holds(database, message) == set()
    # The bot's own reactions came back as webhooks and changed nothing in the forum.
    assert await reactions_of(world, student, chat, message) == []
    assert fake_pachca.violations == []


async def test_one_bot_reaction_however_many_web_users_hold_the_emoji(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, teacher, chat = await scene(world)
    message, copy = await posted(world, database, student, chat, "Task 3")

    # The teacher uses the web client too: two web users hold 👍.
    await react(world, student, message, THUMBS)
    await react(world, teacher, message, THUMBS)
    await settled(database, fake_pachca)
    await react(world, student, message, THUMBS, on=False)
    await settled(database, fake_pachca)
    assert on_pachca(fake_pachca, copy) == [(BOT, THUMBS)]  # the teacher still holds it

    await react(world, teacher, message, THUMBS, on=False)
    await settled(database, fake_pachca)

    assert on_pachca(fake_pachca, copy) == []
    assert reaction_calls(fake_pachca) == [("add", THUMBS), ("remove", THUMBS)]
    assert fake_pachca.violations == []


async def test_a_burst_of_reactions_makes_one_or_two_calls(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    """Coalesced like edits: the job in flight, and one more that takes in everything that
    changed meanwhile."""
    _, world = await start()
    student, teacher, chat = await scene(world)
    message, copy = await posted(world, database, student, chat, "Task 3")
    gate = fake_pachca.hold_next(1, method="POST", path="/messages/*/reactions")

    await react(world, student, message, HEART)
    await eventually(lambda: fake_pachca.requests_to("POST", "/messages/*/reactions"))
    for n in range(25):  # 50 changes while the first call hangs
        for user in (student, teacher):
            await react(world, user, message, THUMBS, on=n % 2 == 0)
    gate.set()

    await settled(database, fake_pachca)
    assert reaction_calls(fake_pachca) == [("add", HEART), ("add", THUMBS)]
    assert sorted(on_pachca(fake_pachca, copy)) == [(BOT, HEART), (BOT, THUMBS)]
    assert len([j for j in await jobs(database) if j["kind"] == "sync_reactions"]) == 2
    assert await bot_holds(database, message) == {HEART, THUMBS}
    assert fake_pachca.violations == []


async def test_reactions_made_while_pachca_is_off_arrive_after_a_restart(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, chat = await scene(world)
    message, copy = await posted(world, database, student, chat, "Task 3")
    await settled(database, fake_pachca)
    await client.close()

    _, world = await start(enabled=False)
    await react(world, student, message, THUMBS)
    await react(world, student, message, HEART)
    await react(world, student, message, THUMBS, on=False)
    await react(world, student, message, THUMBS)
    _, world = await start()

    await settled(database, fake_pachca)
    assert sorted(on_pachca(fake_pachca, copy)) == [(BOT, HEART), (BOT, THUMBS)]
    assert sorted(reaction_calls(fake_pachca)) == [("add", HEART), ("add", THUMBS)]
    assert fake_pachca.violations == []


async def test_a_reaction_on_a_message_from_pachca_is_held_on_the_original(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    fake_pachca.add_user(TEACHER, "Tess")
    original = fake_pachca.post_as_user(
        TEACHER, entity_type="thread", entity_id=thread.thread_id, content="Well done"
    )

    async def relayed() -> Any:
        resp = await world.client.get(f"/api/v1/chats/{chat}/messages", headers=world.auth(student))
        return (await resp.json())["messages"]

    [reply] = await eventually(relayed, what="the teacher's reply relayed")
    await react(world, student, reply["id"], HEART)

    await eventually(lambda: on_pachca(fake_pachca, original["id"]) == [(BOT, HEART)])
    assert fake_pachca.violations == []


# --- Pachca -> web ------------------------------------------------------------------------------


async def test_a_teachers_reaction_in_pachca_becomes_theirs_in_the_forum(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, teacher, chat = await scene(world)
    message, copy = await posted(world, database, student, chat, "Task 3")
    await settled(database, fake_pachca)
    since = (await events(client, world))[-1]["event_id"]
    fake_pachca.add_user(TEACHER, "Tess")

    # On the bot's copy of the student's web message: it maps to that web message.
    fake_pachca.react_as_user(TEACHER, copy, THUMBS)
    await eventually(lambda: reactions_of(world, student, chat, message))
    assert await reactions_of(world, student, chat, message) == [
        {"emoji": THUMBS, "user_ids": [teacher]}
    ]
    fake_pachca.unreact_as_user(TEACHER, copy, THUMBS)
    await settled(database, fake_pachca)

    assert await reactions_of(world, student, chat, message) == []
    kinds = [(e["type"], e["user_id"], e["emoji"]) for e in await events(client, world, since)]
    assert kinds == [("reaction.added", teacher, THUMBS), ("reaction.removed", teacher, THUMBS)]
    # A person's own reaction in Pachca is theirs there: the bot does not echo it.
    assert reaction_calls(fake_pachca) == []
    assert on_pachca(fake_pachca, copy) == []
    assert fake_pachca.violations == []


async def test_reactions_in_pachca_by_people_who_may_not_post_there_are_dropped(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start(staff_user_ids=[555])
    student, _, chat = await scene(world)
    await world.user("tutor", pachca_user_id=TUTOR)  # linked, but no partner of this chat
    message, copy = await posted(world, database, student, chat, "Task 3")
    await settled(database, fake_pachca)
    since = (await events(client, world))[-1]["event_id"]

    for someone in (TUTOR, 555, 999):  # a tutor in a subject thread, staff, a stranger
        fake_pachca.react_as_user(someone, copy, THUMBS)
    await settled(database, fake_pachca)

    assert await reactions_of(world, student, chat, message) == []
    assert await events(client, world, since) == []
    assert fake_pachca.violations == []
