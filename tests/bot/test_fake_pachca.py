"""The fake Pachca server, driven over loopback HTTP by the real PachcaClient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.client import (
    PachcaBadResponse,
    PachcaClient,
    PachcaError,
    PachcaResponseTooLarge,
    PachcaTimeout,
)
from tests.eventually import eventually
from tests.fakes import FAKE_PACHCA_TOKEN as TOKEN
from tests.fakes import fake_pachca_fixture  # noqa: F401 - registers the fake_pachca fixture
from tests.fakes.pachca import FakePachca, spec_errors


@pytest.fixture
async def client(fake_pachca: FakePachca) -> AsyncIterator[PachcaClient]:
    assert fake_pachca.base_url is not None
    client = PachcaClient(fake_pachca.base_url, TOKEN, timeout=5)
    yield client
    await client.aclose()


@pytest.fixture
async def raw(fake_pachca: FakePachca) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP, to send what PachcaClient never would."""
    assert fake_pachca.base_url is not None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=fake_pachca.base_url, headers=headers) as raw:
        yield raw


async def post(client: PachcaClient, entity_id: int = 100, content: str = "hi") -> Any:
    return await client.create_message(
        entity_type="discussion", entity_id=entity_id, content=content
    )


# --- the happy path -------------------------------------------------------------------------


async def test_a_forum_thread_round_trip(fake_pachca: FakePachca, client: PachcaClient) -> None:
    root = await client.create_message(
        entity_type="discussion", entity_id=100, content="Question", display_name="Student"
    )
    thread = await client.create_thread(root.id)
    reply = await client.create_message(
        entity_type="thread", entity_id=thread.id, content="Answer", display_name="Teacher"
    )
    await client.add_chat_members(thread.chat_id, [7, 8])
    edited = await client.update_message(reply.id, "Answer, edited")
    fetched = await client.get_message(reply.id)

    assert (root.chat_id, root.entity_type, root.display_name) == (100, "discussion", "Student")
    assert (thread.message_id, thread.message_chat_id) == (root.id, 100)
    assert thread.id != thread.chat_id  # distinct, so mixing them up shows
    assert (reply.entity_type, reply.entity_id) == ("thread", thread.id)
    assert (reply.chat_id, reply.root_chat_id) == (thread.chat_id, 100)
    assert edited.content == fetched.content == "Answer, edited"
    assert fake_pachca.members(thread.chat_id) == {7, 8}
    assert fake_pachca.members(thread.id) == set()
    assert fake_pachca.messages[root.id]["thread"] == {"id": thread.id, "chat_id": thread.chat_id}
    assert [m["content"] for m in fake_pachca.chat_messages(thread.chat_id)] == ["Answer, edited"]
    assert fake_pachca.violations == []
    # What the fake stores and answers is what the spec says Pachca answers.
    for message in fake_pachca.messages.values():
        assert spec_errors("/components/schemas/Message", message) == []
    for stored_thread in fake_pachca.threads.values():
        assert spec_errors("/components/schemas/Thread", stored_thread) == []


async def test_delete_message(fake_pachca: FakePachca, client: PachcaClient) -> None:
    message = await post(client)

    await client.delete_message(message.id)

    assert (await client.get_message(message.id)).deleted_at is not None
    assert fake_pachca.chat_messages(100) == []
    with pytest.raises(PachcaError) as caught:
        await client.delete_message(message.id)
    assert (caught.value.status, caught.value.codes) == (404, ["not_found"])
    with pytest.raises(PachcaError) as caught:
        await client.update_message(message.id, "too late")
    assert caught.value.codes == ["message_deleted"]


async def test_unknown_message_is_404(client: PachcaClient) -> None:
    for call in (client.get_message(999), client.update_message(999, "x"), client.create_thread(9)):
        with pytest.raises(PachcaError) as caught:
            await call
        assert (caught.value.status, caught.value.codes) == (404, ["not_found"])


async def test_create_thread_is_idempotent(fake_pachca: FakePachca, client: PachcaClient) -> None:
    message = await post(client)

    first = await client.create_thread(message.id)
    second = await client.create_thread(message.id)

    assert first == second
    assert list(fake_pachca.threads) == [first.id]
    assert fake_pachca.thread_of(message.id) == fake_pachca.threads[first.id]


