"""The web client in headless Chromium against the real app: two people talking (a student and
a teacher), paging, outages and restarts, every role, and no console errors anywhere."""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.async_api import Route, expect

from store import events as event_log
from store import forum as forum_store
from store import messages as message_store
from tests.eventually import eventually
from tests.web.conftest import Site, Tab, bounded
from tests.world import World

OpenTab = Callable[..., Awaitable[Tab]]


@dataclass
class School:
    student: str
    teacher: str
    math: int  # the student's and teacher's subject chat, with activity
    physics: int  # another subject chat of theirs, quiet
    math_enrollment: str


@pytest.fixture
async def school(api: World) -> School:
    student = await api.user("student", name="Sam Student")
    teacher = await api.user("teacher", name="Tess Teacher")
    physics = await api.enroll(student, teacher, subject=("phys", "Physics"))
    math = await api.enroll(student, teacher, subject=("math", "Math"))
    return School(
        student, teacher, math.subject_chat["id"], physics.subject_chat["id"], math.enrollment_id
    )


async def messages_of(api: World, user: str, chat_id: int) -> list[dict[str, Any]]:
    resp = await api.client.get(
        f"/api/v1/chats/{chat_id}/messages", params={"limit": "200"}, headers=api.auth(user)
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["messages"]


async def last_event_id(api: World) -> int:
    resp = await api.client.get("/api/v1/events", params={"limit": "1000"}, headers=api.service)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["last_event_id"]


def types(frames: list[str]) -> list[str]:
    return [json.loads(f)["type"] for f in frames]


def assert_no_console_errors(
    *tabs: Tab, network_down: bool = False, gone: tuple[str, ...] = ()
) -> None:
    for tab in tabs:
        assert tab.unexpected_errors(network_down=network_down, gone=gone) == [], tab.name


# --- the conversation ---------------------------------------------------------------------


@bounded
async def test_student_and_teacher_talk(
    open_tab: OpenTab, api: World, school: School, screenshots: Path
) -> None:
    await api.post(school.teacher, school.math, "Welcome to the course!")
    await api.post(school.teacher, school.math, "Start with exercise 1.")

    student = await open_tab(school.student)
    page = student.page
    # The token left the address bar and stays in this tab's storage only.
    assert "token" not in page.url
    stored = await page.evaluate("sessionStorage.getItem('pachca-bridge.token')")
    assert jwt.decode(stored, options={"verify_signature": False})["sub"] == school.student
    assert await page.evaluate("localStorage.length") == 0

    # The list: newest activity first, with unread counts.
    items = page.locator(".chat-item")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_contain_text("Math")
    await expect(items.nth(0).locator(".badge")).to_have_text("2")
    await expect(items.nth(1)).to_contain_text("Physics")
    await expect(items.nth(1).locator(".badge")).to_have_count(0)
    await expect(page.locator("#me-name")).to_have_text("Sam Student (student)")
    await page.screenshot(path=screenshots / "chat-list.png")

    teacher = await open_tab(school.teacher)
    await teacher.chat_link("Math").click()
    await expect(teacher.messages()).to_have_count(2)

    # Opening the chat with the keyboard: the messages, oldest first; the composer has focus.
    await student.chat_link("Math").focus()
    await page.keyboard.press("Enter")
    await expect(student.messages()).to_have_count(2)
    await expect(student.messages().nth(0)).to_contain_text("Welcome to the course!")
    await expect(page.locator("#composer-input")).to_be_focused()
    # Seen, so read: the badge goes, and the teacher's messages show it.
    await expect(student.chat_link("Math").locator(".badge")).to_have_count(0)
    await expect(teacher.message("Start with exercise 1.").locator(".msg-status")).to_contain_text(
        "Read"
    )

    # Typing reaches the other side.
    await page.locator("#composer-input").press_sequentially("Hel")
    await expect(teacher.page.locator("#typing")).to_have_text("Sam Student is typing…")

    # Sending: on screen at once, marked as sending until the server answers.
    release = asyncio.Event()

    async def hold_post(route: Route) -> None:
        if route.request.method == "POST":
            await release.wait()
        await route.continue_()

    await page.route("**/api/v1/chats/*/messages", hold_post)
    await page.locator("#composer-input").fill("Hello! Is this right?")
    await page.locator("#composer-input").press("Enter")
    sending = student.message("Hello! Is this right?")
    await expect(sending).to_have_class(re.compile(r"\bsending\b"))
    await expect(sending.locator(".msg-status")).to_have_text("Sending…")
    await expect(page.locator("#composer-input")).to_have_value("")
    release.set()
    await expect(sending).not_to_have_class(re.compile(r"\bsending\b"))
    await expect(sending.locator(".msg-status")).to_contain_text("Sent")
    await page.unroute("**/api/v1/chats/*/messages")
    # The teacher gets it live; the typing line clears with it.
    await expect(teacher.message("Hello! Is this right?")).to_be_visible()
    await expect(teacher.page.locator("#typing")).to_have_text("")
    # The teacher sees it, so the student's copy turns "read".
    await expect(sending.locator(".msg-status")).to_contain_text("Read")

    # The teacher replies to it with the keyboard-free path: Reply, type, Enter.
    await teacher.message("Hello! Is this right?").hover()
    await teacher.message("Hello! Is this right?").get_by_role("button", name="Reply").click()
    await expect(teacher.page.locator("#composer-banner")).to_contain_text("Sam Student")
    await teacher.send("Yes, well done.")
    reply = student.message("Yes, well done.")
    await expect(reply.locator(".msg-reply")).to_have_text(
        "In reply to Sam Student: Hello! Is this right?"
    )

    # Shift+Enter starts a new line; Enter sends.
    box = page.locator("#composer-input")
    await box.press_sequentially("line one")
    await box.press("Shift+Enter")
    await box.press_sequentially("line two")
    await box.press("Enter")
    await expect(teacher.page.locator(".msg-text", has_text="line one")).to_have_text(
        "line one\nline two"
    )

    # Editing: Escape cancels, Enter saves; the other side sees the text and the mark.
    own = student.message("Hello! Is this right?")
    await own.hover()
    await expect(own.locator("time")).to_have_attribute("title", re.compile(r"\d{4}"))  # full date
    await own.get_by_role("button", name="Edit").click()
    await expect(box).to_have_value("Hello! Is this right?")
    await expect(page.locator("#composer-banner")).to_have_text(re.compile("Editing"))
    await box.press("Escape")
    await expect(box).to_have_value("")
    await expect(page.locator("#composer-banner")).to_be_hidden()
    await box.press("ArrowUp")  # an empty box: edit the last own message
    await expect(box).to_have_value("line one\nline two")
    await box.press("Escape")
    await own.hover()
    await own.get_by_role("button", name="Edit").click()
    await box.fill("Hello! Is this right? (task 3)")
    await box.press("Enter")
    edited = teacher.message("Hello! Is this right? (task 3)")
    await expect(edited.locator(".msg-edited")).to_have_text("edited")
    mine = student.message("Hello! Is this right? (task 3)")
    await expect(mine.locator(".msg-edited")).to_be_visible()

    # Markup is text, never HTML.
    await student.send("<b>not bold</b> & <img src=x onerror=alert(1)>")
    await expect(teacher.message("<b>not bold</b> & <img src=x onerror=alert(1)>")).to_be_visible()
    assert await teacher.page.locator(".msg-text b, .msg-text img").count() == 0

    await page.screenshot(path=screenshots / "chat-student.png")
    await teacher.page.screenshot(path=screenshots / "chat-teacher.png")

    # Deleting asks first, then the message goes from both screens.
    doomed = student.message("line one\nline two")
    await doomed.hover()
    await doomed.get_by_role("button", name="Delete").click()
    await doomed.get_by_role("button", name="Cancel").click()
    await expect(doomed).to_be_visible()
    await doomed.hover()
    await doomed.get_by_role("button", name="Delete").click()
    await doomed.locator(".msg-confirm").get_by_role("button", name="Delete").click()
    await expect(student.page.locator(".msg-text", has_text="line one")).to_have_count(0)
    await expect(teacher.page.locator(".msg-text", has_text="line one")).to_have_count(0)

    # What the screens show is what the server holds.
    stored_texts = [m["content"] for m in await messages_of(api, school.teacher, school.math)]
    assert stored_texts == [
        "Welcome to the course!",
        "Start with exercise 1.",
        "Hello! Is this right? (task 3)",
        "Yes, well done.",
        "<b>not bold</b> & <img src=x onerror=alert(1)>",
    ]
    await expect(teacher.page.locator(".msg-text")).to_have_text(stored_texts)
    assert_no_console_errors(student, teacher)


@bounded
async def test_a_new_message_in_another_chat_counts_as_unread(
    open_tab: OpenTab, api: World, school: School
) -> None:
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    await expect(student.page.locator("#chat-title")).to_contain_text("Math")
    await expect(student.chat_link("Math")).to_have_attribute("aria-current", "page")
    await api.post(school.teacher, school.physics, "Physics starts on Monday.")
    physics = student.chat_link("Physics")
    await expect(physics.locator(".badge")).to_have_text("1")
    await expect(student.page.locator(".chat-item").nth(0)).to_contain_text("Physics")
    await expect(physics).to_contain_text("Tess Teacher: Physics starts on Monday.")
    # A message in the open chat is seen at once: no badge.
    await api.post(school.teacher, school.math, "And maths on Tuesday.")
    await expect(student.message("And maths on Tuesday.")).to_be_visible()
    await expect(student.chat_link("Math").locator(".badge")).to_have_count(0)
    assert_no_console_errors(student)


@bounded
async def test_scrolling_up_loads_older_messages(
    open_tab: OpenTab, api: World, school: School
) -> None:
    for n in range(1, 121):
        await api.post(school.teacher, school.math, f"message {n}")
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    texts = student.page.locator("#message-list .msg-text")
    await expect(texts).to_have_count(50)
    await expect(texts.last).to_have_text("message 120")
    await expect(texts.first).to_have_text("message 71")
    # The newest are in view: the box is scrolled to the bottom.
    await expect(student.message("message 120")).to_be_in_viewport()

    for count in (100, 120):
        await student.page.locator("#scroller").evaluate("el => { el.scrollTop = 0; }")
        await expect(texts).to_have_count(count)
    await expect(student.page.locator("#top-status")).to_have_text(
        "This is the beginning of the chat."
    )
    assert await texts.all_text_contents() == [f"message {n}" for n in range(1, 121)]
    assert_no_console_errors(student)


# --- reactions -------------------------------------------------------------------------------


@bounded
async def test_reactions_are_added_and_taken_back_and_seen_live(
    open_tab: OpenTab, api: World, school: School, screenshots: Path
) -> None:
    await api.post(school.teacher, school.math, "Did you finish the homework?")
    await api.post(school.student, school.math, "Almost!")
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    teacher = await open_tab(school.teacher, fragment=f"chat={school.math}")
    question = "Did you finish the homework?"
    await expect(teacher.message(question)).to_be_visible()

    # The student opens the picker with the keyboard, moves to ❤️ and chooses it.
    mine = student.message(question)
    react = mine.get_by_role("button", name="React")
    await react.focus()
    await student.page.keyboard.press("Enter")
    picker = mine.get_by_role("group", name="Choose a reaction")
    await expect(picker.get_by_role("button", name="React with 👍")).to_be_focused()
    await student.page.keyboard.press("ArrowRight")
    await expect(picker.get_by_role("button", name="React with ❤️")).to_be_focused()
    await student.page.keyboard.press("Enter")
    await expect(picker).to_have_count(0)
    await expect(mine.get_by_role("button", name="React")).to_be_focused()
    await expect(mine.locator(".msg-reactions li")).to_have_text(["❤️ 1"])
    await expect(mine.locator(".msg-reactions li.mine")).to_have_count(1)
    # The teacher sees it at once, not as theirs.
    theirs = teacher.message(question)
    await expect(theirs.locator(".msg-reactions li")).to_have_text(["❤️ 1"])
    await expect(theirs.locator(".msg-reactions li.mine")).to_have_count(0)
    await expect(theirs.locator(".reaction")).to_have_attribute("title", re.compile("Sam Student"))

    # The teacher joins in by clicking it; both pages count two.
    await theirs.locator(".reaction", has_text="❤️").click()
    await expect(theirs.locator(".msg-reactions li.mine")).to_have_text("❤️ 2")
    await expect(mine.locator(".msg-reactions li")).to_have_text(["❤️ 2"])
    await expect(mine.locator(".reaction")).to_have_attribute("aria-pressed", "true")

    # Escape closes the picker without choosing.
    await mine.get_by_role("button", name="React").focus()
    await student.page.keyboard.press("Enter")
    await expect(picker.get_by_role("button", name="Take back your ❤️")).to_have_count(1)
    await student.page.screenshot(path=screenshots / "reactions.png")
    await student.page.keyboard.press("Escape")
    await expect(picker).to_have_count(0)
    await expect(mine.get_by_role("button", name="React")).to_be_focused()

    # The student takes theirs back by clicking their own reaction.
    await mine.locator(".reaction", has_text="❤️").click()
    await expect(mine.locator(".msg-reactions li")).to_have_text(["❤️ 1"])
    await expect(mine.locator(".msg-reactions li.mine")).to_have_count(0)
    await expect(theirs.locator(".msg-reactions li.mine")).to_have_text("❤️ 1")
    # And the teacher too: the emoji goes from both screens.
    await theirs.locator(".reaction", has_text="❤️").click()
    await expect(theirs.locator(".msg-reactions")).to_have_count(0)
    await expect(mine.locator(".msg-reactions")).to_have_count(0)

    # The student reacts to their own message with a click in the picker.
    await student.message("Almost!").get_by_role("button", name="React").click()
    await student.message("Almost!").get_by_role("button", name="React with 🎉").click()
    await expect(teacher.message("Almost!").locator(".msg-reactions li")).to_have_text(["🎉 1"])
    stored = {
        m["content"]: m["reactions"] for m in await messages_of(api, school.teacher, school.math)
    }
    assert stored == {question: [], "Almost!": [{"emoji": "🎉", "user_ids": [school.student]}]}
    assert_no_console_errors(student, teacher)


@bounded
async def test_who_may_not_react_sees_reactions_without_buttons(
    open_tab: OpenTab, api: World, school: School
) -> None:
    message = await api.post(school.teacher, school.math, "Reacted to")
    resp = await api.client.put(
        f"/api/v1/messages/{message['id']}/reactions/%F0%9F%91%8D",
        headers=api.auth(school.student),
    )
    assert resp.status == 204, await resp.text()
    admin = await api.user("admin", name="Ada Admin")
    tab = await open_tab(admin, fragment=f"chat={school.math}")
    reacted = tab.message("Reacted to")
    await expect(reacted.locator(".msg-reactions li")).to_have_text(["👍 1"])
    await expect(reacted.locator(".msg-reactions .reaction")).to_have_attribute(
        "title", "👍 from Sam Student"
    )
    await expect(reacted.locator(".msg-reactions button")).to_have_count(0)
    await expect(reacted.get_by_role("button", name="React")).to_have_count(0)
    # Live, too.
    resp = await api.client.put(
        f"/api/v1/messages/{message['id']}/reactions/%F0%9F%91%8D",
        headers=api.auth(school.teacher),
    )
    assert resp.status == 204, await resp.text()
    await expect(reacted.locator(".msg-reactions li")).to_have_text(["👍 2"])
    assert_no_console_errors(tab)


# --- outages --------------------------------------------------------------------------------


@bounded
async def test_a_send_that_fails_while_the_server_is_down_succeeds_on_retry(
    open_tab: OpenTab, api: World, site: Site, school: School
) -> None:
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    await expect(student.page.locator("#top-status")).to_have_text("No messages yet.")

    await site.stop()
    await student.send("Sent while the server was down")
    failed = student.message("Sent while the server was down")
    await expect(failed).to_have_class(re.compile(r"\bfailed\b"))
    await expect(failed.locator(".msg-status")).to_contain_text(
        "Not sent: no connection to the server."
    )
    await expect(student.page.locator("#conn")).to_contain_text("No connection")

    await site.start()
    await failed.get_by_role("button", name="Retry").click()
    await expect(failed.locator(".msg-status")).to_contain_text("Sent")
    await expect(failed).not_to_have_class(re.compile(r"\bfailed\b"))
    await expect(student.page.locator("#conn")).to_be_hidden(timeout=20_000)
    stored = await messages_of(api, school.teacher, school.math)
    assert [m["content"] for m in stored] == ["Sent while the server was down"]
    await expect(student.messages()).to_have_count(1)
    assert_no_console_errors(student, network_down=True)


@bounded
async def test_a_restart_mid_conversation_loses_nothing(
    open_tab: OpenTab, api: World, site: Site, school: School
) -> None:
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    teacher = await open_tab(school.teacher, fragment=f"chat={school.math}")
    await student.send("Before the restart")
    await expect(teacher.message("Before the restart")).to_be_visible()

    seen_before = await last_event_id(api)
    await site.stop()
    banner = student.page.locator("#conn-text")
    await expect(banner).to_contain_text("No connection")
    # Wait until the next attempt is more than 2 s away, so the messages below are certainly
    # written while the page is away: it must get them by resuming with `since`.
    await expect(banner).to_have_text(re.compile(r"in ([3-9]|\d\d) s"), timeout=20_000)
    await site.start()
    await api.post(school.teacher, school.math, "Written while you were away (1)")
    await api.post(school.teacher, school.math, "Written while you were away (2)")

    await expect(student.message("Written while you were away (2)")).to_be_visible(timeout=20_000)
    await expect(student.page.locator("#conn")).to_be_hidden()
    await expect(student.page.locator(".msg-text")).to_have_text(
        ["Before the restart", "Written while you were away (1)", "Written while you were away (2)"]
    )
    # They came as the replay of the socket that resumed after what the page had seen.
    [(url, frames)] = [
        (ws.url, f)
        for ws, f in student.frames.items()
        if "since=" in ws.url and "ready" in types(f)
    ]
    assert int(re.search(r"since=(\d+)", url).group(1)) >= seen_before  # type: ignore[union-attr]
    replayed = [json.loads(f) for f in frames[: types(frames).index("ready")]]
    assert [e["message"]["content"] for e in replayed if e["type"] == "message.created"] == [
        "Written while you were away (1)",
        "Written while you were away (2)",
    ]
    # And the conversation goes on.
    await student.send("After the restart")
    await expect(teacher.message("After the restart")).to_be_visible(timeout=20_000)
    assert_no_console_errors(student, teacher, network_down=True)


@bounded
async def test_after_a_reset_the_page_reloads_what_it_shows(
    open_tab: OpenTab, api: World, site: Site, school: School
) -> None:
    await api.post(school.teacher, school.math, "Old news")
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    await expect(student.message("Old news")).to_be_visible()

    await site.stop()
    await expect(student.page.locator("#conn")).to_be_visible()
    # While the page is away, a message arrives and the event history is pruned past the
    # page's position, so resuming cannot replay it: the server answers `reset`.
    now = datetime.now(UTC)
    database = site.open_database()
    async with database.write() as conn:
        message_id = await message_store.insert_message(
            conn,
            {
                "chat_id": school.math,
                "sender_id": school.teacher,
                "content": "Only over REST",
                "created_at": now,
                "source": "web",
            },
        )
        await forum_store.set_last_message(conn, school.math, message_id, now)
        await event_log.append(
            conn,
            chat_id=school.math,
            type="message.created",
            payload="{}",
            audience=None,
            created_at=now,
        )
        await event_log.prune_before(conn, now + timedelta(hours=1))
    await database.dispose()
    await site.start()

    await expect(student.message("Only over REST")).to_be_visible(timeout=20_000)
    await expect(student.page.locator(".msg-text")).to_have_text(["Old news", "Only over REST"])
    await expect(student.page.locator("#conn")).to_be_hidden()
    assert any("since=" in ws.url for ws in student.sockets)
    assert_no_console_errors(student, network_down=True)


# --- roles ---------------------------------------------------------------------------------


@bounded
async def test_an_admin_sees_every_chat_read_only(
    open_tab: OpenTab, api: World, school: School, screenshots: Path
) -> None:
    other_student = await api.user("student", name="Olga Other")
    other_teacher = await api.user("teacher", name="Oscar Other")
    others = await api.enroll(other_student, other_teacher, subject=("hist", "History"))
    await api.post(other_student, others.subject_chat["id"], "A question about history")
    admin = await api.user("admin", name="Ada Admin")

    tab = await open_tab(admin)
    await expect(tab.page.locator(".chat-item")).to_have_count(3)
    await tab.chat_link("History").click()
    await expect(tab.message("A question about history")).to_be_visible()
    await expect(tab.page.locator("#composer")).to_be_hidden()
    await expect(tab.page.locator("#chat-notice")).to_have_text(
        "You are viewing this chat as an administrator: read-only."
    )
    await expect(tab.page.locator("#chat-tag")).to_have_text("read-only")
    # A reader: no reply, edit or react buttons; only "Delete", which an administrator may
    # use on any message.
    await expect(tab.page.locator(".msg-actions button")).to_have_text(["Delete"])
    # Live events reach the admin too.
    await api.post(other_teacher, others.subject_chat["id"], "The answer")
    await expect(tab.message("The answer")).to_be_visible()
    await tab.page.screenshot(path=screenshots / "admin-read-only.png")
    assert_no_console_errors(tab)


@bounded
async def test_an_admin_deletes_a_message_and_the_participants_see_it_go(
    open_tab: OpenTab, api: World, school: School
) -> None:
    await api.post(school.student, school.math, "Something that must go")
    await api.post(school.teacher, school.math, "An answer that stays")
    admin = await api.user("admin", name="Ada Admin")
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    await expect(student.message("Something that must go")).to_be_visible()
    tab = await open_tab(admin, fragment=f"chat={school.math}")
    doomed = tab.message("Something that must go")
    # With the keyboard: the Delete button shows once it has the focus.
    await doomed.get_by_role("button", name="Delete").focus()
    await tab.page.keyboard.press("Enter")
    confirm = doomed.locator(".msg-confirm")
    await expect(confirm).to_contain_text("Delete this message?")
    await expect(confirm.get_by_role("button", name="Delete")).to_be_focused()
    await tab.page.keyboard.press("Enter")
    await expect(tab.message("Something that must go")).to_have_count(0)
    await expect(student.message("Something that must go")).to_have_count(0)
    await expect(student.page.locator(".msg-text")).to_have_text(["An answer that stays"])
    # Still a reader: the composer stays hidden.
    await expect(tab.page.locator("#composer")).to_be_hidden()
    assert [m["content"] for m in await messages_of(api, school.teacher, school.math)] == [
        "An answer that stays"
    ]
    assert_no_console_errors(tab, student)


@bounded
async def test_a_parent_sees_an_empty_list_that_says_why(
    open_tab: OpenTab, api: World, school: School
) -> None:
    parent = await api.user("parent", name="Pat Parent", children=[school.student])
    tab = await open_tab(parent)
    await expect(tab.page.locator("#chats-empty")).to_have_text(
        "Parents do not take part in forum chats, so there are no chats to show here."
    )
    await expect(tab.page.locator(".chat-item")).to_have_count(0)
    assert_no_console_errors(tab)


@bounded
async def test_an_inactive_chat_is_marked_and_read_only(
    open_tab: OpenTab, api: World, school: School
) -> None:
    await api.post(school.student, school.math, "Last words")
    resp = await api.client.put(
        f"/api/v1/enrollments/{school.math_enrollment}",
        json={
            "student_id": school.student,
            "teacher_id": school.teacher,
            "subject": {"id": "math", "name": "Math"},
            "active": False,
        },
        headers=api.service,
    )
    assert resp.status == 200, await resp.text()
    tab = await open_tab(school.student)
    link = tab.chat_link("Math")
    await expect(link.locator(".tag")).to_have_text("read-only")
    await link.click()
    await expect(tab.page.locator("#chat-notice")).to_have_text(
        "This chat is closed: you can read it, but not write in it."
    )
    await expect(tab.page.locator("#composer")).to_be_hidden()
    # The author may still delete their own message there.
    own = tab.message("Last words")
    await own.hover()
    await expect(own.get_by_role("button", name="Edit")).to_have_count(0)
    await expect(own.get_by_role("button", name="React")).to_have_count(0)
    await expect(own.get_by_role("button", name="Delete")).to_have_count(1)
    assert_no_console_errors(tab)


@bounded
async def test_chat_changes_arrive_live(open_tab: OpenTab, api: World, school: School) -> None:
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    page = student.page
    await expect(page.locator("#composer")).to_be_visible()
    # A new enrollment: its chat appears at the top.
    await api.enroll(school.student, school.teacher, subject=("chem", "Chemistry"))
    await expect(page.locator(".chat-item").nth(0)).to_contain_text("Chemistry")
    # The open chat is closed by the platform: read-only at once.
    body = {
        "student_id": school.student,
        "teacher_id": school.teacher,
        "subject": {"id": "math", "name": "Math"},
        "active": False,
    }
    # The page shows the change from the event alone: a listed chat keeps its unread count,
    # so nothing is asked that could race the deletion below.
    math_chat = f"/api/v1/chats/{school.math}"
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith(math_chat) else None)
    resp = await api.client.put(
        f"/api/v1/enrollments/{school.math_enrollment}", json=body, headers=api.service
    )
    assert resp.status == 200, await resp.text()
    await expect(page.locator("#composer")).to_be_hidden()
    await expect(page.locator("#chat-notice")).to_contain_text("This chat is closed")
    await expect(student.chat_link("Math").locator(".tag")).to_have_text("read-only")
    # And deleted: it leaves the list and the screen, saying so.
    resp = await api.client.delete(
        f"/api/v1/enrollments/{school.math_enrollment}", headers=api.service
    )
    assert resp.status == 204, await resp.text()
    await expect(student.chat_link("Math")).to_have_count(0)
    await expect(page.locator("#notice")).to_have_text("This chat was removed.")
    await expect(page.locator("#chat-placeholder")).to_be_visible()
    assert "chat=" not in page.url
    assert asked == []
    assert_no_console_errors(student)


