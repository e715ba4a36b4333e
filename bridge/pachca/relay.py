"""Pachca -> forum: verified webhook events turned into forum changes (docs/pachca.md).

One event, one short transaction, one decision: the event's delivery key
(``webhook_deliveries``) is recorded first, so a redelivery stops there; then the facts the
decision needs are read in that transaction (the message the event is about, the forum chat
and its participants, the Pachca author's platform user, the replied-to message), ``decide``
- a pure function - turns them into one action, and the action's writes (a message row and its
feed event, or a bot answer queued in the outbox) join the transaction. Nothing is
half-written: if the transaction fails, the key goes with it and Pachca's redelivery gets a
clean second try. Events are published after the commit.

``reaction`` and ``chat_member`` events go the same way in modules of their own
(bridge/pachca/reactions.py, bridge/pachca/membership.py); other kinds are ignored.

What is relayed: a ``message`` event in a forum thread's chat (``chats.pachca_thread_chat_id``)
from a linked Pachca user (``users.pachca_user_id``) whom the role policy lets post there, in an
active chat. ``update`` and ``delete`` mirror onto the relayed message. Everything else is
dropped with one structured log line naming the reason:

    own_message     the bot's own message (``pachca.bot_user_id``)
    echo            the Pachca copy of a web message the bridge posted itself
    direct_message  a direct message to the bot that is not a command
    unmapped_chat   a chat that mirrors no forum chat
    unlinked_user   a Pachca user tied to no platform user
    not_allowed     the policy forbids it (a tutor in a subject thread, say)
    chat_inactive   the forum chat is read-only
    not_author      an edit by someone other than the relayed message's author
    stale_edit      an edit older than (or the same as) the one already applied
    message_deleted an edit of a message already deleted
    unknown_message an edit or delete of a message that was never relayed
    link_blocked    a /link from a Pachca user blocked after too many wrong codes (no answer)

Commands: a message in a direct chat with the bot, or in a forum thread, that reads as a slash
command (bot/commands.py) is answered by bridge/pachca/commands.py and never relayed; a command
the bot does not know is answered with the help text.

Files: a webhook carries none, so every relayed message queues a ``copy_files`` job
(bridge/pachca/file_copies.py) that reads it and copies its files; a message without text
(files only, ``content: ""``) is created by that job once its files are stored. NUL
characters, which PostgreSQL cannot store in text, are removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from bot.commands import Command, UnknownCommand, parse_command
from bot.webhooks import (
    ChatMemberWebhookPayload,
    MessageWebhookPayload,
    ReactionWebhookPayload,
    UnknownPayload,
    WebhookPayload,
    delivery_key,
)
from bridge import policy
from bridge.feed import events as ev
from bridge.forum import views, waiting
from bridge.forum.chats import ChatAccess, access_from_rows
from bridge.forum.messages import add_message
from bridge.pachca import commands as bot_commands
from bridge.pachca.file_copies import ATTACHMENT_NOTE
from bridge.pachca.jobs import COPY_FILES
from bridge.pachca.membership import MemberWebhooks
from bridge.pachca.outcomes import Handled, Outcome
from bridge.pachca.outcomes import dropped as _dropped
from bridge.pachca.reactions import ReactionWebhooks
from bridge.runtime import Runtime, utcnow
from store import files as file_store
from store import forum, webhook_keys
from store import messages as message_store
from store import outbox as outbox_store
from store import pachca_links as links
from store.errors import Conflict, StoreError
from store.tx import Row, Tx

log = structlog.get_logger("bridge.relay")

# Pachca ids are int32 in the spec (thread chat ids already exceed it); the columns are BIGINT.
MAX_ID = 2**63 - 1
# Failures worth a retry: the database (or the network to it) is unavailable, not the event.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StoreError, OSError, TimeoutError)


# --- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What the database knows about a message event, read in its transaction."""

    existing: Row | None  # the forum message mirroring the Pachca message, with its sender
    access: ChatAccess | None  # the existing message's chat, else the thread's forum chat
    user: Row | None  # the platform user linked to the Pachca author (when it can matter)
    parent: Row | None  # the forum message the Pachca message replies to (a new one's)


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer a bot command."""

    command: Command | UnknownCommand
    chat_id: int | None  # the forum chat whose thread it came from


@dataclass(frozen=True, slots=True)
class Create:
    """Store the Pachca message as a new forum message."""

    access: ChatAccess
    user: Row
    edited: bool  # an edit standing for a "new" event that never came
    reply_to_id: int | None


@dataclass(frozen=True, slots=True)
class Update:
    """Apply a Pachca edit to the relayed message."""

    message: Row
    access: ChatAccess


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the relayed message, as its Pachca original was."""

    message: Row
    access: ChatAccess


