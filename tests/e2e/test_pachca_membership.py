"""Pachca threads follow the policy, end to end (docs/pachca.md): the real app, its outbox
worker and the fake Pachca, which sends its webhooks back. Only a chat's teacher or tutor (and
the bot, and staff) stays a member of its thread; the thread says when the chat closes."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.pachca.jobs import NOTES
from store.db import Database
from tests.e2e.mirror_kit import (
    BOT,
    SECRET,
    AppFactory,
    jobs,
    settled,
    thread_log,
    thread_of,
)
from tests.eventually import eventually
from tests.fakes.pachca import FakePachca
from tests.fakes.webhook_kit import deliver
from tests.fakes.webhooks import chat_member_event
from tests.world import World

TEACHER, SUCCESSOR, TUTOR, NEW_TUTOR, STAFF, STRANGER = 42, 77, 43, 78, 555, 999
CLOSED, REOPENED, DELETED = NOTES["closed"], NOTES["reopened"], NOTES["deleted"]


async def same_enrollment(world: World, enrolled: Any, teacher: str, **fields: Any) -> Any:
    """PUT the enrollment again, its subject kept, with another teacher or state."""
    body = enrolled.body["enrollment"]
    return await world.enroll(
        body["student_id"],
        teacher,
        subject=(body["subject"]["id"], body["subject"]["name"]),
        enrollment_id=enrolled.enrollment_id,
        **fields,
    )


async def scene(world: World) -> tuple[str, str, str, Any]:
    """A student with a tutor and a teacher, both linked in Pachca, and their enrollment."""
    tutor = await world.user("tutor", pachca_user_id=TUTOR)
    teacher = await world.user("teacher", pachca_user_id=TEACHER)
    student = await world.user("student", name="Sam", tutor_id=tutor)
    return student, teacher, tutor, await world.enroll(student, teacher)


# --- a replaced teacher or tutor ----------------------------------------------------------------


async def test_a_replaced_teacher_leaves_the_thread_and_the_new_one_joins(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    _, _, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    await settled(database, fake_pachca)

    successor = await world.user("teacher", pachca_user_id=SUCCESSOR)
    await same_enrollment(world, enrolled, successor)

    await settled(database, fake_pachca)
    assert fake_pachca.members(thread.thread_chat_id) == {SUCCESSOR}
    assert thread_log(fake_pachca, thread) == [
        ("add", [TEACHER]),
        ("remove", TEACHER),
        ("add", [SUCCESSOR]),
    ]
    assert fake_pachca.violations == []


async def test_a_teacher_replaced_and_brought_back_stays(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    """Each removal is decided when it runs: the teacher is the chat's teacher again by
    then (Pachca was unavailable meanwhile), so only the passing successor is touched."""
    client, world = await start()
    _, teacher, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    await settled(database, fake_pachca)
    await client.close()

    _, world = await start(enabled=False)
    successor = await world.user("teacher", pachca_user_id=SUCCESSOR)
    await same_enrollment(world, enrolled, successor)
    await same_enrollment(world, enrolled, teacher)
    _, world = await start()

    await settled(database, fake_pachca)
    assert fake_pachca.members(thread.thread_chat_id) == {TEACHER}
    assert ("remove", TEACHER) not in thread_log(fake_pachca, thread)
    assert fake_pachca.violations == []


async def test_a_replaced_tutor_leaves_the_tutor_thread(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, _, enrolled = await scene(world)
    assert enrolled.tutor_chat is not None
    thread = await thread_of(database, enrolled.tutor_chat["id"])
    await settled(database, fake_pachca)

    new_tutor = await world.user("tutor", pachca_user_id=NEW_TUTOR)
    await world.put_user(student, role="student", name="Sam", tutor_id=new_tutor)

    await settled(database, fake_pachca)
    assert fake_pachca.members(thread.thread_chat_id) == {NEW_TUTOR}
    assert thread_log(fake_pachca, thread) == [
        ("add", [TUTOR]),
        ("remove", TUTOR),
        ("add", [NEW_TUTOR]),
    ]
    assert fake_pachca.violations == []


# --- closing and opening again -------------------------------------------------------------------


async def test_an_inactive_chat_says_so_in_its_thread_and_again_when_it_reopens(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    _, teacher, _, enrolled = await scene(world)
    subject = await thread_of(database, enrolled.subject_chat["id"])
    tutor_thread = await thread_of(database, enrolled.tutor_chat["id"])
    await settled(database, fake_pachca)

    await same_enrollment(world, enrolled, teacher, active=False)
    await same_enrollment(world, enrolled, teacher, active=False)  # no change: no note
    await same_enrollment(world, enrolled, teacher, active=True)

    await settled(database, fake_pachca)
    for thread, partner in ((subject, TEACHER), (tutor_thread, TUTOR)):
        assert thread_log(fake_pachca, thread) == [
            ("add", [partner]),
            ("note", CLOSED),
            ("note", REOPENED),
        ]
        assert fake_pachca.members(thread.thread_chat_id) == {partner}
        notes = [m for m in fake_pachca.chat_messages(thread.thread_chat_id)]
        assert [(m["content"], m["user_id"]) for m in notes] == [(CLOSED, BOT), (REOPENED, BOT)]
    assert fake_pachca.violations == []


async def test_a_removed_tutor_closes_the_tutor_thread(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.tutor_chat["id"])
    await settled(database, fake_pachca)

    await world.put_user(student, role="student", name="Sam")  # no tutor_id any more

    await settled(database, fake_pachca)
    assert thread_log(fake_pachca, thread) == [("add", [TUTOR]), ("note", CLOSED)]
    assert fake_pachca.violations == []


# --- a deleted enrollment ------------------------------------------------------------------------


async def test_a_deleted_enrollment_closes_its_threads_and_empties_them(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    _, _, _, enrolled = await scene(world)
    subject = await thread_of(database, enrolled.subject_chat["id"])
    tutor_thread = await thread_of(database, enrolled.tutor_chat["id"])
    await settled(database, fake_pachca)

    resp = await client.delete(
        f"/api/v1/enrollments/{enrolled.enrollment_id}", headers=world.service
    )
    assert resp.status == 204

    await settled(database, fake_pachca)
    for thread, partner in ((subject, TEACHER), (tutor_thread, TUTOR)):
        assert thread_log(fake_pachca, thread) == [
            ("add", [partner]),
            ("note", DELETED),
            ("remove", partner),
        ]
        assert fake_pachca.members(thread.thread_chat_id) == set()
    closing = [j for j in await jobs(database) if j["chat_id"] is None]
    assert {(j["kind"], j["lane"]) for j in closing} == {
        (kind, f"chat:{thread.chat_id}")
        for kind in ("post_note", "remove_member")
        for thread in (subject, tutor_thread)
    }
    assert fake_pachca.violations == []


async def test_every_membership_change_arrives_in_order_once_across_a_restart(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    """Changes made while Pachca is off wait in the outbox through a restart; then each
    thread gets exactly its changes, in the order they were made. A deleted enrollment's
    closing jobs survive its chats, and remove a replaced teacher whose removal had not run."""
    client, world = await start()
    _, _, _, kept = await scene(world)
    kept_thread = await thread_of(database, kept.subject_chat["id"])
    other_teacher = await world.user("teacher", pachca_user_id=44)
    other_student = await world.user("student")
    gone = await world.enroll(other_student, other_teacher)
    gone_thread = await thread_of(database, gone.subject_chat["id"])
    await settled(database, fake_pachca)
    await client.close()

    client, world = await start(enabled=False)
    successor = await world.user("teacher", pachca_user_id=SUCCESSOR)
    await same_enrollment(world, kept, successor)
    await same_enrollment(world, kept, successor, active=False)
    await same_enrollment(world, kept, successor, active=True)
    await same_enrollment(world, gone, await world.user("teacher", pachca_user_id=45))
    resp = await client.delete(f"/api/v1/enrollments/{gone.enrollment_id}", headers=world.service)
    assert resp.status == 204
    await client.close()
    assert not [
        j for j in await jobs(database) if j["status"] != "pending" and j["chat_id"] is None
    ]

    await start()

    await settled(database, fake_pachca)
    assert thread_log(fake_pachca, kept_thread) == [
        ("add", [TEACHER]),
        ("remove", TEACHER),
        ("add", [SUCCESSOR]),
        ("note", CLOSED),
        ("note", REOPENED),
    ]
    assert fake_pachca.members(kept_thread.thread_chat_id) == {SUCCESSOR}
    # The replacement's own jobs went with the deleted chat; the closing jobs remove both the
    # teacher who was in the thread and the successor (who never got there: Pachca says 404).
    assert thread_log(fake_pachca, gone_thread) == [
        ("add", [44]),
        ("note", DELETED),
        ("remove", 44),
        ("remove", 45),
    ]
    assert fake_pachca.members(gone_thread.thread_chat_id) == set()
    assert fake_pachca.violations == []


# --- accounts that become known, or change -------------------------------------------------------


async def test_a_teacher_who_links_with_the_bot_joins_their_threads(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    teacher = await world.user("teacher")  # no Pachca account known
    student = await world.user("student")
    enrolled = await world.enroll(student, teacher)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    await settled(database, fake_pachca)
    assert fake_pachca.members(thread.thread_chat_id) == set()

    resp = await client.post(f"/api/v1/users/{teacher}/link-code", headers=world.service)
    code = (await resp.json())["code"]
    fake_pachca.add_user(TEACHER, "Tess")
    fake_pachca.post_as_user(TEACHER, entity_type="user", entity_id=BOT, content=f"/link {code}")

    await eventually(lambda: fake_pachca.members(thread.thread_chat_id) == {TEACHER})
    await settled(database, fake_pachca)
    assert thread_log(fake_pachca, thread) == [("add", [TEACHER])]
    assert fake_pachca.violations == []


async def test_an_account_taken_to_another_user_leaves_the_first_ones_threads(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    _, _, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    other_teacher = await world.user("teacher")
    other = await world.enroll(await world.user("student"), other_teacher)
    other_thread = await thread_of(database, other.subject_chat["id"])
    await settled(database, fake_pachca)

    # The platform says TEACHER's account is in fact the other teacher's.
    await world.put_user(other_teacher, role="teacher", name="O", pachca_user_id=TEACHER)

    await settled(database, fake_pachca)
    assert fake_pachca.members(thread.thread_chat_id) == set()
    assert fake_pachca.members(other_thread.thread_chat_id) == {TEACHER}

    # Unlinked by the platform: out of their threads too.
    await world.put_user(other_teacher, role="teacher", name="O")
    await settled(database, fake_pachca)
    assert fake_pachca.members(other_thread.thread_chat_id) == set()
    assert fake_pachca.violations == []


# --- people added by hand -----------------------------------------------------------------------


async def test_a_stranger_added_by_hand_is_removed_and_staff_and_the_teacher_stay(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start(staff_user_ids=[STAFF])
    _, _, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    await settled(database, fake_pachca)
    await world.user("teacher", pachca_user_id=46)  # a colleague, no partner of this chat

    # Someone in Pachca adds people to the thread by hand.
    fake_pachca.add_members(thread.thread_chat_id, [STRANGER, STAFF, 46])

    await settled(database, fake_pachca)
    assert fake_pachca.members(thread.thread_chat_id) == {TEACHER, STAFF}
    assert thread_log(fake_pachca, thread) == [
        ("add", [TEACHER]),
        ("remove", STRANGER),
        ("remove", 46),
    ]
    assert fake_pachca.violations == []


async def test_the_tutor_added_to_the_subject_thread_is_removed(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    _, _, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    await settled(database, fake_pachca)

    fake_pachca.add_members(thread.thread_chat_id, [TUTOR])

    await settled(database, fake_pachca)
    assert fake_pachca.members(thread.thread_chat_id) == {TEACHER}
    assert fake_pachca.violations == []


async def test_a_redelivered_chat_member_webhook_removes_once(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    _, _, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    await settled(database, fake_pachca)
    body = chat_member_event(
        chat_id=thread.thread_chat_id, thread_id=thread.thread_id, user_ids=[STRANGER]
    )

    for _ in range(3):
        resp = await deliver(client, body, secret=SECRET)
        assert resp.status == 200

    await settled(database, fake_pachca)
    assert [j["payload"] for j in await jobs(database) if j["kind"] == "remove_member"] == [
        {"chat_id": thread.chat_id, "pachca_user_id": STRANGER}
    ]
    assert ("remove", STRANGER) in thread_log(fake_pachca, thread)  # not a member: 404, done
    assert fake_pachca.violations == []


@pytest.mark.parametrize("event", ["remove", "add"])
async def test_member_webhooks_of_other_chats_change_nothing(
    start: AppFactory, fake_pachca: FakePachca, database: Database, event: str
) -> None:
    client, world = await start()
    _, _, _, enrolled = await scene(world)
    thread = await thread_of(database, enrolled.subject_chat["id"])
    await settled(database, fake_pachca)
    before = len(await jobs(database))

    chat_id = thread.thread_chat_id if event == "remove" else CHANNEL_OF_SOMETHING_ELSE
    resp = await deliver(
        client, chat_member_event(event, chat_id=chat_id, user_ids=[STRANGER]), secret=SECRET
    )

    assert resp.status == 200
    assert len(await jobs(database)) == before


CHANNEL_OF_SOMETHING_ELSE = 123_456
