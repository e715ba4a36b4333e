"""The sandbox page in headless Chromium (Playwright, as tests/web): a teacher replies, edits,
reacts, sends a file and deletes, and each action becomes the sandbox's state and a webhook;
what the bridge posts appears without a reload. Every step is bounded (STEP_MS, TEST_S)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.async_api import Browser, Page, expect

from sandbox.pachca import PachcaSandbox
from tests.sandbox.conftest import TEACHER, Receiver, open_thread, relay
from tests.web.conftest import STEP_MS, bounded


async def open_page(browser: Browser, url: str, locale: str = "en-US") -> tuple[Page, list[str]]:
    context = await browser.new_context(locale=locale, viewport={"width": 1100, "height": 720})
    context.set_default_timeout(STEP_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "assert") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    return page, errors


def message(page: Page, text: str) -> Any:
    return page.locator("#messages > li", has=page.get_by_text(text, exact=True))


@bounded
async def test_a_teacher_acts_on_the_page(
    browser: Browser, sandbox: PachcaSandbox, raw: httpx.AsyncClient, receiver: Receiver
) -> None:
    thread = await open_thread(raw, TEACHER)
    await relay(raw, thread, "Where do I start? <b>now</b>", "Sam Student")
    page, errors = await open_page(browser, f"{sandbox.origin}/#as={TEACHER}")

    # The thread, opened by itself, with the message as the bridge posted it.
    await expect(page.locator("#thread-list li")).to_have_count(1)
    await expect(page.locator("#thread-title")).to_have_text("Math · Sam")
    question = message(page, "Where do I start? <b>now</b>")  # text, never markup
    await expect(question.locator(".msg-author")).to_have_text("Sam Student")
    await expect(question.locator(".msg-via")).to_have_text("via the bot")
    await expect(page.locator("#person")).to_have_value(str(TEACHER))

    # Reply.
    await page.locator("#composer-input").fill("Start with the definition.")
    await page.locator("#composer-input").press("Enter")
    reply = message(page, "Start with the definition.")
    await expect(reply).to_have_class("msg mine")
    await expect(page.locator("#composer-input")).to_have_value("")

    # Edit it.
    await reply.locator(".msg-edit").click()
    await page.locator(".msg-editor").fill("Start with definition 2.1.")
    await page.locator(".msg-save").click()
    edited = message(page, "Start with definition 2.1.")
    await expect(edited.locator(".msg-edited")).to_have_text("edited")

    # React to the question, then take it back.
    await question.get_by_role("button", name="React with 👍").click()
    await expect(question.locator(".reaction.mine")).to_have_text("👍 1")
    await question.locator(".reaction").click()
    await expect(question.locator(".reaction")).to_have_count(0)

    # Send a file.
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    await page.locator("#file-input").set_input_files(
        {"name": "corrected.png", "mimeType": "image/png", "buffer": png}
    )
    await expect(page.get_by_alt_text("Image: corrected.png")).to_have_count(1)

    # Delete the reply (after confirming).
    page.once("dialog", lambda dialog: dialog.accept())
    await edited.locator(".msg-delete").click()
    await expect(edited).to_have_count(0)

    # What the bridge posts meanwhile shows up without a reload.
    await relay(raw, thread, "Thanks!", "Sam Student")
    await expect(message(page, "Thanks!")).to_have_count(1)
    await expect(page.locator("#delivery-list li.ok").last).to_have_text("message new: 200")

    done = [(p["type"], p["event"]) for p in sandbox.emitted if p.get("user_id") == TEACHER]
    assert done == [
        ("message", "new"),
        ("message", "update"),
        ("reaction", "new"),
        ("reaction", "delete"),
        ("message", "new"),  # the file
        ("message", "delete"),
    ]
    file_message = [m for m in sandbox.messages.values() if m["files"]]
    assert [sandbox.file_bytes(m["files"][0]) for m in file_message] == [png]
    await sandbox.deliveries_done()
    delivered = [json.loads(r.raw) for r in receiver.received]
    assert [(b["type"], b["event"]) for b in delivered if b.get("user_id") == TEACHER] == done
    assert errors == []


@bounded
async def test_the_page_speaks_russian(browser: Browser, sandbox: PachcaSandbox) -> None:
    page, errors = await open_page(browser, f"{sandbox.origin}/#as={TEACHER}", locale="ru-RU")

    await expect(page.locator("h1")).to_have_text("Песочница Пачки")
    await expect(page.locator("#threads-empty")).to_contain_text("Тредов пока нет")
    assert await page.evaluate("document.documentElement.lang") == "ru"
    assert errors == []