@bounded
async def test_a_chat_that_answers_404_when_asked_again_is_gone(
    open_tab: OpenTab, api: World, school: School
) -> None:
    """A chat deleted while the page asks for it again (the 404 overtaking the feed's
    chat.deleted) leaves the list and the screen just the same, without a page error."""
    await api.post(school.teacher, school.math, "Soon gone")
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    page = student.page
    await expect(student.message("Soon gone")).to_be_visible()

    async def read_by_the_student() -> bool:
        [message] = await messages_of(api, school.teacher, school.math)
        return message["read_by"] == [school.student]

    # Seen and marked read first, so that no read mark goes out for the deleted message.
    await eventually(read_by_the_student, what="the student's read mark")
    math_chat = f"/api/v1/chats/{school.math}"
    not_found = {"error": {"code": "not_found", "message": "no such chat"}}
    await page.route(
        re.compile(rf"{re.escape(math_chat)}$"),
        lambda route: route.fulfill(status=404, json=not_found),
    )
    # The chat's last message goes: the page asks for the chat (its new last message).
    [message] = await messages_of(api, school.teacher, school.math)
    resp = await api.client.delete(
        f"/api/v1/messages/{message['id']}", headers=api.auth(school.teacher)
    )
    assert resp.status == 204, await resp.text()
    await expect(student.chat_link("Math")).to_have_count(0)
    await expect(page.locator("#notice")).to_have_text("This chat was removed.")
    await expect(page.locator("#chat-placeholder")).to_be_visible()
    await expect(student.chat_link("Physics")).to_have_count(1)
    assert "chat=" not in page.url
    # Chromium itself logs the 404 of the request (no page code can silence that); nothing
    # else reaches the console.
    assert student.errors != []
    assert_no_console_errors(student, gone=(math_chat,))