Action = Handled | Answer | Create | Update | Delete


def decide(p: MessageWebhookPayload, facts: Facts) -> Action:
    """The one decision about a message event: an action to apply, or the outcome itself
    (a drop with its reason, a duplicate)."""
    if p.event == "new":
        return _decide_new(p, facts)
    if p.event == "update":
        return _decide_update(p, facts)
    return _decide_delete(facts)


def _decide_new(p: MessageWebhookPayload, f: Facts) -> Action:
    if f.existing is not None:
        if f.existing["source"] == "web":
            return _dropped("echo")
        return Handled(Outcome.DUPLICATE, "already_relayed")
    if p.entity_type == "user" or f.access is not None:
        command = parse_command(p.content)
        if command is not None:
            return Answer(command, f.access.id if f.access is not None else None)
    if p.entity_type == "user":
        return _dropped("direct_message")
    return _decide_create(f, edited=False)


def _decide_create(f: Facts, *, edited: bool) -> Action:
    """Whether the message may become a forum message: its chat and author allow it."""
    if f.access is None:
        return _dropped("unmapped_chat")
    user = f.user
    if user is None:
        return _dropped("unlinked_user")
    access = f.access
    if not policy.can_post(user["role"], access.type, access.is_member(user["id"])):
        return _dropped("not_allowed")
    if not access.is_active:
        return _dropped("chat_inactive")
    return Create(access, user, edited, _reply_to_id(f.parent, access.id))


def _reply_to_id(parent: Row | None, chat_id: int) -> int | None:
    """A Pachca reply becomes a forum reply when its parent is a live message of this chat."""
    if parent is None or parent["chat_id"] != chat_id or parent["deleted_at"] is not None:
        return None
    return parent["id"]


def _decide_update(p: MessageWebhookPayload, f: Facts) -> Action:
    row = f.existing
    if row is None:
        if p.entity_type == "user":
            return _dropped("direct_message")
        if f.access is not None and parse_command(p.content) is not None:
            return _dropped("unknown_message")  # an edited command: commands run once
        # The "new" event was lost or is still on its way: this version stands for it
        # (the late "new" then finds the message and changes nothing).
        return _decide_create(f, edited=True)
    if row["source"] == "web":
        return _dropped("echo")
    if row["deleted_at"] is not None:
        return _dropped("message_deleted")
    applied = row["pachca_changed_at"]
    if p.changed_at is not None and applied is not None and p.changed_at <= applied:
        return _dropped("stale_edit")
    user = f.user
    if user is None or user["id"] != row["sender_id"]:
        return _dropped("not_author")
    access = f.access
    assert access is not None  # the message's chat: deleting a chat deletes its messages
    if not policy.can_edit(user["role"], access.type, access.is_member(user["id"]), True):
        return _dropped("not_allowed")
    if not access.is_active:
        return _dropped("chat_inactive")
    return Update(row, access)


def _decide_delete(f: Facts) -> Action:
    row = f.existing
    if row is None:
        return _dropped("unknown_message")
    if row["source"] == "web":
        return _dropped("echo")
    if row["deleted_at"] is not None:
        return Handled(Outcome.DUPLICATE, "already_deleted")
    assert f.access is not None  # the message's chat: deleting a chat deletes its messages
    return Delete(row, f.access)


async def gather_facts(tx: Tx, p: MessageWebhookPayload) -> Facts:
    """Read what ``decide`` may need about ``p``, and no more: what cannot matter to an event
    of its kind is not read."""
    existing = await links.message_by_pachca_id(tx, p.id)
    creating = existing is None and p.event != "delete"
    rows: list[Row] = []
    if existing is not None and p.event != "new":
        rows = await forum.chat_access(tx, existing["chat_id"])
    elif creating and p.entity_type != "user":
        rows = await links.chat_of_thread(tx, p.chat_id)
    access = access_from_rows(rows) if rows else None
    user = None
    if (creating and access is not None) or (existing is not None and p.event == "update"):
        user = await links.user_by_pachca_id(tx, p.user_id)
    parent = None
    if creating and access is not None and p.parent_message_id is not None:
        parent = await links.message_by_pachca_id(tx, p.parent_message_id)
    return Facts(existing, access, user, parent)


# --- the relay ---------------------------------------------------------------------------------


