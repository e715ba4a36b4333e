"""Reading forum chats and messages, with the policy applied (docs/api.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge import policy
from bridge.auth import Principal
from bridge.errors import Forbidden, InvalidRequest, NotFound
from bridge.forum import views
from bridge.runtime import Runtime
from store import forum
from store import messages as message_store
from store.tx import Tx


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    role: str  # the part played in this chat
    last_read: int


@dataclass(frozen=True, slots=True)
class ChatAccess:
    """A chat and its participants, loaded in one query: enough for every policy question."""

    chat: Mapping[str, Any]
    members: dict[str, Member]

    @property
    def id(self) -> int:
        return self.chat["id"]

    @property
    def type(self) -> str:
        return self.chat["type"]

    @property
    def is_active(self) -> bool:
        return bool(self.chat["is_active"])

    def is_member(self, user_id: str) -> bool:
        return user_id in self.members

    def marks(self) -> list[tuple[str, int]]:
        return [(uid, m.last_read) for uid, m in self.members.items()]

    def can_view(self, who: Principal) -> bool:
        return policy.can_view(who.role, self.type, self.is_member(who.id))

    def can_post(self, who: Principal) -> bool:
        return policy.can_post(who.role, self.type, self.is_member(who.id))


@dataclass(frozen=True, slots=True)
class ChatRights:
    """What posting decides on: the chat's type and activity and the part each participant
    plays. It changes rarely, so each instance keeps it for a few seconds
    (bridge/forum/access_cache.py); names and read marks, which change all the time, are not
    part of it."""

    id: int
    type: str
    is_active: bool
    roles: Mapping[str, str]  # participant id -> the part played in this chat

    def is_member(self, user_id: str) -> bool:
        return user_id in self.roles

    def can_view(self, who: Principal) -> bool:
        return policy.can_view(who.role, self.type, self.is_member(who.id))

    def can_post(self, who: Principal) -> bool:
        return policy.can_post(who.role, self.type, self.is_member(who.id))


async def load_rights(conn: Tx, chat_id: int) -> ChatRights:
    """The chat's rights (one statement), or NotFound."""
    rows = await forum.chat_rights(conn, chat_id)
    if not rows:
        raise NotFound("no such chat")
    first = rows[0]
    roles = {r["p_user_id"]: r["p_role"] for r in rows if r["p_user_id"] is not None}
    return ChatRights(first["id"], first["type"], bool(first["is_active"]), roles)


async def load_marks(conn: Tx, chat_id: int) -> list[tuple[str, int]]:
    """The read marks of the chat's participants, as they are now."""
    return await forum.read_marks(conn, chat_id)


async def load_access(conn: Tx, chat_id: int) -> ChatAccess:
    return access_from_rows(await forum.chat_access(conn, chat_id))


def access_from_rows(rows: Sequence[Mapping[str, Any]]) -> ChatAccess:
    if not rows:
        raise NotFound("no such chat")
    members = {
        r["p_user_id"]: Member(r["p_name"], r["p_role"], r["p_last_read"])
        for r in rows
        if r["p_user_id"] is not None
    }
    return ChatAccess(rows[0], members)


def require_view(who: Principal, access: ChatAccess | ChatRights) -> None:
    if not access.can_view(who):
        raise Forbidden("you may not see this chat")


def chat_filter(who: Principal) -> forum.ChatFilter:
    scope = policy.scope(who.id, who.role)
    return forum.ChatFilter(
        who.id, frozenset(t.value for t in scope.chat_types), scope.only_as_participant
    )


class ChatReader:
    def __init__(self, rt: Runtime):
        self.rt = rt

    async def list_chats(self, who: Principal) -> list[dict[str, Any]]:
        flt = chat_filter(who)
        if not flt.chat_types:
            return []
        async with self.rt.db.read() as conn:
            records = await forum.load_chats(conn, who.id, flt=flt)
        return [views.chat_obj(r, links=self.rt.file_links) for r in records]

    async def get_chat(self, who: Principal, chat_id: int) -> dict[str, Any]:
        async with self.rt.db.read() as conn:
            require_view(who, await load_access(conn, chat_id))
            records = await forum.load_chats(conn, who.id, chat_ids=[chat_id])
        if not records:
            raise NotFound("no such chat")
        return views.chat_obj(records[0], links=self.rt.file_links)

    async def list_messages(
        self,
        who: Principal,
        chat_id: int,
        *,
        limit: int | None,
        offset: int | None,
        before_id: int | None,
    ) -> dict[str, Any]:
        async with self.rt.db.read() as conn:
            access = await load_access(conn, chat_id)
            require_view(who, access)
            # Checked after existence and permission: the order of checks in docs/api.md.
            if limit is None or not 1 <= limit <= 200:
                raise InvalidRequest("limit must be an integer from 1 to 200")
            if offset is None or offset < 0:
                raise InvalidRequest("offset must be a non-negative integer")
            if before_id is not None and before_id < 1:
                raise InvalidRequest("before_id must be a positive integer")
            rows, total = await message_store.page(
                conn, chat_id, limit=limit, offset=offset, before_id=before_id
            )
        marks = access.marks()
        return {
            "messages": [views.message_obj(r, marks, links=self.rt.file_links) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
