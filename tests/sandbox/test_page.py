"""The sandbox page's server side: what a person sees (the threads they are in, messages as
the bridge posted them), and each action becoming the sandbox's state and a webhook."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from sandbox import page
from sandbox.pachca import PachcaSandbox
from tests.sandbox.conftest import BOT, CHANNEL, TEACHER, TUTOR, open_thread, relay

WRITE = {"X-Sandbox-Page": "1"}


async def state(anon: httpx.AsyncClient, user: int | None, **params: Any) -> dict[str, Any]:
    query = {"as": user, **params} if user is not None else params
    resp = await anon.get("/sandbox/api/state", params=query)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_the_page_is_served_with_a_strict_policy(anon: httpx.AsyncClient) -> None:
    resp = await anon.get("/")
    app_js = await anon.get("/sandbox/assets/app.js")
    missing = await anon.get("/sandbox/assets/nothing.js")

    assert resp.status_code == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert b'src="/sandbox/assets/app.js"' in resp.content
    assert (app_js.status_code, app_js.headers["Content-Type"]) == (
        200,
        "text/javascript; charset=utf-8",
    )
    assert missing.status_code == 404


async def test_a_person_sees_the_threads_they_are_in(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    mine = await open_thread(raw, TEACHER)
    await open_thread(raw, TUTOR)
    await relay(raw, mine, "Where do I start?", "Sam Student")

    nobody = await state(anon, None)
    teacher = await state(anon, TEACHER)

    assert nobody["me"] is None
    assert nobody["threads"] == []
    assert nobody["people"] == [
        {"id": TEACHER, "name": "Tess Teacher"},
        {"id": TUTOR, "name": "Tom Tutor"},
    ]
    [thread] = teacher["threads"]
    assert (thread["id"], thread["channel"]) == (mine["id"], "Forum")
    assert thread["root"]["content"] == "Math · Sam"
    [message] = thread["messages"]
    assert (message["author"], message["by_bot"], message["mine"]) == ("Sam Student", True, False)
    assert message["content"] == "Where do I start?"

    sandbox.add_members(CHANNEL, [TUTOR])  # a member of the channel sees all its threads
    assert len((await state(anon, TUTOR))["threads"]) == 2


async def test_replying_editing_reacting_and_deleting(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    question = await relay(raw, thread, "Where do I start?", "Sam Student")
    base = "/sandbox/api"

    posted = await anon.post(
        f"{base}/threads/{thread['id']}/messages",
        json={"as": TEACHER, "content": "With the definition."},
        headers=WRITE,
    )
    reply = posted.json()["id"]
    edited = await anon.patch(
        f"{base}/messages/{reply}", json={"as": TEACHER, "content": "With 2.1."}, headers=WRITE
    )
    reacted = await anon.post(
        f"{base}/messages/{question}/reactions", json={"as": TEACHER, "code": "👍"}, headers=WRITE
    )
    view = (await state(anon, TEACHER))["threads"][0]

    assert [r.status_code for r in (posted, edited, reacted)] == [201, 200, 204]
    assert [(m["content"], m["mine"], m["edited"]) for m in view["messages"]] == [
        ("Where do I start?", False, False),
        ("With 2.1.", True, True),
    ]
    assert view["messages"][0]["reactions"] == [{"code": "👍", "count": 1, "mine": True}]
    assert sandbox.messages[reply]["user_id"] == TEACHER
    assert "display_name" not in sandbox.messages[reply]  # a person's message, as in Pachca

    unreacted = await anon.delete(
        f"{base}/messages/{question}/reactions",
        params={"as": TEACHER, "code": "👍"},
        headers=WRITE,
    )
    deleted = await anon.delete(f"{base}/messages/{reply}", params={"as": TEACHER}, headers=WRITE)
    gone = await anon.delete(f"{base}/messages/{reply}", params={"as": TEACHER}, headers=WRITE)

    assert [r.status_code for r in (unreacted, deleted, gone)] == [204, 204, 404]
    assert (await state(anon, TEACHER))["threads"][0]["messages"][0]["reactions"] == []
    person_events = [
        (p["type"], p["event"]) for p in sandbox.emitted if p.get("user_id") == TEACHER
    ]
    assert person_events == [
        ("message", "new"),
        ("message", "update"),
        ("reaction", "new"),
        ("reaction", "delete"),
        ("message", "delete"),
    ]


async def test_sending_a_file(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)

    resp = await anon.post(
        f"/sandbox/api/threads/{thread['id']}/files",
        data={"as": str(TEACHER), "content": ""},
        files={"file": ("corrected.png", b"\x89PNG-bytes", "image/png")},
        headers=WRITE,
    )

    assert resp.status_code == 201, resp.text
    message = sandbox.messages[resp.json()["id"]]
    [file] = message["files"]
    assert (message["content"], file["name"], file["file_type"]) == ("", "corrected.png", "image")
    assert sandbox.file_bytes(file) == b"\x89PNG-bytes"
    view = (await state(anon, TEACHER))["threads"][0]["messages"][0]
    assert view["files"][0]["image"] is True
    assert (await anon.get(view["files"][0]["url"])).content == b"\x89PNG-bytes"
    assert sandbox.emitted[-1]["content"] == ""  # the webhook of a file-only message


async def test_what_a_person_may_not_do(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    question = await relay(raw, thread, "Where do I start?", "Sam Student")
    base = "/sandbox/api"
    before = len(sandbox.emitted)

    no_header = await anon.post(
        f"{base}/threads/{thread['id']}/messages", json={"as": TEACHER, "content": "x"}
    )
    not_in_thread = await anon.post(
        f"{base}/threads/{thread['id']}/messages",
        json={"as": TUTOR, "content": "x"},
        headers=WRITE,
    )
    as_the_bot = await anon.post(
        f"{base}/threads/{thread['id']}/messages", json={"as": BOT, "content": "x"}, headers=WRITE
    )
    others_message = await anon.patch(
        f"{base}/messages/{question}", json={"as": TEACHER, "content": "x"}, headers=WRITE
    )
    empty = await anon.post(
        f"{base}/threads/{thread['id']}/messages",
        json={"as": TEACHER, "content": "  "},
        headers=WRITE,
    )

    assert [r.status_code for r in (no_header, not_in_thread, as_the_bot, others_message)] == [
        403,
        404,
        403,
        403,
    ]
    assert empty.status_code == 400
    assert all("error" in r.json() for r in (no_header, not_in_thread, others_message, empty))
    assert len(sandbox.emitted) == before
    assert sandbox.messages[question]["content"] == "Where do I start?"


async def test_the_state_waits_for_a_change(
    sandbox: PachcaSandbox,
    raw: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thread = await open_thread(raw, TEACHER)
    version = (await state(anon, TEACHER))["version"]

    async with asyncio.timeout(10):
        waiting = asyncio.create_task(state(anon, TEACHER, after=version))
        await asyncio.sleep(0)
        sandbox.post_as_user(TEACHER, entity_type="thread", entity_id=thread["id"], content="hi")
        changed = await waiting

    assert changed["version"] > version
    assert changed["threads"][0]["messages"][0]["content"] == "hi"

    monkeypatch.setattr(page, "LONG_POLL_S", 0.05)
    async with asyncio.timeout(10):
        unchanged = await state(anon, TEACHER, after=changed["version"])
    assert unchanged["version"] == changed["version"]