# --- signing in, languages, phones, files ------------------------------------------------


@bounded
async def test_a_bad_token_asks_to_sign_in_and_a_good_one_signs_in(
    open_tab: OpenTab, api: World, school: School
) -> None:
    tab = await open_tab(None, token="not-a-token")
    await expect(tab.page.locator("#signin-error")).to_have_text(
        "Your sign-in link has expired or is not valid. Ask for a new one."
    )
    await expect(tab.page.locator("#app")).to_be_hidden()
    assert await tab.page.evaluate("sessionStorage.length") == 0
    await tab.page.locator("#signin-token").fill(api.token(school.student))
    await tab.page.locator("#signin-token").press("Enter")
    await expect(tab.page.locator(".chat-item")).to_have_count(2)
    # Signed in for this tab: a reload keeps it; signing out forgets it.
    await tab.page.reload()
    await expect(tab.page.locator(".chat-item")).to_have_count(2)
    await tab.page.locator("#sign-out").click()
    await expect(tab.page.locator("#signin")).to_be_visible()
    assert await tab.page.evaluate("sessionStorage.length") == 0
    assert_no_console_errors(tab)


@bounded
async def test_russian_browsers_get_russian(open_tab: OpenTab, api: World, school: School) -> None:
    parent = await api.user("parent", name="Родитель")
    tab = await open_tab(parent, locale="ru-RU")
    await expect(tab.page.locator("#chats-empty")).to_have_text(
        "Родители не участвуют в чатах форума, поэтому здесь нет чатов."
    )
    assert await tab.page.evaluate("document.documentElement.lang") == "ru"
    await expect(tab.page.locator("#sign-out")).to_have_text("Выйти")
    assert_no_console_errors(tab)


