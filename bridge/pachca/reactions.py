"""Pachca -> forum reactions: ``reaction`` webhooks (docs/pachca.md).

Like a message event (bridge/pachca/relay.py): one transaction, the delivery key first (Pachca
gives a reaction no id of its own: the key is its event, message, user, emoji and time, see
bot/webhooks.py ``delivery_key``), then the facts, one decision (``decide``), and the change -
through the forum's one writer of reactions (bridge/forum/reactions.py), so a reaction from
Pachca is that user's reaction like one from the web, on the feed and in message objects.

Relayed: a reaction, by a linked Pachca user who may post in the chat (the policy), in an
active chat, on a message the bridge knows in Pachca - a relayed Pachca message, or the bot's
copy of a web message (it maps to that web message). Dropped, with the reason logged:

    own_reaction     the bot's own (``pachca.bot_user_id``): its mirror of web users' reactions
    invalid_emoji    the code is not one emoji (a custom Pachca reaction)
    unknown_message  a message the bridge does not know
    message_deleted  a message deleted in the forum
    unlinked_user    a Pachca user tied to no platform user
    not_allowed      the policy forbids it
    chat_inactive    the forum chat is read-only
    reaction_limit   the user holds 20 other emoji on the message already
    stale_reaction   an event overtaken by a later one (below)
    not_held         a ``delete`` of a reaction the user does not hold

Out of order: Pachca's reaction events carry the time the reaction was made - on ``delete`` too,
the time of the ``new`` it undoes. For one user, message and emoji, the later reaction wins:

- a ``new`` whose ``delete`` was already applied (its key is recorded) is stale;
- a ``delete`` older than the reaction held (made again since) is stale;
- a ``new`` for a reaction already held moves its time forward, so an older ``delete`` is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from bot.webhooks import ReactionWebhookPayload, delivery_key
from bridge import policy
from bridge.forum.chats import ChatAccess, access_from_rows
from bridge.forum.reactions import PACHCA, Added, add_reaction, is_one_emoji, remove_reaction
from bridge.pachca.outcomes import Handled, Outcome, dropped
from bridge.runtime import Runtime, utcnow
from store import forum, webhook_keys
from store import pachca_links as links
from store import reactions as reaction_store
from store.tx import Row, Tx

MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ReactionFacts:
    """What the database knows about a reaction event, read in its transaction."""

    message: Row | None  # the forum message the reacted-to Pachca message mirrors, held
    deleted: bool  # that message is deleted in the forum
    access: ChatAccess | None  # its chat
    user: Row | None  # the platform user linked to the reacting Pachca user
    held: Row | None  # that user's reaction with this emoji on the message (source, created_at)
    undone: bool  # a "new" whose "delete" was applied already


@dataclass(frozen=True, slots=True)
class Add:
    message: Row
    user: Row


@dataclass(frozen=True, slots=True)
class Remove:
    message: Row
    user: Row


@dataclass(frozen=True, slots=True)
class Renew:
    """The user reacted with an emoji they hold: the reaction is as new as this event."""

    message: Row
    user: Row


Action = Handled | Add | Remove | Renew


def decide(p: ReactionWebhookPayload, f: ReactionFacts) -> Action:
    """The one decision about a reaction event."""
    if f.message is None:
        return dropped("unknown_message")
    if f.deleted:
        return dropped("message_deleted")
    user, access = f.user, f.access
    if user is None:
        return dropped("unlinked_user")
    assert access is not None  # the message's chat: deleting a chat deletes its messages
    if not policy.can_post(user["role"], access.type, access.is_member(user["id"])):
        return dropped("not_allowed")
    if not access.is_active:
        return dropped("chat_inactive")
    if p.event == "new":
        if f.undone:
            return dropped("stale_reaction")
        if f.held is None:
            return Add(f.message, user)
        if p.created_at > f.held["created_at"]:
            return Renew(f.message, user)
        return Handled(Outcome.DUPLICATE, "already_held")
    if f.held is None:
        return dropped("not_held")
    if p.created_at < f.held["created_at"]:
        return dropped("stale_reaction")
    return Remove(f.message, user)


def undo_key(p: ReactionWebhookPayload) -> str:
    """The delivery key of the ``delete`` that undoes this ``new``."""
    return delivery_key(p.model_copy(update={"event": "delete"}))


async def gather_facts(tx: Tx, p: ReactionWebhookPayload) -> ReactionFacts:
    """Read what ``decide`` may need. The message's row is held (store/reactions.py
    ``lock_live_message``) before anything about its reactions is read, so two events about
    them - a ``new`` and its ``delete`` arriving together - are decided one after the other."""
    found = await links.message_by_pachca_id(tx, p.message_id)
    if found is None:
        return ReactionFacts(None, False, None, None, None, False)
    message = await reaction_store.lock_live_message(tx, found["id"])
    if message is None:
        return ReactionFacts(found, True, None, None, None, False)
    access = access_from_rows(await forum.chat_access(tx, message["chat_id"]))
    user = await links.user_by_pachca_id(tx, p.user_id)
    held = None
    if user is not None:
        held = (await reaction_store.of_user(tx, message["id"], user["id"])).get(p.code)
    undone = p.event == "new" and await webhook_keys.seen(tx, undo_key(p))
    return ReactionFacts(message, False, access, user, held, undone)


class ReactionWebhooks:
    def __init__(self, rt: Runtime):
        self.rt = rt

    async def handle(self, p: ReactionWebhookPayload) -> Handled:
        # What needs no database first.
        bot_user_id = self.rt.live.current.pachca.bot_user_id
        if bot_user_id is not None and p.user_id == bot_user_id:
            return dropped("own_reaction")
        problem = _unusable(p)
        if problem is not None:
            return Handled(Outcome.INVALID, problem)
        if not is_one_emoji(p.code):
            return dropped("invalid_emoji")
        now = utcnow()
        async with self.rt.db.write() as tx:
            if not await webhook_keys.record(tx, delivery_key(p), now):
                return Handled(Outcome.DUPLICATE)
            action = decide(p, await gather_facts(tx, p))
            result = await self._apply(tx, p, action, now)
        await self.rt.publish(result.events)
        return result

    async def _apply(self, tx: Tx, p: ReactionWebhookPayload, action: Action, now: Any) -> Handled:
        if isinstance(action, Handled):
            return action
        message, user_id = action.message, action.user["id"]
        if isinstance(action, Renew):
            await reaction_store.set_created_at(tx, message["id"], user_id, p.code, p.created_at)
            return Handled(Outcome.DUPLICATE, "already_held")
        if isinstance(action, Remove):
            event = await remove_reaction(self.rt, tx, message, user_id, p.code, now=now)
            assert event is not None  # held, under the message's lock
            return Handled(Outcome.ACCEPTED, "reaction_removed", (event,))
        added, event = await add_reaction(
            self.rt, tx, message, user_id, p.code, source=PACHCA, at=p.created_at, now=now
        )
        if added is Added.TOO_MANY or event is None:
            return dropped("reaction_limit")
        return Handled(Outcome.ACCEPTED, "reaction_added", (event,))


def _unusable(p: ReactionWebhookPayload) -> str | None:
    """Values our columns cannot hold: acknowledged, never retried."""
    ids = (p.message_id, p.user_id, p.chat_id or 1)
    if not all(0 < i <= MAX_ID for i in ids):
        return "id_out_of_range"
    try:
        p.created_at.astimezone(UTC)
    except (OverflowError, ValueError):
        return "time_out_of_range"
    return None