async def test_no_thread_on_a_message_inside_a_thread(client: PachcaClient) -> None:
    thread = await client.create_thread((await post(client)).id)
    reply = await client.create_message(entity_type="thread", entity_id=thread.id, content="r")

    with pytest.raises(PachcaError) as caught:
        await client.create_thread(reply.id)

    assert caught.value.codes == ["thread_message"]


async def test_posting_to_a_thread_chat_id_lands_in_the_thread(
    fake_pachca: FakePachca, client: PachcaClient
) -> None:
    thread = await client.create_thread((await post(client)).id)

    reply = await post(client, entity_id=thread.chat_id)

    assert (reply.entity_type, reply.entity_id, reply.chat_id) == (
        "thread",
        thread.id,
        thread.chat_id,
    )
    with pytest.raises(PachcaError) as caught:  # a thread id is not a chat id
        await client.create_message(entity_type="thread", entity_id=thread.chat_id, content="x")
    assert caught.value.codes == ["not_found"]


async def test_only_the_author_can_edit(fake_pachca: FakePachca, client: PachcaClient) -> None:
    theirs = fake_pachca.post_as_user(42, entity_id=100, content="mine")

    with pytest.raises(PachcaError) as caught:
        await client.update_message(theirs["id"], "hijacked")

    assert caught.value.status == 403
    assert fake_pachca.messages[theirs["id"]]["content"] == "mine"
    assert "display_name" not in theirs  # a person's message has no display_* fields


async def test_webhook_payload_of_a_thread_message(
    fake_pachca: FakePachca, client: PachcaClient
) -> None:
    root = await post(client)
    thread = await client.create_thread(root.id)
    reply = fake_pachca.post_as_user(42, entity_type="thread", entity_id=thread.id, content="q")

    payload = fake_pachca.webhook_payload(reply["id"])
    root_payload = fake_pachca.webhook_payload(root.id, event="update")

    assert payload["thread"] == {"message_id": root.id, "message_chat_id": 100}
    assert (payload["user_id"], payload["chat_id"], payload["content"]) == (42, thread.chat_id, "q")
    assert (root_payload["event"], root_payload["thread"]) == ("update", None)


# --- the token and request records ----------------------------------------------------------


async def test_a_wrong_token_is_401(fake_pachca: FakePachca) -> None:
    assert fake_pachca.base_url is not None
    async with PachcaClient(fake_pachca.base_url, "wrong-token-123") as client:
        with pytest.raises(PachcaError) as caught:
            await post(client)

    assert (caught.value.status, caught.value.codes) == (401, ["invalid_token"])
    assert not caught.value.retryable
    assert fake_pachca.messages == {}
    assert len(fake_pachca.requests_to("POST", "/messages")) == 1