@bounded
async def test_phone_width_shows_one_pane_at_a_time(
    open_tab: OpenTab, api: World, school: School, screenshots: Path
) -> None:
    await api.post(school.teacher, school.math, "A long message " * 12)
    tab = await open_tab(school.student, width=360, height=740)
    page = tab.page
    await expect(tab.chat_link("Math")).to_be_visible()
    await tab.chat_link("Math").click()
    await expect(page.locator("#sidebar")).to_be_hidden()
    await expect(page.locator("#composer-input")).to_be_visible()
    await tab.send("Replying from a phone")
    sent = tab.message("Replying from a phone")
    await expect(sent.locator(".msg-status")).to_contain_text("Sent")
    # Nothing is wider than the screen, the reaction picker included.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await page.screenshot(path=screenshots / "phone-chat.png")
    long_one = tab.message(("A long message " * 12).strip())
    await long_one.get_by_role("button", name="React").click()
    await expect(long_one.locator(".picker-emoji")).to_have_count(8)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await long_one.get_by_role("button", name="React with 👍").click()
    await expect(long_one.locator(".msg-reactions li.mine")).to_have_text("👍 1")
    await page.locator("#chat-back").click()
    await expect(page.locator("#sidebar")).to_be_visible()
    await expect(page.locator("#chat")).to_be_hidden()
    assert_no_console_errors(tab)


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d8"
    "2d6b0000000049454e44ae426082"
)


