"""Browser tests of the web client: the real app on a real port, driven in headless Chromium
by Playwright (the machine's /usr/bin/chromium; Playwright's own browser downloads are never
used). Skipped, with the reason, only where no Chromium can be had.

Every wait is bounded: Playwright steps time out after STEP_MS, and each test as a whole
after TEST_S, so a hang fails the test instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.config import Config, parse_config
from handlers.app import create_app
from store.db import Database
from tests.conftest import SERVICE_TOKEN
from tests.world import World

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - playwright is in the test extra
    async_playwright = None  # type: ignore[assignment]

CHROMIUM = os.environ.get("BRIDGE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM_FOUND = Path(CHROMIUM).exists()
STEP_MS = 10_000  # one Playwright action or expectation
TEST_S = 60.0  # one whole browser test
# Where screenshots go: BRIDGE_SCREENSHOTS_DIR (docs/screenshots to refresh the README's),
# else a directory of the test run. Read at import: the tests' environment drops BRIDGE_*.
SCREENSHOTS_DIR = os.environ.get("BRIDGE_SCREENSHOTS_DIR")

# What Chromium itself logs while the server is down on purpose: nothing else is allowed.
NETWORK_ERRORS = re.compile(
    r"^(Failed to load resource: net::ERR_CONNECTION_REFUSED"
    r"|WebSocket connection to .* failed)"
)
NOT_FOUND = "Failed to load resource: the server responded with a status of 404 (Not Found)"


# POST /api/v1/chats/{id}/files, whatever its placeholder is called.
FILE_UPLOAD_ROUTE = re.compile(r"^/api/v1/chats/\{[^}]+\}/files$")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_files: a browser test of file uploads; skipped while the app has no "
        "POST /api/v1/chats/{id}/files route",
    )


def file_routes_present() -> bool:
    """Whether the app serves uploads: its router is built (nothing is started) and read."""
    app = create_app(
        parse_config({"database": {"url": "sqlite+aiosqlite:///:memory:"}}),
        migrate_on_start=False,
    )
    return any(
        route.method == "POST"
        and route.resource is not None
        and FILE_UPLOAD_ROUTE.match(route.resource.canonical)
        for route in app.router.routes()
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("needs_files")]
    if marked and not file_routes_present():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason="file routes not present"))


@pytest.fixture(autouse=True)
def _files_kept_in_the_test_directory(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Uploads of a needs_files test go under its own directory, not the working one."""
    if request.node.get_closest_marker("needs_files") is None or "files" not in Config.model_fields:
        return
    data = request.getfixturevalue("config_data")
    data["files"] = {**data.get("files", {}), "path": str(tmp_path / "files")}


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Fail a browser test that runs longer than TEST_S instead of letting it hang CI."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        async with asyncio.timeout(TEST_S):
            await test(*args, **kwargs)

    return run


class Site:
    """The real app on a real loopback port; it can be stopped and started again on the same
    port and database, like a restarted service (each start opens the database anew, as a
    new process would)."""

    def __init__(self, aiohttp_server: Any, config: Config, database: Database):
        self._aiohttp_server = aiohttp_server
        self.config = config
        self._url = database.url.render_as_string(hide_password=False)
        # The test database's connection settings (its PostgreSQL schema, say).
        self._connect_args = dict(database.connect_args)
        self.server: Any = None
        self.port: int | None = None

    def open_database(self) -> Database:
        return Database(self._url, connect_args=self._connect_args)

    async def start(self) -> None:
        app = create_app(self.config, db=self.open_database())
        self.server = await self._aiohttp_server(app, port=self.port)
        self.port = self.server.port

    async def stop(self) -> None:
        await self.server.close()  # the app's cleanup closes its database too

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class Tab:
    """A page in a browser context of its own (its own sessionStorage), with every console
    error and page error recorded."""

    def __init__(self, page: Page, name: str):
        self.page = page
        self.name = name
        self.errors: list[str] = []
        self.error_urls: list[str] = []  # where each error came from (a resource's URL)
        self.frames: dict[Any, list[str]] = {}  # each feed socket -> the frames it received
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("websocket", self._socket)

    @property
    def sockets(self) -> list[Any]:
        return list(self.frames)

    def _socket(self, ws: Any) -> None:
        frames = self.frames.setdefault(ws, [])
        ws.on("framereceived", lambda payload: frames.append(payload))

    def _console(self, message: Any) -> None:
        if message.type in ("error", "assert"):
            self.errors.append(message.text)
            self.error_urls.append(message.location.get("url", ""))

    def unexpected_errors(
        self, *, network_down: bool = False, gone: tuple[str, ...] = ()
    ) -> list[str]:
        """The console errors beyond what Chromium itself logs for network failures: while
        the server is down on purpose (`network_down`), and the 404 of a request for a
        resource deleted meanwhile (`gone`: URL paths), which no page code can silence."""
        return [
            text
            for text, url in zip(self.errors, self.error_urls, strict=True)
            if not (network_down and NETWORK_ERRORS.match(text))
            and not (text == NOT_FOUND and url.endswith(gone))
        ]

    def chat_link(self, title: str) -> Any:
        return self.page.locator(".chat-item", has_text=title)

    def messages(self) -> Any:
        return self.page.locator("#message-list > li")

    def message(self, text: str) -> Any:
        return self.page.locator("#message-list > li", has=self.page.get_by_text(text, exact=True))

    async def send(self, text: str) -> None:
        await self.page.locator("#composer-input").fill(text)
        await self.page.locator("#composer-input").press("Enter")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM_FOUND:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    expect.set_options(timeout=STEP_MS)
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def site(database: Database, config: Config, aiohttp_server: Any) -> AsyncIterator[Site]:
    # database first: set up first, torn down last, after the server has stopped.
    running = Site(aiohttp_server, config, database)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def api(site: Site) -> AsyncIterator[World]:
    """The platform backend and other users, over HTTP to the same server."""
    async with aiohttp.ClientSession(base_url=site.url("")) as session:
        yield World(session, service_token=SERVICE_TOKEN)  # type: ignore[arg-type]


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    default = tmp_path_factory.getbasetemp() / "screenshots"
    path = Path(SCREENSHOTS_DIR) if SCREENSHOTS_DIR else default
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def open_tab(browser: Browser, site: Site, api: World) -> Callable[..., Awaitable[Tab]]:
    """Open the web client signed in as a user: open_tab(user_id, width=..., locale=...)."""

    async def open_as(
        user_id: str | None,
        *,
        width: int = 1100,
        height: int = 720,
        locale: str = "en-US",
        token: str | None = None,
        fragment: str = "",
    ) -> Tab:
        context = await browser.new_context(
            viewport={"width": width, "height": height}, locale=locale
        )
        context.set_default_timeout(STEP_MS)
        tab = Tab(await context.new_page(), user_id or "anonymous")
        if token is None and user_id is not None:
            token = api.token(user_id)
        hash_part = f"#token={token}" if token else ""
        if fragment:
            hash_part = f"{hash_part}&{fragment}" if hash_part else f"#{fragment}"
        await tab.page.goto(site.url("/") + hash_part)
        return tab

    return open_as