async def test_requests_are_recorded(fake_pachca: FakePachca, client: PachcaClient) -> None:
    message = await post(client, content="first")
    await client.create_thread(message.id)
    await client.get_message(message.id)

    posts = fake_pachca.requests_to("POST", "/messages")
    assert [r.json for r in posts] == [
        {"message": {"entity_type": "discussion", "entity_id": 100, "content": "first"}}
    ]
    assert posts[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert [r.path for r in fake_pachca.requests_to("POST", "/messages/*")] == [
        f"/messages/{message.id}/thread"
    ]
    assert len(fake_pachca.requests_to("GET")) == 1
    assert len(fake_pachca.requests_to(path="/messages*")) == 3
    times = [r.at for r in fake_pachca.requests]
    assert times == sorted(times)


# --- validation against the spec ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"message": {"entity_id": 1}}, "'content' is a required property"),
        ({"message": {"entity_id": "1", "content": "x"}}, "'1' is not of type 'integer'"),
        ({"message": {"entity_id": 1, "content": "x", "entity_type": "chat"}}, "is not one of"),
        ({"message": {"entity_id": 1, "content": "x", "display_name": "n" * 256}}, "too long"),
        ({"message": {"entity_id": 1, "content": "x", "display_nme": "typo"}}, "display_nme"),
        ({"entity_id": 1, "content": "x"}, "'message' is a required property"),
    ],
)
async def test_an_invalid_body_is_a_recorded_violation(
    fake_pachca: FakePachca, raw: httpx.AsyncClient, body: Any, expected: str
) -> None:
    response = await raw.post("/messages", json=body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid"
    assert spec_errors("/components/schemas/ApiError", response.json()) == []
    assert fake_pachca.messages == {}
    [violation] = fake_pachca.violations
    assert (violation.method, violation.path, violation.body) == ("POST", "/messages", body)
    assert any(expected in error for error in violation.errors), violation.errors


async def test_a_valid_body_with_only_required_fields_passes(
    fake_pachca: FakePachca, raw: httpx.AsyncClient
) -> None:
    # entity_type is optional in the spec (default "discussion").
    response = await raw.post("/messages", json={"message": {"entity_id": 5, "content": "x"}})

    assert response.status_code == 201
    assert response.json()["data"]["chat_id"] == 5
    assert fake_pachca.violations == []


async def test_other_violations(fake_pachca: FakePachca, raw: httpx.AsyncClient) -> None:
    responses = [
        await raw.post("/messages", content=b"{not json", headers={"Content-Type": "text/plain"}),
        await raw.post("/chats/5/members", json={"member_ids": ["a"]}),
        await raw.get("/webhooks/events", params={"limit": 51}),
        await raw.get("/webhooks/events", params={"page": 2}),
        await raw.post("/threads", json={}),  # not faked
        await raw.put("/messages/1"),  # no body
    ]

    assert [r.status_code for r in responses] == [400, 400, 400, 400, 404, 400]
    assert [v.path for v in fake_pachca.violations] == [
        "/messages",
        "/chats/5/members",
        "/webhooks/events",
        "/webhooks/events",
        "/threads",
        "/messages/1",
    ]
    assert fake_pachca.members(5) == set()


# --- scripted failures ----------------------------------------------------------------------


async def test_fail_next(fake_pachca: FakePachca, client: PachcaClient) -> None:
    fake_pachca.fail_next(2, status=500)

    for _ in range(2):
        with pytest.raises(PachcaError) as caught:
            await post(client)
        assert (caught.value.status, caught.value.retryable) == (500, True)
    assert fake_pachca.messages == {}  # a failed request is not applied

    assert (await post(client)).content == "hi"
    assert len(fake_pachca.requests_to("POST", "/messages")) == 3


async def test_fail_next_for_one_path_only(fake_pachca: FakePachca, client: PachcaClient) -> None:
    fake_pachca.fail_next(status=503, method="POST", path="/messages/*/thread")

    message = await post(client)  # unaffected
    with pytest.raises(PachcaError) as caught:
        await client.create_thread(message.id)
    thread = await client.create_thread(message.id)

    assert caught.value.status == 503
    assert list(fake_pachca.threads) == [thread.id]


async def test_rate_limit_next(fake_pachca: FakePachca, client: PachcaClient) -> None:
    fake_pachca.rate_limit_next(retry_after=3)

    with pytest.raises(PachcaError) as caught:
        await post(client)

    error = caught.value
    assert (error.status, error.retry_after, error.codes, error.retryable) == (
        429,
        3.0,
        ["rate_limit"],
        True,
    )
    assert fake_pachca.messages == {}
    await post(client)
    assert len(fake_pachca.messages) == 1


async def test_hang_next_delays_the_answer(fake_pachca: FakePachca, client: PachcaClient) -> None:
    fake_pachca.hang_next(seconds=0.3)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await post(client)

    assert loop.time() - started >= 0.3


async def test_hold_next_answers_once_released(
    fake_pachca: FakePachca, client: PachcaClient
) -> None:
    gate = fake_pachca.hold_next(method="POST", path="/messages")
    held = asyncio.create_task(post(client))
    await eventually(lambda: fake_pachca.requests_to("POST", "/messages"), what="request")
    await asyncio.sleep(0)
    assert not held.done()
    assert fake_pachca.messages == {}

    gate.set()
    await held
    assert len(fake_pachca.messages) == 1


async def test_hang_next_times_the_client_out_before_applying(fake_pachca: FakePachca) -> None:
    fake_pachca.hang_next(seconds=30)
    assert fake_pachca.base_url is not None

    async with PachcaClient(fake_pachca.base_url, TOKEN, timeout=0.2) as client:
        with pytest.raises(PachcaTimeout) as caught:
            await post(client)
        assert caught.value.retryable
        assert fake_pachca.messages == {}
        await post(client)  # only the next request hangs

    assert len(fake_pachca.messages) == 1


async def test_hang_next_after_handling_applies_then_times_out(fake_pachca: FakePachca) -> None:
    fake_pachca.hang_next(seconds=30, after_handling=True)
    assert fake_pachca.base_url is not None

    async with PachcaClient(fake_pachca.base_url, TOKEN, timeout=0.2) as client:
        with pytest.raises(PachcaTimeout):
            await post(client)

    # The outcome the client could not see: the message exists.
    assert [m["content"] for m in fake_pachca.messages.values()] == ["hi"]


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "retryable"),
    [
        ("html_502", 502, PachcaError, True),
        ("garbage_200", 200, PachcaBadResponse, True),
        ("wrong_shape_200", 200, PachcaBadResponse, False),
    ],
)
async def test_malformed_next(
    fake_pachca: FakePachca,
    client: PachcaClient,
    kind: str,
    status: int,
    error_type: type[PachcaError],
    retryable: bool,
) -> None:
    fake_pachca.malformed_next(kind=kind)

    with pytest.raises(error_type) as caught:
        await post(client)

    assert (caught.value.status, caught.value.retryable) == (status, retryable)
    await post(client)