@bounded
async def test_files_and_reactions_in_messages_are_shown(
    open_tab: OpenTab, api: World, school: School
) -> None:
    """Messages that carry files and reactions (the server adds them to message objects)
    show images inline, other files as links, reactions with their counts."""
    await api.post(school.teacher, school.math, "Here is the corrected work")
    files = [
        {
            "id": "f1",
            "name": "page1.png",
            "size": 68,
            "content_type": "image/png",
            "url": "/t/expired.png",  # its signed link ran out: the page asks for a fresh one
        },
        {
            "id": "f2",
            "name": "notes.pdf",
            "size": 2_500_000,
            "content_type": "application/pdf",
            "url": "/t/f2.pdf",
        },
    ]
    reactions = [{"emoji": "👍", "user_ids": [school.student, school.teacher]}]
    tab = await open_tab(None)  # signed out: routes go in before the app loads anything

    async def with_extras(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        for message in body["messages"]:
            message["files"], message["reactions"] = files, reactions
        await route.fulfill(response=response, body=json.dumps(body))

    await tab.page.route(re.compile(r"/api/v1/chats/\d+/messages\?"), with_extras)
    await tab.page.route(
        "**/t/f1.png", lambda route: route.fulfill(body=PNG_1PX, content_type="image/png")
    )
    await tab.page.route("**/t/expired.png", lambda route: route.fulfill(status=403))
    fresh = {**files[0], "url": "/t/f1.png"}
    await tab.page.route("**/api/v1/files/f1", lambda route: route.fulfill(json={"file": fresh}))
    await tab.page.locator("#signin-token").fill(api.token(school.student))
    await tab.page.locator("#signin-token").press("Enter")
    await tab.chat_link("Math").click()
    message = tab.message("Here is the corrected work")
    image = message.locator("img")
    await expect(image).to_have_attribute("alt", "Image: page1.png")
    await eventually(
        lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), what="image load"
    )
    assert (await image.get_attribute("src")) == "/t/f1.png"
    await expect(message.locator("a.msg-file")).to_have_text("notes.pdf (2.4 MB)")
    await expect(message.locator(".msg-reactions li")).to_have_text(["👍 2"])
    await expect(message.locator(".msg-reactions li.mine")).to_have_count(1)
    # Chromium reports the expired link's 403, and nothing else.
    expired = "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    assert tab.errors == [expired]


