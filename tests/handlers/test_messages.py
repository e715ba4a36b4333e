"""Message exchange through the real app (docs/api.md): posting, listing and
paging, content fidelity, replies, client_id idempotency, edits, deletes and read marks."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.contract import expect_error
from tests.world import Enrolled, World

MESSAGE_KEYS = {
    "id",
    "chat_id",
    "sender",
    "content",
    "created_at",
    "edited_at",
    "reply_to_id",
    "source",
    "read_by",
    "files",
    "reactions",
    "client_id",
}


@dataclass
class Pair:
    """A student and a teacher sharing one subject chat."""

    student: str
    teacher: str
    enrolled: Enrolled

    @property
    def chat(self) -> int:
        return self.enrolled.subject_chat["id"]


@pytest.fixture
async def pair(world: World) -> Pair:
    student = await world.user("student", name="Анна Студентова")
    teacher = await world.user("teacher", name="Pavel Teacher")
    return Pair(student, teacher, await world.enroll(student, teacher))


async def page(
    client: TestClient, world: World, user: str, chat_id: int, **params: Any
) -> dict[str, Any]:
    resp = await client.get(
        f"/api/v1/chats/{chat_id}/messages",
        params={k: str(v) for k, v in params.items()},
        headers=world.auth(user),
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def get_chat(client: TestClient, world: World, user: str, chat_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/chats/{chat_id}", headers=world.auth(user))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["chat"]


async def last_event_id(client: TestClient, world: World) -> int:
    resp = await client.get("/api/v1/events", params={"limit": "1000"}, headers=world.service)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return body["events"][-1]["event_id"] if body["events"] else 0


async def events_after(client: TestClient, world: World, since: int) -> list[dict[str, Any]]:
    resp = await client.get(
        "/api/v1/events", params={"since": str(since), "limit": "1000"}, headers=world.service
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["events"]


class Snapshot:
    """What a failed request must leave untouched: the chat's messages and the event log."""

    def __init__(self, client: TestClient, world: World, pair: Pair):
        self.client, self.world, self.pair = client, world, pair

    async def take(self) -> tuple[Any, ...]:
        listed = await page(self.client, self.world, self.pair.teacher, self.pair.chat)
        chat = await get_chat(self.client, self.world, self.pair.teacher, self.pair.chat)
        return (
            listed["total"],
            listed["messages"],
            chat["last_message"],
            chat["unread_count"],
            await last_event_id(self.client, self.world),
        )


async def set_active(world: World, pair: Pair, active: bool) -> None:
    """The pair's enrollment put again, active or not (its chat read-only when not)."""
    await world.enroll(
        pair.student,
        pair.teacher,
        enrollment_id=pair.enrolled.enrollment_id,
        subject=(pair.enrolled.subject_chat["subject"]["id"], "Mathematics"),
        active=active,
    )


@pytest.fixture
def snapshot(client: TestClient, world: World, pair: Pair) -> Snapshot:
    return Snapshot(client, world, pair)


# --- exchange ---------------------------------------------------------------------------


async def test_posted_message_is_stored_and_visible_to_both(
    client: TestClient, world: World, pair: Pair
) -> None:
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/messages",
        json={"content": "Здравствуйте! Can you check task 3?"},
        headers=world.auth(pair.student),
    )
    assert resp.status == 201, await resp.text()
    posted = (await resp.json())["message"]
    assert set(posted) == MESSAGE_KEYS
    assert posted["chat_id"] == pair.chat
    assert posted["sender"] == {"id": pair.student, "name": "Анна Студентова", "role": "student"}
    assert posted["content"] == "Здравствуйте! Can you check task 3?"
    assert posted["edited_at"] is None
    assert posted["reply_to_id"] is None
    assert posted["source"] == "web"
    assert posted["read_by"] == []
    assert posted["client_id"] is None
    assert datetime.fromisoformat(posted["created_at"]).tzinfo is not None

    reply = await world.post(pair.teacher, pair.chat, "Yes, looking now.")
    assert reply["sender"] == {"id": pair.teacher, "name": "Pavel Teacher", "role": "teacher"}

    for user in (pair.student, pair.teacher):
        listed = await page(client, world, user, pair.chat)
        assert listed["total"] == 2
        assert listed["messages"] == [posted, reply]
        chat = await get_chat(client, world, user, pair.chat)
        assert chat["last_message"] == reply


async def test_the_app_restarted_on_the_same_database_still_has_the_messages(
    aiohttp_client: Any, config_data: dict[str, Any], database: Any, world: World, pair: Pair
) -> None:
    from bridge.config import parse_config
    from handlers.app import create_app

    sent = await world.post(pair.student, pair.chat, "persisted?")
    other = await aiohttp_client(create_app(parse_config(config_data), db=database))
    resp = await other.get(f"/api/v1/chats/{pair.chat}/messages", headers=world.auth(pair.teacher))
    assert resp.status == 200
    assert (await resp.json())["messages"] == [sent]


