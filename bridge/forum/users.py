"""Platform users (docs/api.md): upserts, tutor assignment, Pachca account links."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bridge import policy
from bridge.errors import Conflict, InvalidRequest, NotFound, UnknownUser
from bridge.feed.transport import USER_CHANGED, USER_UPDATED, Control
from bridge.forum import link_codes, views
from bridge.forum.enrollments import changed_chats, sync_chats, tell_chats_changed
from bridge.forum.inputs import UserIn
from bridge.pachca import membership
from bridge.policy import ChatType, Role
from bridge.runtime import Runtime, utcnow
from store import forum
from store import users as user_store
from store.tx import Tx

LINK_CODE_TTL = timedelta(minutes=15)


class Users:
    def __init__(self, rt: Runtime):
        self.rt = rt

    async def upsert(self, user_id: str, body: UserIn) -> dict[str, Any]:
        if body.tutor_id is not None and body.role != Role.STUDENT:
            raise InvalidRequest("tutor_id is for students only")
        if body.children is not None and body.role != Role.PARENT:
            raise InvalidRequest("children is for parents only")
        now = utcnow()
        values = {"id": user_id, **body.model_dump(mode="json")}
        async with self.rt.db.write() as conn:
            if body.tutor_id is not None:
                tutor = await user_store.get_user(conn, body.tutor_id)
                if tutor is None or tutor["role"] != Role.TUTOR:
                    raise UnknownUser(f"tutor_id {body.tutor_id!r} names no known tutor")
            if body.children:
                await _check_children(conn, body.children)
            before = await user_store.get_user(conn, user_id)
            if before is not None and before["role"] != body.role:
                await _check_role_change(conn, before)
            old_account = before["pachca_user_id"] if before is not None else None
            if old_account != body.pachca_user_id:  # before the change: it reads who holds it
                await membership.account_moves(conn, user_id, old_account, body.pachca_user_id, now)
            if body.pachca_user_id is not None:
                await user_store.clear_pachca_user_id(conn, body.pachca_user_id, keep=user_id)
            await user_store.upsert_user(conn, values, now)
            row = await user_store.get_user(conn, user_id)
            assert row is not None
            events = []
            if before is not None and before["tutor_id"] != body.tutor_id:
                for enrollment in await forum.enrollments_of_student(conn, user_id):
                    events += await sync_chats(self.rt, conn, enrollment, row, now)
        tell_chats_changed(self.rt, changed_chats(events))
        await self.rt.publish(events)
        if before is not None and before["role"] != row["role"]:
            # Open sockets were opened for the old role: every instance closes them (4401).
            self.rt.feed.publish_control(Control(USER_CHANGED, user_id))
        elif before is not None and before["name"] != row["name"]:
            # Every instance drops its cached copy of the user (bridge/auth.py Principals).
            self.rt.feed.publish_control(Control(USER_UPDATED, user_id))
        return views.user_obj(row)

    async def get(self, user_id: str) -> dict[str, Any]:
        async with self.rt.db.read() as conn:
            row = await user_store.get_user(conn, user_id)
        if row is None:
            raise NotFound("no such user")
        return views.user_obj(row)

    async def new_link_code(self, user_id: str) -> dict[str, Any]:
        """A fresh code for ``/link``; the user's earlier codes stop working (one at a time,
        so a user who asks twice does not leave a second live code to be guessed)."""
        now = utcnow()
        code = link_codes.new_code()
        expires_at = now + LINK_CODE_TTL
        async with self.rt.db.write() as conn:
            if await user_store.get_user(conn, user_id) is None:
                raise NotFound("no such user")
            await user_store.revoke_link_codes(conn, user_id)
            await user_store.add_link_code(conn, code, user_id, expires_at)
        return {"code": code, "expires_at": views.iso(expires_at)}


async def _check_children(conn: Tx, children: list[str]) -> None:
    known = await user_store.get_users(conn, children)
    for child in children:
        row = known.get(child)
        if row is None or row["role"] != Role.STUDENT:
            raise UnknownUser(f"children: {child!r} names no known student")


async def _check_role_change(conn: Tx, before: Mapping[str, Any]) -> None:
    """A teacher or tutor who still takes part in chats keeps the role: those chats would
    be left with a partner of the wrong role, and their enrollments could not be put again.
    The platform reassigns or deletes the enrollments first."""
    chat_ids = await forum.partner_chats(conn, before["id"], policy.PARTNER_ROLES)
    if not chat_ids:
        return
    # A teacher stays the teacher of an inactive enrollment; a tutor chat closed because the
    # student has no tutor any more is history only.
    records = [
        r
        for r in await forum.load_chats(conn, "", chat_ids=chat_ids)
        if r.chat["type"] == ChatType.SUBJECT or r.chat["is_active"]
    ]
    if not records:
        return
    named = ", ".join(
        f"{r.chat['id']} ({r.chat['title']}, enrollment {r.chat['enrollment_id']})"
        for r in sorted(records, key=lambda r: r.chat["id"])
    )
    raise Conflict(
        f"user {before['id']!r} is still the {before['role']} of chats {named}: reassign or "
        "delete those enrollments before changing the role"
    )
