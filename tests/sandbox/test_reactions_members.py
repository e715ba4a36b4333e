"""Reactions and chat members in the sandbox, against Pachca's spec: the bot's own reactions
through the API, people's through the app, per user; members added and removed per chat."""

from __future__ import annotations

import httpx

from sandbox.pachca import PachcaSandbox
from sandbox.spec import schema_errors
from tests.sandbox.conftest import BOT, CHANNEL, TEACHER, TUTOR, open_thread, relay


async def test_the_bot_reacts_and_takes_it_back(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    message_id = await relay(raw, thread, "Question", "Sam")

    first = await raw.post(f"/messages/{message_id}/reactions", json={"code": "👍"})
    again = await raw.post(f"/messages/{message_id}/reactions", json={"code": "👍"})

    assert (first.status_code, again.status_code) == (201, 201)
    assert schema_errors("Reaction", first.json()) == []
    assert first.json() == again.json()  # "already set: not set again"
    assert [(r["user_id"], r["code"]) for r in sandbox.reactions_of(message_id)] == [(BOT, "👍")]

    removed = await raw.delete(f"/messages/{message_id}/reactions", params={"code": "👍"})
    twice = await raw.delete(f"/messages/{message_id}/reactions", params={"code": "👍"})

    assert (removed.status_code, twice.status_code) == (204, 404)
    assert sandbox.reactions_of(message_id) == []
    kinds = [(p["event"], p["user_id"]) for p in sandbox.emitted if p["type"] == "reaction"]
    assert kinds == [("new", BOT), ("delete", BOT)]
    assert sandbox.violations == []


async def test_the_bot_removes_only_its_own(sandbox: PachcaSandbox, raw: httpx.AsyncClient) -> None:
    thread = await open_thread(raw, TEACHER)
    message_id = await relay(raw, thread, "Question", "Sam")
    sandbox.react_as_user(TEACHER, message_id, "👍")

    not_held = await raw.delete(f"/messages/{message_id}/reactions", params={"code": "👍"})
    await raw.post(f"/messages/{message_id}/reactions", json={"code": "👍"})
    await raw.delete(f"/messages/{message_id}/reactions", params={"code": "👍"})

    assert not_held.status_code == 404
    assert [r["user_id"] for r in sandbox.reactions_of(message_id)] == [TEACHER]


async def test_reaction_requests_are_checked(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    message_id = await relay(raw, thread, "Question", "Sam")

    no_code = await raw.delete(f"/messages/{message_id}/reactions")
    typo = await raw.post(f"/messages/{message_id}/reactions", json={"emoji": "👍"})
    not_emoji = await raw.post(f"/messages/{message_id}/reactions", json={"code": "like"})
    unknown = await raw.post("/messages/999/reactions", json={"code": "👍"})

    assert [r.status_code for r in (no_code, typo, not_emoji, unknown)] == [400, 400, 422, 404]
    assert ["required" in " ".join(v.errors) for v in sandbox.violations] == [True, True]
    assert sandbox.reactions_of(message_id) == []


async def test_at_most_20_different_reactions_per_user(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    message_id = await relay(raw, thread, "Question", "Sam")
    emoji = [chr(0x1F600 + i) for i in range(21)]

    answers = [
        (await raw.post(f"/messages/{message_id}/reactions", json={"code": e})).status_code
        for e in emoji
    ]

    assert answers == [201] * 20 + [422]
    sandbox.react_as_user(TEACHER, message_id, emoji[20])  # another user's own allowance
    assert len(sandbox.reactions_of(message_id)) == 21


async def test_members_are_added_and_removed_per_chat(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    other = await open_thread(raw)

    again = await raw.post(f"/chats/{thread['chat_id']}/members", json={"member_ids": [TEACHER]})
    added = await raw.post(f"/chats/{other['chat_id']}/members", json={"member_ids": [TUTOR]})
    removed = await raw.delete(f"/chats/{thread['chat_id']}/members/{TEACHER}")
    not_member = await raw.delete(f"/chats/{thread['chat_id']}/members/{TEACHER}")
    owner = await raw.delete(f"/chats/{thread['chat_id']}/members/{BOT}")

    assert [r.status_code for r in (again, added, removed, not_member, owner)] == [
        204, 204, 204, 404, 422,
    ]  # fmt: skip
    assert sandbox.members(thread["chat_id"]) == set()
    assert sandbox.members(other["chat_id"]) == {TUTOR}
    events = [p for p in sandbox.emitted if p["type"] == "chat_member"]
    assert [(p["event"], p["chat_id"], p["thread_id"], p["user_ids"]) for p in events] == [
        ("add", thread["chat_id"], thread["id"], [TEACHER]),  # not again when re-added
        ("add", other["chat_id"], other["id"], [TUTOR]),
        ("remove", thread["chat_id"], thread["id"], [TEACHER]),
    ]
    assert sandbox.violations == []


async def test_members_of_a_plain_chat_have_no_thread_id(sandbox: PachcaSandbox) -> None:
    sandbox.add_members(CHANNEL, [TEACHER])

    [event] = [p for p in sandbox.emitted if p["type"] == "chat_member"]
    assert (event["chat_id"], event["thread_id"]) == (CHANNEL, None)


async def test_at_most_30_different_reactions_per_message(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    message_id = await relay(raw, thread, "Question", "Sam")
    for i in range(30):  # 15 each, under the per-user limit
        sandbox.react_as_user(TEACHER if i % 2 else TUTOR, message_id, chr(0x1F600 + i))

    held = await raw.post(f"/messages/{message_id}/reactions", json={"code": chr(0x1F600)})
    new = await raw.post(f"/messages/{message_id}/reactions", json={"code": "👍"})

    assert held.status_code == 201  # an emoji already on the message is no new one
    assert (new.status_code, new.json()["errors"][0]["code"]) == (422, "unique_limit")