CONTENTS = {
    "cyrillic": "Привет, как дела с домашним заданием? Ёжик съел щи.",
    "emoji": "Great job 🎉👍🏽 👨‍👩‍👧‍👦 🇷🇺",
    "cjk_and_rtl": "漢字かなカナ 한국어 العربية עברית",
    "newlines_and_tabs": "line 1\nline 2\r\n\tindented\t\ttabs\n\n\nend",
    "surrounding_whitespace": "   padded on both sides \t\n",
    "markup_like": "<script>alert('x')</script> & \"quotes\" \\ backslash {json: true}",
    "combining_marks": "e\u0301 vs é, zero\u200bwidth, nbsp\u00a0here",
    "one_char": "a",
    "exactly_max": "ж" * 10_000,
    "max_in_emoji": "😀" * 10_000,
}


@pytest.mark.parametrize("content", CONTENTS.values(), ids=CONTENTS.keys())
async def test_content_is_stored_exactly_as_sent(
    client: TestClient, world: World, pair: Pair, content: str
) -> None:
    since = await last_event_id(client, world)
    posted = await world.post(pair.student, pair.chat, content)
    assert posted["content"] == content
    listed = await page(client, world, pair.teacher, pair.chat)
    assert [m["content"] for m in listed["messages"]] == [content]
    assert (await get_chat(client, world, pair.teacher, pair.chat))["last_message"][
        "content"
    ] == content
    (event,) = await events_after(client, world, since)
    assert event["message"]["content"] == content


async def test_messages_are_listed_oldest_first(
    client: TestClient, world: World, pair: Pair
) -> None:
    sent = []
    for i in range(6):
        author = pair.student if i % 2 == 0 else pair.teacher
        sent.append(await world.post(author, pair.chat, f"message {i}"))
    listed = await page(client, world, pair.student, pair.chat)
    assert [m["content"] for m in listed["messages"]] == [f"message {i}" for i in range(6)]
    ids = [m["id"] for m in listed["messages"]]
    assert ids == sorted(ids) == [m["id"] for m in sent]
    stamps = [datetime.fromisoformat(m["created_at"]) for m in listed["messages"]]
    assert stamps == sorted(stamps)


async def test_limit_and_offset_page_through_every_message(
    client: TestClient, world: World, pair: Pair
) -> None:
    sent = [await world.post(pair.student, pair.chat, f"m{i}") for i in range(7)]
    pages = []
    for offset in (0, 3, 6):
        body = await page(client, world, pair.teacher, pair.chat, limit=3, offset=offset)
        assert (body["total"], body["limit"], body["offset"]) == (7, 3, offset)
        pages.append(body["messages"])
    assert [len(p) for p in pages] == [3, 3, 1]  # the last page holds the remainder
    assert [m for p in pages for m in p] == sent

    past_end = await page(client, world, pair.teacher, pair.chat, limit=3, offset=7)
    assert past_end == {"messages": [], "total": 7, "limit": 3, "offset": 7}
    far = await page(client, world, pair.teacher, pair.chat, limit=3, offset=1000)
    assert far["messages"] == [] and far["total"] == 7


async def test_default_page_is_fifty_from_the_oldest(
    client: TestClient, world: World, pair: Pair
) -> None:
    empty = await page(client, world, pair.student, pair.chat)
    assert empty == {"messages": [], "total": 0, "limit": 50, "offset": 0}
    for i in range(52):
        await world.post(pair.student, pair.chat, f"m{i}")
    body = await page(client, world, pair.student, pair.chat)
    assert (body["total"], body["limit"], body["offset"]) == (52, 50, 0)
    assert [m["content"] for m in body["messages"]] == [f"m{i}" for i in range(50)]
    whole = await page(client, world, pair.student, pair.chat, limit=200)
    assert len(whole["messages"]) == 52


async def test_before_id_gives_the_messages_just_before_it_oldest_first(
    client: TestClient, world: World, pair: Pair
) -> None:
    sent = [await world.post(pair.student, pair.chat, f"m{i}") for i in range(8)]
    body = await page(client, world, pair.teacher, pair.chat, limit=3, before_id=sent[6]["id"])
    assert body["messages"] == sent[3:6]
    assert body["total"] == 8

    # Fewer than `limit` left: what there is, still oldest first.
    body = await page(client, world, pair.teacher, pair.chat, limit=5, before_id=sent[2]["id"])
    assert body["messages"] == sent[0:2]
    body = await page(client, world, pair.teacher, pair.chat, before_id=sent[0]["id"])
    assert body["messages"] == [] and body["total"] == 8

    # Deleted messages are skipped, and an id past the newest gives the newest page.
    resp = await client.delete(
        f"/api/v1/messages/{sent[5]['id']}", headers=world.auth(pair.student)
    )
    assert resp.status == 204
    body = await page(client, world, pair.teacher, pair.chat, limit=3, before_id=sent[7]["id"])
    assert body["messages"] == [sent[3], sent[4], sent[6]]
    assert body["total"] == 7
    body = await page(client, world, pair.teacher, pair.chat, limit=2, before_id=10**9)
    assert body["messages"] == sent[6:8]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "-5"},
        {"limit": "ten"},
        {"limit": "1.5"},
        {"offset": "-1"},
        {"offset": "x"},
        {"before_id": "latest"},
        {"before_id": "0"},
        # Past what the database's integers hold: refused, not a server error.
        {"offset": str(10**20)},
        {"before_id": str(10**20)},
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()),
)
async def test_bad_paging_parameters_are_invalid_request(
    client: TestClient, world: World, pair: Pair, params: dict[str, str]
) -> None:
    resp = await client.get(
        f"/api/v1/chats/{pair.chat}/messages", params=params, headers=world.auth(pair.student)
    )
    await expect_error(resp, 400, "invalid_request")


