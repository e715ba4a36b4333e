"""Files both ways, end to end (docs/pachca.md, "Files"): a web message's files uploaded to
Pachca with it, a Pachca message's files copied into the forum - through the outbox, with its
retries, against the fake Pachca's uploads, bucket and file links (hangs, 5xx, large bodies),
across a restart, under redelivery. Runs on the local folder and on S3 (moto's server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sandbox.storage import NewFile
from store.db import Database
from store.models import Message
from tests.e2e.mirror_kit import SECRET, AppFactory, jobs, settled, thread_of
from tests.eventually import eventually
from tests.fakes.pachca import FakePachca
from tests.fakes.webhook_kit import deliver
from tests.files_kit import PNG, storage_sections, stored_blobs, upload
from tests.world import World

TEACHER = 42
MAX_BYTES = 256 * 1024
PDF = b"%PDF-1.4 corrected homework " * 100


@pytest.fixture(params=["local", "s3"])
def config_data(
    config_data: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path
) -> dict[str, Any]:
    config_data["files"] = {**storage_sections(request.param, tmp_path, request)}
    config_data["files"]["max_bytes"] = MAX_BYTES
    return config_data


async def scene(world: World) -> tuple[str, str, int]:
    teacher = await world.user("teacher", name="Tess", pachca_user_id=TEACHER)
    student = await world.user("student", name="Sam")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    return student, teacher, chat


async def pachca_id(db: Database, message_id: int) -> int | None:
    async with db.read() as conn:
        found: int | None = await conn.value(
            select(Message.pachca_message_id).where(Message.id == message_id)
        )
    return found


async def messages(world: World, user: str, chat: int) -> list[dict[str, Any]]:
    resp = await world.client.get(f"/api/v1/chats/{chat}/messages", headers=world.auth(user))
    assert resp.status == 200
    return (await resp.json())["messages"]


async def bytes_of(world: World, file: dict[str, Any]) -> bytes:
    resp = await world.client.get(file["url"])
    assert resp.status == 200, await resp.text()
    return await resp.read()


async def send_with_files(
    world: World, user: str, chat: int, files: list[tuple[str, bytes, str]], content: str = ""
) -> dict[str, Any]:
    ids = [(await upload(world, user, chat, n, d, t))["id"] for n, d, t in files]
    resp = await world.client.post(
        f"/api/v1/chats/{chat}/messages",
        json={"content": content, "file_ids": ids},
        headers=world.auth(user),
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["message"]


# --- web -> Pachca ------------------------------------------------------------------------------


async def test_a_web_message_is_posted_to_pachca_with_its_files(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, chat = await scene(world)
    message = await send_with_files(
        world,
        student,
        chat,
        [("photo 1.png", PNG, "image/png"), ("work.pdf", PDF, "application/pdf")],
        content="my homework",
    )
    copy = await eventually(lambda: pachca_id(database, message["id"]), what="the Pachca copy")
    posted = fake_pachca.messages[copy]
    assert posted["content"] == "my homework"
    assert [(f["name"], f["file_type"]) for f in posted["files"]] == [
        ("photo 1.png", "image"),
        ("work.pdf", "file"),
    ]
    assert [fake_pachca.file_bytes(f) for f in posted["files"]] == [PNG, PDF]
    # Uploads went to the bucket without the bot's token; the form was as Pachca wants it.
    for r in fake_pachca.requests_to(path="/direct_url"):
        assert "authorization" not in {k.lower() for k in r.headers}
        assert r.form[-1].name == "file"
    await settled(database, fake_pachca)
    assert fake_pachca.violations == []
    # Its echo (and its copy job) changed nothing: one message, its files as sent.
    [only] = await messages(world, student, chat)
    assert [f["name"] for f in only["files"]] == ["photo 1.png", "work.pdf"]


async def test_uploads_survive_failures_and_an_expired_signature(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, chat = await scene(world)
    await thread_of(database, chat)
    fake_pachca.fail_next(2, status=503, path="/direct_url")
    fake_pachca.store.refuse_next_upload()  # 403: the signature expired
    fake_pachca.rate_limit_next(retry_after=0, path="/uploads")
    fake_pachca.fail_next(status=500, method="POST", path="/messages")
    message = await send_with_files(world, student, chat, [("a.png", PNG, "image/png")])
    copy = await eventually(lambda: pachca_id(database, message["id"]), what="the Pachca copy")
    await settled(database, fake_pachca)
    [file] = fake_pachca.messages[copy]["files"]
    assert fake_pachca.file_bytes(file) == PNG
    # One message in the thread, whatever was retried on the way.
    posted = [m for m in fake_pachca.messages.values() if m["files"]]
    assert len(posted) == 1
    # The expired signature asked for new parameters; the failed uploads were retried.
    assert len(fake_pachca.requests_to(path="/uploads")) >= 3
    assert len(fake_pachca.requests_to(path="/direct_url")) == 4
    # A file uploaded once is not uploaded again when only the post failed.
    assert len(fake_pachca.store.objects) == 1
    assert fake_pachca.violations == []


async def test_a_restart_during_an_upload_still_posts_once(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    first, world = await start()
    student, _, chat = await scene(world)
    await thread_of(database, chat)
    gate = fake_pachca.hold_next(path="/direct_url")
    message = await send_with_files(world, student, chat, [("a.png", PNG, "image/png")])
    await eventually(
        lambda: len(fake_pachca.requests_to(path="/direct_url")) == 1,
        what="the upload to start",
    )
    await first.close()  # the process stops with the upload in flight
    gate.set()
    _, world = await start()
    copy = await eventually(lambda: pachca_id(database, message["id"]), what="the Pachca copy")
    await settled(database, fake_pachca)
    assert [m["id"] for m in fake_pachca.messages.values() if m["files"]] == [copy]
    [file] = fake_pachca.messages[copy]["files"]
    assert fake_pachca.file_bytes(file) == PNG
    assert fake_pachca.violations == []


# --- Pachca -> web ------------------------------------------------------------------------------


async def test_a_file_only_pachca_message_arrives_with_copies_of_its_files(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    sent = fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="",
        files=[
            NewFile("corrected.pdf", PDF, "application/pdf"),
            NewFile("mark.png", PNG, "image/png"),
        ],
    )
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    assert message["source"] == "pachca"
    assert message["content"] == ""
    assert [f["name"] for f in message["files"]] == ["corrected.pdf", "mark.png"]
    assert [f["content_type"] for f in message["files"]] == ["application/pdf", "image/png"]
    assert [await bytes_of(world, f) for f in message["files"]] == [PDF, PNG]
    assert await pachca_id(database, message["id"]) == sent["id"]
    # On the feed's log once, with its files (it appeared when they were stored).
    resp = await client.get("/api/v1/events", params={"since": 0}, headers=world.service)
    created = [e for e in (await resp.json())["events"] if e["type"] == "message.created"]
    assert [len(e["message"]["files"]) for e in created] == [2]
    assert fake_pachca.violations == []


async def test_text_with_files_comes_at_once_and_the_files_follow(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    gate = fake_pachca.hold_next(path="/attaches/*")
    fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="See the file",
        files=[NewFile("notes.pdf", PDF, "application/pdf")],
    )
    # The text is there while the file is still being fetched.
    first = await eventually(lambda: messages(world, student, chat), what="the text")
    assert [(m["content"], m["files"]) for m in first] == [("See the file", [])]
    gate.set()
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    assert message["content"] == "See the file"
    assert [await bytes_of(world, f) for f in message["files"]] == [PDF]
    resp = await client.get("/api/v1/events", params={"since": 0}, headers=world.service)
    kinds = [e["type"] for e in (await resp.json())["events"] if e["type"].startswith("message")]
    assert kinds == ["message.created", "message.updated"]


async def test_failed_downloads_are_retried_and_a_hang_times_out(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start(request_timeout_s=0.5)
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    fake_pachca.fail_next(2, status=502, path="/attaches/*")
    fake_pachca.hang_next(path="/attaches/*", seconds=30)
    fake_pachca.fail_next(status=500, method="GET", path="/messages/*")
    fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="",
        files=[NewFile("late.pdf", PDF, "application/pdf")],
    )
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    assert [await bytes_of(world, f) for f in message["files"]] == [PDF]
    assert message["content"] == ""
    assert len(fake_pachca.requests_to(path="/attaches/*")) == 4  # 502, 502, hang, fine
    # The failed attempts left nothing behind: one file, one blob.
    assert len(await stored_blobs(world.client)) == 1


async def test_a_file_that_cannot_be_copied_becomes_a_line_and_the_text_stays(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start(max_attempts=2)
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    fake_pachca.fail_next(50, status=500, path="/attaches/*/broken.pdf")
    fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="Three files",
        files=[
            NewFile("broken.pdf", PDF, "application/pdf"),
            NewFile("huge.bin", b"z" * (MAX_BYTES + 1)),
            NewFile("fine.png", PNG, "image/png"),
        ],
    )
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    lines = message["content"].split("\n")
    assert lines[0] == "Three files"
    assert any("broken.pdf" in line for line in lines[1:])
    assert any("huge.bin" in line for line in lines[1:])
    assert [f["name"] for f in message["files"]] == ["fine.png"]
    # Nothing of the refused file is kept.
    assert len(await stored_blobs(world.client)) == 1


async def test_a_message_that_cannot_be_read_still_arrives_saying_so(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start(max_attempts=2)
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    fake_pachca.fail_next(50, status=500, method="GET", path="/messages/*")
    fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="",
        files=[NewFile("lost.pdf", PDF, "application/pdf")],
    )
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    assert message["files"] == []
    assert "could not be read" in message["content"]
    assert len(fake_pachca.requests_to(method="GET", path="/messages/*")) == 2


async def test_a_file_link_that_sends_more_than_the_limit_is_cut_off(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    _, world = await start()
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    fake_pachca.oversize_next(size=MAX_BYTES * 4)  # lies: chunked, no length, too long
    fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="",
        files=[NewFile("small.pdf", PDF, "application/pdf")],
    )
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    assert message["files"] == []
    assert "small.pdf" in message["content"]
    assert await stored_blobs(world.client) == []


async def test_redelivered_webhooks_make_one_message(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    client, world = await start()
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="",
        files=[NewFile("once.pdf", PDF, "application/pdf")],
    )
    await fake_pachca.deliveries_done()
    payload = fake_pachca.deliveries[-1].payload
    for _ in range(3):
        resp = await deliver(client, payload, secret=SECRET)
        assert resp.status == 200
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    assert [f["name"] for f in message["files"]] == ["once.pdf"]
    copies = [j for j in await jobs(database) if j["kind"] == "copy_files"]
    assert len(copies) == 1
    assert len(await stored_blobs(client)) == 1


async def test_a_restart_during_a_copy_still_makes_one_message(
    start: AppFactory, fake_pachca: FakePachca, database: Database
) -> None:
    first, world = await start()
    student, _, chat = await scene(world)
    thread = await thread_of(database, chat)
    gate = fake_pachca.hold_next(path="/attaches/*/second.pdf")
    fake_pachca.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread.thread_id,
        content="",
        files=[
            NewFile("first.pdf", PDF, "application/pdf"),
            NewFile("second.pdf", PDF[::-1], "application/pdf"),
        ],
    )
    # The first file is copied; the second's download hangs; the process stops.
    await eventually(
        lambda: len(fake_pachca.requests_to(path="/attaches/*/second.pdf")) == 1,
        what="the second download to start",
    )
    await first.close()
    gate.set()
    _, world = await start()
    await settled(database, fake_pachca)
    [message] = await messages(world, student, chat)
    assert [f["name"] for f in message["files"]] == ["first.pdf", "second.pdf"]
    assert [await bytes_of(world, f) for f in message["files"]] == [PDF, PDF[::-1]]
    # The first file was copied once: reused after the restart, not fetched again.
    assert len(fake_pachca.requests_to(path="/attaches/*/first.pdf")) == 1
    assert len(await stored_blobs(world.client)) == 2
