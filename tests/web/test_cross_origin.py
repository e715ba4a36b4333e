"""A page on another origin calls the bridge from Chromium (docs/api.md, CORS): the page is
served by a second server on another port, listed in ``server.cors_origins``; a third, not
listed, is refused by the browser itself. Real preflights, real Origin headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

from tests.bridge.test_cli import free_port
from tests.web.conftest import STEP_MS, Site, bounded
from tests.world import World

PAGE = b"<!doctype html><title>school</title><p>The school's own page</p>"

# Runs in the page: the web-client API from the page's origin, as a platform's front end would.
CALLS = """
async ({base, token, chatId}) => {
  const auth = {Authorization: `Bearer ${token}`};
  const out = {};
  try {
    const listed = await fetch(`${base}/api/v1/chats`, {headers: auth});
    out.list = [listed.status, (await listed.json()).chats.length];
    const posted = await fetch(`${base}/api/v1/chats/${chatId}/messages`, {
      method: "POST",
      headers: {...auth, "Content-Type": "application/json"},
      body: JSON.stringify({content: "from the school's page", client_id: "c-1"}),
    });
    out.post = [posted.status, (await posted.json()).message.content];
    const refused = await fetch(`${base}/api/v1/chats/999999999`, {headers: auth});
    out.error = [refused.status, (await refused.json()).error.code];
  } catch (e) {
    out.failed = String(e);
  }
  out.feed = await new Promise((resolve) => {
    const ws = new WebSocket(`${base.replace("http", "ws")}/api/v1/ws?token=${token}`);
    ws.onmessage = (m) => { resolve(JSON.parse(m.data).type); ws.close(); };
    ws.onerror = () => resolve("error");
  });
  return out;
}
"""


@pytest.fixture
def page_port() -> int:
    return free_port()


@pytest.fixture
def config_data(config_data: dict[str, Any], page_port: int) -> dict[str, Any]:
    return {**config_data, "server": {"cors_origins": [f"http://127.0.0.1:{page_port}"]}}


async def page_server(aiohttp_server: Any, port: int) -> Any:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    return await aiohttp_server(app, port=port)


@pytest.fixture
async def school_page(browser: Browser, aiohttp_server: Any, page_port: int) -> AsyncIterator[Page]:
    await page_server(aiohttp_server, page_port)
    context = await browser.new_context()
    context.set_default_timeout(STEP_MS)
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{page_port}/")
    yield page
    await context.close()


async def a_chat(api: World) -> tuple[str, int]:
    student = await api.user("student")
    teacher = await api.user("teacher")
    chat_id = (await api.enroll(student, teacher)).subject_chat["id"]
    return student, chat_id


@bounded
async def test_a_listed_origins_page_calls_the_api_and_opens_the_feed(
    site: Site, api: World, school_page: Page
) -> None:
    student, chat_id = await a_chat(api)
    args = {"base": site.url(""), "token": api.token(student), "chatId": chat_id}
    out = await school_page.evaluate(CALLS, args)
    assert out == {
        "list": [200, 1],
        "post": [201, "from the school's page"],
        "error": [404, "not_found"],  # errors too are readable by the page
        "feed": "ready",
    }


@bounded
async def test_a_page_of_an_origin_not_listed_is_refused(
    site: Site, api: World, browser: Browser, aiohttp_server: Any
) -> None:
    student, chat_id = await a_chat(api)
    other_port = free_port()
    await page_server(aiohttp_server, other_port)
    context = await browser.new_context()
    context.set_default_timeout(STEP_MS)
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{other_port}/")
    args = {"base": site.url(""), "token": api.token(student), "chatId": chat_id}
    out = await page.evaluate(CALLS, args)
    await context.close()
    assert out["failed"].startswith("TypeError")  # the browser blocks the answer
    assert out["feed"] == "error"  # the upgrade is refused (403)
    assert "list" not in out
