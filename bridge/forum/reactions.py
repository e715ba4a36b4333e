"""Reactions (docs/api.md): a user's emoji on a message, from the web or from Pachca.

``add_reaction`` and ``remove_reaction`` are the one writer of reactions, shared by the web
API and the Pachca relay, inside the caller's transaction: the row, its feed event
(``reaction.added`` / ``reaction.removed``) and - when a web user's reaction changes - the job
that makes the bot's reactions on the Pachca copy follow (bridge/pachca/jobs.py
``sync_reactions``: the bot holds an emoji while at least one web user does).

An emoji is one emoji as Unicode defines them - skin tones and ZWJ sequences included - by
the `emoji` library's data, not a list kept here. A user holds at most ``MAX_EMOJI_PER_USER``
different emoji on one message (Pachca's own limit).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import emoji as emoji_data

from bridge.auth import Principal
from bridge.errors import ChatInactive, Forbidden, InvalidRequest, NotFound
from bridge.feed import events as ev
from bridge.forum.chats import ChatAccess, load_access, require_view
from bridge.pachca.jobs import queue_reaction_sync
from bridge.runtime import Runtime, utcnow
from store import messages as message_store
from store import reactions as store
from store.tx import Tx

MAX_EMOJI_PER_USER = 20
WEB, PACHCA = store.WEB, store.PACHCA


def is_one_emoji(text: str) -> bool:
    """A single emoji: one code point or a sequence (skin tone, ZWJ, flag, keycap)."""
    return emoji_data.is_emoji(text)


class Added(StrEnum):
    ADDED = "added"
    HELD = "held"  # the user holds it already: nothing changes
    TOO_MANY = "too_many"  # the user holds MAX_EMOJI_PER_USER others on the message


async def add_reaction(
    rt: Runtime,
    tx: Tx,
    message: Any,
    user_id: str,
    emoji: str,
    *,
    source: str,
    at: datetime,
    now: datetime,
) -> tuple[Added, ev.FeedEvent | None]:
    """Give ``user_id`` the reaction ``emoji`` on ``message`` (its row held: ``id``,
    ``chat_id``), made ``at`` from ``source``; the outcome and the event to publish."""
    held = await store.of_user(tx, message["id"], user_id)
    if emoji in held:
        return Added.HELD, None
    if len(held) >= MAX_EMOJI_PER_USER:
        return Added.TOO_MANY, None
    await store.add(tx, message["id"], user_id, emoji, source=source, created_at=at)
    if source == WEB:
        await queue_reaction_sync(tx, message["id"], message["chat_id"], now)
    event = await _event(rt, tx, ev.REACTION_ADDED, message, user_id, emoji, now)
    return Added.ADDED, event


async def remove_reaction(
    rt: Runtime, tx: Tx, message: Any, user_id: str, emoji: str, *, now: datetime
) -> ev.FeedEvent | None:
    """Take ``user_id``'s ``emoji`` off ``message``; the event to publish, or None when they
    did not hold it."""
    source = await store.remove(tx, message["id"], user_id, emoji)
    if source is None:
        return None
    if source == WEB:
        await queue_reaction_sync(tx, message["id"], message["chat_id"], now)
    return await _event(rt, tx, ev.REACTION_REMOVED, message, user_id, emoji, now)


async def _event(
    rt: Runtime, tx: Tx, kind: str, message: Any, user_id: str, emoji: str, now: datetime
) -> ev.FeedEvent:
    body = {"message_id": message["id"], "user_id": user_id, "emoji": emoji}
    return await rt.events.append(tx, kind, message["chat_id"], body, now)


class Reactions:
    """``PUT`` / ``DELETE /api/v1/messages/{id}/reactions/{emoji}``."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    async def add(self, who: Principal, message_id: int, emoji: str) -> None:
        mine = await self._check(who, message_id, emoji)
        if emoji in mine:
            return  # repeating it changes nothing, and costs nothing
        if len(mine) >= MAX_EMOJI_PER_USER:
            raise _too_many()
        self.rt.count_write(who.id)
        now = utcnow()
        async with self.rt.db.write() as tx:
            message = await store.lock_live_message(tx, message_id)
            if message is None:
                raise NotFound("no such message")
            added, event = await add_reaction(
                self.rt, tx, message, who.id, emoji, source=WEB, at=now, now=now
            )
            if added is Added.TOO_MANY:  # others came meanwhile
                raise _too_many()
        if event is not None:
            await self.rt.publish([event])

    async def remove(self, who: Principal, message_id: int, emoji: str) -> None:
        mine = await self._check(who, message_id, emoji)
        if emoji not in mine:
            return  # nothing to take back: nothing changes, nothing is counted
        self.rt.count_write(who.id)
        now = utcnow()
        async with self.rt.db.write() as tx:
            message = await store.lock_live_message(tx, message_id)
            if message is None:
                raise NotFound("no such message")
            event = await remove_reaction(self.rt, tx, message, who.id, emoji, now=now)
        if event is not None:
            await self.rt.publish([event])

    async def _check(self, who: Principal, message_id: int, emoji: str) -> set[str]:
        """The checks in the API's order - the message (404), seeing and posting in its chat
        (403), the emoji (400), the chat's state (400 chat_inactive) - and the emoji the user
        holds on the message."""
        async with self.rt.db.read() as conn:
            row = await message_store.get_message(conn, message_id)
            if row is None:
                raise NotFound("no such message")
            access: ChatAccess = await load_access(conn, row["chat_id"])
            require_view(who, access)
            if not access.can_post(who):
                raise Forbidden("you may not react in this chat")
            if not is_one_emoji(emoji):
                raise InvalidRequest("a reaction is one emoji")
            if not access.is_active:
                raise ChatInactive("this chat is read-only")
            return set(await store.of_user(conn, message_id, who.id))


def _too_many() -> InvalidRequest:
    return InvalidRequest(f"at most {MAX_EMOJI_PER_USER} different reactions per message")
