"""An in-memory imitation of the parts of the Pachca API the bridge uses, served by aiohttp:
the tests' fake Pachca and the sandbox of `pachca-bridge demo` (one implementation).

    sandbox = PachcaSandbox(token="t")
    base_url = await sandbox.serve(aiohttp_server)          # what `pachca.api_url` points at
    ...
    assert sandbox.violations == []

Every request body and query is validated against Pachca's own OpenAPI spec (spec.py). A request
that breaks it is answered 400 and recorded in `violations`, so a test can prove the bridge speaks
the real API. Unknown fields count as violations too (the spec does not forbid them, but the real
server would drop them silently, which hides typos). Answers are checked against the spec's
response schemas as well; a mismatch (a bug here) lands in `answer_errors`.

What it imitates: messages (with files) and threads, chat members, reactions, uploads (`POST
/uploads`, the bucket's direct upload and presigned downloads: storage.py), the webhook history
(`GET /webhooks/events`), and outgoing webhooks (outgoing.py): with `webhook_url` set, every event
of a message, reaction or chat member is sent there signed with `signing_secret`, and with
`save_history` it is also kept for `GET /webhooks/events`. People act through the `*_as_user`
methods (what a person does in the Pachca app); the bot acts through the API. Scripted failures:
faults.py. The page where a person acts: page.py.

Behaviour the spec does not pin down is a documented guess, marked "guess" below.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web

from sandbox import page
from sandbox.faults import (
    FaultScript,
    FormPart,
    Handler,
    Json,
    RecordedRequest,
    SandboxError,
    Violation,
    api_error,
    data,
    now_iso,
    oauth_error,
)
from sandbox.outgoing import Delivery, WebhookSender
from sandbox.spec import load_spec, pointer, schema_errors, spec_errors
from sandbox.storage import NewFile, ObjectStore, UploadRefused
from sandbox.webhooks import chat_member_event, message_event, payload_errors, reaction_event

API_PREFIX = "/api/shared/v1"
# Where direct uploads go (the path of the spec's example `direct_url`); recorded as DIRECT_URL,
# the spec's name for that operation, so faults and `requests_to` can name it.
DIRECT_UPLOAD_PATH = "/api/v3/direct_upload"
DIRECT_URL = "/direct_url"
_RECORD = web.RequestKey("sandbox_record", RecordedRequest)
_INT_ID = r"{id:\d+}"
# guess: a reaction code must look like an emoji; the spec only says "Emoji symbol".
_NOT_EMOJI = re.compile(r"[A-Za-z\s]")
_EMOJI_NAMES = {
    "👍": ":+1:",
    "👎": ":-1:",
    "❤️": ":heart:",
    "😂": ":joy:",
    "🔥": ":fire:",
    "🎉": ":tada:",
    "👀": ":eyes:",
    "✅": ":white_check_mark:",
    "🙏": ":pray:",
    "😊": ":blush:",
}
MAX_REACTIONS_PER_USER = 20
MAX_REACTIONS_PER_MESSAGE = 30
MAX_REACTIONS = 1000


class PachcaSandbox(FaultScript):
    # Ids come from separate ranges so a mixed-up id (thread.id for thread.chat_id, a message id
    # for a chat id) lands somewhere visibly wrong instead of coinciding by luck.
    FIRST_MESSAGE_ID = 1001
    FIRST_THREAD_ID = 5001
    FIRST_THREAD_CHAT_ID = 900_001
    FIRST_DIRECT_CHAT_ID = 700_001

    def __init__(
        self,
        token: str = "test-token",
        *,
        bot_user_id: int = 1,
        bot_name: str = "Bot",
        webhook_url: str | None = None,
        signing_secret: str = "",
        save_history: bool = False,
        ignore_own_messages: bool = False,
    ) -> None:
        self.token = token
        self.bot_user_id = bot_user_id
        self.base_url: str | None = None  # the API's base URL, set by serve() and start()
        self.origin: str | None = None  # scheme://host:port, for the links it gives out
        # Pachca's bot settings: "save event history", "ignore own messages".
        self.save_history = save_history
        self.ignore_own_messages = ignore_own_messages
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.answer_errors: list[str] = []  # answers off the spec: bugs of the sandbox
        self.messages: dict[int, Json] = {}  # spec `Message` objects by id, deleted ones kept
        self.threads: dict[int, Json] = {}  # spec `Thread` objects by thread id
        self.reactions: dict[int, list[Json]] = {}  # spec `Reaction` objects by message id
        self.webhook_events: list[Json] = []  # spec `WebhookEvent` objects, oldest first
        self.emitted: list[Json] = []  # every webhook body the sandbox made, oldest first
        self.users: dict[int, str] = {bot_user_id: bot_name}  # people (and the bot) by id
        self.chat_names: dict[int, str] = {}  # channels the page names
        self.store = ObjectStore()
        self.sender = WebhookSender(on_change=self._touch)
        self.sender.url = webhook_url
        self.sender.secret = signing_secret
        self._members: dict[int, set[int]] = {}
        self._owners: dict[int, int] = {}  # chat id -> the user who made it (not removable)
        self._direct_chats: dict[int, int] = {}  # user id -> chat id
        self._faults = []
        self._message_ids = itertools.count(self.FIRST_MESSAGE_ID)
        self._thread_ids = itertools.count(self.FIRST_THREAD_ID)
        self._thread_chat_ids = itertools.count(self.FIRST_THREAD_CHAT_ID)
        self._direct_chat_ids = itertools.count(self.FIRST_DIRECT_CHAT_ID)
        self._event_ids = itertools.count(1)
        self._file_ids = itertools.count(3001)
        self._closing = asyncio.Event()
        self.version = 0  # grows with every change of state (the page waits on it)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    # --- running ----------------------------------------------------------------------------

    async def serve(self, aiohttp_server: Callable[[web.Application], Awaitable[Any]]) -> str:
        """Start on loopback with pytest-aiohttp's `aiohttp_server`; return the API base URL."""
        server = await aiohttp_server(self.app)
        self._started_at(str(server.make_url("")).rstrip("/"))
        assert self.base_url is not None
        return self.base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on `host`:`port` (0: any free port) until stop(); return the API base URL."""
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        bound = self._runner.addresses[0][1]
        self._started_at(f"http://{host}:{bound}")
        assert self.base_url is not None
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _started_at(self, origin: str) -> None:
        self.origin = origin
        self.base_url = origin + API_PREFIX

    # --- webhooks out -----------------------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        return self.sender.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.sender.url = url

    @property
    def signing_secret(self) -> str:
        return self.sender.secret

    @signing_secret.setter
    def signing_secret(self, secret: str) -> None:
        self.sender.secret = secret

    @property
    def deliveries(self) -> list[Delivery]:
        """Webhooks sent (or being sent) to `webhook_url`, oldest first."""
        return self.sender.deliveries

    async def deliveries_done(self) -> None:
        """Until every webhook queued so far has been delivered or given up."""
        await self.sender.drained()

    def _emit(self, payload: Json, *, actor: int | None = None) -> None:
        """An event happened: keep it in the history (with "save event history" on) and send it
        to the webhook URL (when set). The bot's own events are skipped with
        `ignore_own_messages`, as Pachca's bot setting of that name does."""
        errors = payload_errors(payload)
        assert not errors, errors  # a bug in the sandbox, not in the code under test
        if self.ignore_own_messages and actor == self.bot_user_id:
            return
        self.emitted.append(payload)
        if self.save_history:
            self.add_webhook_event(payload)
        if self.sender.url is not None:
            self.sender.enqueue(payload)

    # --- assertions helpers -----------------------------------------------------------------

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
        """Users added to a chat through POST /chats/{id}/members or add_members (a copy)."""
        return set(self._members.get(chat_id, ()))

    def thread_of(self, message_id: int) -> Json | None:
        return next((t for t in self.threads.values() if t["message_id"] == message_id), None)

    def thread_by_chat(self, chat_id: int) -> Json | None:
        return next((t for t in self.threads.values() if t["chat_id"] == chat_id), None)

    def chat_messages(self, chat_id: int) -> list[Json]:
        """Undeleted messages of a chat (a thread's chat too), oldest first."""
        return [
            m for m in self.messages.values() if m["chat_id"] == chat_id and not m["deleted_at"]
        ]

    def reactions_of(self, message_id: int) -> list[Json]:
        """The message's reactions (spec `Reaction`), oldest first (a copy)."""
        return list(self.reactions.get(message_id, ()))

    def object_bytes(self, key: str) -> bytes:
        stored = self.store.objects.get(key)
        return stored.data if stored is not None else b""

    def file_bytes(self, file: Json) -> bytes:
        """The bytes behind a `File` of a message."""
        return self.store.objects[file["key"]].data

    # --- seeding, and what people do in the app ---------------------------------------------

    def add_user(self, user_id: int, name: str) -> None:
        """A person of the company (the page lets one act as them)."""
        self.users[user_id] = name
        self._touch()

    def name_chat(self, chat_id: int, name: str, member_ids: Iterable[int] = ()) -> None:
        """Name a channel (the page shows it), with its members (who see all its threads)."""
        self.chat_names[chat_id] = name
        self._members.setdefault(chat_id, set()).update(member_ids)
        self._touch()

    def post_as_user(
        self,
        user_id: int,
        *,
        entity_id: int,
        content: str,
        entity_type: str = "discussion",
        parent_message_id: int | None = None,
        files: Sequence[NewFile] = (),
    ) -> Json:
        """A message written by a person in Pachca (not through the API); returns it. With
        `files`, they are stored as if uploaded in the app. Emits `message`/`new`."""
        attached = [self._person_file(f) for f in files]
        message = self._new_message(
            user_id=user_id,
            entity_type=entity_type,
            entity_id=entity_id,
            content=content,
            parent_message_id=parent_message_id,
            files=attached,
        )
        self._emit(self.webhook_payload(message["id"]), actor=user_id)
        return message

    def edit_as_user(self, user_id: int, message_id: int, content: str) -> Json:
        """A person edits their message; emits `message`/`update`."""
        message = self._editable(message_id, user_id)
        message["content"] = content
        message["changed_at"] = now_iso()
        self._touch()
        self._emit(self.webhook_payload(message_id, "update"), actor=user_id)
        return message

    def delete_as_user(self, user_id: int, message_id: int) -> Json:
        """A person deletes their message; emits `message`/`delete`."""
        message = self._editable(message_id, user_id)
        self._delete(message, actor=user_id)
        return message

    def react_as_user(
        self, user_id: int, message_id: int, code: str, name: str | None = None
    ) -> Json:
        """A person reacts; emits `reaction`/`new` (nothing when they already hold it)."""
        return self._react(user_id, message_id, code, name)

    def unreact_as_user(self, user_id: int, message_id: int, code: str) -> None:
        """A person takes their reaction back; emits `reaction`/`delete`."""
        self._unreact(user_id, message_id, code)

    def add_members(self, chat_id: int, user_ids: Iterable[int]) -> list[int]:
        """Add people to a chat (a thread's chat too); emits `chat_member`/`add` for those
        who were not members yet, and returns them."""
        current = self._members.setdefault(chat_id, set())
        added = [u for u in dict.fromkeys(user_ids) if u not in current]
        if added:
            current.update(added)
            self._touch()
            self._emit(self._member_payload("add", chat_id, added))
        return added

    def remove_member(self, chat_id: int, user_id: int) -> None:
        """Remove a member; emits `chat_member`/`remove`. The chat's owner cannot be removed."""
        if self._owners.get(chat_id) == user_id:
            # guess: the status; the code is the spec's.
            raise SandboxError(422, "cannot_kick_owner", "The chat's owner cannot be removed")
        current = self._members.get(chat_id, set())
        if user_id not in current:
            # guess: the status and code; the spec lists 404 for this method.
            raise SandboxError(404, "not_found", "Not a member of the chat", key="user_id")
        current.discard(user_id)
        self._touch()
        self._emit(self._member_payload("remove", chat_id, [user_id]))

    def webhook_payload(self, message_id: int, event: str = "new") -> Json:
        """The `MessageWebhookPayload` Pachca would send for a stored message."""
        m = self.messages[message_id]
        thread = self.threads.get(m["entity_id"]) if m["entity_type"] == "thread" else None
        payload = message_event(
            event,  # type: ignore[arg-type]
            id=m["id"],
            chat_id=m["chat_id"],
            entity_type=m["entity_type"],
            entity_id=m["entity_id"],
            content=m["content"],
            user_id=m["user_id"],
            parent_message_id=m["parent_message_id"],
            thread=(
                {"message_id": thread["message_id"], "message_chat_id": thread["message_chat_id"]}
                if thread
                else None
            ),
            created_at=m["created_at"],
            changed_at=m["changed_at"],
            url=m["url"],
        )
        errors = payload_errors(payload)
        assert not errors, errors  # a bug in the sandbox, not in the code under test
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
            "created_at": created_at or now_iso(),
        }
        self.webhook_events.append(event)
        return event

    # --- the app ----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        # `{id:\d+}`: integer ids, as in the spec. A route's canonical form drops the regex,
        # giving back the spec's path template, which is how the middleware finds the operation.
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/messages", self._create_message),
            ("GET", f"/messages/{_INT_ID}", self._get_message),
            ("PUT", f"/messages/{_INT_ID}", self._update_message),
            ("DELETE", f"/messages/{_INT_ID}", self._delete_message),
            ("POST", f"/messages/{_INT_ID}/thread", self._create_thread),
            ("POST", f"/messages/{_INT_ID}/reactions", self._add_reaction),
            ("DELETE", f"/messages/{_INT_ID}/reactions", self._remove_reaction),
            ("POST", f"/chats/{_INT_ID}/members", self._add_members),
            ("DELETE", f"/chats/{_INT_ID}/members/{{user_id:\\d+}}", self._remove_member),
            ("POST", "/uploads", self._create_upload),
            ("GET", "/webhooks/events", self._list_events),
            ("DELETE", "/webhooks/events/{id}", self._delete_event),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, API_PREFIX + path, handler)
        app.router.add_post(DIRECT_UPLOAD_PATH, self._direct_upload)
        app.router.add_get("/{key:attaches/.+}", self._download)
        page.setup(app, self)

        async def start_sender(_: web.Application) -> None:
            await self.sender.start()

        async def wake_waiters(_: web.Application) -> None:
            self._closing.set()  # so a test's teardown does not wait out a hang

        async def stop_sender(_: web.Application) -> None:
            await self.sender.stop()

        app.on_startup.append(start_sender)
        app.on_shutdown.append(wake_waiters)
        app.on_cleanup.append(stop_sender)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.origin is None:
            self.origin = str(request.url.origin())
        if request.path.startswith(API_PREFIX):
            return await self._api_request(request, handler)
        if request.path == DIRECT_UPLOAD_PATH or request.path.startswith("/attaches/"):
            return await self._storage_request(request, handler)
        return await handler(request)  # the page and its own API

    def _record(self, request: web.Request, path: str, body: Any, raw: bytes) -> RecordedRequest:
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=body,
            body=raw,
            headers=dict(request.headers),
            at=asyncio.get_running_loop().time(),
        )
        self.requests.append(record)
        return record

    async def _api_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        raw = await request.read()
        body: Any = None
        body_error = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = "request body is not JSON"
        self._record(request, path, body, raw)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return oauth_error(401, "invalid_token", "Access token is missing or invalid")

        if request.match_info.http_exception is not None:
            self._violation(request.method, path, body, ["endpoint not in the spec or faked"])
            return api_error(404, "not_found", "No such endpoint in the sandbox")
        template = request.match_info.route.resource.canonical.removeprefix(API_PREFIX)

        errors = [body_error] if body_error else self._request_errors(request, template, body)
        if errors:
            self._violation(request.method, path, body, errors)

        fault = self.take_fault(request.method, path)
        answer = await self.apply_fault(fault, request)
        if answer is not None:
            return answer
        if errors:
            return api_error(400, "invalid", "; ".join(errors))
        try:
            response = await handler(request)
        except SandboxError as refused:
            response = refused.response()
        self._check_answer(request.method.lower(), template, response)
        if fault is not None and fault.delay_after_handling:
            await self.sleep(fault.delay)
        return response

    async def _storage_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The bucket: no token (the upload form and the links carry their own signatures)."""
        path = DIRECT_URL if request.path == DIRECT_UPLOAD_PATH else request.path
        request[_RECORD] = self._record(request, path, None, b"")
        fault = self.take_fault(request.method, path)
        answer = await self.apply_fault(fault, request)
        if answer is not None:
            return answer
        response = await handler(request)
        if fault is not None and fault.delay_after_handling:
            await self.sleep(fault.delay)
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
        return errors + spec_errors(pointer("paths", template, method, *schema), body, strict=True)

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
                if param.get("required"):
                    errors.append(f"?{name}: a required parameter is missing")
                continue
            value: Any = query[name]
            if param["schema"].get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    errors.append(f"?{name}: {value!r} is not an integer")
                    continue
            at = pointer("paths", template, method, "parameters", str(index), "schema")
            errors += [f"?{name}: {e}" for e in spec_errors(at, value)]
        return errors

    def _check_answer(self, method: str, template: str, response: web.StreamResponse) -> None:
        """Hold the sandbox's own JSON answers to the spec's response schemas."""
        if not isinstance(response, web.Response) or response.content_type != "application/json":
            return
        responses = load_spec()["paths"][template][method]["responses"]
        assert isinstance(response.body, bytes)
        if str(response.status) not in responses:
            if response.status < 400:
                self.answer_errors.append(f"{method} {template}: {response.status} undocumented")
                return
            # The spec lists only some error statuses per method (none of 422 for creating a
            # thread, say, though it documents that error's code): any error has the spec's
            # error shape, at least.
            shape = "OAuthError" if response.status in (401, 403) else "ApiError"
            errors = schema_errors(shape, json.loads(response.body))
            self.answer_errors += [f"{method} {template}: {e}" for e in errors]
            return
        if "content" not in responses[str(response.status)]:
            return
        body = json.loads(response.body)
        at = pointer(
            "paths", template, method, "responses", str(response.status), "content",
            "application/json", "schema",
        )  # fmt: skip
        self.answer_errors += [f"{method} {template}: {e}" for e in spec_errors(at, body)]

    def _violation(self, method: str, path: str, body: Any, errors: list[str]) -> None:
        self.violations.append(Violation(method, path, errors, body))

    # --- API handlers -----------------------------------------------------------------------

    async def _create_message(self, request: web.Request) -> web.Response:
        fields = (await request.json())["message"]
        files = self._api_files(fields.get("files", []))
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
            files=files,
        )
        self._emit(self.webhook_payload(message["id"]), actor=self.bot_user_id)
        return data(message, status=201)

    async def _get_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["id"]))
        if message is None:
            return api_error(404, "not_found", "Message not found")
        # Links are signed afresh on every read, as Pachca's presigned URLs are.
        for file in message["files"]:
            file["url"] = self.store.presigned_url(self._origin(), file["key"])
        # guess: a deleted message is still returned, with deleted_at set (the spec documents
        # the field and says only lists leave deleted messages out).
        return data(message)

    async def _update_message(self, request: web.Request) -> web.Response:
        message = self._editable(int(request.match_info["id"]), self.bot_user_id)
        fields = (await request.json())["message"]
        if "files" in fields:
            message["files"] = self._api_files(fields["files"])
        for key in ("content", "display_name", "display_avatar_url"):
            if key in fields:
                message[key] = fields[key]
        message["changed_at"] = now_iso()
        self._touch()
        self._emit(self.webhook_payload(message["id"], "update"), actor=self.bot_user_id)
        return data(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["id"]))
        # guess: deleting twice is a 404, like deleting a message that never existed.
        if message is None or message["deleted_at"]:
            return api_error(404, "not_found", "Message not found")
        self._delete(message, actor=self.bot_user_id)
        return web.Response(status=204)

    async def _create_thread(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["id"]))
        if message is None or message["deleted_at"]:
            return api_error(404, "not_found", "Message not found")
        if message["entity_type"] == "thread":
            # guess: the status; the code `thread_message` is the spec's.
            return api_error(422, "thread_message", "Message is inside a thread")
        existing = self.thread_of(message["id"])
        if existing is not None:
            return data(existing, status=201)  # idempotent, per the spec's description
        thread = {
            "id": next(self._thread_ids),
            "chat_id": next(self._thread_chat_ids),
            "message_id": message["id"],
            "message_chat_id": message["chat_id"],
            "updated_at": now_iso(),
        }
        self.threads[thread["id"]] = thread
        self._owners[thread["chat_id"]] = self.bot_user_id
        message["thread"] = {"id": thread["id"], "chat_id": thread["chat_id"]}
        self._touch()
        return data(thread, status=201)

    async def _add_members(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.add_members(int(request.match_info["id"]), body["member_ids"])
        return web.Response(status=204)

    async def _remove_member(self, request: web.Request) -> web.Response:
        self.remove_member(int(request.match_info["id"]), int(request.match_info["user_id"]))
        return web.Response(status=204)

    async def _add_reaction(self, request: web.Request) -> web.Response:
        body = await request.json()
        message_id = int(request.match_info["id"])
        reaction = self._react(self.bot_user_id, message_id, body["code"], body.get("name"))
        # The spec's answer is the Reaction itself, without a `data` envelope.
        return web.json_response(reaction, status=201)

    async def _remove_reaction(self, request: web.Request) -> web.Response:
        self._unreact(self.bot_user_id, int(request.match_info["id"]), request.query["code"])
        return web.Response(status=204)

    async def _create_upload(self, request: web.Request) -> web.Response:
        # The spec's answer is UploadParams itself, without a `data` envelope.
        params = self.store.issue(self._origin() + DIRECT_UPLOAD_PATH)
        return web.json_response(params, status=201)

    async def _list_events(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", 50))
        after = ""
        if "cursor" in request.query:
            try:
                after = json.loads(base64.urlsafe_b64decode(request.query["cursor"]))["after"]
            except (ValueError, KeyError, TypeError):
                return api_error(400, "invalid", "Bad cursor", key="cursor")
        pending = [e for e in self.webhook_events if e["id"] > after]
        page_ = pending[:limit]
        last = page_[-1]["id"] if page_ else after
        cursor = base64.urlsafe_b64encode(json.dumps({"after": last}).encode()).decode()
        meta = {
            "paginate": {
                "next_page": cursor,
                "has_next": len(pending) > limit,
                "has_prev": bool(after),
            }
        }
        return web.json_response({"data": page_, "meta": meta})

    async def _delete_event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        if not any(e["id"] == event_id for e in self.webhook_events):
            return api_error(404, "not_found", "Event not found")
        self.webhook_events = [e for e in self.webhook_events if e["id"] != event_id]
        return web.Response(status=204)

    # --- the bucket ---------------------------------------------------------------------------

    async def _direct_upload(self, request: web.Request) -> web.Response:
        record = request[_RECORD]
        try:
            _key, problems = await self.store.receive(request, record.form)
        except UploadRefused as refused:
            if refused.problems:
                self._violation("POST", DIRECT_URL, _form_summary(record.form), refused.problems)
            return refused.response()
        if problems:
            self._violation("POST", DIRECT_URL, _form_summary(record.form), problems)
        return web.Response(status=204)

    async def _download(self, request: web.Request) -> web.Response:
        return self.store.download(request.match_info["key"], request.query)

    # --- state --------------------------------------------------------------------------------

    def _origin(self) -> str:
        return self.origin or "http://127.0.0.1"

    def _touch(self) -> None:
        """Something changed: wake whoever waits for a new version (the page)."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed_after(self, version: int, wait_s: float) -> None:
        """Until the state's version is past `version`, `wait_s` passes, or shutdown."""
        if self.version > version:
            return
        changed = self._changed
        try:
            async with asyncio.timeout(wait_s):
                await self.wait_for(changed)
        except TimeoutError:
            pass

    def _live_message(self, message_id: int) -> Json:
        message = self.messages.get(message_id)
        if message is None or message["deleted_at"]:
            raise SandboxError(404, "not_found", "Message not found")
        return message

    def _editable(self, message_id: int, user_id: int) -> Json:
        message = self.messages.get(message_id)
        if message is None:
            raise SandboxError(404, "not_found", "Message not found")
        if message["deleted_at"]:
            # guess: the status; the code `message_deleted` is the spec's.
            raise SandboxError(422, "message_deleted", "Message is deleted")
        if message["user_id"] != user_id:
            # guess: only the author can edit or delete.
            raise SandboxError(403, "forbidden", "Only the author can change a message")
        return message

    def _delete(self, message: Json, *, actor: int) -> None:
        message["deleted_at"] = now_iso()
        self._touch()
        self._emit(self.webhook_payload(message["id"], "delete"), actor=actor)

    def _react(self, user_id: int, message_id: int, code: str, name: str | None) -> Json:
        message = self._live_message(message_id)
        if not code or len(code) > 32 or _NOT_EMOJI.search(code):
            raise SandboxError(422, "invalid", "Not an emoji", key="code")  # guess
        reactions = self.reactions.setdefault(message_id, [])
        held = next((r for r in reactions if r["user_id"] == user_id and r["code"] == code), None)
        if held is not None:
            return held  # "set already: it will not be set again" (the spec)
        own = {r["code"] for r in reactions if r["user_id"] == user_id}
        codes = {r["code"] for r in reactions}
        # The limits and their codes are the spec's; the status is a guess.
        if len(own) >= MAX_REACTIONS_PER_USER:
            raise SandboxError(422, "user_limit", "20 different reactions per user", key="code")
        if code not in codes and len(codes) >= MAX_REACTIONS_PER_MESSAGE:
            raise SandboxError(422, "unique_limit", "30 different reactions", key="code")
        if len(reactions) >= MAX_REACTIONS:
            raise SandboxError(422, "general_limit", "1000 reactions per message", key="code")
        reaction = {
            "user_id": user_id,
            "created_at": now_iso(),
            "code": code,
            "name": name or _EMOJI_NAMES.get(code, code),
        }
        reactions.append(reaction)
        self._touch()
        self._emit(self._reaction_payload("new", message, reaction), actor=user_id)
        return reaction

    def _unreact(self, user_id: int, message_id: int, code: str) -> None:
        message = self._live_message(message_id)
        reactions = self.reactions.get(message_id, [])
        held = next((r for r in reactions if r["user_id"] == user_id and r["code"] == code), None)
        if held is None:
            # guess: removing a reaction one does not hold is a 404.
            raise SandboxError(404, "not_found", "Reaction not found", key="code")
        reactions.remove(held)
        self._touch()
        self._emit(self._reaction_payload("delete", message, held), actor=user_id)

    def _reaction_payload(self, event: str, message: Json, reaction: Json) -> Json:
        return reaction_event(
            event,  # type: ignore[arg-type]
            message_id=message["id"],
            chat_id=message["chat_id"],
            code=reaction["code"],
            name=reaction["name"],
            user_id=reaction["user_id"],
            created_at=reaction["created_at"],
        )

    def _member_payload(self, event: str, chat_id: int, user_ids: list[int]) -> Json:
        thread = self.thread_by_chat(chat_id)
        return chat_member_event(
            event,  # type: ignore[arg-type]
            chat_id=chat_id,
            thread_id=thread["id"] if thread else None,
            user_ids=user_ids,
            created_at=now_iso(),
        )

    def _api_files(self, fields: list[Json]) -> list[Json]:
        """`File` objects for the `files` of POST/PUT /messages: each key must be uploaded."""
        files = []
        for i, f in enumerate(fields):
            stored = self.store.objects.get(f["key"])
            if stored is None:
                # guess: the status and code of an unknown key.
                raise SandboxError(422, "not_found", "No such uploaded file", key=f"files.{i}.key")
            if _extension(f["name"]) != _extension(f["key"]):
                # The spec: "the extension must match the one in key, or 422 wrong_params".
                raise SandboxError(
                    422, "wrong_params", "The name's extension differs from the key's",
                    key=f"files.{i}.name",
                )  # fmt: skip
            files.append(
                self._file_object(
                    f["key"], f["name"], f.get("file_type", "file"), f.get("width"), f.get("height")
                )
            )
        return files

    def _person_file(self, new: NewFile) -> Json:
        stored = self.store.put(new.name, new.data, new.content_type)
        file_type = "image" if new.content_type.startswith("image/") else "file"
        return self._file_object(stored.key, new.name, file_type, new.width, new.height)

    def _file_object(
        self, key: str, name: str, file_type: str, width: int | None, height: int | None
    ) -> Json:
        return {
            "id": next(self._file_ids),
            "key": key,
            "name": name,
            "file_type": file_type,
            "url": self.store.presigned_url(self._origin(), key),
            "width": width,
            "height": height,
        }

    def _new_message(
        self,
        *,
        user_id: int,
        entity_type: str,
        entity_id: int,
        content: str,
        parent_message_id: int | None,
        display: dict[str, str | None] | None = None,
        files: list[Json] | None = None,
    ) -> Json:
        entity_type = entity_type.lower()  # the spec: the value is case-insensitive
        thread: Json | None = None
        # Unknown targets are 422 here: the spec lists no 404 for POST /messages.
        if entity_type == "thread":
            thread = self.threads.get(entity_id)
            if thread is None:
                raise SandboxError(422, "not_found", "Thread not found", key="entity_id")
        elif entity_type == "discussion":
            # A thread is a chat too: posting to its chat id posts into the thread.
            thread = self.thread_by_chat(entity_id)
        if thread is not None:
            entity_type, entity_id = "thread", thread["id"]
            chat_id, root_chat_id = thread["chat_id"], thread["message_chat_id"]
        elif entity_type == "user":
            chat_id = self._direct_chats.setdefault(entity_id, next(self._direct_chat_ids))
            root_chat_id = chat_id
        else:
            chat_id = root_chat_id = entity_id
        if parent_message_id is not None and parent_message_id not in self.messages:
            raise SandboxError(
                422, "not_found", "Parent message not found", key="parent_message_id"
            )
        message_id = next(self._message_ids)
        now = now_iso()
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
            "files": files or [],
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
        self._touch()
        return message


def _extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def _form_summary(form: list[FormPart]) -> list[list[Any]]:
    """A violation's body for a multipart form: its parts in order, files by name and size."""
    return [
        [p.name, p.value if p.filename is None else f"<file {p.filename!r}, {p.size} bytes>"]
        for p in form
    ]
