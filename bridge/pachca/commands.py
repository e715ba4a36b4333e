"""The bot's answers to ``/help``, ``/link CODE``, ``/threads`` and ``/waiting``
(docs/pachca.md).

An answer is not sent here: it is queued as a SEND_TEXT outbox job in the caller's transaction
(the same one that records the webhook's delivery key), so a redelivered command is answered
once, and a failed transaction answers nothing.

Every answer starts with a word, never a slash: if the bot's own message ever comes back as a
webhook (no ``bot_user_id`` configured), it cannot be read as a command and loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.commands import Command, UnknownCommand
from bridge.auth import Principal
from bridge.forum.chats import chat_filter
from bridge.forum.linking import LinkStatus, link_account
from bridge.forum.waiting import describe_wait, waited_s
from bridge.pachca.jobs import SEND_TEXT, THREAD_LINK
from bridge.policy import PARTNER_ROLES
from store import forum
from store import outbox as outbox_store
from store import pachca_links as links
from store import waiting as waiting_store
from store.tx import Tx

MAX_LISTED_THREADS = 50

HELP_TEXT = (
    "This bot connects Pachca with the learning platform's forum.\n"
    "Commands:\n"
    "/link CODE - tie your Pachca account to your platform account "
    "(get the code on the platform)\n"
    "/threads - your open forum threads, with links\n"
    "/waiting - your threads where a student waits for your answer, longest first\n"
    "/help - this message"
)
LINK_USAGE = "Usage: /link CODE, with the code the platform gave you."
LINK_ANSWERS = {
    LinkStatus.EXPIRED: "That code has expired. Get a new one on the platform and send "
    "/link NEWCODE.",
    LinkStatus.USED: "That code has already been used. Get a new one on the platform if you "
    "need to link again.",
    LinkStatus.UNKNOWN: "That code is not valid. Check it and try again, or get a new one on "
    "the platform.",
}
LINK_BLOCKED = (
    "Too many wrong codes: /link is blocked for {minutes} minutes, and codes sent meanwhile "
    "are ignored without an answer."
)
NOT_LINKED = "Your Pachca account is not linked yet. Send /link CODE with a code from the platform."
NO_THREADS = "You have no open forum threads."
NO_WAITING = "No student is waiting for your answer."
# Answered in the direct chat with the sender wherever they ask: the list names other
# students, which a thread's other members need not see.
PRIVATE_COMMANDS = frozenset({"waiting"})


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Where an answer goes: back where the command came from."""

    entity_type: str  # "user" (a direct chat), "thread" or "discussion"
    entity_id: int
    chat_id: int | None  # the forum chat whose thread the command came from, if any


async def answer(
    conn: Tx,
    command: Command | UnknownCommand,
    pachca_user_id: int,
    reply_to: ReplyTo,
    now: datetime,
) -> str | None:
    """Carry out a command and queue its answer; returns the answer's text, or None when the
    command gets no answer (a /link from someone blocked for wrong codes: they were told
    once, and a guesser must not be able to make the bot talk)."""
    text = await _run(conn, command, pachca_user_id, now)
    if text is None:
        return None
    if isinstance(command, Command) and command.name in PRIVATE_COMMANDS:
        reply_to = ReplyTo("user", pachca_user_id, None)
    await outbox_store.enqueue(
        conn,
        SEND_TEXT,
        {"entity_type": reply_to.entity_type, "entity_id": reply_to.entity_id, "content": text},
        chat_id=reply_to.chat_id,
        # Outside a forum thread, answers to one person queue behind each other only.
        lane=outbox_store.entity_lane(reply_to.entity_type, reply_to.entity_id),
        now=now,
    )
    return text


async def _run(
    conn: Tx, command: Command | UnknownCommand, pachca_user_id: int, now: datetime
) -> str | None:
    if isinstance(command, UnknownCommand):
        return f"Unknown command /{command.name}.\n\n{HELP_TEXT}"
    if command.name == "link":
        if not command.arg:
            return LINK_USAGE
        result = await link_account(conn, command.arg, pachca_user_id, now)
        if result.status is LinkStatus.LINKED:
            return f"Done: your Pachca account is now linked to {result.user['name']}."
        if result.status is LinkStatus.BLOCKED:
            return None
        if result.blocked_until is not None:
            minutes = round((result.blocked_until - now).total_seconds() / 60)
            return f"{LINK_ANSWERS[result.status]}\n{LINK_BLOCKED.format(minutes=minutes)}"
        return LINK_ANSWERS[result.status]
    if command.name == "threads":
        return await _threads(conn, pachca_user_id)
    if command.name == "waiting":
        return await _waiting(conn, pachca_user_id, now)
    return HELP_TEXT


async def _threads(conn: Tx, pachca_user_id: int) -> str:
    user = await links.user_by_pachca_id(conn, pachca_user_id)
    if user is None:
        return NOT_LINKED
    who = Principal(user["id"], user["role"], user["name"])
    flt = chat_filter(who)
    records = await forum.load_chats(conn, who.id, flt=flt) if flt.chat_types else []
    # Open threads the user takes part in (an admin sees every chat but takes part in none),
    # newest activity first.
    lines = [
        f"• {r.chat['title']}: "
        + THREAD_LINK.format(thread_chat_id=r.chat["pachca_thread_chat_id"])
        for r in records
        if r.chat["is_active"]
        and r.chat["pachca_thread_chat_id"] is not None
        and any(p["id"] == who.id for p in r.participants)
    ]
    if not lines:
        return NO_THREADS
    more = len(lines) - MAX_LISTED_THREADS
    text = "Your open forum threads:\n" + "\n".join(lines[:MAX_LISTED_THREADS])
    return text + (f"\n…and {more} more" if more > 0 else "")


async def _waiting(conn: Tx, pachca_user_id: int, now: datetime) -> str:
    user = await links.user_by_pachca_id(conn, pachca_user_id)
    if user is None:
        return NOT_LINKED
    rows = await waiting_store.of_assignee(
        conn, user["id"], PARTNER_ROLES, limit=MAX_LISTED_THREADS + 1
    )
    if not rows:
        return NO_WAITING
    lines = []
    for r in rows[:MAX_LISTED_THREADS]:
        thread = r["pachca_thread_chat_id"]
        link = THREAD_LINK.format(thread_chat_id=thread) if thread is not None else "no thread yet"
        wait = describe_wait(waited_s(r["since"], now))
        lines.append(f"• {r['title']} - waiting {wait}: {link}")
    text = "Students waiting for your answer, longest first:\n" + "\n".join(lines)
    return text + ("\n…and more" if len(rows) > MAX_LISTED_THREADS else "")