class Relay:
    """Applies parsed webhook payloads; shared by the webhook endpoint and history recovery."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        # The other kinds of event the bridge acts on, each decided in a module of its own.
        self.reactions = ReactionWebhooks(rt)
        self.members = MemberWebhooks(rt)

    async def handle(self, payload: WebhookPayload | UnknownPayload) -> Handled:
        """Process one event. Database failures propagate (the caller answers 503 / retries);
        everything else ends in a Handled outcome."""
        if isinstance(payload, MessageWebhookPayload):
            result = await self._message(payload)
        elif isinstance(payload, ReactionWebhookPayload):
            result = await self.reactions.handle(payload)
        elif isinstance(payload, ChatMemberWebhookPayload):
            result = await self.members.handle(payload)
        else:
            result = Handled(Outcome.IGNORED, "unhandled_type")
        _log(payload, result)
        return result

    async def _message(self, p: MessageWebhookPayload) -> Handled:
        # What needs no database first.
        bot_user_id = self.rt.live.current.pachca.bot_user_id
        if bot_user_id is not None and p.user_id == bot_user_id:
            return _dropped("own_message")
        problem = _unusable(p)
        if problem is not None:
            return Handled(Outcome.INVALID, problem)
        key = delivery_key(p)
        try:
            result = await self._once(p, key)
        except Conflict:
            # A concurrent event about the same message (a "new" and an early "update" with
            # different keys) stored it first; a second pass sees that message.
            result = await self._once(p, key)
        await self.rt.publish(result.events)
        return result

    async def _once(self, p: MessageWebhookPayload, key: str) -> Handled:
        """Record the key, gather the facts, decide, apply: one transaction."""
        now = utcnow()
        async with self.rt.db.write() as tx:
            if not await webhook_keys.record(tx, key, now):
                return Handled(Outcome.DUPLICATE)
            action = decide(p, await gather_facts(tx, p))
            return await self._apply(tx, p, action, now)

    async def _apply(
        self, tx: Tx, p: MessageWebhookPayload, action: Action, now: datetime
    ) -> Handled:
        if isinstance(action, Handled):
            return action
        if isinstance(action, Answer):
            reply_to = _reply_to(p, action.chat_id)
            if await bot_commands.answer(tx, action.command, p.user_id, reply_to, now) is None:
                return _dropped("link_blocked")
            return Handled(Outcome.COMMAND, f"/{action.command.name}")
        if isinstance(action, Create):
            return await self._create(tx, p, action, now)
        if isinstance(action, Update):
            return await self._update(tx, p, action, now)
        return await self._delete(tx, action, now)

    async def _create(
        self, tx: Tx, p: MessageWebhookPayload, action: Create, now: datetime
    ) -> Handled:
        """A message with text is stored at once; one without (files only) waits for the job
        that copies its files (bridge/pachca/file_copies.py). Either way that job is queued
        here, with the delivery key: webhooks carry no files, so it reads the message."""
        # Pachca's time, not ours, so a message recovered after downtime keeps its time; never
        # in the future, though, whatever the clocks say.
        created_at = min(p.created_at, now)
        access, user = action.access, action.user
        edited_at = _edited_at(p, now) if action.edited else None
        copy: dict[str, Any] = {"pachca_message_id": p.id}
        if not p.content.strip():
            copy["create"] = {
                "chat_id": access.id,
                "sender_id": user["id"],
                "sender_name": user["name"],
                "sender_role": user["role"],
                "created_at": created_at.isoformat(),
                "edited_at": edited_at.isoformat() if edited_at else None,
                "reply_to_id": action.reply_to_id,
                "pachca_changed_at": p.changed_at.isoformat() if p.changed_at else None,
            }
            await outbox_store.enqueue(tx, COPY_FILES, copy, chat_id=access.id, now=now)
            return Handled(Outcome.ACCEPTED, "copying_files")
        _, event = await add_message(
            self.rt,
            tx,
            {
                "chat_id": access.id,
                "sender_id": user["id"],
                "content": _content(p),
                "created_at": created_at,
                "edited_at": edited_at,
                "reply_to_id": action.reply_to_id,
                "source": "pachca",
                "pachca_message_id": p.id,
                "pachca_changed_at": p.changed_at,
            },
            now,
            sender_name=user["name"],
            sender_role=user["role"],
            last_at=max(access.chat["last_activity_at"], created_at),
            post_to_pachca=False,
        )
        await outbox_store.enqueue(tx, COPY_FILES, copy, chat_id=access.id, now=now)
        return Handled(Outcome.ACCEPTED, "created", (event,))

    async def _update(
        self, tx: Tx, p: MessageWebhookPayload, action: Update, now: datetime
    ) -> Handled:
        row, access = action.message, action.access
        # Without text, a message with files keeps its files and no text.
        content = "" if row["files"] and not p.content.strip() else _content(p)
        edited_at = _edited_at(p, now)
        values: dict[str, Any] = {"content": content, "edited_at": edited_at}
        if p.changed_at is not None:
            values["pachca_changed_at"] = p.changed_at
        await message_store.update_message(tx, row["id"], values)
        message = views.message_obj(
            {**row, "content": content, "edited_at": edited_at},
            access.marks(),
            links=self.rt.file_links,
        )
        event = await self.rt.events.append(
            tx, ev.MESSAGE_UPDATED, access.id, {"message": message}, now
        )
        return Handled(Outcome.ACCEPTED, "updated", (event,))

    async def _delete(self, tx: Tx, action: Delete, now: datetime) -> Handled:
        """A relayed message deleted in Pachca is deleted here too: the original is gone, and
        the copy follows it (whoever deleted it)."""
        row, access = action.message, action.access
        await message_store.update_message(tx, row["id"], {"deleted_at": now})
        await waiting.message_deleted(tx, access.id, row["sender_role"])
        # The bytes go with the sweeper's next pass (this runs inside the webhook's one
        # transaction; the links answer 404 from the commit on).
        await file_store.delete_of_message(tx, row["id"], now)
        if access.chat["last_message_id"] == row["id"]:
            newest = await message_store.newest_live(tx, access.id)
            await forum.set_last_message(
                tx,
                access.id,
                newest["id"] if newest else None,
                newest["created_at"] if newest else access.chat["created_at"],
            )
        event = await self.rt.events.append(
            tx, ev.MESSAGE_DELETED, access.id, {"message_id": row["id"]}, now
        )
        return Handled(Outcome.ACCEPTED, "deleted", (event,))


# --- helpers -------------------------------------------------------------------------------


def _reply_to(p: MessageWebhookPayload, chat_id: int | None) -> bot_commands.ReplyTo:
    """Back where the command came from: the direct chat with its sender, or the thread."""
    if p.entity_type == "user":
        # In a direct chat the sender is the other side; a message "to user X" reaches them.
        return bot_commands.ReplyTo("user", p.user_id, None)
    if p.entity_type == "thread":
        return bot_commands.ReplyTo("thread", p.entity_id, chat_id)
    return bot_commands.ReplyTo("discussion", p.chat_id, chat_id)


def _content(p: MessageWebhookPayload) -> str:
    if not p.content.strip():
        return ATTACHMENT_NOTE
    return p.content.replace("\x00", "")


def _edited_at(p: MessageWebhookPayload, now: datetime) -> datetime:
    return min(p.changed_at, now) if p.changed_at is not None else now


def _unusable(p: MessageWebhookPayload) -> str | None:
    """Why a well-formed payload still cannot be stored (values our columns cannot hold), or
    None. Such an event is permanently bad: it is acknowledged, not retried."""
    ids = (p.id, p.chat_id, p.entity_id, p.user_id, p.parent_message_id or 1)
    if not all(0 < i <= MAX_ID for i in ids):
        return "id_out_of_range"
    try:
        for moment in (p.created_at, p.changed_at):
            if moment is not None:
                moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return "time_out_of_range"
    return None


def _log(payload: WebhookPayload | UnknownPayload, result: Handled) -> None:
    fields: dict[str, Any] = {
        "outcome": result.outcome.value,
        "reason": result.reason,
        # "event" is structlog's own key (the log line's message).
        "webhook_type": getattr(payload, "type", None),
        "webhook_event": getattr(payload, "event", None),
    }
    if isinstance(payload, MessageWebhookPayload):
        # Ids only: message text never goes to the log.
        fields.update(
            pachca_message_id=payload.id,
            pachca_chat_id=payload.chat_id,
            pachca_user_id=payload.user_id,
        )
    elif isinstance(payload, ReactionWebhookPayload):
        fields.update(
            pachca_message_id=payload.message_id,
            pachca_chat_id=payload.chat_id,
            pachca_user_id=payload.user_id,
        )
    elif isinstance(payload, ChatMemberWebhookPayload):
        fields.update(pachca_chat_id=payload.chat_id, pachca_user_ids=payload.user_ids)
    if result.outcome in (Outcome.ACCEPTED, Outcome.COMMAND):
        log.debug("webhook event", **fields)
    else:
        log.info("webhook event", **fields)
