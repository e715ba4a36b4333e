"""Files from the web (docs/api.md, "Files"): the upload and its checks in order, the limits,
file_ids on new messages, signed links and what they serve, renewing a link, deletion. Every
test runs on the local folder and on S3 (moto's server)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from handlers.keys import SERVICES
from tests.contract import expect_error
from tests.eventually import eventually
from tests.files_kit import PNG, form, storage_sections, stored_blobs, upload
from tests.rawhttp import connection, request_bytes
from tests.world import World

MAX_BYTES = 64 * 1024


@pytest.fixture(params=["local", "s3"])
def config_data(
    config_data: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path
) -> dict[str, Any]:
    config_data["files"] = {**storage_sections(request.param, tmp_path, request)}
    config_data["files"]["max_bytes"] = MAX_BYTES
    return config_data


@dataclass
class Pair:
    student: str
    teacher: str
    chat: int
    enrollment: str


@pytest.fixture
async def pair(world: World) -> Pair:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    return Pair(student, teacher, enrolled.subject_chat["id"], enrolled.enrollment_id)


async def post_files(
    world: World, user: str, chat_id: int, file_ids: list[str], content: str = ""
) -> aiohttp.ClientResponse:
    return await world.client.post(
        f"/api/v1/chats/{chat_id}/messages",
        json={"content": content, "file_ids": file_ids},
        headers=world.auth(user),
    )


async def messages_of(world: World, user: str, chat_id: int) -> list[dict[str, Any]]:
    resp = await world.client.get(f"/api/v1/chats/{chat_id}/messages", headers=world.auth(user))
    assert resp.status == 200
    return (await resp.json())["messages"]


# --- the upload --------------------------------------------------------------------------------


async def test_upload_answers_the_file_and_its_link_serves_the_bytes(
    client: TestClient, world: World, pair: Pair
) -> None:
    file = await upload(world, pair.student, pair.chat, "домашка 1.png", PNG, "image/png")
    assert set(file) == {"id", "name", "size", "content_type", "url"}
    assert file["name"] == "домашка 1.png"
    assert file["size"] == len(PNG)
    assert file["content_type"] == "image/png"
    # No Authorization header: an <img src> works.
    resp = await client.get(file["url"])
    assert resp.status == 200
    assert await resp.read() == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Length"] == str(len(PNG))
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert len(await stored_blobs(client)) == 1


@pytest.mark.parametrize(
    ("content_type", "disposition"),
    [
        ("image/png", "inline"),
        ("image/jpeg", "inline"),
        ("image/gif", "inline"),
        ("image/webp", "inline"),
        ("image/svg+xml", "attachment"),
        ("text/html", "attachment"),
        ("application/pdf", "attachment"),
        ("not a type", "attachment"),
    ],
)
async def test_only_four_image_types_are_served_inline(
    client: TestClient, world: World, pair: Pair, content_type: str, disposition: str
) -> None:
    data = b"<svg onload=alert(1)>" if "svg" in content_type else b"<html>hi</html>"
    file = await upload(world, pair.student, pair.chat, "work.bin", data, content_type)
    resp = await client.get(file["url"])
    assert resp.status == 200
    assert await resp.read() == data
    header = resp.headers["Content-Disposition"]
    assert header.split(";")[0] == disposition
    if disposition == "attachment":
        assert 'filename="work.bin"' in header
    expected_type = content_type if "/" in content_type else "application/octet-stream"
    assert resp.headers["Content-Type"] == expected_type
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_checks_run_in_order_token_chat_permission_active_then_body(
    client: TestClient, world: World, pair: Pair
) -> None:
    path = f"/api/v1/chats/{pair.chat}/files"
    empty = aiohttp.FormData()
    empty.add_field("other", "x")
    # No token: 401, whatever the body.
    await expect_error(await client.post(path, data=form("a.png", b"")), 401, "unauthorized")
    # No such chat: 404 before the body is looked at.
    resp = await client.post(
        "/api/v1/chats/999999/files", data=form("a.png", b""), headers=world.auth(pair.student)
    )
    await expect_error(resp, 404, "not_found")
    # A teacher of another chat, a parent, an admin: 403 (admins read only).
    stranger = await world.user("teacher")
    for user in (stranger, await world.user("admin")):
        resp = await client.post(path, data=form("a.png", b""), headers=world.auth(user))
        await expect_error(resp, 403, "forbidden")
    # An inactive chat: chat_inactive, still before the body.
    student = await world.user("student")
    teacher = await world.user("teacher")
    closed = (await world.enroll(student, teacher, active=False)).subject_chat["id"]
    resp = await client.post(
        f"/api/v1/chats/{closed}/files", data=form("a.png", b""), headers=world.auth(student)
    )
    await expect_error(resp, 400, "chat_inactive")
    # Then the body.
    resp = await client.post(path, data=empty, headers=world.auth(pair.student))
    await expect_error(resp, 400, "invalid_request")
    resp = await client.post(path, data=form("a.png", b""), headers=world.auth(pair.student))
    await expect_error(resp, 400, "invalid_request")
    resp = await client.post(path, data=form("a" * 256, PNG), headers=world.auth(pair.student))
    await expect_error(resp, 400, "invalid_request")
    assert await stored_blobs(client) == []


async def test_a_name_of_255_characters_is_fine(
    client: TestClient, world: World, pair: Pair
) -> None:
    file = await upload(world, pair.student, pair.chat, "я" * 251 + ".png")
    assert len(file["name"]) == 255


async def test_over_max_bytes_is_413_and_nothing_is_kept(
    client: TestClient, world: World, pair: Pair
) -> None:
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/files",
        data=form("big.bin", b"x" * (MAX_BYTES + 1), "application/octet-stream"),
        headers=world.auth(pair.student),
    )
    await expect_error(resp, 413, "payload_too_large")
    assert await stored_blobs(client) == []
    # A body declared far too large is refused before it is read.
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/files",
        data=form("huge.bin", b"x" * (MAX_BYTES * 4), "application/octet-stream"),
        headers=world.auth(pair.student),
    )
    await expect_error(resp, 413, "payload_too_large")
    assert await stored_blobs(client) == []
    # Exactly the limit is fine.
    file = await upload(world, pair.student, pair.chat, "edge.bin", b"y" * MAX_BYTES, "x/y")
    assert file["size"] == MAX_BYTES


@pytest.mark.parametrize(
    "disposition",
    [
        b'filename="../etc/passwd"',
        b'filename="a\\\\b.png"',
        b"filename*=UTF-8''nul%00.png",
        b"filename*=UTF-8''cr%0D%0Alf.png",
        b"filename*=UTF-8''..%2F..%2Fx.png",
    ],
    ids=["slash", "backslash", "nul", "crlf", "encoded_slash"],
)
async def test_names_with_path_separators_or_control_characters_are_refused(
    client: TestClient, world: World, pair: Pair, disposition: bytes
) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; ' + disposition + b"\r\n"
        b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n--B--\r\n"
    )
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/files",
        data=body,
        headers={**world.auth(pair.student), "Content-Type": "multipart/form-data; boundary=B"},
    )
    await expect_error(resp, 400, "invalid_request")
    assert await stored_blobs(client) == []


async def test_wrong_bodies_are_refused_and_leave_nothing(
    client: TestClient, world: World, pair: Pair
) -> None:
    path = f"/api/v1/chats/{pair.chat}/files"
    headers = world.auth(pair.student)
    # Not multipart at all.
    resp = await client.post(path, json={"file": "x"}, headers=headers)
    await expect_error(resp, 400, "invalid_request")
    # Multipart that is garbage, one with no closing boundary, a file part without a name.
    for body in (
        b"garbage",
        b"--B\r\nContent-Disposition: form-data; name=file; filename=a\r\n",
        b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\ndata\r\n--B--\r\n',
    ):
        resp = await client.post(
            path,
            data=body,
            headers={**headers, "Content-Type": "multipart/form-data; boundary=B"},
        )
        await expect_error(resp, 400, "invalid_request")
    # No boundary at all, an empty body, a boundary the body never uses.
    for content_type, body in (
        ("multipart/form-data", b"--B\r\n"),
        ("multipart/form-data; boundary=B", b""),
        ("multipart/form-data; boundary=XYZ", b"--B\r\nfoo\r\n--B--\r\n"),
        ("multipart/mixed; boundary=B", b"--B--\r\n"),
    ):
        resp = await client.post(path, data=body, headers={**headers, "Content-Type": content_type})
        await expect_error(resp, 400, "invalid_request")
    # A second part after the file.
    two = form("a.png", PNG)  # quote_fields=False: a second field of the same name
    two.add_field("file", PNG, filename="b.png", content_type="image/png")
    resp = await client.post(path, data=two, headers=headers)
    await expect_error(resp, 400, "invalid_request")
    assert await stored_blobs(client) == []


async def test_a_cut_off_upload_leaves_nothing(
    client: TestClient, world: World, pair: Pair
) -> None:
    head = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    sent = head + PNG * 10  # the part never ends
    token = world.token(pair.student).encode()
    data = request_bytes(
        "POST",
        f"/api/v1/chats/{pair.chat}/files",
        [
            ("Authorization", b"Bearer " + token),
            ("Content-Type", b"multipart/form-data; boundary=B"),
            ("Content-Length", str(len(sent) + 10_000).encode()),
        ],
        sent,
    )
    assert client.server.host is not None and client.server.port is not None
    async with connection(client.server.host, client.server.port) as (_reader, writer):
        writer.write(data)
        await writer.drain()
        # Let the server start reading the file before the client goes away.
        await asyncio.sleep(0.2)
    await eventually(lambda: _no_blobs(client), what="the partial upload to be removed")


async def _no_blobs(client: TestClient) -> bool:
    return await stored_blobs(client) == []


# --- file_ids on new messages ------------------------------------------------------------------


async def test_a_message_carries_its_files_in_the_order_given(
    client: TestClient, world: World, pair: Pair
) -> None:
    a = await upload(world, pair.student, pair.chat, "a.png")
    b = await upload(world, pair.student, pair.chat, "b.pdf", b"%PDF", "application/pdf")
    resp = await post_files(world, pair.student, pair.chat, [b["id"], a["id"]])
    assert resp.status == 201, await resp.text()
    message = (await resp.json())["message"]
    assert message["content"] == ""  # with files, the text may be empty
    assert [f["id"] for f in message["files"]] == [b["id"], a["id"]]
    assert [f["name"] for f in message["files"]] == ["b.pdf", "a.png"]
    listed = await messages_of(world, pair.teacher, pair.chat)
    assert [f["id"] for f in listed[-1]["files"]] == [b["id"], a["id"]]
    resp = await client.get(listed[-1]["files"][0]["url"])
    assert await resp.read() == b"%PDF"
    chats = await (await client.get("/api/v1/chats", headers=world.auth(pair.teacher))).json()
    assert [f["id"] for f in chats["chats"][0]["last_message"]["files"]] == [b["id"], a["id"]]
    # A message without files still has the list, empty; and blank text still needs files.
    plain = await world.post(pair.student, pair.chat, "thanks")
    assert plain["files"] == []
    resp = await post_files(world, pair.student, pair.chat, [], content="  ")
    await expect_error(resp, 400, "invalid_content")


async def test_bad_file_ids_write_nothing(client: TestClient, world: World, pair: Pair) -> None:
    mine = await upload(world, pair.student, pair.chat, "mine.png")
    theirs = await upload(world, pair.teacher, pair.chat, "theirs.png")
    # The same student's file in another chat of theirs.
    other_teacher = await world.user("teacher")
    other_chat = (await world.enroll(pair.student, other_teacher)).subject_chat["id"]
    elsewhere = await upload(world, pair.student, other_chat, "elsewhere.png")
    eleven = [(await upload(world, pair.student, pair.chat, f"{i}.png"))["id"] for i in range(11)]
    bad = [
        [mine["id"], theirs["id"]],  # another user's
        [elsewhere["id"]],  # another chat's
        ["no-such-file-id-at-all"],
        [mine["id"], mine["id"]],  # a repeat
        eleven,  # more than 10
        [mine["id"], 5],  # not a string
    ]
    for file_ids in bad:
        resp = await post_files(world, pair.student, pair.chat, file_ids)  # type: ignore[arg-type]
        await expect_error(resp, 400, "invalid_request")
    assert await messages_of(world, pair.student, pair.chat) == []
    # Nothing was attached on the way: every one of these files can still be sent, once.
    resp = await post_files(world, pair.student, pair.chat, [mine["id"], *eleven[:9]])
    assert resp.status == 201, await resp.text()
    # A file already sent cannot be sent again.
    resp = await post_files(world, pair.student, pair.chat, [mine["id"]], content="again")
    await expect_error(resp, 400, "invalid_request")
    assert len(await messages_of(world, pair.student, pair.chat)) == 1


async def test_a_repeated_client_id_returns_the_first_message_with_its_files(
    client: TestClient, world: World, pair: Pair
) -> None:
    file = await upload(world, pair.student, pair.chat)
    body = {"content": "", "file_ids": [file["id"]], "client_id": "c-1"}
    headers = world.auth(pair.student)
    first = await client.post(f"/api/v1/chats/{pair.chat}/messages", json=body, headers=headers)
    again = await client.post(f"/api/v1/chats/{pair.chat}/messages", json=body, headers=headers)
    assert (first.status, again.status) == (201, 200)
    assert (await again.json())["message"]["files"][0]["id"] == file["id"]


# --- links ---------------------------------------------------------------------------------------


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


async def test_changed_or_expired_links_are_forbidden(
    client: TestClient, world: World, pair: Pair
) -> None:
    file = await upload(world, pair.student, pair.chat)
    query = dict(parse_qsl(urlsplit(file["url"]).query))
    signature, expires = query["signature"], int(query["expires"])
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    other = await upload(world, pair.student, pair.chat, "other.png")
    tampered = [
        _with_query(file["url"], signature=flipped),
        _with_query(file["url"], expires=str(expires + 3600)),
        _with_query(file["url"], signature=""),
        file["url"].replace(file["id"], other["id"]),  # another file's id, this signature
        file["url"].split("?")[0],
    ]
    for url in tampered:
        await expect_error(await client.get(url), 403, "forbidden")
    # Once files.url_ttl_s has passed (the clock moved on), the genuine link is refused too.
    links = client.app[SERVICES].rt.file_links
    links._clock = lambda: time.time() + 3601
    await expect_error(await client.get(file["url"]), 403, "forbidden")


async def test_a_fresh_link_for_whoever_may_see_the_chat(
    client: TestClient, world: World, pair: Pair
) -> None:
    file = await upload(world, pair.student, pair.chat)
    path = f"/api/v1/files/{file['id']}"
    # Before it is sent: the uploader only.
    resp = await client.get(path, headers=world.auth(pair.student))
    assert resp.status == 200
    fresh = (await resp.json())["file"]
    assert {k: v for k, v in fresh.items() if k != "url"} == {
        k: v for k, v in file.items() if k != "url"
    }
    await expect_error(await client.get(path, headers=world.auth(pair.teacher)), 404, "not_found")
    await expect_error(await client.get(path), 401, "unauthorized")
    resp = await post_files(world, pair.student, pair.chat, [file["id"]])
    assert resp.status == 201
    admin = await world.user("admin")
    for user in (pair.teacher, admin):
        resp = await client.get(path, headers=world.auth(user))
        assert resp.status == 200, await resp.text()
        renewed = (await resp.json())["file"]
        assert (await (await client.get(renewed["url"])).read()) == PNG
    stranger = await world.user("student")
    await expect_error(await client.get(path, headers=world.auth(stranger)), 403, "forbidden")
    resp = await client.get("/api/v1/files/nope", headers=world.auth(pair.student))
    await expect_error(resp, 404, "not_found")


# --- deletion ---------------------------------------------------------------------------------


async def test_deleting_a_message_deletes_its_files_and_editing_keeps_them(
    client: TestClient, world: World, pair: Pair
) -> None:
    file = await upload(world, pair.student, pair.chat)
    resp = await post_files(world, pair.student, pair.chat, [file["id"]], content="v1")
    message = (await resp.json())["message"]
    resp = await client.patch(
        f"/api/v1/messages/{message['id']}",
        json={"content": "v2"},
        headers=world.auth(pair.student),
    )
    assert resp.status == 200
    assert [f["id"] for f in (await resp.json())["message"]["files"]] == [file["id"]]
    resp = await client.delete(
        f"/api/v1/messages/{message['id']}", headers=world.auth(pair.student)
    )
    assert resp.status == 204
    await expect_error(await client.get(file["url"]), 404, "not_found")
    resp = await client.get(f"/api/v1/files/{file['id']}", headers=world.auth(pair.student))
    await expect_error(resp, 404, "not_found")
    assert await stored_blobs(client) == []


async def test_the_sweeper_removes_files_never_sent_after_a_day(
    client: TestClient, world: World, pair: Pair
) -> None:
    kept = await upload(world, pair.student, pair.chat, "kept.png")
    await post_files(world, pair.student, pair.chat, [kept["id"]])
    forgotten = await upload(world, pair.student, pair.chat, "forgotten.png")
    maintenance = client.app[SERVICES].maintenance
    # A fresh upload is not touched.
    assert await maintenance.sweep_files() == 0
    assert len(await stored_blobs(client)) == 2
    # A day later, the unsent one goes; the sent one stays.
    assert await maintenance.sweep_files(now=time.time() + 86_401) == 1
    assert len(await stored_blobs(client)) == 1
    await expect_error(await client.get(forgotten["url"]), 404, "not_found")
    resp = await client.get(kept["url"])
    assert resp.status == 200
    # Deleting the enrollment deletes its chats: their files' links answer 404 at once, and
    # the bytes go at the next sweep.
    resp = await client.delete(f"/api/v1/enrollments/{pair.enrollment}", headers=world.service)
    assert resp.status == 204
    await expect_error(await client.get(kept["url"]), 404, "not_found")
    assert await maintenance.sweep_files() == 1
    assert await stored_blobs(client) == []


# --- the feed ---------------------------------------------------------------------------------


async def test_files_reach_the_feed_and_the_event_log(
    client: TestClient, world: World, pair: Pair
) -> None:
    ws = await client.ws_connect(f"/api/v1/ws?token={world.token(pair.teacher)}")
    ready = await ws.receive_json(timeout=10)
    assert ready["type"] == "ready"
    file = await upload(world, pair.student, pair.chat)
    resp = await post_files(world, pair.student, pair.chat, [file["id"]])
    assert resp.status == 201
    frame = await ws.receive_json(timeout=10)
    assert frame["type"] == "message.created"
    assert [f["id"] for f in frame["message"]["files"]] == [file["id"]]
    assert (await (await client.get(frame["message"]["files"][0]["url"])).read()) == PNG
    await ws.close()
    resp = await client.get("/api/v1/events", params={"since": 0}, headers=world.service)
    events = (await resp.json())["events"]
    created = [e for e in events if e["type"] == "message.created"]
    assert [f["id"] for f in created[-1]["message"]["files"]] == [file["id"]]


async def test_uploads_count_as_writes(client: TestClient, world: World, pair: Pair) -> None:
    client.app[SERVICES].rt.live.current = client.app[SERVICES].config.model_copy(
        update={
            "limits": client.app[SERVICES].config.limits.model_copy(update={"posts_per_minute": 2})
        }
    )
    await upload(world, pair.student, pair.chat)
    await upload(world, pair.student, pair.chat)
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/files",
        data=form("c.png", PNG),
        headers=world.auth(pair.student),
    )
    await expect_error(resp, 429, "rate_limited")
    assert len(await stored_blobs(client)) == 2