# --- attaching and sending files -----------------------------------------------------------


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain PNG of one colour (something to see in the screenshots)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def upload(name: str, content_type: str, body: bytes) -> dict[str, Any]:
    """A file for Playwright's file inputs."""
    return {"name": name, "mimeType": content_type, "buffer": body}


def aiohttp_file(name: str, body: bytes) -> Any:
    """A file part for an aiohttp form (the `file` part of an upload)."""
    part = io.BytesIO(body)
    part.name = name
    return part


@bounded
async def test_attached_files_must_upload_before_the_message_goes(
    open_tab: OpenTab, api: World, school: School
) -> None:
    """The composer's file list, with the upload answers given by the test: a refused upload
    holds the message back until removed; at most ten files; another chat starts empty."""
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    page = student.page
    await expect(page.locator("#top-status")).to_have_text("No messages yet.")
    uploads: list[str] = []

    async def answer(route: Route) -> None:
        uploads.append(route.request.url)
        if len(uploads) == 1:
            error = {"code": "payload_too_large", "message": "The file is over 20 MiB."}
            await route.fulfill(status=413, json={"error": error})
            return
        n = len(uploads)
        file = {"id": f"f{n}", "name": f"{n}.txt", "size": 1, "content_type": "text/plain"}
        await route.fulfill(status=201, json={"file": {**file, "url": f"/t/{n}"}})

    await page.route(re.compile(r"/api/v1/chats/\d+/files$"), answer)
    files = page.locator("#composer-files > li")
    await page.locator("#composer-file").set_input_files(
        [upload("big.bin", "application/octet-stream", b"x" * 100)]
    )
    await expect(files).to_have_count(1)
    await expect(files.first).to_contain_text("big.bin")
    await expect(files.first).to_contain_text("Not uploaded: The file is over 20 MiB.")
    assert uploads == [student.page.url.split("#")[0] + f"api/v1/chats/{school.math}/files"]
    # The message waits: Enter keeps the text and says why.
    await page.locator("#composer-input").fill("Here is my work")
    await page.locator("#composer-input").press("Enter")
    await expect(page.locator("#composer-file-status")).to_have_text(
        "A file did not upload: try it again or remove it."
    )
    await expect(page.locator("#composer-input")).to_have_value("Here is my work")
    await expect(student.messages()).to_have_count(0)
    # Tried again with the keyboard, it uploads (the focus stays on the file's row)...
    await files.first.get_by_role("button", name="Retry").focus()
    await page.keyboard.press("Enter")
    await expect(files.first.locator(".file-state")).to_have_text("Ready")
    await expect(files.first.get_by_role("button", name="Remove big.bin")).to_be_focused()
    assert len(uploads) == 2
    # ...and removed with the keyboard, the list is gone.
    await page.keyboard.press("Enter")
    await expect(files).to_have_count(0)
    await expect(page.locator("#composer-files")).to_be_hidden()
    await expect(page.locator("#composer-input")).to_be_focused()

    # Eleven at once: ten are attached and upload, the eleventh is refused, saying so.
    await page.locator("#composer-file").set_input_files(
        [upload(f"page{n}.txt", "text/plain", b"p") for n in range(11)]
    )
    await expect(files).to_have_count(10)
    await expect(page.locator("#composer-file-status")).to_have_text(
        "At most 10 files can go in one message."
    )
    await expect(page.locator("#composer-files .file-state.ok")).to_have_count(10)
    assert len(uploads) == 12

    # Another chat: the files were for this one, so the list starts empty there.
    await student.chat_link("Physics").click()
    await expect(page.locator("#chat-title")).to_contain_text("Physics")
    await expect(files).to_have_count(0)
    # Chromium logs the refused upload's status itself; nothing else reaches the console.
    assert student.errors == [
        "Failed to load resource: the server responded with a status of 413 (Payload Too Large)"
    ]