@pytest.mark.parametrize("limit", [1, 200])
async def test_limit_bounds_are_inclusive(
    client: TestClient, world: World, pair: Pair, limit: int
) -> None:
    await world.post(pair.student, pair.chat, "one")
    await world.post(pair.student, pair.chat, "two")
    body = await page(client, world, pair.student, pair.chat, limit=limit)
    assert body["limit"] == limit and len(body["messages"]) == min(limit, 2)


# --- rejected posts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["", " ", "   \t\n\r\n  ", "\u3000\u2003", "x" * 10_001, "😀" * 10_001, "a\x00b"],
    ids=["empty", "space", "whitespace", "unicode_spaces", "too_long", "too_long_emoji", "nul"],
)
async def test_blank_or_oversized_content_is_invalid_content_and_writes_nothing(
    client: TestClient, world: World, pair: Pair, snapshot: Snapshot, content: str
) -> None:
    await world.post(pair.student, pair.chat, "before")
    before = await snapshot.take()
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/messages",
        json={"content": content},
        headers=world.auth(pair.student),
    )
    await expect_error(resp, 400, "invalid_content")
    assert await snapshot.take() == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": None},
        {"content": 42},
        {"content": ["hello"]},
        {"content": {"text": "hello"}},
        {"content": True},
        {"content": "hi", "sender": {"id": "someone-else", "role": "teacher"}},
        {"content": "hi", "sender_id": "someone-else"},
        {"content": "hi", "source": "pachca"},
        {"content": "hi", "created_at": "2020-01-01T00:00:00+00:00"},
        {"content": "hi", "reply_to_id": "1"},
        {"content": "hi", "reply_to_id": 1.5},
        {"content": "hi", "client_id": ""},
        {"content": "hi", "client_id": 7},
        {"content": "hi", "client_id": "c" * 129},
        {"content": "hi", "client_id": "a\x00"},
        {"content": "hi", "reply_to_id": 10**20},
        ["content", "hi"],
        "hi",
    ],
    ids=[
        "missing_content",
        "null_content",
        "int_content",
        "list_content",
        "object_content",
        "bool_content",
        "spoofed_sender",
        "spoofed_sender_id",
        "spoofed_source",
        "spoofed_created_at",
        "string_reply_to_id",
        "float_reply_to_id",
        "empty_client_id",
        "int_client_id",
        "long_client_id",
        "nul_client_id",
        "huge_reply_to_id",
        "array_body",
        "string_body",
    ],
)
async def test_malformed_post_bodies_are_invalid_request_and_write_nothing(
    client: TestClient, world: World, pair: Pair, snapshot: Snapshot, body: Any
) -> None:
    before = await snapshot.take()
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/messages", json=body, headers=world.auth(pair.student)
    )
    await expect_error(resp, 400, "invalid_request")
    assert await snapshot.take() == before


@pytest.mark.parametrize(
    "raw", [b"", b"   ", b"{", b'{"content": "hi",}', b"not json", b"\xff\xfe"]
)
async def test_unparseable_bodies_are_invalid_request(
    client: TestClient, world: World, pair: Pair, snapshot: Snapshot, raw: bytes
) -> None:
    before = await snapshot.take()
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/messages",
        data=raw,
        headers={**world.auth(pair.student), "Content-Type": "application/json"},
    )
    await expect_error(resp, 400, "invalid_request")
    assert await snapshot.take() == before


async def test_a_body_over_the_size_limit_is_413(
    client: TestClient, world: World, pair: Pair, snapshot: Snapshot
) -> None:
    before = await snapshot.take()
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/messages",
        # A stream, not bytes: aiohttp warns about large in-memory bodies.
        data=io.BytesIO(json.dumps({"content": "x" * (1024 * 1024 + 10)}).encode()),
        headers={**world.auth(pair.student), "Content-Type": "application/json"},
    )
    await expect_error(resp, 413, "payload_too_large")
    assert await snapshot.take() == before