async def test_huge_next_over_real_http(
    fake_pachca: FakePachca, client: PachcaClient, raw: httpx.AsyncClient
) -> None:
    fake_pachca.huge_next(size=4 * 1024 * 1024, method="POST", path="/messages")
    with pytest.raises(PachcaResponseTooLarge) as caught:
        await post(client)
    assert (caught.value.status, caught.value.retryable) == (200, True)
    await post(client)  # the next answer is ordinary

    fake_pachca.huge_next(size=1024 * 1024, status=503)  # a client without a cap reads it all
    resp = await raw.get("/messages/1")
    assert (resp.status_code, len(resp.content)) == (503, 1024 * 1024)


async def test_faults_are_used_in_order(fake_pachca: FakePachca, client: PachcaClient) -> None:
    fake_pachca.rate_limit_next(retry_after=1)
    fake_pachca.fail_next(status=500)

    statuses = []
    for _ in range(3):
        try:
            await post(client)
            statuses.append(201)
        except PachcaError as error:
            statuses.append(error.status)

    assert statuses == [429, 500, 201]


# --- webhook history ------------------------------------------------------------------------


async def test_webhook_history_pages_and_deletes(
    fake_pachca: FakePachca, client: PachcaClient
) -> None:
    messages = [fake_pachca.post_as_user(42, entity_id=100, content=f"m{i}") for i in range(3)]
    events = [fake_pachca.add_webhook_event(fake_pachca.webhook_payload(m["id"])) for m in messages]

    first = await client.list_webhook_events(limit=2)
    second = await client.list_webhook_events(limit=2, cursor=first.next_cursor)

    assert [e.id for e in first] == [events[0]["id"], events[1]["id"]]
    assert first.has_next
    assert [e.id for e in second] == [events[2]["id"]]
    assert not second.has_next
    assert first[0].event_type == "message_new"
    assert first[0].payload == fake_pachca.webhook_payload(messages[0]["id"]) | {
        "webhook_timestamp": first[0].payload["webhook_timestamp"]
    }

    await client.delete_webhook_event(first[0].id)
    remaining = await client.list_webhook_events()
    assert [e.id for e in remaining] == [events[1]["id"], events[2]["id"]]
    with pytest.raises(PachcaError) as caught:
        await client.delete_webhook_event(first[0].id)
    assert caught.value.status == 404
    assert fake_pachca.violations == []


async def test_webhook_history_answers_in_the_spec_shape(
    fake_pachca: FakePachca, raw: httpx.AsyncClient
) -> None:
    message = fake_pachca.post_as_user(42, entity_id=100, content="m")
    fake_pachca.add_webhook_event(fake_pachca.webhook_payload(message["id"]))

    response = await raw.get("/webhooks/events")

    schema = "/paths/~1webhooks~1events/get/responses/200/content/application~1json/schema"
    assert spec_errors(schema, response.json()) == []


def test_seeding_an_invalid_webhook_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Pachca webhook payload"):
        FakePachca().add_webhook_event({"type": "message", "id": "x"})
