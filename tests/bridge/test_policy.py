"""The pure role policy (docs/api.md), every role x chat type x participation."""

from __future__ import annotations

import itertools

import pytest

from bridge import policy
from bridge.policy import ChatType, Role

ROLES = [r.value for r in Role]
TYPES = [t.value for t in ChatType]

# (role, chat type) -> may see as a participant / as a non-participant. Written from the
# contract's table, not from policy.RULES.
SEES = {
    ("student", "forum_subject"): (True, False),
    ("student", "forum_tutor"): (True, False),
    ("teacher", "forum_subject"): (True, False),
    ("teacher", "forum_tutor"): (False, False),
    ("tutor", "forum_subject"): (False, False),
    ("tutor", "forum_tutor"): (True, False),
    ("parent", "forum_subject"): (False, False),
    ("parent", "forum_tutor"): (False, False),
    ("admin", "forum_subject"): (True, True),
    ("admin", "forum_tutor"): (True, True),
}
POSTERS = {"student", "teacher", "tutor"}

CASES = list(itertools.product(ROLES, TYPES, [True, False]))


def ident(case: tuple[str, str, bool]) -> str:
    role, chat_type, member = case
    return f"{role}-{chat_type}-{'member' if member else 'outsider'}"


@pytest.mark.parametrize(("role", "chat_type", "member"), CASES, ids=map(ident, CASES))
def test_can_view(role: str, chat_type: str, member: bool) -> None:
    as_member, as_outsider = SEES[(role, chat_type)]
    assert policy.can_view(role, chat_type, member) is (as_member if member else as_outsider)


@pytest.mark.parametrize(("role", "chat_type", "member"), CASES, ids=map(ident, CASES))
def test_can_post_only_participants_of_chats_they_see(
    role: str, chat_type: str, member: bool
) -> None:
    want = role in POSTERS and member and SEES[(role, chat_type)][0]
    assert policy.can_post(role, chat_type, member) is want


@pytest.mark.parametrize(("role", "chat_type", "member"), CASES, ids=map(ident, CASES))
def test_can_edit_only_own_messages_where_one_may_post(
    role: str, chat_type: str, member: bool
) -> None:
    may_post = policy.can_post(role, chat_type, member)
    assert policy.can_edit(role, chat_type, member, is_author=True) is may_post
    assert policy.can_edit(role, chat_type, member, is_author=False) is False


@pytest.mark.parametrize(("role", "chat_type", "member"), CASES, ids=map(ident, CASES))
def test_can_delete_own_or_any_as_admin(role: str, chat_type: str, member: bool) -> None:
    may_post = policy.can_post(role, chat_type, member)
    admin = role == "admin"
    assert policy.can_delete(role, chat_type, member, is_author=True) is (may_post or admin)
    assert policy.can_delete(role, chat_type, member, is_author=False) is admin


@pytest.mark.parametrize(("role", "chat_type", "member"), CASES, ids=map(ident, CASES))
def test_read_marks_belong_to_participants_who_see_the_chat(
    role: str, chat_type: str, member: bool
) -> None:
    want = member and SEES[(role, chat_type)][0]
    assert policy.can_mark_read(role, chat_type, member) is want


def test_admins_never_leave_read_marks_as_outsiders() -> None:
    assert policy.can_mark_read("admin", "forum_subject", False) is False


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_see_every_chat(role: str) -> None:
    every = all(SEES[(role, t)] == (True, True) for t in TYPES)
    assert policy.sees_every_chat(role) is every is (role == "admin")


@pytest.mark.parametrize(("role", "chat_type", "member"), CASES, ids=map(ident, CASES))
def test_typing_is_relayed_where_one_may_post(role: str, chat_type: str, member: bool) -> None:
    # The feed asks with what it knows, whether the user sees the chat; the answer is the
    # same as asking whether they may post there.
    sees = policy.can_view(role, chat_type, member)
    assert policy.can_type(role, sees) is policy.can_post(role, chat_type, member)


@pytest.mark.parametrize("role", ROLES)
def test_scope_matches_can_view(role: str) -> None:
    scope = policy.scope("u1", role)
    assert scope.user_id == "u1"
    for chat_type in TYPES:
        as_member, as_outsider = SEES[(role, chat_type)]
        assert (chat_type in scope.chat_types) is as_member
        if chat_type in scope.chat_types:
            assert scope.only_as_participant is (not as_outsider)
    assert scope.empty is (role == "parent")


@pytest.mark.parametrize("bad", ["superuser", "", "Student"])
def test_unknown_roles_and_chat_types_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        policy.can_view(bad, "forum_subject", True)
    with pytest.raises(ValueError):
        policy.can_view("student", bad, True)
    with pytest.raises(ValueError):
        policy.scope("u1", bad)


# Who may be a member of a forum chat's Pachca thread: the chat's teacher or tutor (while
# their role sees the chat), the bot and staff; nobody else, the student included.
THREAD_CASES = [
    # account, chat type, partners (account, role), expected
    (42, "forum_subject", [(42, "teacher")], True),
    (43, "forum_tutor", [(43, "tutor")], True),
    (42, "forum_subject", [(42, "tutor")], False),  # a teacher become tutor: tutors never see it
    (42, "forum_subject", [(7, "teacher")], False),  # someone else's account
    (42, "forum_subject", [(None, "teacher")], False),  # the teacher is not linked
    (1, "forum_subject", [], True),  # the bot
    (555, "forum_tutor", [], True),  # staff
    (555, None, [], True),  # staff stay in a deleted chat's thread too...
    (42, None, [(42, "teacher")], False),  # ...nobody else does
]


@pytest.mark.parametrize(("account", "chat_type", "partners", "allowed"), THREAD_CASES)
def test_who_may_be_in_a_thread(
    account: int, chat_type: str | None, partners: list[tuple[int | None, str]], allowed: bool
) -> None:
    assert (
        policy.may_be_in_thread(
            account,
            chat_type=chat_type,
            partners=partners,
            bot_user_id=1,
            staff_user_ids=[555],
        )
        is allowed
    )