async def test_inactive_chat_is_read_only(client: TestClient, world: World, pair: Pair) -> None:
    kept = await world.post(pair.student, pair.chat, "said while active")
    await set_active(world, pair, False)
    snapshot = Snapshot(client, world, pair)
    before = await snapshot.take()
    for user in (pair.student, pair.teacher):
        resp = await client.post(
            f"/api/v1/chats/{pair.chat}/messages",
            json={"content": "anyone there?"},
            headers=world.auth(user),
        )
        await expect_error(resp, 400, "chat_inactive")
    resp = await client.patch(
        f"/api/v1/messages/{kept['id']}",
        json={"content": "edited"},
        headers=world.auth(pair.student),
    )
    await expect_error(resp, 400, "chat_inactive")
    assert await snapshot.take() == before

    # Still readable by both.
    for user in (pair.student, pair.teacher):
        chat = await get_chat(client, world, user, pair.chat)
        assert chat["is_active"] is False
        assert (await page(client, world, user, pair.chat))["messages"] == [kept]

    # Reactivating opens it again.
    await set_active(world, pair, True)
    await world.post(pair.teacher, pair.chat, "back again")


async def test_content_is_checked_before_the_chat_state(
    client: TestClient, world: World, pair: Pair
) -> None:
    await set_active(world, pair, False)
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/messages", json={"content": 1}, headers=world.auth(pair.student)
    )
    await expect_error(resp, 400, "invalid_request")


# --- replies ----------------------------------------------------------------------------


async def test_reply_to_a_message_of_the_same_chat(
    client: TestClient, world: World, pair: Pair
) -> None:
    question = await world.post(pair.student, pair.chat, "question")
    answer = await world.post(pair.teacher, pair.chat, "answer", reply_to_id=question["id"])
    assert answer["reply_to_id"] == question["id"]
    listed = await page(client, world, pair.student, pair.chat)
    assert [m["reply_to_id"] for m in listed["messages"]] == [None, question["id"]]


async def test_reply_to_another_chat_or_a_missing_message_is_invalid_request(
    client: TestClient, world: World, pair: Pair
) -> None:
    elsewhere = await world.enroll(pair.student, pair.teacher)
    foreign = await world.post(pair.student, elsewhere.subject_chat["id"], "other chat")
    gone = await world.post(pair.student, pair.chat, "soon deleted")
    resp = await client.delete(f"/api/v1/messages/{gone['id']}", headers=world.auth(pair.student))
    assert resp.status == 204
    snapshot = Snapshot(client, world, pair)
    before = await snapshot.take()
    for target in (foreign["id"], gone["id"], 10**9, 0, -1):
        resp = await client.post(
            f"/api/v1/chats/{pair.chat}/messages",
            json={"content": "reply", "reply_to_id": target},
            headers=world.auth(pair.student),
        )
        await expect_error(resp, 400, "invalid_request")
    assert await snapshot.take() == before


# --- client_id idempotency -------------------------------------------------------------


async def test_repeated_client_id_returns_the_first_message(
    client: TestClient, world: World, pair: Pair
) -> None:
    url = f"/api/v1/chats/{pair.chat}/messages"
    headers = world.auth(pair.student)
    first = await client.post(url, json={"content": "once", "client_id": "c-1"}, headers=headers)
    assert first.status == 201
    created = (await first.json())["message"]
    since = await last_event_id(client, world)

    again = await client.post(url, json={"content": "once", "client_id": "c-1"}, headers=headers)
    assert again.status == 200
    assert (await again.json())["message"] == created
    # Even a retry whose body differs returns the original, unchanged.
    changed = await client.post(url, json={"content": "twice", "client_id": "c-1"}, headers=headers)
    assert changed.status == 200
    assert (await changed.json())["message"] == created

    listed = await page(client, world, pair.teacher, pair.chat)
    assert listed["total"] == 1 and listed["messages"] == [created]
    assert await events_after(client, world, since) == []


async def test_client_id_is_echoed_in_every_message_object(
    client: TestClient, world: World, pair: Pair
) -> None:
    # A web client matches its optimistic copy by client_id, whichever copy reaches it first.
    since = await last_event_id(client, world)
    ws = await client.ws_connect(f"/api/v1/ws?token={world.token(pair.teacher)}")
    try:
        assert (await ws.receive_json(timeout=10))["type"] == "ready"
        posted = await world.post(pair.student, pair.chat, "matched", client_id="tab-1:42")
        frame = await ws.receive_json(timeout=10)
    finally:
        await ws.close()
    assert posted["client_id"] == "tab-1:42"
    assert frame["type"] == "message.created" and frame["message"] == posted
    [event] = await events_after(client, world, since)
    assert event["message"] == posted
    assert (await page(client, world, pair.teacher, pair.chat))["messages"] == [posted]
    assert (await get_chat(client, world, pair.teacher, pair.chat))["last_message"] == posted
    edited = await client.patch(
        f"/api/v1/messages/{posted['id']}", json={"content": "m"}, headers=world.auth(pair.student)
    )
    assert (await edited.json())["message"]["client_id"] == "tab-1:42"
    plain = await world.post(pair.student, pair.chat, "no id given")
    assert plain["client_id"] is None


