"""The sandbox's page: a person (a teacher, say) using Pachca. They see the threads they are
in - each forum chat's thread, under its root message - with the messages as the bridge posted
them, and reply, edit and delete their replies, react, and send files. Every action changes the
sandbox's state the way the Pachca app would, so it reaches the bridge as a signed webhook.

`GET /` is the page (its files in `static/`, read once); `/sandbox/api/...` the JSON it uses:
- `GET state?as=ID[&after=VERSION]`: what person ID sees; with `after`, the answer waits (up to
  25 s) until something changed since that version, so the page follows without polling hard;
- `POST threads/{id}/messages` `{as, content}`, `POST threads/{id}/files` (multipart: `as`,
  `content`, one or more `file`), `PATCH messages/{id}` `{as, content}`,
  `DELETE messages/{id}?as=ID`, `POST messages/{id}/reactions` `{as, code}`,
  `DELETE messages/{id}/reactions?as=ID&code=...`.
Writes must carry the header `X-Sandbox-Page: 1`: a form on another site cannot send that
header without a CORS preflight, which this server never grants, so no other page can act
here in someone's name. Errors are `{"error": "..."}`.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from sandbox.faults import SandboxError
from sandbox.storage import NewFile

if TYPE_CHECKING:
    from sandbox.pachca import PachcaSandbox

Json = dict[str, Any]
API = "/sandbox/api"
ASSETS = "/sandbox/assets"
PAGE_HEADER = "X-Sandbox-Page"
LONG_POLL_S = 25.0
MAX_CONTENT = 10_000
RECENT_DELIVERIES = 8

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' blob: data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


class PageError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def setup(app: web.Application, sandbox: PachcaSandbox) -> None:
    root = resources.files("sandbox") / "static"
    files: dict[str, tuple[bytes, dict[str, str]]] = {}
    for entry in (root / "assets").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in TYPES:
            headers = {**COMMON, "Content-Type": TYPES[suffix], "Cache-Control": "no-cache"}
            files[entry.name] = (entry.read_bytes(), headers)
    page_headers = {
        **COMMON,
        "Content-Type": TYPES[".html"],
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
    }
    page_body = (root / "index.html").read_bytes()

    async def page(_: web.Request) -> web.Response:
        return web.Response(body=page_body, headers=page_headers)

    async def asset(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[0], headers=found[1])

    actions = _Actions(sandbox)
    app.router.add_get("/", page)
    app.router.add_get(ASSETS + "/{name}", asset)
    app.router.add_get(API + "/state", actions.state)
    app.router.add_post(API + r"/threads/{id:\d+}/messages", actions.post)
    app.router.add_post(API + r"/threads/{id:\d+}/files", actions.post_files)
    app.router.add_patch(API + r"/messages/{id:\d+}", actions.edit)
    app.router.add_delete(API + r"/messages/{id:\d+}", actions.delete)
    app.router.add_post(API + r"/messages/{id:\d+}/reactions", actions.react)
    app.router.add_delete(API + r"/messages/{id:\d+}/reactions", actions.unreact)


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _handled(handler: Any) -> Any:
    """Turn refusals (the page's, and the sandbox's own) into `{"error"}` answers."""

    async def run(self: _Actions, request: web.Request) -> web.StreamResponse:
        if request.method != "GET" and request.headers.get(PAGE_HEADER) != "1":
            return _json_error(403, f"missing {PAGE_HEADER} header")
        try:
            return await handler(self, request)
        except PageError as error:
            return _json_error(error.status, str(error))
        except SandboxError as error:
            return _json_error(error.status, str(error))

    return run


class _Actions:
    def __init__(self, sandbox: PachcaSandbox):
        self.sandbox = sandbox

    # --- who, and where --------------------------------------------------------------------

    def _person(self, raw: Any) -> int:
        try:
            user_id = int(raw)
        except (TypeError, ValueError):
            raise PageError(400, "`as` must be a user id") from None
        if user_id not in self.sandbox.users or user_id == self.sandbox.bot_user_id:
            raise PageError(403, "not a person of this sandbox")
        return user_id

    def _sees(self, user_id: int, thread: Json) -> bool:
        """A thread's members see it (and only it: Pachca's cross-threads); so do the members
        of the chat it was opened in."""
        s = self.sandbox
        return user_id in s.members(thread["chat_id"]) or user_id in s.members(
            thread["message_chat_id"]
        )

    def _thread(self, user_id: int, raw_id: str) -> Json:
        thread = self.sandbox.threads.get(int(raw_id))
        if thread is None or not self._sees(user_id, thread):
            raise PageError(404, "no such thread")
        return thread

    def _message(self, user_id: int, raw_id: str) -> Json:
        message = self.sandbox.messages.get(int(raw_id))
        if message is None or message["deleted_at"]:
            raise PageError(404, "no such message")
        thread = self.sandbox.thread_by_chat(message["chat_id"]) or self.sandbox.thread_of(
            message["id"]
        )
        if thread is None or not self._sees(user_id, thread):
            raise PageError(404, "no such message")
        return message

    @staticmethod
    async def _body(request: web.Request) -> Json:
        try:
            body = await request.json()
        except ValueError:
            raise PageError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise PageError(400, "the body must be a JSON object")
        return body

    @staticmethod
    def _content(raw: Any, *, may_be_empty: bool = False) -> str:
        if not isinstance(raw, str) or len(raw) > MAX_CONTENT:
            raise PageError(400, "content must be text of at most 10000 characters")
        if not raw.strip() and not may_be_empty:
            raise PageError(400, "content is empty")
        return raw

    # --- reading -----------------------------------------------------------------------------

    @_handled
    async def state(self, request: web.Request) -> web.Response:
        raw_after = request.query.get("after")
        if raw_after is not None:
            try:
                after = int(raw_after)
            except ValueError:
                raise PageError(400, "`after` must be a number") from None
            await self.sandbox.changed_after(after, LONG_POLL_S)
        me = request.query.get("as")
        return web.json_response(self._view(self._person(me) if me else None))

    def _view(self, me: int | None) -> Json:
        s = self.sandbox
        people = [
            {"id": uid, "name": name} for uid, name in s.users.items() if uid != s.bot_user_id
        ]
        threads = []
        if me is not None:
            for thread in s.threads.values():
                if self._sees(me, thread):
                    threads.append(self._thread_view(me, thread))
        threads.sort(key=lambda t: t["last_activity"], reverse=True)
        deliveries = [
            {
                "type": d.payload.get("type"),
                "event": d.payload.get("event"),
                "status": d.status,
                "delivered": d.delivered,
                "attempts": d.attempts,
            }
            for d in s.deliveries[-RECENT_DELIVERIES:]
        ]
        return {
            "version": s.version,
            "me": {"id": me, "name": s.users[me]} if me is not None else None,
            "people": people,
            "threads": threads,
            "deliveries": deliveries,
            "webhook_url": s.webhook_url,
        }

    def _thread_view(self, me: int, thread: Json) -> Json:
        s = self.sandbox
        root = s.messages[thread["message_id"]]
        messages = [self._message_view(me, m) for m in s.chat_messages(thread["chat_id"])]
        last = max([root["created_at"], *(m["created_at"] for m in messages)])
        return {
            "id": thread["id"],
            "chat_id": thread["chat_id"],
            "channel": s.chat_names.get(thread["message_chat_id"]),
            "root": self._message_view(me, root),
            "messages": messages,
            "last_activity": last,
        }

    def _message_view(self, me: int, m: Json) -> Json:
        s = self.sandbox
        counts: dict[str, list[int]] = {}
        for r in s.reactions_of(m["id"]):
            counts.setdefault(r["code"], []).append(r["user_id"])
        return {
            "id": m["id"],
            "user_id": m["user_id"],
            "author": m.get("display_name") or s.users.get(m["user_id"], f"User {m['user_id']}"),
            "by_bot": m["user_id"] == s.bot_user_id,
            # Posted by the bot under someone else's name (a forum message relayed by the bridge).
            "relayed": bool(m.get("display_name")),
            "mine": m["user_id"] == me,
            "content": m["content"],
            "created_at": m["created_at"],
            "edited": m["changed_at"] != m["created_at"],
            "deleted": m["deleted_at"] is not None,
            "files": [
                {
                    "name": f["name"],
                    "image": f["file_type"] == "image",
                    # Relative: the page's own origin, however it was opened (localhost or
                    # 127.0.0.1), so the CSP's img-src 'self' lets images load.
                    "url": s.store.presigned_url("", f["key"]),
                }
                for f in m["files"]
            ],
            "reactions": [
                {"code": code, "count": len(users), "mine": me in users}
                for code, users in counts.items()
            ],
        }

    # --- acting ------------------------------------------------------------------------------

    @_handled
    async def post(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        me = self._person(body.get("as"))
        thread = self._thread(me, request.match_info["id"])
        message = self.sandbox.post_as_user(
            me,
            entity_type="thread",
            entity_id=thread["id"],
            content=self._content(body.get("content")),
        )
        return web.json_response({"id": message["id"]}, status=201)

    @_handled
    async def post_files(self, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            raise PageError(400, "the body must be multipart/form-data")
        fields: dict[str, str] = {}
        files: list[NewFile] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise PageError(400, "nested multipart")
            data = await self._read(part, self.sandbox.store.max_bytes)
            if part.name == "file" and part.filename:
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                files.append(NewFile(part.filename[:255], data, content_type))
            elif part.name:
                fields[part.name] = data.decode("utf-8", "replace")
        if not files:
            raise PageError(400, "no file")
        me = self._person(fields.get("as"))
        thread = self._thread(me, request.match_info["id"])
        message = self.sandbox.post_as_user(
            me,
            entity_type="thread",
            entity_id=thread["id"],
            content=self._content(fields.get("content", ""), may_be_empty=True),
            files=files,
        )
        return web.json_response({"id": message["id"]}, status=201)

    @staticmethod
    async def _read(part: BodyPartReader, cap: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while chunk := await part.read_chunk(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise PageError(413, "the file is too large")
            chunks.append(chunk)
        return b"".join(chunks)

    @_handled
    async def edit(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        me = self._person(body.get("as"))
        message = self._message(me, request.match_info["id"])
        self.sandbox.edit_as_user(me, message["id"], self._content(body.get("content")))
        return web.json_response({"id": message["id"]})

    @_handled
    async def delete(self, request: web.Request) -> web.Response:
        me = self._person(request.query.get("as"))
        message = self._message(me, request.match_info["id"])
        self.sandbox.delete_as_user(me, message["id"])
        return web.Response(status=204)

    @_handled
    async def react(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        me = self._person(body.get("as"))
        message = self._message(me, request.match_info["id"])
        code = body.get("code")
        if not isinstance(code, str):
            raise PageError(400, "code must be an emoji")
        self.sandbox.react_as_user(me, message["id"], code)
        return web.Response(status=204)

    @_handled
    async def unreact(self, request: web.Request) -> web.Response:
        me = self._person(request.query.get("as"))
        message = self._message(me, request.match_info["id"])
        self.sandbox.unreact_as_user(me, message["id"], request.query.get("code", ""))
        return web.Response(status=204)
