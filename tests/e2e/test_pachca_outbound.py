"""Forum -> Pachca, end to end: the real app, its outbox worker, and the fake Pachca server
(every request body checked against Pachca's OpenAPI spec)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.mentions import WORD_JOINER as WJ
from bridge.config import parse_config
from bridge.pachca.worker import OutboxTuning
from bridge.runtime import utcnow
from handlers.app import create_app
from handlers.keys import SERVICES
from store import outbox as outbox_store
from store.db import Database
from store.models import Chat, Message, OutboxJob
from tests.conftest import SERVICE_TOKEN
from tests.eventually import eventually
from tests.fakes import (
    FAKE_PACHCA_TOKEN,
    fake_pachca_fixture,  # noqa: F401 - registers the fake_pachca fixture
)
from tests.fakes.pachca import FakePachca
from tests.fakes.webhooks import message_event, signed
from tests.world import World

CHANNEL = 111
TUTOR_CHANNEL = 222
TEACHER_PACHCA_ID = 42
TUTOR_PACHCA_ID = 43

# Fast enough that retries take milliseconds; nothing below is asserted on timing.
FAST = OutboxTuning(
    poll_s=0.05,
    min_pass_gap_s=0.005,
    backoff_base_s=0.02,
    backoff_max_s=0.1,
    postpone_s=0.05,
    waiting_poll_s=0.05,
    stop_grace_s=0.3,
)
ADMIN = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
_webhook_message_ids = itertools.count(600_001)

AppFactory = Callable[..., Awaitable[tuple[TestClient, World]]]


@pytest.fixture
def pachca_data(config_data: dict[str, Any], fake_pachca: FakePachca) -> dict[str, Any]:
    config_data["pachca"] = {
        "enabled": True,
        "api_url": fake_pachca.base_url,
        "token": FAKE_PACHCA_TOKEN,
        "channels": {"default": CHANNEL, "tutors": TUTOR_CHANNEL},
        "rate_per_chat": 1000,
        "rate_global": 1000,
        "max_attempts": 5,
        "request_timeout_s": 0.5,
    }
    return config_data


@pytest.fixture
def start(database: Database, pachca_data: dict[str, Any], aiohttp_client: Any) -> AppFactory:
    """Build and start an app on the test database (call again for a "restart").

    ``database`` comes first so it is torn down last, after the apps have stopped.
    """

    async def start(tuning: OutboxTuning = FAST, **pachca: Any) -> tuple[TestClient, World]:
        data = {**pachca_data, "pachca": {**pachca_data["pachca"], **pachca}}
        app = create_app(parse_config(data), db=database)
        app[SERVICES].worker.tuning = tuning
        client = await aiohttp_client(app)
        return client, World(client, service_token=SERVICE_TOKEN)

    return start


# --- reading the bridge's state ------------------------------------------------------------


async def chat_row(db: Database, chat_id: int) -> Any:
    async with db.read() as conn:
        [row] = await conn.rows(select(Chat.__table__).where(Chat.__table__.c.id == chat_id))
    return row


async def pachca_id_of(db: Database, message_id: int) -> int | None:
    async with db.read() as conn:
        query = select(Message.pachca_message_id).where(Message.id == message_id)
        found: int | None = await conn.value(query)
    return found


async def jobs(db: Database) -> list[Any]:
    async with db.read() as conn:
        return await conn.rows(select(OutboxJob.__table__).order_by(OutboxJob.id))


async def thread_open(db: Database, chat_id: int) -> Any:
    row = await chat_row(db, chat_id)
    return row if row["pachca_thread_chat_id"] is not None else None


async def all_done(db: Database) -> bool:
    rows = await jobs(db)
    return bool(rows) and all(r["status"] == "done" for r in rows)


async def enrolled_pair(world: World, **teacher: Any) -> tuple[str, str, dict[str, Any]]:
    teacher_id = await world.user("teacher", **teacher)
    student_id = await world.user("student", name="Ann Student")
    chat = (await world.enroll(student_id, teacher_id)).subject_chat
    return student_id, teacher_id, chat


def thread_contents(fake: FakePachca, thread_chat_id: int) -> list[str]:
    return [m["content"] for m in fake.chat_messages(thread_chat_id)]


# --- the happy path --------------------------------------------------------------------------


async def test_enrollment_opens_a_thread_with_the_teacher_in_it(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    _, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)

    row = await eventually(lambda: thread_open(database, chat["id"]), what="thread")
    await eventually(lambda: all_done(database), what="jobs done")

    root = fake_pachca.messages[row["pachca_root_message_id"]]
    assert (root["entity_type"], root["entity_id"]) == ("discussion", CHANNEL)
    assert root["content"] == chat["title"]
    thread = fake_pachca.thread_of(root["id"])
    assert thread is not None
    assert (row["pachca_thread_id"], row["pachca_thread_chat_id"]) == (
        thread["id"],
        thread["chat_id"],
    )
    [added] = fake_pachca.requests_to("POST", f"/chats/{thread['chat_id']}/members")
    assert added.json == {"member_ids": [TEACHER_PACHCA_ID], "silent": True}
    assert len(fake_pachca.requests_to("POST", "/messages")) == 1  # one root message
    assert fake_pachca.violations == []


async def test_a_tutor_chat_opens_in_the_tutor_channel(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    tutor = await world.user("tutor", pachca_user_id=TUTOR_PACHCA_ID)
    teacher = await world.user("teacher")
    student = await world.user("student", tutor_id=tutor)
    tutor_chat = (await world.enroll(student, teacher)).tutor_chat
    assert tutor_chat is not None

    row = await eventually(lambda: thread_open(database, tutor_chat["id"]), what="thread")

    root = fake_pachca.messages[row["pachca_root_message_id"]]
    assert root["entity_id"] == TUTOR_CHANNEL
    await eventually(lambda: fake_pachca.members(row["pachca_thread_chat_id"]) == {43})
    assert fake_pachca.violations == []


async def test_a_web_message_is_posted_under_its_author_then_edited_and_deleted(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)

    message = await world.post(student, chat["id"], "What is a derivative? 🤔\nline two")
    pachca_id = await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    row = await chat_row(database, chat["id"])
    posted = fake_pachca.messages[pachca_id]
    assert (posted["entity_type"], posted["entity_id"]) == ("thread", row["pachca_thread_id"])
    assert posted["chat_id"] == row["pachca_thread_chat_id"]
    assert posted["content"] == "What is a derivative? 🤔\nline two"
    assert posted["display_name"] == "Ann Student"

    resp = await client.patch(
        f"/api/v1/messages/{message['id']}", json={"content": "edited"}, headers=world.auth(student)
    )
    assert resp.status == 200
    await eventually(lambda: fake_pachca.messages[pachca_id]["content"] == "edited", what="edit")

    resp = await client.delete(f"/api/v1/messages/{message['id']}", headers=world.auth(student))
    assert resp.status == 204
    await eventually(lambda: fake_pachca.messages[pachca_id]["deleted_at"], what="delete")
    await eventually(lambda: all_done(database), what="jobs done")
    assert len(fake_pachca.requests_to("POST", "/messages")) == 2  # root + the message, once
    assert fake_pachca.violations == []


async def test_a_reply_is_posted_as_a_reply_to_the_pachca_copy(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, chat = await enrolled_pair(world)
    first = await world.post(student, chat["id"], "first")
    second = await world.post(student, chat["id"], "second", reply_to_id=first["id"])

    second_id = await eventually(lambda: pachca_id_of(database, second["id"]))
    first_id = await pachca_id_of(database, first["id"])
    assert fake_pachca.messages[second_id]["parent_message_id"] == first_id
    assert fake_pachca.violations == []


async def test_deleted_before_it_was_posted_nothing_reaches_pachca(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    # Pachca is down while the message is written and deleted; when it is back, nothing of
    # that message is sent.
    fake_pachca.fail_next(3, status=503, path="/messages/*/thread")
    client, world = await start()
    student, _, chat = await enrolled_pair(world)
    message = await world.post(student, chat["id"], "oops")
    resp = await client.delete(f"/api/v1/messages/{message['id']}", headers=world.auth(student))
    assert resp.status == 204

    await eventually(lambda: all_done(database), what="jobs done")
    row = await chat_row(database, chat["id"])
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == []
    assert fake_pachca.requests_to("DELETE") == []
    assert fake_pachca.violations == []


# --- membership ------------------------------------------------------------------------------


async def test_a_teacher_is_added_once_their_pachca_account_is_known(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    _, teacher, chat = await enrolled_pair(world)  # no pachca_user_id yet
    row = await eventually(lambda: thread_open(database, chat["id"]), what="thread")
    await eventually(lambda: all_done(database), what="jobs done")
    assert fake_pachca.requests_to("POST", "/chats/*/members") == []

    await world.put_user(teacher, role="teacher", name="T", pachca_user_id=TEACHER_PACHCA_ID)

    await eventually(lambda: fake_pachca.members(row["pachca_thread_chat_id"]) == {42})
    [added] = fake_pachca.requests_to("POST", "/chats/*/members")
    assert added.json == {"member_ids": [TEACHER_PACHCA_ID], "silent": True}
    assert fake_pachca.violations == []


async def test_a_new_teacher_is_added_to_the_existing_thread(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    teacher = await world.user("teacher", pachca_user_id=TEACHER_PACHCA_ID)
    student = await world.user("student")
    enrolled = await world.enroll(student, teacher)
    chat_id = enrolled.subject_chat["id"]
    row = await eventually(lambda: thread_open(database, chat_id), what="thread")

    successor = await world.user("teacher", pachca_user_id=77)
    subject = enrolled.body["enrollment"]["subject"]
    await world.enroll(
        student,
        successor,
        subject=(subject["id"], subject["name"]),
        enrollment_id=enrolled.enrollment_id,
    )

    await eventually(lambda: 77 in fake_pachca.members(row["pachca_thread_chat_id"]))
    assert len(fake_pachca.requests_to("POST", "/messages")) == 1  # the same thread
    assert fake_pachca.violations == []


# --- failures ---------------------------------------------------------------------------------


async def open_chat(world: World, database: Database) -> tuple[str, dict[str, Any], Any]:
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    row = await eventually(lambda: thread_open(database, chat["id"]), what="thread")
    await eventually(lambda: all_done(database), what="jobs done")
    return student, chat, row


async def test_a_429_is_waited_out_and_the_message_arrives_once(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, chat, row = await open_chat(world, database)
    fake_pachca.rate_limit_next(1, retry_after=0.3, method="POST", path="/messages")

    message = await world.post(student, chat["id"], "hello")

    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["hello"]
    _root, refused, accepted = fake_pachca.requests_to("POST", "/messages")
    # Retry-After honoured: not asked again before Pachca said (a lower bound, never flaky).
    assert accepted.at - refused.at >= 0.3
    assert fake_pachca.violations == []


async def test_5xx_answers_are_retried_and_the_message_arrives_once(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, chat, row = await open_chat(world, database)
    fake_pachca.fail_next(2, status=500, method="POST", path="/messages")
    fake_pachca.malformed_next(1, kind="html_502", method="POST", path="/messages")

    message = await world.post(student, chat["id"], "hello")

    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["hello"]
    assert len(fake_pachca.requests_to("POST", "/messages")) == 1 + 4  # root, 3 failures, 1 ok
    assert fake_pachca.violations == []


async def test_a_hung_request_times_out_and_is_retried(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, chat, row = await open_chat(world, database)
    fake_pachca.hang_next(1, seconds=60, method="POST", path="/messages")

    message = await world.post(student, chat["id"], "hello")

    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["hello"]
    [job] = [j for j in await jobs(database) if j["kind"] == "post_message"]
    assert job["status"] == "done"
    assert fake_pachca.violations == []


async def test_a_huge_answer_is_a_failed_delivery_and_retried(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, chat, row = await open_chat(world, database)
    # 64 MiB, sent without a Content-Length: the bridge learns the size only by reading.
    # It starts as a well-formed answer (naming the root message), so only the size gives
    # it away.
    root = fake_pachca.messages[row["pachca_root_message_id"]]
    fake_pachca.huge_next(
        1, size=64 * 1024 * 1024, document={"data": root}, method="POST", path="/messages"
    )

    message = await world.post(student, chat["id"], "hello")

    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["hello"]
    [job] = [j for j in await jobs(database) if j["kind"] == "post_message"]
    assert (job["status"], job["attempts"]) == ("done", 2)  # the huge answer counted as one
    assert fake_pachca.violations == []


async def test_an_absurd_retry_after_blocks_a_chat_for_an_hour_at_most(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, chat, _ = await open_chat(world, database)
    other_student, other_chat, other_row = await open_chat(world, database)
    fake_pachca.rate_limit_next(1, retry_after="1e12", method="POST", path="/messages")

    await world.post(student, chat["id"], "waits")

    async def rescheduled() -> Any:
        rows = [j for j in await jobs(database) if j["kind"] == "post_message"]
        return rows[0] if rows and rows[0]["last_error"] else None

    job = await eventually(rescheduled, what="the 429 recorded")
    assert job["status"] == "pending" and "429" in job["last_error"]
    wait = (job["next_attempt_at"] - utcnow()).total_seconds()
    assert 3000 < wait <= 3600  # Pachca asked for 31,000 years
    # The worker is alive and other chats are not held up.
    reply = await world.post(other_student, other_chat["id"], "goes through")
    await eventually(lambda: pachca_id_of(database, reply["id"]), what="other chat posted")
    assert thread_contents(fake_pachca, other_row["pachca_thread_chat_id"]) == ["goes through"]


async def test_the_client_gets_201_while_pachca_is_down(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start(max_attempts=50)
    fake_pachca.hang_next(2, seconds=60)  # what the worker sends first hangs...
    fake_pachca.fail_next(20, status=503)  # ...then Pachca answers 503 for a while
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)

    sent = []
    for n in range(3):
        resp = await client.post(
            f"/api/v1/chats/{chat['id']}/messages",
            json={"content": f"m{n}"},
            headers=world.auth(student),
        )
        assert resp.status == 201  # never waits for, nor fails with, Pachca
        sent.append((await resp.json())["message"])

    row = await eventually(lambda: thread_open(database, chat["id"]), what="thread")
    await eventually(lambda: all_done(database), what="jobs done")
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["m0", "m1", "m2"]
    assert fake_pachca.violations == []


async def test_per_chat_order_is_kept_through_failures(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start(max_attempts=50)
    student_a, chat_a, row_a = await open_chat(world, database)
    student_b, chat_b, row_b = await open_chat(world, database)
    # Failures scattered over both chats' posts: a retried message must not be overtaken.
    fake_pachca.fail_next(3, status=502, method="POST", path="/messages")
    for n in range(8):
        await world.post(student_a, chat_a["id"], f"a{n}")
        await world.post(student_b, chat_b["id"], f"b{n}")
        if n == 3:
            fake_pachca.fail_next(2, status=500, method="POST", path="/messages")

    await eventually(lambda: all_done(database), what="jobs done")
    assert thread_contents(fake_pachca, row_a["pachca_thread_chat_id"]) == [
        f"a{n}" for n in range(8)
    ]
    assert thread_contents(fake_pachca, row_b["pachca_thread_chat_id"]) == [
        f"b{n}" for n in range(8)
    ]
    assert fake_pachca.violations == []


async def test_dead_letter_after_max_attempts_then_admin_retry(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start(max_attempts=3)
    student, chat, row = await open_chat(world, database)
    fake_pachca.fail_next(3, status=500, method="POST", path="/messages")

    message = await world.post(student, chat["id"], "hello")

    async def dead_jobs() -> list[dict[str, Any]]:
        resp = await client.get("/api/v1/admin/outbox?status=dead", headers=ADMIN)
        assert resp.status == 200
        return (await resp.json())["jobs"]

    [dead] = await eventually(dead_jobs, what="a dead job")
    assert dead["kind"] == "post_message"
    assert dead["payload"] == {"message_id": message["id"]}
    assert dead["attempts"] == 3
    assert "500" in dead["last_error"]
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == []
    # The client's view is untouched by the failure.
    resp = await client.get(f"/api/v1/chats/{chat['id']}/messages", headers=world.auth(student))
    assert [m["content"] for m in (await resp.json())["messages"]] == ["hello"]

    resp = await client.post(f"/api/v1/admin/outbox/{dead['id']}/retry", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["job"]["status"] == "pending"

    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["hello"]
    assert await dead_jobs() == []
    assert fake_pachca.violations == []


async def test_a_request_pachca_rejects_is_dead_at_once(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start(max_attempts=5)
    student, chat, _ = await open_chat(world, database)
    fake_pachca.fail_next(1, status=422, method="POST", path="/messages")

    await world.post(student, chat["id"], "hello")

    async def dead() -> list[Any]:
        return [j for j in await jobs(database) if j["status"] == "dead"]

    [job] = await eventually(dead, what="a dead job")
    assert job["attempts"] == 1
    assert len(fake_pachca.requests_to("POST", "/messages")) == 2  # root + the one refused
    assert fake_pachca.violations == []


# --- restarts and leases -----------------------------------------------------------------------


async def test_a_restart_delivers_what_was_pending_without_a_second_root_message(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    # The first instance posts the root message, then the thread call hangs until it stops.
    fake_pachca.hang_next(1, seconds=60, path="/messages/*/thread")
    client, world = await start()
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    for n in range(3):
        await world.post(student, chat["id"], f"m{n}")
    await eventually(lambda: fake_pachca.requests_to("POST", "/messages/*/thread"), what="hang")
    await client.close()
    assert not await all_done(database)

    await start()  # a second app on the same database

    row = await eventually(lambda: thread_open(database, chat["id"]), what="thread")
    await eventually(lambda: all_done(database), what="jobs done")
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["m0", "m1", "m2"]
    roots = fake_pachca.chat_messages(CHANNEL)
    assert [m["id"] for m in roots] == [row["pachca_root_message_id"]]
    assert fake_pachca.members(row["pachca_thread_chat_id"]) == {TEACHER_PACHCA_ID}
    assert fake_pachca.violations == []


async def test_jobs_of_a_worker_that_died_run_after_its_lease_runs_out(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start(enabled=False)
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    message = await world.post(student, chat["id"], "hello")
    await client.close()
    # Another process claimed the jobs, then died without a word.
    now = utcnow()
    async with database.write() as conn:
        claimed = await outbox_store.claim(
            conn, now=now, lease_until=now + timedelta(seconds=0.5), limit=10
        )
    assert claimed

    await start()

    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    row = await chat_row(database, chat["id"])
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["hello"]
    assert fake_pachca.violations == []


def die(client: TestClient) -> None:
    """What kill -9 leaves of an instance's outbox worker: its jobs stop mid-request, and nothing
    gives their leases back or renews them any more."""
    worker = client.server.app[SERVICES].worker
    worker._stopped.set()
    if worker._task is not None:
        worker._task.cancel()
        worker._task = None
    for task in worker._inflight.values():
        task.cancel()
    worker._inflight.clear()


async def test_another_instance_takes_over_a_dead_workers_chat_within_seconds(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    # Two instances on one database; the thread call of the chat's first job hangs, and the
    # instance running it dies. Its lease is short and was only renewed while it lived, so the
    # other instance runs the chat's jobs a few seconds later, not a minute.
    fake_pachca.hang_next(1, seconds=60, path="/messages/*/thread")
    first, world = await start(request_timeout_s=30)
    second, _ = await start(request_timeout_s=30)
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    for n in range(3):
        await world.post(student, chat["id"], f"m{n}")
    await eventually(lambda: fake_pachca.requests_to("POST", "/messages/*/thread"), what="hang")
    running = [c for c in (first, second) if c.server.app[SERVICES].worker._inflight]
    assert len(running) == 1
    loop = asyncio.get_running_loop()
    died_at = loop.time()
    die(running[0])

    await eventually(lambda: all_done(database), what="jobs done", within=30)
    assert loop.time() - died_at < 10
    row = await chat_row(database, chat["id"])
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["m0", "m1", "m2"]
    assert fake_pachca.violations == []


async def test_a_job_outlasting_its_lease_keeps_it_while_it_runs(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    # The thread call takes three leases' time; the worker renews the lease meanwhile, so the
    # other instance never takes the job over and the thread opens once.
    gate = fake_pachca.hold_next(1, path="/messages/*/thread")
    short_lease = dataclasses.replace(FAST, lease_s=0.3)
    _, world = await start(short_lease, request_timeout_s=30)
    await start(short_lease, request_timeout_s=30)
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    await world.post(student, chat["id"], "hello")
    await eventually(lambda: fake_pachca.requests_to("POST", "/messages/*/thread"), what="held")
    await asyncio.sleep(1.0)  # three leases
    gate.set()
    await eventually(lambda: all_done(database), what="jobs done")
    assert len(fake_pachca.requests_to("POST", "/messages/*/thread")) == 1
    roots = fake_pachca.chat_messages(CHANNEL)
    assert len(roots) == 1
    row = await chat_row(database, chat["id"])
    assert thread_contents(fake_pachca, row["pachca_thread_chat_id"]) == ["hello"]


# --- degraded modes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pachca", "reason"),
    [({"enabled": False}, "pachca.enabled"), ({"token": ""}, "pachca.token")],
)
async def test_without_pachca_nothing_is_sent_and_nothing_fails(
    start: AppFactory,
    fake_pachca: FakePachca,
    database: Database,
    pachca: dict[str, Any],
    reason: str,
) -> None:
    client, world = await start(**pachca)
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    message = await world.post(student, chat["id"], "hello")
    resp = await client.patch(
        f"/api/v1/messages/{message['id']}", json={"content": "edited"}, headers=world.auth(student)
    )
    assert resp.status == 200
    resp = await client.get(f"/api/v1/chats/{chat['id']}/messages", headers=world.auth(student))
    assert [m["content"] for m in (await resp.json())["messages"]] == ["edited"]

    async def all_waiting_with_reason() -> bool:
        rows = await jobs(database)
        return len(rows) == 3 and all(
            r["status"] == "pending" and reason in (r["last_error"] or "") for r in rows
        )

    await eventually(all_waiting_with_reason, what="jobs noted as waiting")
    assert fake_pachca.requests == []


async def test_a_chat_without_a_channel_waits_until_one_is_configured(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start(channels={})
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    message = await world.post(student, chat["id"], "hello")

    async def open_thread_waits() -> bool:
        first = (await jobs(database))[0]
        return first["kind"] == "open_thread" and "pachca.channels" in (first["last_error"] or "")

    await eventually(open_thread_waits, what="open_thread noted as waiting")
    assert fake_pachca.requests == []
    assert all(j["status"] == "pending" for j in await jobs(database))

    # An admin adds the channel; the reload applies to the running worker.
    live = client.app[SERVICES].rt.live
    pachca = live.current.pachca.model_copy(
        update={"channels": live.current.pachca.channels.model_copy(update={"default": CHANNEL})}
    )
    live.current = live.current.model_copy(update={"pachca": pachca})

    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    assert fake_pachca.violations == []


# --- metrics ------------------------------------------------------------------------------------


async def test_deliveries_and_outbox_depth_are_in_the_metrics(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, chat, _ = await open_chat(world, database)
    message = await world.post(student, chat["id"], "hello")
    await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    await eventually(lambda: all_done(database), what="jobs done")
    await client.app[SERVICES].maintenance.refresh_depth()

    text = await (await client.get("/metrics")).text()
    assert 'bridge_pachca_deliveries_total{kind="post_message",result="done"} 1.0' in text
    assert 'bridge_outbox_depth{status="done"} 2.0' in text
    assert 'bridge_outbox_depth{status="pending"} 0.0' in text


async def test_new_jobs_wake_the_worker_without_waiting_for_its_poll(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    # A poll far longer than the wait below: only the commit signal can have started the jobs.
    _, world = await start(OutboxTuning(poll_s=600, backoff_base_s=0.02, stop_grace_s=0.3))
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    message = await world.post(student, chat["id"], "hello")

    await eventually(lambda: pachca_id_of(database, message["id"]), within=10, what="posted")
    assert fake_pachca.violations == []


async def test_a_web_post_into_an_open_thread_wakes_the_worker(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    # A web post's outbox job wakes the worker through the commit signal, like any other
    # job, or the message would wait for the (here endless) poll.
    _, world = await start(OutboxTuning(poll_s=600, backoff_base_s=0.02, stop_grace_s=0.3))
    student, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)
    await eventually(lambda: thread_open(database, chat["id"]), within=10, what="thread open")
    await eventually(lambda: all_done(database), within=10, what="idle worker")

    message = await world.post(student, chat["id"], "after the thread is open")

    await eventually(lambda: pachca_id_of(database, message["id"]), within=10, what="posted")


# --- hardening: coalesced edits, fair lanes, inert mentions ----------------------------------

SIGNING_SECRET = "e2e-signing-secret"


async def test_a_burst_of_edits_makes_at_most_two_deliveries_carrying_the_final_text(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    # Long enough that the held edit below never times out.
    client, world = await start(request_timeout_s=30)
    student, chat, _ = await open_chat(world, database)
    message = await world.post(student, chat["id"], "draft")
    pachca_id = await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    released = fake_pachca.hold_next(method="PUT", path="/messages/*")  # Pachca is slow

    async def edit(n: int) -> None:
        resp = await client.patch(
            f"/api/v1/messages/{message['id']}",
            json={"content": f"edit {n}"},
            headers=world.auth(student),
        )
        assert resp.status == 200

    await edit(1)
    await eventually(lambda: fake_pachca.requests_to("PUT"), what="the first edit in flight")
    for n in range(2, 51):
        await edit(n)
    # The job in flight, and one waiting that carries every later edit.
    assert [j["kind"] for j in await jobs(database)].count("edit_message") == 2

    released.set()
    await eventually(lambda: all_done(database), what="jobs done")
    sent = [r.json["message"]["content"] for r in fake_pachca.requests_to("PUT", "/messages/*")]
    assert sent == ["edit 1", "edit 50"]
    assert fake_pachca.messages[pachca_id]["content"] == "edit 50"
    assert fake_pachca.violations == []


def direct_command(content: str, pachca_user_id: int, bot_user_id: int) -> dict[str, Any]:
    return message_event(
        id=next(_webhook_message_ids),
        entity_type="user",
        entity_id=bot_user_id,
        chat_id=700_000 + pachca_user_id,
        user_id=pachca_user_id,
        content=content,
    )


async def deliver(client: TestClient, body: dict[str, Any]) -> None:
    raw, headers = signed(body, SIGNING_SECRET)
    resp = await client.post("/webhooks/pachca", data=raw, headers=headers)
    assert resp.status == 200, await resp.text()


async def test_500_bot_answers_to_one_user_do_not_hold_back_a_new_thread(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    bot = fake_pachca.bot_user_id
    client, world = await start(enabled=False, signing_secret=SIGNING_SECRET, bot_user_id=bot)
    for _ in range(500):  # one person asks for /help over and over while Pachca is off
        await deliver(client, direct_command("/help", 4001, bot))
    _, _, chat = await enrolled_pair(world, pachca_user_id=TEACHER_PACHCA_ID)

    live = client.app[SERVICES].rt.live
    live.current = live.current.model_copy(
        update={"pachca": live.current.pachca.model_copy(update={"enabled": True})}
    )
    await eventually(lambda: thread_open(database, chat["id"]), what="thread open")

    posts = [r.json["message"] for r in fake_pachca.requests_to("POST", "/messages")]
    root = next(i for i, m in enumerate(posts) if m["entity_type"] == "discussion")
    # The thread opened with the first claim (at most 8 jobs), not behind 500 answers.
    assert root < 8, root
    assert fake_pachca.violations == []


async def test_mentions_reach_pachca_inert_and_the_forum_keeps_the_text(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    bot = fake_pachca.bot_user_id
    client, world = await start(signing_secret=SIGNING_SECRET, bot_user_id=bot)
    teacher = await world.user("teacher", name="Tess @here", pachca_user_id=TEACHER_PACHCA_ID)
    student = await world.user("student", name="@all")
    chat = (await world.enroll(student, teacher)).subject_chat
    assert chat["title"].endswith("@all")
    row = await eventually(lambda: thread_open(database, chat["id"]), what="thread open")
    # The root message is the chat's title: the student's name must not ping the channel.
    root = fake_pachca.messages[row["pachca_root_message_id"]]
    assert root["content"] == chat["title"].replace("@all", f"@{WJ}all")

    text = "Hi @all and @here, ask @someone or <@42>"
    message = await world.post(student, chat["id"], text)
    pachca_id = await eventually(lambda: pachca_id_of(database, message["id"]), what="posted")
    sent = fake_pachca.messages[pachca_id]
    assert sent["content"] == f"Hi @{WJ}all and @{WJ}here, ask @{WJ}someone or <@{WJ}42>"
    assert sent["display_name"] == f"@{WJ}all"
    reply = await world.post(teacher, chat["id"], "see you")
    reply_id = await eventually(lambda: pachca_id_of(database, reply["id"]), what="posted")
    assert fake_pachca.messages[reply_id]["display_name"] == f"Tess @{WJ}here"

    resp = await client.patch(
        f"/api/v1/messages/{message['id']}",
        json={"content": "@here again"},
        headers=world.auth(student),
    )
    assert resp.status == 200
    await eventually(
        lambda: fake_pachca.messages[pachca_id]["content"] == f"@{WJ}here again", what="edit"
    )
    [edit] = fake_pachca.requests_to("PUT", f"/messages/{pachca_id}")
    assert edit.json["message"]["display_name"] == f"@{WJ}all"
    # The forum keeps what was written.
    page = await client.get(f"/api/v1/chats/{chat['id']}/messages", headers=world.auth(student))
    stored = {m["id"]: m["content"] for m in (await page.json())["messages"]}
    assert stored[message["id"]] == "@here again"

    # A bot answer quoting the title (/threads) is inert too.
    await deliver(client, direct_command("/threads", TEACHER_PACHCA_ID, bot))

    def answer() -> str | None:
        return next(
            (
                m["content"]
                for m in fake_pachca.messages.values()
                if m["entity_type"] == "user" and m["entity_id"] == TEACHER_PACHCA_ID
            ),
            None,
        )

    listed = await eventually(answer, what="the /threads answer")
    assert f"@{WJ}all" in listed
    assert "@all" not in listed
    assert fake_pachca.violations == []
