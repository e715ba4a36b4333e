"""Questions waiting for an answer, end to end (docs/pachca.md, reminders): the real app, its
outbox worker and the fake Pachca. A student's unanswered question makes the bot remind the
chat's teacher or tutor in a direct message, at most once per ``repeat_s``, never after an
answer from the web or from Pachca.

Runs are driven with a later clock (``Reminders.run_once(now=...)``) where the scheduler is
not the point; the scheduled run and a reload are checked with a short ``after_s``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.config import parse_config
from bridge.ops.reminders import Reminders
from bridge.pachca.jobs import REMIND, Job
from bridge.runtime import utcnow
from handlers.app import create_app
from handlers.keys import SERVICES
from store.db import Database
from tests.conftest import PG_URL
from tests.e2e.mirror_kit import BOT, FAST, AppFactory, jobs, settled, thread_of
from tests.eventually import eventually
from tests.fakes.pachca import FakePachca
from tests.world import World

TEACHER, TUTOR = 42, 43
AFTER_S, REPEAT_S = 3600.0, 86400.0

pytestmark = pytest.mark.config_sections(
    reminders={"enabled": True, "after_s": AFTER_S, "repeat_s": REPEAT_S}
)


def reminders_of(client: TestClient) -> Reminders:
    return client.app[SERVICES].reminders


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def direct_messages(fake: FakePachca, to: int) -> list[str]:
    """What the bot sent to one Pachca user in their direct chat, in order."""
    return [
        r.json["message"]["content"]
        for r in fake.requests
        if r.method == "POST"
        and r.path == "/messages"
        and r.json["message"].get("entity_type") == "user"
        and r.json["message"].get("entity_id") == to
    ]


async def scene(world: World, *, teacher_pachca: int | None = TEACHER) -> tuple[str, str, Any]:
    """A student (with a tutor in Pachca) and a teacher, and their enrollment."""
    tutor = await world.user("tutor", pachca_user_id=TUTOR)
    extra = {"pachca_user_id": teacher_pachca} if teacher_pachca is not None else {}
    teacher = await world.user("teacher", name="Tess Teacher", **extra)
    student = await world.user("student", name="Sam Student", tutor_id=tutor)
    enrolled = await world.enroll(student, teacher, subject=("math", "Mathematics"))
    return student, teacher, enrolled


async def waiting_list(world: World) -> list[dict[str, Any]]:
    resp = await world.client.get("/api/v1/admin/waiting", headers=world.service)
    assert resp.status == 200, await resp.text()
    chats: list[dict[str, Any]] = (await resp.json())["chats"]
    return chats


async def test_a_question_unanswered_after_the_wait_reminds_the_teacher(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    thread = await thread_of(database, chat_id)
    await world.post(student, chat_id, "How do I solve x^2 = 4?")
    await settled(database, fake_pachca)

    early = await reminders_of(client).run_once(now=later(AFTER_S - 60))
    assert early.queued == []

    run = await reminders_of(client).run_once(now=later(AFTER_S + 60))
    assert run.queued == [chat_id]
    await settled(database, fake_pachca)
    [text] = direct_messages(fake_pachca, TEACHER)
    assert "Sam Student" in text and "Mathematics" in text
    assert f"https://app.pachca.com/chats/{thread.thread_chat_id}" in text
    assert "waited" in text
    assert fake_pachca.violations == []


async def test_at_most_one_reminder_per_repeat_interval(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    await thread_of(database, chat_id)
    await world.post(student, chat_id, "Anyone there?")
    reminders = reminders_of(client)

    first = await reminders.run_once(now=later(AFTER_S + 1))
    again = await reminders.run_once(now=later(AFTER_S + 120))
    await world.post(student, chat_id, "Hello?")  # still the same wait
    still = await reminders.run_once(now=later(AFTER_S + REPEAT_S - 60))
    await settled(database, fake_pachca)
    assert (first.queued, again.queued, still.queued) == ([chat_id], [], [])
    assert len(direct_messages(fake_pachca, TEACHER)) == 1

    next_day = await reminders.run_once(now=later(AFTER_S + REPEAT_S + 60))
    await settled(database, fake_pachca)
    assert next_day.queued == [chat_id]
    assert len(direct_messages(fake_pachca, TEACHER)) == 2
    [row] = await waiting_list(world)
    assert row["reminders_sent"] == 2


async def test_the_repeat_interval_holds_across_an_answer_and_a_new_question(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, teacher, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    reminders = reminders_of(client)
    await world.post(student, chat_id, "First question")
    assert (await reminders.run_once(now=later(AFTER_S + 1))).queued == [chat_id]
    await settled(database, fake_pachca)  # sent before the answer (or it would not be)
    assert len(direct_messages(fake_pachca, TEACHER)) == 1
    await world.post(teacher, chat_id, "First answer")
    await world.post(student, chat_id, "Second question")

    # Waited long enough, but the last reminder is more recent than repeat_s.
    assert (await reminders.run_once(now=later(2 * AFTER_S + 60))).queued == []
    [row] = await waiting_list(world)
    assert row["reminders_sent"] == 0  # none about this wait yet
    assert (await reminders.run_once(now=later(AFTER_S + REPEAT_S + 60))).queued == [chat_id]
    await settled(database, fake_pachca)
    assert len(direct_messages(fake_pachca, TEACHER)) == 2


async def test_no_reminder_after_an_answer_from_the_web(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, teacher, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    await world.post(student, chat_id, "A question")
    await world.post(teacher, chat_id, "An answer")

    run = await reminders_of(client).run_once(now=later(AFTER_S + REPEAT_S))
    await settled(database, fake_pachca)
    assert run.queued == [] and run.skipped == {}
    assert direct_messages(fake_pachca, TEACHER) == []
    assert await waiting_list(world) == []


async def test_no_reminder_after_an_answer_from_pachca(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    thread = await thread_of(database, chat_id)
    await world.post(student, chat_id, "A question")
    await settled(database, fake_pachca)
    assert [c["chat_id"] for c in await waiting_list(world)] == [chat_id]

    fake_pachca.post_as_user(
        TEACHER, entity_type="thread", entity_id=thread.thread_id, content="Answered in Pachca"
    )

    async def answered() -> bool:
        return await waiting_list(world) == []

    await eventually(answered, what="the answer relayed")
    await settled(database, fake_pachca)

    run = await reminders_of(client).run_once(now=later(AFTER_S + 60))
    await settled(database, fake_pachca)
    assert run.queued == []
    assert direct_messages(fake_pachca, TEACHER) == []


async def test_an_answer_deleted_in_pachca_makes_the_chat_wait_again(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    thread = await thread_of(database, chat_id)
    question = await world.post(student, chat_id, "A question")
    await settled(database, fake_pachca)
    answer = fake_pachca.post_as_user(
        TEACHER, entity_type="thread", entity_id=thread.thread_id, content="Hasty answer"
    )

    async def waits() -> list[int]:
        return [c["chat_id"] for c in await waiting_list(world)]

    await eventually(lambda: _is(waits, []), what="the answer relayed")
    fake_pachca.delete_as_user(TEACHER, answer["id"])
    await eventually(lambda: _is(waits, [chat_id]), what="the answer's deletion relayed")
    [row] = await waiting_list(world)
    assert row["waiting_since"] == question["created_at"]


async def _is(read: Any, expected: Any) -> bool:
    return bool(await read() == expected)


async def test_a_reminder_queued_before_the_answer_is_not_sent(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    """The job reads the wait again when it runs: an answer that came while it waited stops
    it."""
    client, world = await start()
    student, teacher, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    await world.post(student, chat_id, "A question")
    [row] = await waiting_list(world)
    since = datetime.fromisoformat(row["waiting_since"])
    await world.post(teacher, chat_id, "The answer")
    await settled(database, fake_pachca)

    services = client.app[SERVICES]
    job = Job(0, None, REMIND, {"chat_id": chat_id, "since": since.isoformat()}, 1)
    pachca = services.rt.pachca.current()
    assert pachca is not None
    done = await services.worker.deliveries.remind(job, pachca)
    assert done.skipped is not None
    assert direct_messages(fake_pachca, TEACHER) == []


async def test_no_reminder_for_an_inactive_chat(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, teacher, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    await world.post(student, chat_id, "A question")
    await world.enroll(
        student,
        teacher,
        subject=("math", "Mathematics"),
        enrollment_id=enrolled.enrollment_id,
        active=False,
    )

    run = await reminders_of(client).run_once(now=later(AFTER_S + 60))
    await settled(database, fake_pachca)
    assert run.queued == [] and run.skipped == {}
    assert direct_messages(fake_pachca, TEACHER) == []
    assert await waiting_list(world) == []


async def test_the_tutor_is_reminded_of_a_tutor_chat(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, enrolled = await scene(world)
    tutor_chat = enrolled.tutor_chat
    assert tutor_chat is not None
    thread = await thread_of(database, tutor_chat["id"])
    await world.post(student, tutor_chat["id"], "A question for my tutor")

    run = await reminders_of(client).run_once(now=later(AFTER_S + 60))
    await settled(database, fake_pachca)
    assert run.queued == [tutor_chat["id"]]
    [text] = direct_messages(fake_pachca, TUTOR)
    assert f"https://app.pachca.com/chats/{thread.thread_chat_id}" in text
    assert direct_messages(fake_pachca, TEACHER) == []
    [row] = await waiting_list(world)
    assert row["assignee"]["role"] == "tutor"


async def test_a_teacher_without_a_pachca_account_is_skipped_with_the_reason(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, enrolled = await scene(world, teacher_pachca=None)
    chat_id = enrolled.subject_chat["id"]
    await world.post(student, chat_id, "A question")

    run = await reminders_of(client).run_once(now=later(AFTER_S + 60))
    assert run.queued == []
    assert "no Pachca account" in run.skipped[chat_id]
    # Marked, so the reason is not logged again on every run.
    assert (await reminders_of(client).run_once(now=later(AFTER_S + 120))).skipped == {}
    await settled(database, fake_pachca)
    assert not [j for j in await jobs(database) if j["kind"] == REMIND]
    [row] = await waiting_list(world)
    assert row["reminders_sent"] == 0


async def test_deleting_the_only_waiting_message_ends_the_wait(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    first = await world.post(student, chat_id, "Oops, wrong chat")
    second = await world.post(student, chat_id, "And this too")
    [row] = await waiting_list(world)
    assert row["waiting_since"] == first["created_at"]

    resp = await client.delete(f"/api/v1/messages/{first['id']}", headers=world.auth(student))
    assert resp.status == 204, await resp.text()
    [row] = await waiting_list(world)
    assert row["waiting_since"] == second["created_at"]  # the next one waits now

    resp = await client.delete(f"/api/v1/messages/{second['id']}", headers=world.auth(student))
    assert resp.status == 204, await resp.text()
    assert await waiting_list(world) == []
    run = await reminders_of(client).run_once(now=later(AFTER_S + 60))
    await settled(database, fake_pachca)
    assert run.queued == []
    assert direct_messages(fake_pachca, TEACHER) == []


async def test_deleting_the_answer_makes_the_chat_wait_again(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, teacher, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    question = await world.post(student, chat_id, "A question")
    answer = await world.post(teacher, chat_id, "Not really an answer")
    assert await waiting_list(world) == []

    resp = await client.delete(f"/api/v1/messages/{answer['id']}", headers=world.auth(teacher))
    assert resp.status == 204, await resp.text()
    [row] = await waiting_list(world)
    assert row["waiting_since"] == question["created_at"]


async def test_the_answer_time_is_observed(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, teacher, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    await world.post(student, chat_id, "A question")
    await world.post(student, chat_id, "Still there?")
    await world.post(teacher, chat_id, "An answer")
    await world.post(teacher, chat_id, "And a follow-up, which answers nothing")

    text = await (await client.get("/metrics")).text()
    assert "bridge_answer_seconds_count 1.0" in text
    assert 'bridge_answer_seconds_bucket{le="60.0"} 1.0' in text


async def test_waiting_answers_in_the_direct_chat(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    thread = await thread_of(database, chat_id)
    other_student = await world.user("student", name="Olga Other")
    teacher_id = enrolled.body["enrollment"]["teacher_id"]
    other = await world.enroll(other_student, teacher_id, subject=("math", "Mathematics"))
    await world.post(other_student, other.subject_chat["id"], "Me first")
    await world.post(student, chat_id, "Me second")
    await settled(database, fake_pachca)

    fake_pachca.post_as_user(TEACHER, entity_type="user", entity_id=BOT, content="/waiting")
    [text] = await eventually(lambda: direct_messages(fake_pachca, TEACHER), what="the answer")
    assert text.index(other.subject_chat["title"]) < text.index(enrolled.subject_chat["title"])
    assert f"https://app.pachca.com/chats/{thread.thread_chat_id}" in text

    # Asked in a thread, the list (other students' names) still goes to the direct chat.
    fake_pachca.post_as_user(
        TEACHER, entity_type="thread", entity_id=thread.thread_id, content="/waiting"
    )
    await eventually(lambda: len(direct_messages(fake_pachca, TEACHER)) == 2, what="2nd answer")
    await settled(database, fake_pachca)
    assert [c["chat_id"] for c in await waiting_list(world)] == [
        other.subject_chat["id"],
        chat_id,
    ]  # a command is no answer


@pytest.mark.config_sections(reminders={"enabled": True, "after_s": 0.5, "repeat_s": 3600})
async def test_the_scheduled_run_reminds_after_a_short_wait(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, enrolled = await scene(world)
    await world.post(student, enrolled.subject_chat["id"], "A question")

    await eventually(lambda: direct_messages(fake_pachca, TEACHER), what="a reminder")
    await settled(database, fake_pachca)
    assert len(direct_messages(fake_pachca, TEACHER)) == 1  # repeat_s is an hour


@pytest.mark.config_sections(reminders={"enabled": False, "after_s": 3600, "repeat_s": 86400})
async def test_a_reload_that_enables_reminders_applies_at_once(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    """The run was scheduled a minute apart (after_s an hour): the reload reschedules it to
    the new, short after_s at once, not after the old interval."""
    client, world = await start()
    student, _, enrolled = await scene(world)
    await world.post(student, enrolled.subject_chat["id"], "A question")
    await settled(database, fake_pachca)
    live = client.app[SERVICES].rt.live
    assert (await reminders_of(client).run_once(now=later(2 * 3600))).queued == []  # disabled

    reminders = live.current.reminders.model_copy(update={"enabled": True, "after_s": 0.5})
    live.current = live.current.model_copy(update={"reminders": reminders})

    await eventually(lambda: direct_messages(fake_pachca, TEACHER), what="a reminder")


@pytest.mark.skipif(
    not PG_URL, reason="several instances share one database on PostgreSQL only (SQLite: one)"
)
async def test_two_instances_on_one_database_send_one_reminder(
    start: AppFactory,
    fake_pachca: FakePachca,
    database: Database,
    config_data: dict[str, Any],
    aiohttp_client: Any,
) -> None:
    """Each instance has its own connections to the one database; both run at once."""
    client, world = await start()
    student, _, enrolled = await scene(world)
    chat_id = enrolled.subject_chat["id"]
    await world.post(student, chat_id, "A question")
    await settled(database, fake_pachca)

    # The second app closes its database when it stops.
    second_db = Database(database.url, connect_args=database.connect_args)
    config = client.app[SERVICES].config
    app = create_app(parse_config({**config_data, "pachca": _pachca_of(config)}), db=second_db)
    app[SERVICES].worker.tuning = FAST
    second = await aiohttp_client(app)
    at = later(AFTER_S + 60)
    runs = await asyncio.gather(
        *(reminders_of(c).run_once(now=at) for c in (client, second, client, second))
    )
    assert sorted(chat for run in runs for chat in run.queued) == [chat_id]
    await settled(database, fake_pachca)
    assert len(direct_messages(fake_pachca, TEACHER)) == 1


def _pachca_of(config: Any) -> dict[str, Any]:
    section = config.pachca.model_dump()
    section["token"] = config.pachca.token.get_secret_value()
    section["signing_secret"] = config.pachca.signing_secrets[0]
    return section