async def test_concurrent_posts_with_one_client_id_make_one_message(
    client: TestClient, world: World, pair: Pair
) -> None:
    url = f"/api/v1/chats/{pair.chat}/messages"
    body = {"content": "sent on a flaky network", "client_id": "retry-me"}
    responses = await asyncio.gather(
        *[client.post(url, json=body, headers=world.auth(pair.student)) for _ in range(5)]
    )
    assert sorted(r.status for r in responses) == [200, 200, 200, 200, 201]
    messages = [(await r.json())["message"] for r in responses]
    assert all(m == messages[0] for m in messages)
    listed = await page(client, world, pair.teacher, pair.chat)
    assert listed["total"] == 1


async def test_a_retry_after_the_chat_closed_still_returns_the_first_message(
    client: TestClient, world: World, pair: Pair
) -> None:
    # A retry whose first attempt went through is answered with that message, even when the
    # chat has become read-only since (or the retry's body would now be refused).
    url = f"/api/v1/chats/{pair.chat}/messages"
    headers = world.auth(pair.student)
    first = await client.post(url, json={"content": "made it", "client_id": "c-9"}, headers=headers)
    assert first.status == 201
    await set_active(world, pair, False)
    for body in ({"content": "made it"}, {"content": " "}):
        again = await client.post(url, json={**body, "client_id": "c-9"}, headers=headers)
        assert again.status == 200, await again.text()
        assert (await again.json())["message"] == (await first.json())["message"]
    other = await client.post(url, json={"content": "new", "client_id": "c-10"}, headers=headers)
    await expect_error(other, 400, "chat_inactive")


async def test_a_retried_reply_whose_message_was_deleted_returns_the_first_reply(
    client: TestClient, world: World, pair: Pair
) -> None:
    url = f"/api/v1/chats/{pair.chat}/messages"
    headers = world.auth(pair.student)
    asked = await world.post(pair.student, pair.chat, "to be deleted")
    body = {"content": "a reply", "reply_to_id": asked["id"], "client_id": "c-11"}
    first = await client.post(url, json=body, headers=headers)
    assert first.status == 201
    gone = await client.delete(f"/api/v1/messages/{asked['id']}", headers=headers)
    assert gone.status == 204, await gone.text()
    again = await client.post(url, json=body, headers=headers)
    assert again.status == 200, await again.text()
    assert (await again.json())["message"] == (await first.json())["message"]
    fresh = await client.post(url, json={**body, "client_id": "c-12"}, headers=headers)
    await expect_error(fresh, 400, "invalid_request")


async def test_posts_at_the_same_moment_in_many_chats_are_each_written_once(
    client: TestClient, world: World, database: Any
) -> None:
    # Posts that arrive together share one write on PostgreSQL (store/batching.py): each still
    # gets its own message, its chat's order, its event and its outbox job - and one of them
    # refused (a repeated client_id) takes no other with it.
    pairs = []
    for _ in range(8):
        student, teacher = await world.user("student"), await world.user("teacher")
        pairs.append((student, (await world.enroll(student, teacher)).subject_chat["id"]))
    repeated = await world.post(pairs[0][0], pairs[0][1], "first try", client_id="r-1")
    since = await last_event_id(client, world)
    statements: list[str] = []
    stop = database.on_statement(lambda sql, _args: statements.append(sql))

    async def post(student: str, chat_id: int, content: str, **extra: Any) -> Any:
        resp = await client.post(
            f"/api/v1/chats/{chat_id}/messages",
            json={"content": content, **extra},
            headers=world.auth(student),
        )
        return resp.status, (await resp.json())["message"]

    sent = [post(s, c, f"{c}: {n}", client_id=f"{c}-{n}") for n in range(3) for s, c in pairs]
    sent.append(post(pairs[0][0], pairs[0][1], "first try again", client_id="r-1"))
    answers = await asyncio.gather(*sent)
    stop()

    assert [status for status, _ in answers] == [201] * 24 + [200]
    assert answers[-1][1] == repeated
    created = [message for _, message in answers[:-1]]
    assert len({m["id"] for m in created}) == 24
    for student, chat_id in pairs:
        listed = (await page(client, world, student, chat_id))["messages"]
        mine = sorted((m for m in created if m["chat_id"] == chat_id), key=lambda m: m["id"])
        # Each once, after the first try; in the order they were taken, newest last.
        assert listed == [*([repeated] if chat_id == pairs[0][1] else []), *mine]
        assert sorted(m["content"] for m in mine) == [f"{chat_id}: {n}" for n in range(3)]
        times = [m["created_at"] for m in listed]
        assert times == sorted(times)
        chat = await get_chat(client, world, student, chat_id)
        assert chat["last_message"] == mine[-1]
    logged = [e for e in await events_after(client, world, since) if e["type"] == "message.created"]
    assert sorted(e["message"]["id"] for e in logged) == sorted(m["id"] for m in created)
    assert all(
        e["message"] == next(m for m in created if m["id"] == e["message"]["id"]) for e in logged
    )
    if not database.is_sqlite:
        # Fewer writes than posts: they went together.
        writes = [sql for sql in statements if "INSERT INTO messages" in sql]
        assert len(writes) < 24, len(writes)


