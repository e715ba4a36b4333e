"""The web client's first render of a chat with 50 messages, in headless Chromium.

Runs the real service (subprocess, SQLite by default), seeds one chat with `--messages`
messages from both sides, then opens the web client `--runs` times and reads the page's own
`bridge:chat-rendered` mark (set in the frame that paints the chat's first page):

- cold: a new browser context each run (nothing cached), `/#token=...&chat=ID` from
  navigation start to the painted chat: page, assets, the feed's `ready`, the chat list and
  the messages page;
- warm: the same, in a context that has loaded the page before (assets from the cache);
- switch: the chat list already on screen, from the click on the chat to the painted chat.

Prints the median, p90 and range of each, in milliseconds. Needs Chromium at /usr/bin/chromium
(or BRIDGE_BENCH_CHROMIUM) and the test extra's playwright.

    .venv/bin/python bench/web_render.py --runs 15
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Page, async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Server, seed_pairs, token

CHROMIUM = os.environ.get("BRIDGE_BENCH_CHROMIUM", "/usr/bin/chromium")
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
MARK = "bridge:chat-rendered"
WAIT_MS = 15_000


async def seed(base: str, messages: int) -> dict[str, object]:
    async with aiohttp.ClientSession() as session:
        [pair] = await seed_pairs(session, base, 1, prefix="web")
        url = f"{base}/api/v1/chats/{pair['chat_id']}/messages"
        for n in range(messages):
            author = pair["teacher"] if n % 3 else pair["student"]
            body = f"Message {n + 1}: " + "about the homework, " * (1 + n % 7)
            if n % 5 == 0:
                body += "\nsecond line\nthird line"
            headers = {"Authorization": f"Bearer {token(str(author))}"}
            async with session.post(url, json={"content": body}, headers=headers) as r:
                assert r.status == 201, await r.text()
    return pair


async def rendered_at(page: Page) -> float:
    """The mark's time (ms from navigation start), after checking what it stands for."""
    await page.wait_for_function(
        f"() => performance.getEntriesByName({MARK!r}).length > 0", timeout=WAIT_MS
    )
    return await page.evaluate(f"performance.getEntriesByName({MARK!r})[0].startTime")


async def cold(browser: Browser, url: str, messages: int) -> float:
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        page = await context.new_page()
        await page.goto(url)
        ms = await rendered_at(page)
        shown = await page.locator("#message-list > li").count()
        assert shown == min(messages, 50), f"{shown} messages on screen"
        return ms
    finally:
        await context.close()


async def warm(browser: Browser, url: str, runs: int) -> list[float]:
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        page = await context.new_page()
        await page.goto(url)
        await rendered_at(page)
        times = []
        for _ in range(runs):
            await page.goto("about:blank")
            await page.goto(url)
            times.append(await rendered_at(page))
        return times
    finally:
        await context.close()


async def switch(browser: Browser, base: str, jwt: str, runs: int) -> list[float]:
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        page = await context.new_page()
        times = []
        for _ in range(runs):
            await page.goto("about:blank")
            await page.goto(f"{base}/#token={jwt}")
            await page.wait_for_selector(".chat-item", timeout=WAIT_MS)
            started = await page.evaluate(
                "() => { const t = performance.now();"
                " document.querySelector('.chat-item').click(); return t; }"
            )
            times.append(await rendered_at(page) - started)
        return times
    finally:
        await context.close()


def summary(name: str, times: list[float]) -> str:
    times = sorted(times)
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return (
        f"{name:<34} median {statistics.median(times):6.1f} ms   p90 {p90:6.1f} ms"
        f"   range {times[0]:.1f}..{times[-1]:.1f} ms"
    )


async def run(runs: int, messages: int) -> None:
    with Server() as server:
        pair = await seed(server.base, messages)
        jwt = token(str(pair["student"]))
        url = f"{server.base}/#token={jwt}&chat={pair['chat_id']}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                await cold(browser, url, messages)  # warm-up: the browser's own start-up
                cold_times = [await cold(browser, url, messages) for _ in range(runs)]
                warm_times = await warm(browser, url, runs)
                switch_times = await switch(browser, server.base, jwt, runs)
            finally:
                await browser.close()
    print(f"messages={messages} runs={runs} chromium={CHROMIUM}")
    print(summary("first render, cold (no cache)", cold_times))
    print(summary("first render, warm (assets cached)", warm_times))
    print(summary("open a chat from the list", switch_times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    if not 1 <= args.runs <= 200:
        parser.error("--runs must be 1..200")
    asyncio.run(asyncio.wait_for(run(args.runs, args.messages), timeout=600))


if __name__ == "__main__":
    main()
