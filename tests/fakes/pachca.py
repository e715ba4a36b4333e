"""An in-memory fake of the Pachca API, served by aiohttp, for end-to-end tests of the bridge.

    fake = FakePachca(token="t")
    server = await aiohttp_server(fake.app)
    base_url = str(server.make_url(FAKE_API_PREFIX))      # what `pachca.api_url` points at
    ...
    assert fake.violations == []

(or `base_url = await fake.serve(aiohttp_server)`, or the `fake_pachca` fixture in __init__.py).

Every request body and query is validated against Pachca's own OpenAPI spec, vendored beside this
file as pachca_openapi.yaml (MIT, published by Pachca). A request that breaks it is answered 400
and recorded in `fake.violations`, so a test can prove the bridge speaks the real API. Unknown
fields count as violations too (the spec does not forbid them, but the real server would drop
them silently, which hides typos).

Behaviour the spec does not pin down is a documented guess, marked "guess" below.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import fnmatch
import functools
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from aiohttp import web
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

FAKE_API_PREFIX = "/api/shared/v1"
SPEC_PATH = Path(__file__).with_name("pachca_openapi.yaml")
_SPEC_URI = "urn:pachca-openapi"
_STRICT_SPEC_URI = "urn:pachca-openapi-strict"

Json = dict[str, Any]
MalformedKind = Literal["html_502", "garbage_200", "wrong_shape_200"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- the spec -------------------------------------------------------------------------------


@functools.cache
def load_spec() -> Json:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is 20x faster
    with SPEC_PATH.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)


def _forbid_unknown_fields(node: Any) -> None:
    """Close every plain object schema, in place, so unknown request fields are reported."""
    if isinstance(node, dict):
        composed = any(k in node for k in ("allOf", "anyOf", "oneOf"))
        if "properties" in node and "additionalProperties" not in node and not composed:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown_fields(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_unknown_fields(value)


def _let_null_through_allof(node: Any) -> None:
    """Rewrite `{nullable: true, allOf: [X]}` in place to accept null.

    The spec writes "X or null" that way (Message.forwarding, MessageWebhookPayload.thread...),
    but under OAS 3.0.3 `nullable` does not reach into allOf, so a validator rejects the null
    that the real API sends.
    """
    if isinstance(node, dict):
        if node.get("nullable") is True and "allOf" in node:
            all_of = node.pop("allOf")
            node["anyOf"] = [{"enum": [None], "nullable": True}, {"allOf": all_of}]
        for value in node.values():
            _let_null_through_allof(value)
    elif isinstance(node, list):
        for value in node:
            _let_null_through_allof(value)


@functools.cache
def _registry() -> Registry:
    spec = copy.deepcopy(load_spec())
    _let_null_through_allof(spec)
    strict = copy.deepcopy(spec)
    _forbid_unknown_fields(strict)
    return Registry().with_resources(
        [
            (_SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4)),
            (_STRICT_SPEC_URI, Resource.from_contents(strict, default_specification=DRAFT4)),
        ]
    )


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checkers.update(oas30_format_checker.checkers)
    # The spec types thread chat ids as int64 (its example is 2637266155) but every field that
    # takes a chat id (entity_id, /chats/{id}) as int32; the real server accepts them, so int32
    # is checked as int64 to avoid false violations.
    checker.checkers["int32"] = oas30_format_checker.checkers["int64"]
    return checker


@functools.cache
def _validator(pointer: str, strict: bool) -> OAS30Validator:
    uri = _STRICT_SPEC_URI if strict else _SPEC_URI
    return OAS30Validator(
        {"$ref": f"{uri}#{pointer}"}, registry=_registry(), format_checker=_format_checker()
    )


def spec_errors(pointer: str, instance: Any, *, strict: bool = False) -> list[str]:
    """Errors of `instance` against the spec node at JSON pointer `pointer`, e.g.
    "/components/schemas/Message"; [] when valid. `strict` also rejects unknown fields."""
    errors = _validator(pointer, strict).iter_errors(instance)
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" if e.absolute_path else e.message
        for e in errors
    )


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # below FAKE_API_PREFIX, e.g. "/messages/1001"
    query: dict[str, str]
    json: Any  # the parsed body; None when there was none or it was not JSON
    body: bytes
    headers: dict[str, str]
    at: float  # event-loop time, to check pacing (e.g. that Retry-After was honoured)


@dataclass(frozen=True)
class Violation:
    method: str
    path: str
    errors: list[str]
    body: Any


@dataclass
class _Fault:
    remaining: int
    method: str | None
    path: str | None  # an fnmatch pattern below the prefix, e.g. "/messages*"
    respond: Callable[[], web.Response] | None = None  # answered instead of handling
    stream: Handler | None = None  # likewise, for an answer written piece by piece
    delay: float = 0.0
    delay_after_handling: bool = False
    gate: asyncio.Event | None = None  # handled only once this is set

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path is None or fnmatch.fnmatchcase(path, self.path))
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _api_error(
    status: int,
    code: str,
    message: str,
    *,
    key: str = "base",
    headers: dict[str, str] | None = None,
) -> web.Response:
    item = {"key": key, "value": None, "message": message, "code": code, "payload": None}
    return web.json_response({"errors": [item]}, status=status, headers=headers)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _data(obj: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": obj}, status=status)


# --- the fake -------------------------------------------------------------------------------


class FakePachca:
    # Ids come from separate ranges so a mixed-up id (thread.id for thread.chat_id, a message id
    # for a chat id) lands somewhere visibly wrong instead of coinciding by luck.
    FIRST_MESSAGE_ID = 1001
    FIRST_THREAD_ID = 5001
    FIRST_THREAD_CHAT_ID = 900_001
    FIRST_DIRECT_CHAT_ID = 700_001

    def __init__(self, token: str = "test-token", *, bot_user_id: int = 1) -> None:
        self.token = token
        self.bot_user_id = bot_user_id
        self.base_url: str | None = None  # set by serve()
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.messages: dict[int, Json] = {}  # spec `Message` objects by id, deleted ones kept
        self.threads: dict[int, Json] = {}  # spec `Thread` objects by thread id
        self.webhook_events: list[Json] = []  # spec `WebhookEvent` objects, oldest first
        self._members: dict[int, set[int]] = {}
        self._direct_chats: dict[int, int] = {}  # user id -> chat id
        self._faults: list[_Fault] = []
        self._message_ids = itertools.count(self.FIRST_MESSAGE_ID)
        self._thread_ids = itertools.count(self.FIRST_THREAD_ID)
        self._thread_chat_ids = itertools.count(self.FIRST_THREAD_CHAT_ID)
        self._direct_chat_ids = itertools.count(self.FIRST_DIRECT_CHAT_ID)
        self._event_ids = itertools.count(1)
        self._closing = asyncio.Event()
        self.app = self._build_app()

    async def serve(self, aiohttp_server: Callable[[web.Application], Awaitable[Any]]) -> str:
        """Start on loopback with pytest-aiohttp's `aiohttp_server`; return the API base URL."""
        server = await aiohttp_server(self.app)
        self.base_url = str(server.make_url(FAKE_API_PREFIX))
        return self.base_url

    # --- assertions helpers ---------------------------------------------------------------

    def requests_to(
        self, method: str | None = None, path: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests by method and path (an fnmatch pattern, e.g. "/messages/*")."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (path is None or fnmatch.fnmatchcase(r.path, path))
        ]

    def members(self, chat_id: int) -> set[int]:
        """Users added to a chat through POST /chats/{id}/members (a copy)."""
        return set(self._members.get(chat_id, ()))

    def thread_of(self, message_id: int) -> Json | None:
        return next((t for t in self.threads.values() if t["message_id"] == message_id), None)

    def chat_messages(self, chat_id: int) -> list[Json]:
        """Undeleted messages of a chat (a thread's chat too), oldest first."""
        return [
            m for m in self.messages.values() if m["chat_id"] == chat_id and not m["deleted_at"]
        ]

    # --- scripting failures ---------------------------------------------------------------
    # Each applies to the next `n` requests matching `method`/`path` (any when None), after the
    # token check. The failed request is not applied to the state, except with
    # hang_next(after_handling=True). Scripted faults are used in the order they were added.

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        def respond() -> web.Response:
            if status in (401, 403):  # the spec answers these with OAuthError
                return _oauth_error(status, "forbidden", "Scripted failure")
            return _api_error(status, "unhandled", "Scripted failure")

        self._faults.append(_Fault(n, method, path, respond=respond))

    def rate_limit_next(
        self,
        n: int = 1,
        *,
        retry_after: float | str = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """429, code rate_limit, `Retry-After: retry_after` (a number, or any string)."""
        if isinstance(retry_after, float) and retry_after.is_integer():
            retry_after = int(retry_after)
        headers = {"Retry-After": str(retry_after)}

        def respond() -> web.Response:
            return _api_error(429, "rate_limit", "Too many requests", headers=headers)

        self._faults.append(_Fault(n, method, path, respond=respond))

    def hang_next(
        self,
        n: int = 1,
        *,
        seconds: float = 30.0,
        after_handling: bool = False,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Delay the answer. With `after_handling` the request is applied first and only the
        response is late: a client that times out does not know its message was created."""
        self._faults.append(
            _Fault(n, method, path, delay=seconds, delay_after_handling=after_handling)
        )

    def hold_next(
        self, n: int = 1, *, method: str | None = None, path: str | None = None
    ) -> asyncio.Event:
        """Keep the next `n` matching requests waiting until the returned event is set, then
        handle them normally: a Pachca that is slow for exactly as long as a test needs."""
        gate = asyncio.Event()
        self._faults.append(_Fault(n, method, path, gate=gate))
        return gate

    def malformed_next(
        self,
        n: int = 1,
        *,
        kind: MalformedKind = "html_502",
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """kind: "html_502" (a proxy's error page), "garbage_200" (200, body not JSON) or
        "wrong_shape_200" (200, JSON without the documented `data`)."""
        responses: dict[str, Callable[[], web.Response]] = {
            "html_502": lambda: web.Response(
                status=502,
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            ),
            "garbage_200": lambda: web.Response(
                status=200, text='{"data": {"id": 1', content_type="application/json"
            ),
            "wrong_shape_200": lambda: web.json_response({"result": "ok"}),
        }
        self._faults.append(_Fault(n, method, path, respond=responses[kind]))

    def huge_next(
        self,
        n: int = 1,
        *,
        size: int = 8 * 1024 * 1024,
        status: int = 200,
        document: Any = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer with `size` bytes, written in 64 KiB pieces with no Content-Length (so a
        client learns the size only by reading): a hostile server. The body is `document` as
        JSON (when given) padded with whitespace, so a client without a cap would take it for
        a good answer. The request is not applied."""

        async def stream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(status=status)
            response.content_type = "application/json"
            response.enable_chunked_encoding()
            await response.prepare(request)
            piece = b" " * 65536
            try:
                if document is not None:
                    await response.write(json.dumps(document).encode())
                for _ in range(0, size, len(piece)):
                    await response.write(piece)
                await response.write_eof()
            except ConnectionError:
                pass  # the client stopped reading and left, as it should
            return response

        self._faults.append(_Fault(n, method, path, stream=stream))

    # --- seeding --------------------------------------------------------------------------

    def post_as_user(
        self,
        user_id: int,
        *,
        entity_id: int,
        content: str,
        entity_type: str = "discussion",
        parent_message_id: int | None = None,
    ) -> Json:
        """Store a message written by a person in Pachca (not through the API); returns it."""
        message = self._new_message(
            user_id=user_id,
            entity_type=entity_type,
            entity_id=entity_id,
            content=content,
            parent_message_id=parent_message_id,
        )
        if isinstance(message, web.Response):
            raise ValueError(f"cannot post to {entity_type} {entity_id}: {message.text}")
        return message

    def webhook_payload(self, message_id: int, event: str = "new") -> Json:
        """The `MessageWebhookPayload` Pachca would send for a stored message."""
        m = self.messages[message_id]
        thread = self.threads.get(m["entity_id"]) if m["entity_type"] == "thread" else None
        payload = {
            "type": "message",
            "id": m["id"],
            "event": event,
            "entity_type": m["entity_type"],
            "entity_id": m["entity_id"],
            "content": m["content"],
            "user_id": m["user_id"],
            "created_at": m["created_at"],
            "changed_at": m["changed_at"],
            "url": m["url"],
            "chat_id": m["chat_id"],
            "parent_message_id": m["parent_message_id"],
            "thread": {
                "message_id": thread["message_id"],
                "message_chat_id": thread["message_chat_id"],
            }
            if thread
            else None,
            "webhook_timestamp": int(time.time()),
        }
        errors = spec_errors("/components/schemas/MessageWebhookPayload", payload)
        assert not errors, errors  # a bug in this fake, not in the code under test
        return payload

    def add_webhook_event(
        self, payload: Json, *, event_type: str | None = None, created_at: str | None = None
    ) -> Json:
        """Save a webhook in the history read by GET /webhooks/events; returns the event."""
        errors = spec_errors("/components/schemas/WebhookPayloadUnion", payload)
        if errors:
            raise ValueError(f"not a Pachca webhook payload: {errors}")
        if event_type is None:  # e.g. "message_new", as in the spec's example
            event_type = "_".join(str(payload[k]) for k in ("type", "event") if k in payload)
        # Zero-padded so string order is creation order, like the ULIDs Pachca uses.
        event = {
            "id": f"01FAKE{next(self._event_ids):020d}",
            "event_type": event_type,
            "payload": payload,
            "created_at": created_at or _now(),
        }
        self.webhook_events.append(event)
        return event

    # --- the app --------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        # `{id:\d+}`: integer ids, as in the spec. A route's canonical form drops the regex,
        # giving back the spec's path template, which is how the middleware finds the operation.
        int_id = r"{id:\d+}"
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/messages", self._create_message),
            ("GET", f"/messages/{int_id}", self._get_message),
            ("PUT", f"/messages/{int_id}", self._update_message),
            ("DELETE", f"/messages/{int_id}", self._delete_message),
            ("POST", f"/messages/{int_id}/thread", self._create_thread),
            ("POST", f"/chats/{int_id}/members", self._add_members),
            ("GET", "/webhooks/events", self._list_events),
            ("DELETE", "/webhooks/events/{id}", self._delete_event),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, FAKE_API_PREFIX + path, handler)

        async def wake_hung_requests(_: web.Application) -> None:
            self._closing.set()  # so a test's teardown does not wait out a hang

        app.on_shutdown.append(wake_hung_requests)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path.removeprefix(FAKE_API_PREFIX)
        raw = await request.read()
        body: Any = None
        body_error = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = "request body is not JSON"
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=path,
                query=dict(request.query),
                json=body,
                body=raw,
                headers=dict(request.headers),
                at=asyncio.get_running_loop().time(),
            )
        )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _oauth_error(401, "invalid_token", "Access token is missing or invalid")

        if request.match_info.http_exception is not None:
            self._violation(request, path, body, ["endpoint not in the spec or not faked"])
            return _api_error(404, "not_found", "No such endpoint in the fake")
        template = request.match_info.route.resource.canonical.removeprefix(FAKE_API_PREFIX)

        errors = [body_error] if body_error else self._request_errors(request, template, body)
        if errors:
            self._violation(request, path, body, errors)

        fault = next((f for f in self._faults if f.matches(request.method, path)), None)
        if fault is not None:
            fault.remaining -= 1
            if fault.gate is not None:
                await self._wait_for(fault.gate)
            if not fault.delay_after_handling:
                await self._sleep(fault.delay)
            if fault.respond is not None:
                return fault.respond()
            if fault.stream is not None:
                return await fault.stream(request)
        if errors:
            return _api_error(400, "invalid", "; ".join(errors))
        response = await handler(request)
        if fault is not None and fault.delay_after_handling:
            await self._sleep(fault.delay)
        return response

    def _request_errors(self, request: web.Request, template: str, body: Any) -> list[str]:
        method = request.method.lower()
        operation = load_spec()["paths"][template][method]
        errors = self._query_errors(template, method, operation, request.query)
        if "requestBody" not in operation:
            return errors
        if body is None:
            return [*errors, "request body is required"]
        if request.content_type != "application/json":
            errors.append(f"Content-Type {request.content_type!r} is not application/json")
        schema = ("requestBody", "content", "application/json", "schema")
        return errors + spec_errors(_pointer("paths", template, method, *schema), body, strict=True)

    @staticmethod
    def _query_errors(template: str, method: str, operation: Json, query: Any) -> list[str]:
        params = {
            p["name"]: (i, p)
            for i, p in enumerate(operation.get("parameters", []))
            if p["in"] == "query"
        }
        errors = [
            f"?{name}: not a parameter of this method" for name in query if name not in params
        ]
        for name, (index, param) in params.items():
            if name not in query:
                continue
            value: Any = query[name]
            if param["schema"].get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    errors.append(f"?{name}: {value!r} is not an integer")
                    continue
            pointer = _pointer("paths", template, method, "parameters", str(index), "schema")
            errors += [f"?{name}: {e}" for e in spec_errors(pointer, value)]
        return errors

    def _violation(self, request: web.Request, path: str, body: Any, errors: list[str]) -> None:
        self.violations.append(Violation(request.method, path, errors, body))

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    async def _wait_for(self, gate: asyncio.Event) -> None:
        """Until ``gate`` is set or the fake shuts down."""
        waits = [asyncio.ensure_future(e.wait()) for e in (gate, self._closing)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    # --- handlers -------------------------------------------------------------------------

    async def _create_message(self, request: web.Request) -> web.Response:
        fields = (await request.json())["message"]
        message = self._new_message(
            user_id=self.bot_user_id,
            entity_type=fields.get("entity_type", "discussion"),
            entity_id=fields["entity_id"],
            content=fields["content"],
            parent_message_id=fields.get("parent_message_id"),
            # Present (maybe null) on every bot message, absent on people's, as in the spec.
            display={
                "display_name": fields.get("display_name"),
                "display_avatar_url": fields.get("display_avatar_url"),
            },
        )
        if isinstance(message, web.Response):
            return message
        return _data(message, status=201)

    async def _get_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["id"]))
        if message is None:
            return _api_error(404, "not_found", "Message not found")
        # guess: a deleted message is still returned, with deleted_at set (the spec documents
        # the field and says only lists leave deleted messages out).
        return _data(message)

    async def _update_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["id"]))
        if message is None:
            return _api_error(404, "not_found", "Message not found")
        if message["deleted_at"]:
            # guess: the status; the code `message_deleted` is the spec's.
            return _api_error(422, "message_deleted", "Message is deleted")
        if message["user_id"] != self.bot_user_id:
            # guess: only the author can edit.
            return _oauth_error(403, "forbidden", "Only the author can edit a message")
        fields = (await request.json())["message"]
        for key in ("content", "display_name", "display_avatar_url"):
            if key in fields:
                message[key] = fields[key]
        message["changed_at"] = _now()
        return _data(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["id"]))
        # guess: deleting twice is a 404, like deleting a message that never existed.
        if message is None or message["deleted_at"]:
            return _api_error(404, "not_found", "Message not found")
        message["deleted_at"] = _now()
        return web.Response(status=204)

    async def _create_thread(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["id"]))
        if message is None or message["deleted_at"]:
            return _api_error(404, "not_found", "Message not found")
        if message["entity_type"] == "thread":
            # guess: the status; the code `thread_message` is the spec's.
            return _api_error(422, "thread_message", "Message is inside a thread")
        existing = self.thread_of(message["id"])
        if existing is not None:
            return _data(existing, status=201)  # idempotent, per the spec's description
        thread = {
            "id": next(self._thread_ids),
            "chat_id": next(self._thread_chat_ids),
            "message_id": message["id"],
            "message_chat_id": message["chat_id"],
            "updated_at": _now(),
        }
        self.threads[thread["id"]] = thread
        message["thread"] = {"id": thread["id"], "chat_id": thread["chat_id"]}
        return _data(thread, status=201)

    async def _add_members(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._members.setdefault(int(request.match_info["id"]), set()).update(body["member_ids"])
        return web.Response(status=204)

    async def _list_events(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", 50))
        after = ""
        if "cursor" in request.query:
            try:
                after = json.loads(base64.urlsafe_b64decode(request.query["cursor"]))["after"]
            except (ValueError, KeyError, TypeError):
                return _api_error(400, "invalid", "Bad cursor", key="cursor")
        pending = [e for e in self.webhook_events if e["id"] > after]
        page = pending[:limit]
        last = page[-1]["id"] if page else after
        cursor = base64.urlsafe_b64encode(json.dumps({"after": last}).encode()).decode()
        meta = {
            "paginate": {
                "next_page": cursor,
                "has_next": len(pending) > limit,
                "has_prev": bool(after),
            }
        }
        return web.json_response({"data": page, "meta": meta})

    async def _delete_event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        if not any(e["id"] == event_id for e in self.webhook_events):
            return _api_error(404, "not_found", "Event not found")
        self.webhook_events = [e for e in self.webhook_events if e["id"] != event_id]
        return web.Response(status=204)

    # --- state ----------------------------------------------------------------------------

    def _new_message(
        self,
        *,
        user_id: int,
        entity_type: str,
        entity_id: int,
        content: str,
        parent_message_id: int | None,
        display: dict[str, str | None] | None = None,
    ) -> Json | web.Response:
        entity_type = entity_type.lower()  # the spec: the value is case-insensitive
        thread: Json | None = None
        # Unknown targets are 422 here: the spec lists no 404 for POST /messages.
        if entity_type == "thread":
            thread = self.threads.get(entity_id)
            if thread is None:
                return _api_error(422, "not_found", "Thread not found", key="entity_id")
        elif entity_type == "discussion":
            # A thread is a chat too: posting to its chat id posts into the thread.
            thread = next((t for t in self.threads.values() if t["chat_id"] == entity_id), None)
        if thread is not None:
            entity_type, entity_id = "thread", thread["id"]
            chat_id, root_chat_id = thread["chat_id"], thread["message_chat_id"]
        elif entity_type == "user":
            chat_id = self._direct_chats.setdefault(entity_id, next(self._direct_chat_ids))
            root_chat_id = chat_id
        else:
            chat_id = root_chat_id = entity_id
        if parent_message_id is not None and parent_message_id not in self.messages:
            return _api_error(422, "not_found", "Parent message not found", key="parent_message_id")
        message_id = next(self._message_ids)
        now = _now()
        message = {
            "id": message_id,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "chat_id": chat_id,
            "root_chat_id": root_chat_id,
            "content": content,
            "user_id": user_id,
            "created_at": now,
            "url": f"https://app.pachca.com/chats/{chat_id}?message={message_id}",
            "files": [],
            "voice_content": None,
            "buttons": None,
            "thread": None,
            "forwarding": None,
            "parent_message_id": parent_message_id,
            **(display or {}),
            "changed_at": now,
            "deleted_at": None,
        }
        self.messages[message_id] = message
        return message