@pytest.mark.needs_files
@bounded
async def test_files_go_from_the_student_to_the_teacher(
    open_tab: OpenTab, api: World, school: School, screenshots: Path
) -> None:
    student = await open_tab(school.student, fragment=f"chat={school.math}")
    teacher = await open_tab(school.teacher, fragment=f"chat={school.math}")
    page = student.page
    await expect(page.locator("#top-status")).to_have_text("No messages yet.")
    pdf = b"%PDF-1.4\n" + b"0" * 3000

    # Two files, attached with the button's file chooser; each is uploaded at once.
    async with page.expect_file_chooser() as chooser:
        await page.locator("#composer-attach").click()
    await (await chooser.value).set_files(
        [
            upload("work.png", "image/png", png(160, 110, (70, 120, 200))),
            upload("notes.pdf", "application/pdf", pdf),
        ]
    )
    files = page.locator("#composer-files > li")
    await expect(files).to_have_count(2)
    await expect(page.locator("#composer-files .file-state.ok")).to_have_text(["Ready", "Ready"])
    await page.locator("#composer-input").fill("My homework")
    await page.screenshot(path=screenshots / "files-attached.png")
    await page.locator("#composer-input").press("Enter")
    await expect(files).to_have_count(0)

    sent = student.message("My homework")
    await expect(sent.locator(".msg-status")).to_contain_text("Sent")
    await expect(sent.locator("img")).to_have_attribute("alt", "Image: work.png")
    await expect(sent.locator("a.msg-file")).to_have_text(re.compile(r"^notes\.pdf \(\d"))

    # The teacher gets it live: the image shows, the other file is a link.
    got = teacher.message("My homework")
    image = got.locator("img")
    await expect(image).to_have_attribute("alt", "Image: work.png")
    await eventually(
        lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), what="image load"
    )
    link = got.locator("a.msg-file")
    await expect(link).to_have_text(re.compile(r"^notes\.pdf \(\d"))
    await teacher.page.screenshot(path=screenshots / "files-teacher.png")
    # Following the link asks for a fresh one first, then downloads the file.
    renewal = re.compile(r"/api/v1/files/[^/?]+$")
    async with teacher.page.expect_request(renewal), teacher.page.expect_download() as download:
        await link.click()
    assert (await download.value).suggested_filename == "notes.pdf"

    # A file alone, without text.
    await page.locator("#composer-file").set_input_files([upload("only.png", "image/png", PNG_1PX)])
    await expect(page.locator("#composer-files .file-state.ok")).to_have_text(["Ready"])
    await page.locator("#composer-input").press("Enter")
    await expect(teacher.page.get_by_alt_text("Image: only.png")).to_have_count(1)
    # The chat list names the file where a text would be.
    await expect(teacher.chat_link("Math")).to_contain_text("Sam Student: 📎 only.png")

    stored = await messages_of(api, school.teacher, school.math)
    assert [(m["content"], [f["name"] for f in m["files"]]) for m in stored] == [
        ("My homework", ["work.png", "notes.pdf"]),
        ("", ["only.png"]),
    ]
    assert_no_console_errors(student, teacher)


