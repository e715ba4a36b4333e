"""PachcaClient against respx-mocked HTTP: request shapes, response parsing, error mapping."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from bot.client import (
    MAX_RESPONSE_BYTES,
    MAX_RETRY_AFTER_S,
    PachcaBadResponse,
    PachcaClient,
    PachcaConnectionError,
    PachcaError,
    PachcaResponseTooLarge,
    PachcaTimeout,
    parse_retry_after,
)
from tests.fakes.pachca import spec_errors

BASE = "https://pachca.test/api/shared/v1"
TOKEN = "s3cr3t-bot-token-0123456789abcdef"

# Bodies shaped like the spec's own examples (checked against the spec below).
MESSAGE: dict[str, Any] = {
    "id": 194275,
    "entity_type": "thread",
    "entity_id": 265142,
    "chat_id": 2637266155,
    "root_chat_id": 334,
    "content": "Hello",
    "user_id": 12,
    "created_at": "2021-08-28T15:57:23.000Z",
    "url": "https://app.pachca.com/chats/334?message=194275",
    "files": [
        {
            "id": 3560,
            "key": "attaches/files/12/x/congrat.png",
            "name": "congrat.png",
            "file_type": "image",
            "url": "https://files.example/congrat.png",
            "width": 1920,
            "height": 1080,
        }
    ],
    "voice_content": None,
    "buttons": None,
    "thread": {"id": 265143, "chat_id": 2637266156},
    "forwarding": None,
    "parent_message_id": None,
    "display_avatar_url": None,
    "display_name": "Ann Teacher",
    "changed_at": "2021-08-28T16:10:00.000Z",
    "deleted_at": None,
}
THREAD: dict[str, Any] = {
    "id": 265142,
    "chat_id": 2637266155,
    "message_id": 154332686,
    "message_chat_id": 2637266154,
    "updated_at": "2023-02-01T19:20:47.204Z",
}
WEBHOOK_PAYLOAD: dict[str, Any] = {
    "type": "message",
    "id": 1245817,
    "event": "new",
    "entity_type": "discussion",
    "entity_id": 5678,
    "content": "Text",
    "user_id": 2345,
    "created_at": "2025-05-15T14:30:00.000Z",
    "changed_at": "2025-05-15T14:30:00.000Z",
    "url": "https://pachca.com/chats/1245817/messages/5678",
    "chat_id": 9012,
    "parent_message_id": None,
    "thread": None,
    "webhook_timestamp": 1747574400,
}
EVENT: dict[str, Any] = {
    "id": "01KAJZ2XDSS2S3DSW9EXJZ0TBV",
    "event_type": "message_new",
    "payload": WEBHOOK_PAYLOAD,
    "created_at": "2025-05-15T14:30:00.000Z",
}


def api_error(code: str, message: str) -> dict[str, Any]:
    item = {"key": "entity_id", "value": None, "message": message, "code": code, "payload": None}
    return {"errors": [item]}


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client() -> AsyncIterator[PachcaClient]:
    client = PachcaClient(BASE, TOKEN)
    yield client
    await client.aclose()


def sent(route: respx.Route) -> tuple[httpx.Request, Any]:
    assert route.call_count == 1
    request = route.calls.last.request
    body = json.loads(request.content) if request.content else None
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    return request, body


def test_samples_follow_the_spec() -> None:
    assert spec_errors("/components/schemas/Message", MESSAGE) == []
    assert spec_errors("/components/schemas/Thread", THREAD) == []
    assert spec_errors("/components/schemas/WebhookEvent", EVENT) == []
    assert spec_errors("/components/schemas/ApiError", api_error("invalid", "x")) == []


# --- requests and parsing -------------------------------------------------------------------


async def test_create_message_sends_the_spec_body(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    route = api.post("/messages").respond(201, json={"data": MESSAGE})

    message = await client.create_message(
        entity_type="thread",
        entity_id=265142,
        content="Hello",
        parent_message_id=7,
        display_name="Ann Teacher",
        display_avatar_url="https://example.com/a.png",
        skip_invite_mentions=True,
    )

    request, body = sent(route)
    assert request.method == "POST"
    assert request.url == f"{BASE}/messages"
    assert body == {
        "message": {
            "entity_type": "thread",
            "entity_id": 265142,
            "content": "Hello",
            "parent_message_id": 7,
            "display_name": "Ann Teacher",
            "display_avatar_url": "https://example.com/a.png",
            "skip_invite_mentions": True,
        }
    }
    assert spec_errors("/components/schemas/MessageCreateRequest", body, strict=True) == []
    assert message.id == 194275
    assert message.chat_id == 2637266155  # int64 chat ids survive
    assert message.thread is not None and message.thread.chat_id == 2637266156
    assert message.files[0].name == "congrat.png"
    assert message.display_name == "Ann Teacher"
    assert message.created_at == datetime(2021, 8, 28, 15, 57, 23, tzinfo=UTC)


async def test_create_message_leaves_unset_fields_out(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    route = api.post("/messages").respond(201, json={"data": MESSAGE})

    await client.create_message(entity_type="discussion", entity_id=334, content="Hi")

    # Absent, not null: the spec's optional fields are not nullable.
    _, body = sent(route)
    assert body == {"message": {"entity_type": "discussion", "entity_id": 334, "content": "Hi"}}


async def test_create_message_rejects_an_overlong_display_name(client: PachcaClient) -> None:
    with pytest.raises(ValueError, match="255"):
        await client.create_message(
            entity_type="discussion", entity_id=1, content="x", display_name="x" * 256
        )


async def test_update_message_puts_the_new_content(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    route = api.put("/messages/194275").respond(200, json={"data": MESSAGE | {"content": "New"}})

    message = await client.update_message(194275, "New")

    _, body = sent(route)
    assert body == {"message": {"content": "New"}}
    assert spec_errors("/components/schemas/MessageUpdateRequest", body, strict=True) == []
    assert message.content == "New"


async def test_delete_message(api: respx.MockRouter, client: PachcaClient) -> None:
    route = api.delete("/messages/194275").respond(204)

    assert await client.delete_message(194275) is None

    request, body = sent(route)
    assert request.method == "DELETE"
    assert body is None


async def test_get_message(api: respx.MockRouter, client: PachcaClient) -> None:
    route = api.get("/messages/194275").respond(200, json={"data": MESSAGE})

    message = await client.get_message(194275)

    request, body = sent(route)
    assert request.method == "GET"
    assert body is None
    assert message.content == "Hello"
    assert message.entity_type == "thread"


async def test_create_thread(api: respx.MockRouter, client: PachcaClient) -> None:
    route = api.post("/messages/154332686/thread").respond(201, json={"data": THREAD})

    thread = await client.create_thread(154332686)

    _, body = sent(route)
    assert body is None
    assert (thread.id, thread.chat_id) == (265142, 2637266155)
    assert (thread.message_id, thread.message_chat_id) == (154332686, 2637266154)


async def test_add_chat_members(api: respx.MockRouter, client: PachcaClient) -> None:
    route = api.post("/chats/2637266155/members").respond(204)

    await client.add_chat_members(2637266155, [186, 187])

    _, body = sent(route)
    assert body == {"member_ids": [186, 187], "silent": True}
    assert spec_errors("/components/schemas/AddMembersRequest", body, strict=True) == []


async def test_remove_chat_member(api: respx.MockRouter, client: PachcaClient) -> None:
    route = api.delete("/chats/2637266155/members/186").respond(204)

    await client.remove_chat_member(2637266155, 186)

    _, body = sent(route)
    assert body is None


async def test_add_and_remove_a_reaction(api: respx.MockRouter, client: PachcaClient) -> None:
    reaction = {
        "user_id": 1,
        "created_at": "2025-05-15T14:30:00.000Z",
        "code": "👍",
        "name": ":+1:",
    }
    added = api.post("/messages/194275/reactions").respond(201, json=reaction)
    removed = api.delete("/messages/194275/reactions").respond(204)

    await client.add_reaction(194275, "👍")
    await client.remove_reaction(194275, "👍")

    _, body = sent(added)
    assert body == {"code": "👍"}
    assert spec_errors("/components/schemas/ReactionRequest", body, strict=True) == []
    request, _ = sent(removed)
    assert dict(request.url.params) == {"code": "👍"}


async def test_list_webhook_events_returns_a_page(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    meta = {"paginate": {"next_page": "CURSOR2", "has_next": True}}
    route = api.get("/webhooks/events").respond(200, json={"data": [EVENT], "meta": meta})

    page = await client.list_webhook_events(limit=10, cursor="CURSOR1")

    request, _ = sent(route)
    assert dict(request.url.params) == {"limit": "10", "cursor": "CURSOR1"}
    assert [event.id for event in page] == ["01KAJZ2XDSS2S3DSW9EXJZ0TBV"]
    assert page[0].event_type == "message_new"
    assert page[0].payload == WEBHOOK_PAYLOAD  # the original webhook body, untouched
    assert (page.next_cursor, page.has_next) == ("CURSOR2", True)


@pytest.mark.parametrize(
    ("events", "limit", "has_next"), [(1, 1, True), (1, 2, False), (0, 50, False)]
)
async def test_list_webhook_events_guesses_has_next_when_absent(
    api: respx.MockRouter, client: PachcaClient, events: int, limit: int, has_next: bool
) -> None:
    body = {"data": [EVENT] * events, "meta": {"paginate": {"next_page": "C"}}}
    api.get("/webhooks/events").respond(200, json=body)

    page = await client.list_webhook_events(limit=limit)

    assert page.has_next is has_next


async def test_delete_webhook_event_quotes_the_id(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    route = api.delete("/webhooks/events/01KAJZ2XDSS2S3DSW9EXJZ0TBV").respond(204)
    odd = api.delete(url__regex=r".*/webhooks/events/a%2Fb$").respond(204)

    await client.delete_webhook_event("01KAJZ2XDSS2S3DSW9EXJZ0TBV")
    await client.delete_webhook_event("a/b")

    assert route.call_count == 1
    assert odd.call_count == 1


# --- errors ---------------------------------------------------------------------------------


async def test_rate_limit_carries_retry_after(api: respx.MockRouter, client: PachcaClient) -> None:
    route = api.post("/messages").respond(
        429, json=api_error("rate_limit", "Too many requests"), headers={"Retry-After": "7"}
    )

    with pytest.raises(PachcaError) as caught:
        await client.create_message(entity_type="discussion", entity_id=1, content="x")

    error = caught.value
    assert (error.status, error.retry_after, error.retryable) == (429, 7.0, True)
    assert error.codes == ["rate_limit"]
    assert route.call_count == 1  # never retried by the client


@pytest.mark.parametrize(
    ("response", "status"),
    [
        (httpx.Response(500, json=api_error("unhandled", "Internal error")), 500),
        (httpx.Response(503, text="Service Unavailable"), 503),
        (
            httpx.Response(
                502, html="<html><body><h1>502 Bad Gateway</h1></body></html>"
            ),  # a proxy's page
            502,
        ),
    ],
)
async def test_server_errors_are_retryable(
    api: respx.MockRouter, client: PachcaClient, response: httpx.Response, status: int
) -> None:
    route = api.post("/messages/1/thread").mock(return_value=response)

    with pytest.raises(PachcaError) as caught:
        await client.create_thread(1)

    assert caught.value.status == status
    assert caught.value.retryable
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("side_effect", "kind"),
    [
        (httpx.ReadTimeout("read timed out"), PachcaTimeout),
        (httpx.ConnectTimeout("connect timed out"), PachcaTimeout),
        (httpx.ConnectError("Connection refused"), PachcaConnectionError),
        (httpx.RemoteProtocolError("Server disconnected"), PachcaConnectionError),
    ],
)
async def test_transport_failures_are_retryable_without_status(
    api: respx.MockRouter, client: PachcaClient, side_effect: Exception, kind: type[PachcaError]
) -> None:
    route = api.post("/messages").mock(side_effect=side_effect)

    with pytest.raises(kind) as caught:
        await client.create_message(entity_type="discussion", entity_id=1, content="x")

    assert caught.value.status is None
    assert caught.value.retryable
    assert route.call_count == 1


async def test_a_real_refused_connection() -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with PachcaClient(f"http://127.0.0.1:{port}/api/shared/v1", TOKEN) as client:
        with pytest.raises(PachcaConnectionError) as caught:
            await client.get_message(1)
    assert caught.value.retryable
    assert TOKEN not in str(caught.value)


async def test_client_errors_carry_pachca_codes(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    api.post("/messages").respond(422, json=api_error("not_found", "Chat not found"))

    with pytest.raises(PachcaError) as caught:
        await client.create_message(entity_type="discussion", entity_id=1, content="x")

    error = caught.value
    assert (error.status, error.codes, error.messages) == (422, ["not_found"], ["Chat not found"])
    assert not error.retryable
    assert error.retry_after is None
    assert "not_found" in str(error) and "POST /messages" in str(error)


async def test_oauth_errors_carry_their_code(api: respx.MockRouter, client: PachcaClient) -> None:
    body = {"error": "invalid_token", "error_description": "Access token is invalid"}
    api.get("/messages/5").respond(401, json=body)

    with pytest.raises(PachcaError) as caught:
        await client.get_message(5)

    assert caught.value.codes == ["invalid_token"]
    assert caught.value.messages == ["Access token is invalid"]
    assert not caught.value.retryable


async def test_a_404_without_a_json_body_is_not_retryable(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    api.delete("/messages/5").respond(404, html="<h1>Not Found</h1>")

    with pytest.raises(PachcaError) as caught:
        await client.delete_message(5)

    assert (caught.value.status, caught.value.codes, caught.value.retryable) == (404, [], False)


async def test_a_non_json_success_is_a_transient_bad_response(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    api.post("/messages").respond(200, html="<html>maintenance</html>")

    with pytest.raises(PachcaBadResponse) as caught:
        await client.create_message(entity_type="discussion", entity_id=1, content="x")

    assert caught.value.status == 200
    assert caught.value.retryable


@pytest.mark.parametrize(
    "body", [{"result": MESSAGE}, {"data": {"id": "not-an-int"}}, [MESSAGE], {"data": None}]
)
async def test_a_success_of_the_wrong_shape_is_a_permanent_bad_response(
    api: respx.MockRouter, client: PachcaClient, body: Any
) -> None:
    api.get("/messages/5").respond(200, json=body)

    with pytest.raises(PachcaBadResponse) as caught:
        await client.get_message(5)

    assert not caught.value.retryable
    assert "not-an-int" not in str(caught.value)  # no field values: they may be message text


async def test_the_token_never_leaks(
    api: respx.MockRouter, client: PachcaClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile proxy echoing the token back must not get it into our error texts either.
    echo = {"errors": [{"code": "invalid", "message": f"bad header Bearer {TOKEN}"}]}
    api.post("/messages").respond(400, json=echo)
    api.get("/messages/1").mock(side_effect=httpx.ConnectError(f"failed for {TOKEN}"))
    api.get("/messages/2").mock(side_effect=httpx.ReadTimeout("timeout"))
    api.get("/messages/3").respond(200, text="garbage")
    caplog.set_level(logging.DEBUG)

    errors: list[PachcaError] = []
    for call in (
        client.create_message(entity_type="discussion", entity_id=1, content="x"),
        client.get_message(1),
        client.get_message(2),
        client.get_message(3),
    ):
        with pytest.raises(PachcaError) as caught:
            await call
        errors.append(caught.value)

    assert len(errors) == 4
    for error in errors:
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)
        assert TOKEN not in repr(error.__dict__)
        # Nor in a logged traceback, where a chained httpx exception would show its own text.
        assert TOKEN not in "".join(traceback.format_exception(error))
    assert "***" in errors[0].messages[0]
    assert TOKEN not in repr(client)
    assert TOKEN not in caplog.text


# --- Retry-After ----------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    in_30s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    an_hour_ago = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert 25 < (parse_retry_after(in_30s) or 0) <= 30
    assert parse_retry_after(an_hour_ago) == 0.0
    assert parse_retry_after(None) is None
    for garbage in ("", "soon", "nan", "inf", "Mon, 99 Foo 2020 99:99:99 GMT"):
        assert parse_retry_after(garbage) is None, garbage


def test_retry_after_is_capped_at_an_hour() -> None:
    next_year = format_datetime(datetime.now(UTC) + timedelta(days=365), usegmt=True)
    for huge in ("1e12", "3601", "99999999999999999999", next_year):
        assert parse_retry_after(huge) == MAX_RETRY_AFTER_S == 3600, huge
    assert parse_retry_after("3599") == 3599


async def test_a_429_with_an_absurd_retry_after_waits_an_hour(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    api.post("/messages").respond(
        429, json=api_error("rate_limit", "Too many requests"), headers={"Retry-After": "1e12"}
    )
    with pytest.raises(PachcaError) as caught:
        await client.create_message(entity_type="discussion", entity_id=1, content="x")
    assert (caught.value.status, caught.value.retry_after) == (429, 3600)


# --- a hostile server: response size and time ----------------------------------------------


class Drip(httpx.AsyncByteStream):
    """A body of ``total`` bytes (chunked, no Content-Length) that counts what was read."""

    def __init__(self, total: int, chunk: int = 64 * 1024, pause: float = 0.0) -> None:
        self.total, self.chunk, self.pause = total, chunk, pause
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            if self.pause:
                await asyncio.sleep(self.pause)
            piece = b" " * min(self.chunk, self.total - self.sent)
            self.sent += len(piece)
            yield piece


def message_body(size: int) -> bytes:
    """The documented answer to POST /messages, padded with JSON whitespace to ``size``."""
    body = json.dumps({"data": MESSAGE}).encode()
    return body + b" " * (size - len(body))


async def create(client: PachcaClient) -> Any:
    return await client.create_message(entity_type="discussion", entity_id=1, content="x")


async def test_a_body_of_exactly_the_cap_is_read(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    api.post("/messages").respond(200, content=message_body(MAX_RESPONSE_BYTES))
    assert (await create(client)).id == MESSAGE["id"]


async def test_a_declared_body_over_the_cap_fails_retryably(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    api.post("/messages").respond(200, content=message_body(MAX_RESPONSE_BYTES + 1))
    with pytest.raises(PachcaResponseTooLarge) as caught:
        await create(client)
    assert caught.value.retryable and caught.value.status == 200


async def test_an_undeclared_body_is_abandoned_at_the_cap(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    stream = Drip(total=400 * 1024 * 1024)  # the review's 400 MB
    api.post("/messages").mock(return_value=httpx.Response(200, stream=stream))
    with pytest.raises(PachcaResponseTooLarge) as caught:
        await create(client)
    assert caught.value.retryable
    assert stream.sent <= MAX_RESPONSE_BYTES + stream.chunk  # stopped reading at the cap


async def test_a_compressed_bomb_is_abandoned_at_the_cap(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in about 64 KiB
    api.post("/messages").respond(200, content=bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(PachcaResponseTooLarge):
        await create(client)


async def test_a_compressed_answer_is_still_understood(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    body = gzip.compress(json.dumps({"data": MESSAGE}).encode())
    route = api.post("/messages").respond(200, content=body, headers={"Content-Encoding": "gzip"})
    assert (await create(client)).id == MESSAGE["id"]
    assert route.calls.last.request.headers["Accept-Encoding"] == "identity"


async def test_an_encoding_that_cannot_be_bounded_is_a_transient_bad_response(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    api.post("/messages").respond(200, content=b"\x00" * 10, headers={"Content-Encoding": "br"})
    with pytest.raises(PachcaBadResponse) as caught:
        await create(client)
    assert caught.value.retryable


async def test_an_error_with_a_huge_body_keeps_its_status(
    api: respx.MockRouter, client: PachcaClient
) -> None:
    stream = Drip(total=50 * 1024 * 1024)
    api.post("/messages").mock(
        return_value=httpx.Response(429, stream=stream, headers={"Retry-After": "5"})
    )
    with pytest.raises(PachcaError) as caught:
        await create(client)
    assert (caught.value.status, caught.value.retry_after, caught.value.codes) == (429, 5, [])
    assert stream.sent <= MAX_RESPONSE_BYTES + stream.chunk

    api.post("/messages/1/thread").respond(404, content=b"x" * (MAX_RESPONSE_BYTES + 1))
    with pytest.raises(PachcaError) as caught:
        await client.create_thread(1)
    assert (caught.value.status, caught.value.retryable) == (404, False)


async def test_a_body_that_trickles_in_times_out_as_a_whole() -> None:
    # Each piece arrives well within the timeout; the whole would take 20 s.
    stream = Drip(total=200, chunk=1, pause=0.1)
    with respx.mock(base_url=BASE) as api:
        api.post("/messages").mock(return_value=httpx.Response(200, stream=stream))
        async with PachcaClient(BASE, TOKEN, timeout=0.3) as client:
            with pytest.raises(PachcaTimeout) as caught:
                await create(client)
    assert caught.value.retryable
    assert stream.sent < stream.total
