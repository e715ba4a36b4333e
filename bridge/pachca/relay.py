"""Pachca -> forum: verified webhook events turned into forum changes (docs/pachca.md).

One event, one short transaction: the event's delivery key (``webhook_deliveries``) is recorded
first, so a redelivery stops there, and in the same transaction its effect - a message row and
its feed event, or a bot answer queued in the outbox. Nothing is half-written: if the
transaction fails, the key goes with it and Pachca's redelivery gets a clean second try.

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
command (bot/commands.py) is answered by bridge/bot_commands.py and never relayed; a command
the bot does not know is answered with the help text.

Contents: a file-only message (Pachca sends ``content: ""``, files are not in the webhook) is
stored as ``ATTACHMENT_NOTE`` ("[attachment]"), so the student sees that something was sent and
can ask for it; NUL characters, which PostgreSQL cannot store in text, are removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.commands import parse_command
from bot.webhooks import MessageWebhookPayload, UnknownPayload, WebhookPayload, delivery_key
from bridge import policy
from bridge.feed import events as ev
from bridge.forum import views
from bridge.forum.chats import access_from_rows, load_access
from bridge.forum.messages import write_new_message
from bridge.pachca import commands as bot_commands
from bridge.runtime import Runtime, utcnow
from store import deliveries, forum
from store import messages as message_store
from store import users as user_store
from store.hotpath import Conflict

log = structlog.get_logger("bridge.relay")

ATTACHMENT_NOTE = "[attachment]"
# Pachca ids are int32 in the spec (thread chat ids already exceed it); the columns are BIGINT.
MAX_ID = 2**63 - 1
# Failures worth a retry: the database (or the network to it) is unavailable, not the event.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError)


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # a forum change: a message relayed, edited or deleted
    COMMAND = "command"  # a bot command answered
    DUPLICATE = "duplicate"  # seen before; nothing changed
    DROPPED = "dropped"  # deliberately not relayed (the reason is logged)
    IGNORED = "ignored"  # an event the bridge does not act on (reactions, unknown types...)
    INVALID = "invalid"  # a known event with fields the bridge cannot use


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: Outcome
    reason: str | None = None
    events: tuple[ev.FeedEvent, ...] = ()


def _dropped(reason: str) -> Handled:
    return Handled(Outcome.DROPPED, reason)


class Relay:
    """Applies parsed webhook payloads; shared by the webhook endpoint and history recovery."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    async def handle(self, payload: WebhookPayload | UnknownPayload) -> Handled:
        """Process one event. Database failures propagate (the caller answers 503 / retries);
        everything else ends in a Handled outcome."""
        if isinstance(payload, MessageWebhookPayload):
            result = await self._message(payload)
        else:
            result = Handled(Outcome.IGNORED, "unhandled_type")
        _log(payload, result)
        return result

    async def _message(self, p: MessageWebhookPayload) -> Handled:
        bot_user_id = self.rt.live.current.pachca.bot_user_id
        if bot_user_id is not None and p.user_id == bot_user_id:
            return _dropped("own_message")
        problem = _unusable(p)
        if problem is not None:
            return Handled(Outcome.INVALID, problem)
        key = delivery_key(p)
        if p.event == "new":
            relayed = await self._relay_fast(p, key)
            if relayed is not None:
                return relayed
        try:
            return await self._apply(p, key)
        except IntegrityError:
            # A concurrent event about the same message (a "new" and an early "update" with
            # different keys) inserted it first; a second pass sees that message.
            return await self._apply(p, key)

    async def _apply(self, p: MessageWebhookPayload, key: str) -> Handled:
        now = utcnow()
        async with self.rt.db.write() as conn:
            if not await deliveries.record(conn, key, now):
                return Handled(Outcome.DUPLICATE)
            if p.event == "new":
                result = await self._new(conn, p, now)
            elif p.event == "update":
                result = await self._update(conn, p, now)
            else:
                result = await self._delete(conn, p, now)
        await self.rt.publish(result.events)
        return result

    # --- new ---------------------------------------------------------------------------

    async def _relay_fast(self, p: MessageWebhookPayload, key: str) -> Handled | None:
        """The common case, a reply in a forum thread, on the raw hot path (store/hotpath.py):
        reads outside the transaction, then one group-committed write of the delivery key,
        message and event. Anything else (a command, a reply-to, an echo, a redelivery, a
        drop) returns None and takes the general path below, which decides and logs it."""
        if p.entity_type == "user" or p.parent_message_id is not None:
            return None
        hot = self.rt.hot
        if await hot.pachca_message(p.id) is not None:
            return None
        rows = await hot.thread_access(p.chat_id)
        if not rows or parse_command(p.content) is not None:
            return None
        user = await hot.pachca_user(p.user_id)
        access = access_from_rows(rows)
        if (
            user is None
            or not access.is_active
            or not policy.can_post(user["role"], access.type, access.is_member(user["id"]))
        ):
            return None
        now = utcnow()
        created_at = min(p.created_at, now)  # Pachca's time, never in the future
        try:
            _, event = await write_new_message(
                self.rt,
                {
                    "chat_id": access.id,
                    "sender_id": user["id"],
                    "content": _content(p),
                    "created_at": created_at,
                    "source": "pachca",
                    "pachca_message_id": p.id,
                    "pachca_changed_at": p.changed_at,
                },
                views.person(user["id"], user["name"], user["role"]),
                now,
                delivery={"key": key, "received_at": now},
                last_at=max(access.chat["last_activity_at"], created_at),
            )
        except Conflict:
            return None  # a concurrent copy won; the general path names the outcome
        await self.rt.publish([event])
        return Handled(Outcome.ACCEPTED, "created", (event,))

    async def _new(self, conn: AsyncConnection, p: MessageWebhookPayload, now: datetime) -> Handled:
        existing = await message_store.by_pachca_id(conn, p.id)
        if existing is not None:
            if existing["source"] == "web":
                return _dropped("echo")
            return Handled(Outcome.DUPLICATE, "already_relayed")
        chat = await forum.chat_by_thread_chat(conn, p.chat_id)
        if p.entity_type == "user" or chat is not None:
            command = parse_command(p.content)
            if command is not None:
                text = await bot_commands.answer(conn, command, p.user_id, _reply_to(p, chat), now)
                if text is None:
                    return _dropped("link_blocked")
                return Handled(Outcome.COMMAND, f"/{command.name}")
        if p.entity_type == "user":
            return _dropped("direct_message")
        return await self._relay(conn, p, chat, now)

    async def _relay(
        self, conn: AsyncConnection, p: MessageWebhookPayload, chat: Any, now: datetime
    ) -> Handled:
        """Store a Pachca message as a forum message, if its chat and author allow it."""
        if chat is None:
            return _dropped("unmapped_chat")
        user = await user_store.get_user_by_pachca_id(conn, p.user_id)
        if user is None:
            return _dropped("unlinked_user")
        access = await load_access(conn, chat["id"])
        if not policy.can_post(user["role"], access.type, access.is_member(user["id"])):
            return _dropped("not_allowed")
        if not access.is_active:
            return _dropped("chat_inactive")

        content = _content(p)
        # Pachca's time, not ours, so a message recovered after downtime keeps its time; never
        # in the future, though, whatever the clocks say.
        created_at = min(p.created_at, now)
        edited_at = _edited_at(p, now) if p.event == "update" else None
        reply_to_id = await self._reply_to_id(conn, p, access.id)
        message_id = await message_store.insert_message(
            conn,
            {
                "chat_id": access.id,
                "sender_id": user["id"],
                "content": content,
                "created_at": created_at,
                "edited_at": edited_at,
                "reply_to_id": reply_to_id,
                "source": "pachca",
                "pachca_message_id": p.id,
                "pachca_changed_at": p.changed_at,
            },
        )
        await forum.set_last_message(
            conn, access.id, message_id, max(access.chat["last_activity_at"], created_at)
        )
        message = {
            "id": message_id,
            "chat_id": access.id,
            "sender": views.person(user["id"], user["name"], user["role"]),
            "content": content,
            "created_at": views.iso(created_at),
            "edited_at": views.iso(edited_at),
            "reply_to_id": reply_to_id,
            "source": "pachca",
            "read_by": [],
            "client_id": None,  # only web clients give one
        }
        event = await self.rt.events.append(
            conn, ev.MESSAGE_CREATED, access.id, {"message": message}, now
        )
        return Handled(Outcome.ACCEPTED, "created", (event,))

    async def _reply_to_id(
        self, conn: AsyncConnection, p: MessageWebhookPayload, chat_id: int
    ) -> int | None:
        """A Pachca reply becomes a forum reply when its parent is a message of this chat."""
        if p.parent_message_id is None:
            return None
        parent = await message_store.by_pachca_id(conn, p.parent_message_id)
        if parent is None or parent["chat_id"] != chat_id or parent["deleted_at"] is not None:
            return None
        return parent["id"]

    # --- update ------------------------------------------------------------------------

    async def _update(
        self, conn: AsyncConnection, p: MessageWebhookPayload, now: datetime
    ) -> Handled:
        row = await message_store.by_pachca_id(conn, p.id)
        if row is None:
            if p.entity_type == "user":
                return _dropped("direct_message")
            chat = await forum.chat_by_thread_chat(conn, p.chat_id)
            if chat is not None and parse_command(p.content) is not None:
                return _dropped("unknown_message")  # an edited command: commands run once
            # The "new" event was lost or is still on its way: this version stands for it
            # (the late "new" then finds the message and changes nothing).
            return await self._relay(conn, p, chat, now)
        if row["source"] == "web":
            return _dropped("echo")
        if row["deleted_at"] is not None:
            return _dropped("message_deleted")
        applied = row["pachca_changed_at"]
        if p.changed_at is not None and applied is not None and p.changed_at <= applied:
            return _dropped("stale_edit")
        user = await user_store.get_user_by_pachca_id(conn, p.user_id)
        if user is None or user["id"] != row["sender_id"]:
            return _dropped("not_author")
        access = await load_access(conn, row["chat_id"])
        if not policy.can_edit(user["role"], access.type, access.is_member(user["id"]), True):
            return _dropped("not_allowed")
        if not access.is_active:
            return _dropped("chat_inactive")

        content = _content(p)
        edited_at = _edited_at(p, now)
        values: dict[str, Any] = {"content": content, "edited_at": edited_at}
        if p.changed_at is not None:
            values["pachca_changed_at"] = p.changed_at
        await message_store.update_message(conn, row["id"], values)
        message = views.message_obj(
            {**row, "content": content, "edited_at": edited_at}, access.marks()
        )
        event = await self.rt.events.append(
            conn, ev.MESSAGE_UPDATED, access.id, {"message": message}, now
        )
        return Handled(Outcome.ACCEPTED, "updated", (event,))

    # --- delete ------------------------------------------------------------------------

    async def _delete(
        self, conn: AsyncConnection, p: MessageWebhookPayload, now: datetime
    ) -> Handled:
        """A relayed message deleted in Pachca is deleted here too: the original is gone, and
        the copy follows it (whoever deleted it)."""
        row = await message_store.by_pachca_id(conn, p.id)
        if row is None:
            return _dropped("unknown_message")
        if row["source"] == "web":
            return _dropped("echo")
        if row["deleted_at"] is not None:
            return Handled(Outcome.DUPLICATE, "already_deleted")
        access = await load_access(conn, row["chat_id"])
        await message_store.update_message(conn, row["id"], {"deleted_at": now})
        if access.chat["last_message_id"] == row["id"]:
            newest = await message_store.newest_live(conn, access.id)
            await forum.set_last_message(
                conn,
                access.id,
                newest["id"] if newest else None,
                newest["created_at"] if newest else access.chat["created_at"],
            )
        event = await self.rt.events.append(
            conn, ev.MESSAGE_DELETED, access.id, {"message_id": row["id"]}, now
        )
        return Handled(Outcome.ACCEPTED, "deleted", (event,))


# --- helpers -------------------------------------------------------------------------------


def _reply_to(p: MessageWebhookPayload, chat: Any) -> bot_commands.ReplyTo:
    """Back where the command came from: the direct chat with its sender, or the thread."""
    if p.entity_type == "user":
        # In a direct chat the sender is the other side; a message "to user X" reaches them.
        return bot_commands.ReplyTo("user", p.user_id, None)
    if p.entity_type == "thread":
        return bot_commands.ReplyTo("thread", p.entity_id, chat["id"])
    return bot_commands.ReplyTo("discussion", p.chat_id, chat["id"])


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
    if result.outcome in (Outcome.ACCEPTED, Outcome.COMMAND):
        log.debug("webhook event", **fields)
    else:
        log.info("webhook event", **fields)