@pytest.mark.needs_files
@bounded
async def test_an_image_whose_link_ran_out_is_shown_with_a_fresh_one(
    open_tab: OpenTab, api: World, school: School
) -> None:
    resp = await api.client.post(
        f"/api/v1/chats/{school.math}/files",
        data={"file": aiohttp_file("scan.png", PNG_1PX)},
        headers=api.auth(school.teacher),
    )
    assert resp.status == 201, await resp.text()
    file = (await resp.json())["file"]
    await api.post(school.teacher, school.math, "Corrected", file_ids=[file["id"]])

    tab = await open_tab(None)  # signed out: the route goes in before anything loads
    # The link the page gets has stopped working (a link that was changed is refused like
    # one whose time is up: 403), so the page asks GET /api/v1/files/{id} for a fresh one.
    spoilt: list[str] = []

    async def spoil_the_link(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        for message in body["messages"]:
            for f in message["files"]:
                f["url"] += "0"
                spoilt.append(f["url"])
        await route.fulfill(response=response, body=json.dumps(body))

    await tab.page.route(re.compile(r"/api/v1/chats/\d+/messages\?"), spoil_the_link)
    await tab.page.locator("#signin-token").fill(api.token(school.student))
    async with tab.page.expect_response(re.compile(rf"/api/v1/files/{file['id']}$")) as renewed:
        await tab.page.locator("#signin-token").press("Enter")
        await tab.chat_link("Math").click()
        image = tab.message("Corrected").locator("img")
        await expect(image).to_have_attribute("alt", "Image: scan.png")
    assert (await renewed.value).status == 200
    await eventually(
        lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), what="image load"
    )
    assert len(spoilt) == 1
    assert await image.get_attribute("src") not in spoilt
    forbidden = "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    assert tab.errors == [forbidden]