async def test_client_ids_are_per_sender(client: TestClient, world: World, pair: Pair) -> None:
    a = await world.post(pair.student, pair.chat, "from student", client_id="same")
    b = await world.post(pair.teacher, pair.chat, "from teacher", client_id="same")
    c = await world.post(pair.student, pair.chat, "another", client_id="other")
    assert len({a["id"], b["id"], c["id"]}) == 3
    assert (await page(client, world, pair.student, pair.chat))["total"] == 3


# --- edits ------------------------------------------------------------------------------


async def test_author_edits_a_message(client: TestClient, world: World, pair: Pair) -> None:
    original = await world.post(pair.student, pair.chat, "typo hree")
    since = await last_event_id(client, world)
    resp = await client.patch(
        f"/api/v1/messages/{original['id']}",
        json={"content": "typo here\n\tfixed ✅"},
        headers=world.auth(pair.student),
    )
    assert resp.status == 200, await resp.text()
    edited = (await resp.json())["message"]
    assert edited["content"] == "typo here\n\tfixed ✅"
    assert edited["edited_at"] is not None
    assert datetime.fromisoformat(edited["edited_at"]) >= datetime.fromisoformat(
        original["created_at"]
    )
    assert {k: v for k, v in edited.items() if k not in ("content", "edited_at")} == {
        k: v for k, v in original.items() if k not in ("content", "edited_at")
    }
    listed = await page(client, world, pair.teacher, pair.chat)
    assert listed["messages"] == [edited] and listed["total"] == 1
    assert (await get_chat(client, world, pair.teacher, pair.chat))["last_message"] == edited
    (event,) = await events_after(client, world, since)
    assert event["type"] == "message.updated" and event["message"] == edited


async def test_only_the_author_may_edit(client: TestClient, world: World, pair: Pair) -> None:
    admin = await world.user("admin")
    message = await world.post(pair.student, pair.chat, "mine")
    snapshot = Snapshot(client, world, pair)
    before = await snapshot.take()
    for user in (pair.teacher, admin):
        resp = await client.patch(
            f"/api/v1/messages/{message['id']}",
            json={"content": "hijacked"},
            headers=world.auth(user),
        )
        await expect_error(resp, 403, "forbidden")
    assert await snapshot.take() == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content": "  "}, "invalid_content"),
        ({"content": "y" * 10_001}, "invalid_content"),
        ({}, "invalid_request"),
        ({"content": 3}, "invalid_request"),
        ({"content": "ok", "sender": "x"}, "invalid_request"),
    ],
    ids=["blank", "too_long", "missing", "not_string", "extra_field"],
)
async def test_bad_edits_change_nothing(
    client: TestClient, world: World, pair: Pair, body: dict[str, Any], code: str
) -> None:
    message = await world.post(pair.student, pair.chat, "as it was")
    snapshot = Snapshot(client, world, pair)
    before = await snapshot.take()
    resp = await client.patch(
        f"/api/v1/messages/{message['id']}", json=body, headers=world.auth(pair.student)
    )
    await expect_error(resp, 400, code)
    assert await snapshot.take() == before


async def test_edit_of_a_missing_or_deleted_message_is_404(
    client: TestClient, world: World, pair: Pair
) -> None:
    message = await world.post(pair.student, pair.chat, "short-lived")
    resp = await client.delete(
        f"/api/v1/messages/{message['id']}", headers=world.auth(pair.student)
    )
    assert resp.status == 204
    for target in (message["id"], 10**9, "abc", 10**20):
        resp = await client.patch(
            f"/api/v1/messages/{target}", json={"content": "x"}, headers=world.auth(pair.student)
        )
        await expect_error(resp, 404, "not_found")


# --- deletes ----------------------------------------------------------------------------


