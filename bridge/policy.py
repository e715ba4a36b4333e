"""Who may do what (docs/api.md): one table of rules, asked by every path.

Pure functions over plain values, so REST, the WebSocket feed and the Pachca relay all get the
same answer, and the store can turn a user's scope into one SQL filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"
    TUTOR = "tutor"
    PARENT = "parent"
    ADMIN = "admin"


class ChatType(StrEnum):
    SUBJECT = "forum_subject"
    TUTOR = "forum_tutor"


# The parts whose holders work in Pachca: members of their chats' Pachca threads.
PARTNER_ROLES: tuple[str, ...] = (Role.TEACHER.value, Role.TUTOR.value)


@dataclass(frozen=True, slots=True)
class Rule:
    sees: frozenset[ChatType]  # chat types this role may see...
    only_as_participant: bool  # ...and only those it takes part in
    posts: bool  # may post (in chats it sees, while active)
    deletes_any: bool  # may delete anyone's message


RULES: dict[Role, Rule] = {
    Role.STUDENT: Rule(frozenset(ChatType), True, posts=True, deletes_any=False),
    Role.TEACHER: Rule(frozenset({ChatType.SUBJECT}), True, posts=True, deletes_any=False),
    Role.TUTOR: Rule(frozenset({ChatType.TUTOR}), True, posts=True, deletes_any=False),
    Role.PARENT: Rule(frozenset(), True, posts=False, deletes_any=False),
    Role.ADMIN: Rule(frozenset(ChatType), False, posts=False, deletes_any=True),
}


@dataclass(frozen=True, slots=True)
class Scope:
    """The chats a user may see, in a form the store turns into a WHERE clause."""

    user_id: str
    chat_types: frozenset[ChatType]
    only_as_participant: bool

    @property
    def empty(self) -> bool:
        return not self.chat_types


def scope(user_id: str, role: str) -> Scope:
    rule = RULES[Role(role)]
    return Scope(user_id, rule.sees, rule.only_as_participant)


def can_view(role: str, chat_type: str, is_participant: bool) -> bool:
    rule = RULES[Role(role)]
    if ChatType(chat_type) not in rule.sees:
        return False
    return is_participant or not rule.only_as_participant


def can_post(role: str, chat_type: str, is_participant: bool) -> bool:
    """Whether the user may write in the chat at all (activity is checked separately)."""
    return RULES[Role(role)].posts and is_participant and can_view(role, chat_type, True)


def can_edit(role: str, chat_type: str, is_participant: bool, is_author: bool) -> bool:
    return is_author and can_post(role, chat_type, is_participant)


def can_delete(role: str, chat_type: str, is_participant: bool, is_author: bool) -> bool:
    if RULES[Role(role)].deletes_any:
        return True
    return can_edit(role, chat_type, is_participant, is_author)


def can_mark_read(role: str, chat_type: str, is_participant: bool) -> bool:
    # Read marks belong to the conversation's participants; an admin observes without trace.
    return is_participant and can_view(role, chat_type, True)


_EVERY_CHAT_TYPE = frozenset(ChatType)


def sees_every_chat(role: str) -> bool:
    """Whether the role sees every chat there is, whether it takes part or not (an admin)."""
    rule = RULES[Role(role)]
    return rule.sees == _EVERY_CHAT_TYPE and not rule.only_as_participant


def can_type(role: str, sees_chat: bool) -> bool:
    """Whether the user's typing is relayed to a chat it sees. Typing announces a post, so
    only roles that post may type; each of them sees only chats it takes part in, so seeing
    the chat is enough."""
    return sees_chat and RULES[Role(role)].posts


# --- Pachca threads ------------------------------------------------------------------------


def may_be_in_thread(
    pachca_user_id: int,
    *,
    chat_type: str | None,
    partners: Iterable[tuple[int | None, str]],
    bot_user_id: int | None,
    staff_user_ids: Iterable[int],
) -> bool:
    """Whether a Pachca account may be a member of a forum chat's thread: the bot, staff
    (``pachca.staff_user_ids``), or the account of one of the chat's partners - its teacher
    or tutor, ``(pachca_user_id, platform role)`` - whose role sees the chat. Nobody else: the
    student is on the web, and a thread shows everything the chat says. ``chat_type`` None: the
    chat is deleted and has no partners any more."""
    if pachca_user_id == bot_user_id or pachca_user_id in staff_user_ids:
        return True
    return chat_type is not None and any(
        account == pachca_user_id and can_view(role, chat_type, True) for account, role in partners
    )
