"""Pachca threads follow the policy (docs/pachca.md): only a chat's teacher or tutor - and the
bot, and ``pachca.staff_user_ids`` - is a member of its thread, and the thread says when the
forum chat closes and opens again.

The forum services call the functions below in their own transactions, so each job is queued
with the change that causes it, in the chat's lane, in order with the chat's other jobs:

- ``partner_replaced``: the old teacher or tutor leaves the thread (the new one is added by an
  ``add_member`` job, as before);
- ``activity_changed``: the bot's note that the chat is closed, or open again;
- ``enrollment_deleting``: before the chat goes (its pending jobs go with it), the closing note
  and the removal of its teacher and tutor - jobs that hang off no chat row, naming the thread
  in their payload;
- ``account_moves``: a platform user's Pachca account changed (platform PUT, ``/link``): the old
  account leaves the user's threads, the new one joins them, and leaves the threads of the
  user who held it before.

Each removal is decided again when its job runs (bridge/pachca/jobs.py ``remove_member``):
whoever may be in the thread then stays.

``MemberWebhooks`` handles the ``chat_member`` webhook: someone added to a forum thread who may
not be there is removed, through the same job.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from bot.webhooks import ChatMemberWebhookPayload, delivery_key
from bridge import policy
from bridge.forum.chats import access_from_rows
from bridge.pachca.jobs import ADD_MEMBER, POST_NOTE, REMOVE_MEMBER
from bridge.pachca.outcomes import Handled, Outcome, dropped
from bridge.runtime import Runtime, utcnow
from store import forum, webhook_keys
from store import outbox as outbox_store
from store import pachca_links as links
from store import users as user_store
from store.tx import Row, Tx

log = structlog.get_logger("bridge.relay")

MAX_ID = 2**63 - 1


# --- jobs queued by forum changes ------------------------------------------------------------


async def partner_replaced(
    tx: Tx, chat_id: int, old_user_ids: Iterable[str], now: datetime
) -> None:
    """The chat's teacher or tutor was replaced: their Pachca accounts leave its thread."""
    people = await user_store.get_users(tx, list(old_user_ids))
    for user_id, person in sorted(people.items()):
        if person["pachca_user_id"] is not None:
            await _remove(tx, chat_id, person["pachca_user_id"], now, user_id=user_id)


async def activity_changed(tx: Tx, chat_id: int, active: bool, now: datetime) -> None:
    """The chat became inactive (or active again): the bot says so in its thread."""
    note = "reopened" if active else "closed"
    await outbox_store.enqueue(
        tx, POST_NOTE, {"chat_id": chat_id, "note": note}, chat_id=chat_id, now=now
    )


async def enrollment_deleting(tx: Tx, chat: Row, now: datetime) -> None:
    """The chat is about to be deleted with its enrollment, and its pending jobs with it
    (ON DELETE CASCADE). If it has a thread: a closing note there, then everyone the bridge
    put there - the teacher or tutor, and anyone whose removal had not run yet - leaves it.
    These jobs hang off no chat row and name the thread themselves; they keep the chat's lane,
    so nothing of the chat queued before them can come after."""
    chat_id, thread_id = chat["id"], chat["pachca_thread_id"]
    thread_chat_id = chat["pachca_thread_chat_id"]
    if thread_id is None or thread_chat_id is None:
        return  # never opened: nobody is in it
    members = {
        p["pachca_user_id"]
        for p in await links.partners(tx, chat_id, policy.PARTNER_ROLES)
        if p["pachca_user_id"] is not None
    }
    for payload in await outbox_store.unfinished_payloads(tx, chat_id, REMOVE_MEMBER):
        if isinstance(payload.get("pachca_user_id"), int):
            members.add(payload["pachca_user_id"])
    lane = outbox_store.chat_lane(chat_id)
    await outbox_store.enqueue(
        tx,
        POST_NOTE,
        {"chat_id": chat_id, "note": "deleted", "thread_id": thread_id},
        chat_id=None,
        lane=lane,
        now=now,
    )
    for member in sorted(members):
        await outbox_store.enqueue(
            tx,
            REMOVE_MEMBER,
            {"chat_id": chat_id, "pachca_user_id": member, "thread_chat_id": thread_chat_id},
            chat_id=None,
            lane=lane,
            now=now,
        )