async def test_deleted_message_disappears_everywhere(
    client: TestClient, world: World, pair: Pair
) -> None:
    first = await world.post(pair.student, pair.chat, "first")
    second = await world.post(pair.student, pair.chat, "second")
    teacher_chat = await get_chat(client, world, pair.teacher, pair.chat)
    assert teacher_chat["unread_count"] == 2 and teacher_chat["last_message"] == second
    since = await last_event_id(client, world)

    resp = await client.delete(f"/api/v1/messages/{second['id']}", headers=world.auth(pair.student))
    assert resp.status == 204
    assert await resp.read() == b""

    for user in (pair.student, pair.teacher):
        listed = await page(client, world, user, pair.chat)
        assert listed["messages"] == [first] and listed["total"] == 1
    teacher_chat = await get_chat(client, world, pair.teacher, pair.chat)
    assert teacher_chat["last_message"] == first
    assert teacher_chat["unread_count"] == 1
    (listed_chat,) = [
        c
        for c in (
            await (await client.get("/api/v1/chats", headers=world.auth(pair.teacher))).json()
        )["chats"]
        if c["id"] == pair.chat
    ]
    assert listed_chat["last_message"] == first and listed_chat["unread_count"] == 1
    (event,) = await events_after(client, world, since)
    assert event == {
        "type": "message.deleted",
        "event_id": event["event_id"],
        "chat_id": pair.chat,
        "message_id": second["id"],
    }

    # The only one left goes too: no last message at all.
    resp = await client.delete(f"/api/v1/messages/{first['id']}", headers=world.auth(pair.student))
    assert resp.status == 204
    teacher_chat = await get_chat(client, world, pair.teacher, pair.chat)
    assert teacher_chat["last_message"] is None and teacher_chat["unread_count"] == 0
    assert (await page(client, world, pair.teacher, pair.chat))["total"] == 0

    # A second delete finds nothing.
    resp = await client.delete(f"/api/v1/messages/{first['id']}", headers=world.auth(pair.student))
    await expect_error(resp, 404, "not_found")


async def test_deleting_an_older_message_keeps_the_last_one(
    client: TestClient, world: World, pair: Pair
) -> None:
    first = await world.post(pair.student, pair.chat, "first")
    second = await world.post(pair.teacher, pair.chat, "second")
    resp = await client.delete(f"/api/v1/messages/{first['id']}", headers=world.auth(pair.student))
    assert resp.status == 204
    chat = await get_chat(client, world, pair.student, pair.chat)
    assert chat["last_message"] == second
    assert (await page(client, world, pair.student, pair.chat))["messages"] == [second]


async def test_admin_may_delete_any_message_but_other_participants_may_not(
    client: TestClient, world: World, pair: Pair
) -> None:
    admin = await world.user("admin")
    message = await world.post(pair.student, pair.chat, "moderate me")
    snapshot = Snapshot(client, world, pair)
    before = await snapshot.take()
    resp = await client.delete(
        f"/api/v1/messages/{message['id']}", headers=world.auth(pair.teacher)
    )
    await expect_error(resp, 403, "forbidden")
    assert await snapshot.take() == before

    resp = await client.delete(f"/api/v1/messages/{message['id']}", headers=world.auth(admin))
    assert resp.status == 204
    assert (await page(client, world, pair.student, pair.chat))["total"] == 0


async def test_admin_may_delete_in_an_inactive_chat(
    client: TestClient, world: World, pair: Pair
) -> None:
    admin = await world.user("admin")
    message = await world.post(pair.student, pair.chat, "before closing")
    await set_active(world, pair, False)
    resp = await client.delete(f"/api/v1/messages/{message['id']}", headers=world.auth(admin))
    assert resp.status == 204
    assert (await page(client, world, pair.student, pair.chat))["total"] == 0


async def test_delete_of_unknown_message_is_404(
    client: TestClient, world: World, pair: Pair
) -> None:
    for target in (10**9, "nope", 10**20):
        resp = await client.delete(f"/api/v1/messages/{target}", headers=world.auth(pair.student))
        await expect_error(resp, 404, "not_found")


# --- read marks -------------------------------------------------------------------------


