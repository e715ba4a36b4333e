"""The bot's answers to ``/help``, ``/link CODE`` and ``/threads`` (docs/pachca.md).

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
from bridge.pachca.jobs import SEND_TEXT
from store import forum
from store import outbox as outbox_store
from store import pachca_links as links
from store.tx import Tx

# A thread is a chat in Pachca; this is the web app's address of a chat (the form of the
# `url` Pachca gives its messages: https://app.pachca.com/chats/<chat id>?message=<id>).
THREAD_LINK = "https://app.pachca.com/chats/{thread_chat_id}"
MAX_LISTED_THREADS = 50

HELP_TEXT = (
    "This bot connects Pachca with the learning platform's forum.\n"
    "Commands:\n"
    "/link CODE - tie your Pachca account to your platform account "
    "(get the code on the platform)\n"
    "/threads - your open forum threads, with links\n"
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