async def account_moves(
    tx: Tx, user_id: str, old: int | None, new: int | None, now: datetime
) -> None:
    """``user_id``'s Pachca account changes from ``old`` to ``new`` (either may be None).
    Call it before the change is written: it reads who holds ``new`` now. The old account
    leaves the user's threads and the new one joins them; a user who held ``new`` until now
    loses it, and it leaves their threads."""
    if new is not None:
        holder = await links.user_by_pachca_id(tx, new)
        if holder is not None and holder["id"] != user_id:
            for chat_id in await forum.partner_chats(tx, holder["id"], policy.PARTNER_ROLES):
                await _remove(tx, chat_id, new, now, user_id=holder["id"])
    for chat_id in await forum.partner_chats(tx, user_id, policy.PARTNER_ROLES):
        if old is not None:
            await _remove(tx, chat_id, old, now, user_id=user_id)
        if new is not None:
            await outbox_store.enqueue(
                tx, ADD_MEMBER, {"chat_id": chat_id, "user_id": user_id}, chat_id=chat_id, now=now
            )


async def _remove(
    tx: Tx, chat_id: int, pachca_user_id: int, now: datetime, *, user_id: str | None = None
) -> None:
    payload: dict[str, Any] = {"chat_id": chat_id, "pachca_user_id": pachca_user_id}
    if user_id is not None:
        payload["user_id"] = user_id  # whose account it was, for whoever reads the outbox
    await outbox_store.enqueue(tx, REMOVE_MEMBER, payload, chat_id=chat_id, now=now)


# --- the chat_member webhook ---------------------------------------------------------------------


class MemberWebhooks:
    """``chat_member`` webhooks: people added to a forum thread's chat who may not be there
    (the policy: bridge/policy.py ``may_be_in_thread``) are removed again, through the outbox.
    Delivery key first, like every webhook event, so a redelivery queues nothing twice.

    Outcomes: ``accepted`` (removals queued), ``ignored`` - ``members_allowed`` (everyone
    added may be there), ``member_removed`` (a ``remove`` event: nothing to do) -, ``dropped``
    ``unmapped_chat`` (not a forum thread), ``duplicate``, ``invalid``."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    async def handle(self, p: ChatMemberWebhookPayload) -> Handled:
        if p.event != "add":
            return Handled(Outcome.IGNORED, "member_removed")
        if not all(0 < i <= MAX_ID for i in (p.chat_id, *p.user_ids)):
            return Handled(Outcome.INVALID, "id_out_of_range")
        try:
            p.created_at.astimezone(UTC)
        except (OverflowError, ValueError):
            return Handled(Outcome.INVALID, "time_out_of_range")
        now = utcnow()
        async with self.rt.db.write() as tx:
            if not await webhook_keys.record(tx, delivery_key(p), now):
                return Handled(Outcome.DUPLICATE)
            rows = await links.chat_of_thread(tx, p.chat_id)
            if not rows:
                return dropped("unmapped_chat")
            access = access_from_rows(rows)
            partners = [
                (r["pachca_user_id"], r["user_role"])
                for r in await links.partners(tx, access.id, policy.PARTNER_ROLES)
            ]
            cfg = self.rt.live.current.pachca
            strangers = [
                member
                for member in dict.fromkeys(p.user_ids)
                if not policy.may_be_in_thread(
                    member,
                    chat_type=access.type,
                    partners=partners,
                    bot_user_id=cfg.bot_user_id,
                    staff_user_ids=cfg.staff_user_ids,
                )
            ]
            for member in strangers:
                await _remove(tx, access.id, member, now)
        if not strangers:
            return Handled(Outcome.IGNORED, "members_allowed")
        log.info(
            "people added to a forum thread who may not be there; removing them",
            chat_id=access.id,
            pachca_user_ids=strangers,
        )
        return Handled(Outcome.ACCEPTED, "removing_members")