async def test_read_marks_feed_read_by_and_unread_count(
    client: TestClient, world: World, pair: Pair
) -> None:
    m1 = await world.post(pair.student, pair.chat, "one")
    m2 = await world.post(pair.student, pair.chat, "two")
    m3 = await world.post(pair.student, pair.chat, "three")
    mine = await world.post(pair.teacher, pair.chat, "teacher's own")

    teacher_view = await get_chat(client, world, pair.teacher, pair.chat)
    assert teacher_view["unread_count"] == 3  # the teacher's own message is not unread
    student_view = await get_chat(client, world, pair.student, pair.chat)
    assert student_view["unread_count"] == 1

    since = await last_event_id(client, world)
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/read",
        json={"message_id": m2["id"]},
        headers=world.auth(pair.teacher),
    )
    assert resp.status == 204, await resp.text()
    (event,) = await events_after(client, world, since)
    assert event == {
        "type": "read",
        "event_id": event["event_id"],
        "chat_id": pair.chat,
        "user_id": pair.teacher,
        "message_id": m2["id"],
    }

    listed = await page(client, world, pair.student, pair.chat)
    read_by = {m["id"]: m["read_by"] for m in listed["messages"]}
    assert read_by == {
        m1["id"]: [pair.teacher],
        m2["id"]: [pair.teacher],
        m3["id"]: [],
        mine["id"]: [],
    }
    assert (await get_chat(client, world, pair.teacher, pair.chat))["unread_count"] == 1

    # A mark never moves back; repeating or lowering it changes nothing and announces nothing.
    since = await last_event_id(client, world)
    for target in (m1["id"], m2["id"]):
        resp = await client.post(
            f"/api/v1/chats/{pair.chat}/read",
            json={"message_id": target},
            headers=world.auth(pair.teacher),
        )
        assert resp.status == 204
    assert await events_after(client, world, since) == []
    assert (await get_chat(client, world, pair.teacher, pair.chat))["unread_count"] == 1

    # Reading up to the newest (the teacher's own) clears the count; the student's mark covers
    # the teacher's message.
    for user in (pair.teacher, pair.student):
        resp = await client.post(
            f"/api/v1/chats/{pair.chat}/read",
            json={"message_id": mine["id"]},
            headers=world.auth(user),
        )
        assert resp.status == 204
        assert (await get_chat(client, world, user, pair.chat))["unread_count"] == 0
    listed = await page(client, world, pair.teacher, pair.chat)
    assert [m["read_by"] for m in listed["messages"]] == [[pair.teacher]] * 3 + [[pair.student]]
    chat = await get_chat(client, world, pair.teacher, pair.chat)
    assert chat["last_message"]["read_by"] == [pair.student]


async def test_unread_count_in_the_chat_list(client: TestClient, world: World, pair: Pair) -> None:
    for i in range(3):
        await world.post(pair.teacher, pair.chat, f"homework {i}")
    resp = await client.get("/api/v1/chats", headers=world.auth(pair.student))
    (chat,) = (await resp.json())["chats"]
    assert chat["unread_count"] == 3
    resp = await client.get("/api/v1/chats", headers=world.auth(pair.teacher))
    assert (await resp.json())["chats"][0]["unread_count"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message_id": "1"},
        {"message_id": None},
        {"message_id": 1, "extra": True},
        {"message_id": 10**20},
        [1],
    ],
    ids=["missing", "string", "null", "extra_field", "huge", "array"],
)
async def test_bad_read_bodies_are_invalid_request(
    client: TestClient, world: World, pair: Pair, body: Any
) -> None:
    await world.post(pair.student, pair.chat, "hello")
    since = await last_event_id(client, world)
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/read", json=body, headers=world.auth(pair.teacher)
    )
    await expect_error(resp, 400, "invalid_request")
    assert await events_after(client, world, since) == []


async def test_read_mark_must_name_a_live_message_of_the_chat(
    client: TestClient, world: World, pair: Pair
) -> None:
    elsewhere = await world.enroll(pair.student, pair.teacher)
    foreign = await world.post(pair.student, elsewhere.subject_chat["id"], "elsewhere")
    gone = await world.post(pair.student, pair.chat, "gone")
    resp = await client.delete(f"/api/v1/messages/{gone['id']}", headers=world.auth(pair.student))
    assert resp.status == 204
    since = await last_event_id(client, world)
    for target in (foreign["id"], gone["id"], 10**9):
        resp = await client.post(
            f"/api/v1/chats/{pair.chat}/read",
            json={"message_id": target},
            headers=world.auth(pair.teacher),
        )
        await expect_error(resp, 400, "invalid_request")
    assert await events_after(client, world, since) == []
    assert (await get_chat(client, world, pair.teacher, pair.chat))["unread_count"] == 0


async def test_admins_may_not_leave_read_marks(
    client: TestClient, world: World, pair: Pair
) -> None:
    admin = await world.user("admin")
    message = await world.post(pair.student, pair.chat, "hello")
    resp = await client.post(
        f"/api/v1/chats/{pair.chat}/read",
        json={"message_id": message["id"]},
        headers=world.auth(admin),
    )
    await expect_error(resp, 403, "forbidden")
    listed = await page(client, world, admin, pair.chat)
    assert listed["messages"][0]["read_by"] == []


# --- unknown chats ----------------------------------------------------------------------


@pytest.mark.parametrize("chat_id", ["999999", "0", "-1", "abc", "1.5", str(10**20)])
async def test_unknown_chat_is_404_on_every_chat_path(
    client: TestClient, world: World, pair: Pair, chat_id: str
) -> None:
    headers = world.auth(pair.student)
    for resp in (
        await client.get(f"/api/v1/chats/{chat_id}", headers=headers),
        await client.get(f"/api/v1/chats/{chat_id}/messages", headers=headers),
        await client.post(
            f"/api/v1/chats/{chat_id}/messages", json={"content": "x"}, headers=headers
        ),
        await client.post(f"/api/v1/chats/{chat_id}/read", json={"message_id": 1}, headers=headers),
    ):
        await expect_error(resp, 404, "not_found")
