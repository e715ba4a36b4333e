"""Fixtures of the sandbox's tests: the sandbox on loopback, plain HTTP to it, and a webhook
receiver standing in for the bridge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from sandbox.pachca import PachcaSandbox
from tests.web.conftest import browser  # noqa: F401 - Chromium, as the web client's tests use it

TOKEN = "sandbox-test-token"
SECRET = "sandbox-test-signing-secret"
BOT = 1
TEACHER = 2001
TUTOR = 2002
CHANNEL = 100


@pytest.fixture
async def sandbox(
    aiohttp_server: Callable[[web.Application], Awaitable[Any]],
) -> AsyncIterator[PachcaSandbox]:
    box = PachcaSandbox(token=TOKEN, bot_user_id=BOT, signing_secret=SECRET)
    box.add_user(TEACHER, "Tess Teacher")
    box.add_user(TUTOR, "Tom Tutor")
    box.name_chat(CHANNEL, "Forum")
    box.sender.first_pause_s = 0.01  # retries in milliseconds; nothing is timed
    await box.serve(aiohttp_server)
    yield box
    assert not box.answer_errors, box.answer_errors


@pytest.fixture
async def raw(sandbox: PachcaSandbox) -> AsyncIterator[httpx.AsyncClient]:
    """The bot's HTTP, with its token; any request the tests need."""
    assert sandbox.base_url is not None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=sandbox.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
async def anon(sandbox: PachcaSandbox) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP to the sandbox's origin with no credentials (the bucket, the page)."""
    assert sandbox.origin is not None
    async with httpx.AsyncClient(base_url=sandbox.origin, timeout=10) as client:
        yield client


@dataclass
class Received:
    raw: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A webhook endpoint: records every delivery; answers the statuses it is told to, in
    order, then 200."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)  # before answering, in order


@pytest.fixture
async def receiver(
    aiohttp_server: Callable[[web.Application], Awaitable[Any]], sandbox: PachcaSandbox
) -> Receiver:
    box = Receiver()

    async def hook(request: web.Request) -> web.Response:
        box.received.append(Received(await request.read(), dict(request.headers)))
        if box.delays:
            await asyncio.sleep(box.delays.pop(0))
        status = box.statuses.pop(0) if box.statuses else 200
        return web.json_response({"ok": status == 200}, status=status)

    app = web.Application()
    app.router.add_post("/webhooks/pachca", hook)
    server = await aiohttp_server(app)
    box.url = str(server.make_url("/webhooks/pachca"))
    sandbox.webhook_url = box.url
    return box


async def open_thread(raw: httpx.AsyncClient, *members: int) -> dict[str, Any]:
    """What the bridge does for a forum chat: a root message in the channel, a thread on it,
    the members added. Returns the thread."""
    root = await raw.post(
        "/messages", json={"message": {"entity_id": CHANNEL, "content": "Math · Sam"}}
    )
    assert root.status_code == 201, root.text
    thread = await raw.post(f"/messages/{root.json()['data']['id']}/thread")
    assert thread.status_code == 201, thread.text
    if members:
        added = await raw.post(
            f"/chats/{thread.json()['data']['chat_id']}/members",
            json={"member_ids": list(members), "silent": True},
        )
        assert added.status_code == 204, added.text
    return thread.json()["data"]


async def relay(raw: httpx.AsyncClient, thread: dict[str, Any], content: str, name: str) -> int:
    """A web message relayed into the thread under its author's name; its id."""
    body = {
        "message": {
            "entity_type": "thread",
            "entity_id": thread["id"],
            "content": content,
            "display_name": name,
        }
    }
    resp = await raw.post("/messages", json=body)
    assert resp.status_code == 201, resp.text
    return int(resp.json()["data"]["id"])
