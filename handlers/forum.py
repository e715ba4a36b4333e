"""The web-client API (docs/api.md), behind user tokens."""

from __future__ import annotations

from aiohttp import web
from typing_extensions import TypedDict

from bridge.forum.inputs import MessageEdit, NewMessage, ReadMark
from bridge.forum.views import ChatObj, MessageObj
from handlers.auth import principal, user_only
from handlers.body import int_param, path_int, read_model
from handlers.keys import SERVICES
from handlers.openapi import USER, Operation, Param, documented
from handlers.responses import json_response

routes = web.RouteTableDef()
TAGS = ("web client",)
INT_QUERY = {"type": "integer"}


class ChatList(TypedDict):
    chats: list[ChatObj]


class ChatAnswer(TypedDict):
    chat: ChatObj


class MessagePage(TypedDict):
    messages: list[MessageObj]
    total: int
    limit: int
    offset: int


class MessageAnswer(TypedDict):
    message: MessageObj


@routes.get("/api/v1/chats")
@documented(
    Operation("The caller's chats, newest activity first", USER, {200: ChatList}, tags=TAGS)
)
@user_only
async def list_chats(request: web.Request) -> web.Response:
    chats = await request.app[SERVICES].chats.list_chats(principal(request))
    return json_response(ChatList(chats=chats))


@routes.get("/api/v1/chats/{chat_id}")
@documented(Operation("A chat", USER, {200: ChatAnswer}, errors=(403, 404), tags=TAGS))
@user_only
async def get_chat(request: web.Request) -> web.Response:
    chat_id = path_int(request, "chat_id")
    chat = await request.app[SERVICES].chats.get_chat(principal(request), chat_id)
    return json_response(ChatAnswer(chat=chat))


@routes.get("/api/v1/chats/{chat_id}/messages")
@documented(
    Operation(
        "A page of a chat's messages, oldest first",
        USER,
        {200: MessagePage},
        query=(
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "default 50"),
            Param("offset", {"type": "integer", "minimum": 0}, "from the oldest (default 0)"),
            Param("before_id", {"type": "integer", "minimum": 1}, "the messages just before"),
        ),
        errors=(400, 403, 404),
        tags=TAGS,
    )
)
@user_only
async def list_messages(request: web.Request) -> web.Response:
    chat_id = path_int(request, "chat_id")
    page = await request.app[SERVICES].chats.list_messages(
        principal(request),
        chat_id,
        limit=int_param(request, "limit", 50),
        offset=int_param(request, "offset", 0),
        # Not an integer: 0, which names no message and is rejected (absent stays None).
        before_id=int_param(request, "before_id", None, invalid=0),
    )
    return json_response(page)


@routes.post("/api/v1/chats/{chat_id}/messages")
@documented(
    Operation(
        "Post a message (a repeated client_id answers the first one, 200)",
        USER,
        {201: MessageAnswer, 200: MessageAnswer},
        body=NewMessage,
        errors=(403, 404, 429),
        tags=TAGS,
    )
)
@user_only
async def post_message(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = principal(request)
    access = await services.messages.access_for_posting(who, path_int(request, "chat_id"))
    body = await read_model(request, NewMessage)
    posted = await services.messages.post(who, access, body)
    answer = MessageAnswer(message=posted.message)
    return json_response(answer, status=201 if posted.created else 200)


@routes.patch("/api/v1/messages/{message_id}")
@documented(
    Operation(
        "Edit one's own message",
        USER,
        {200: MessageAnswer},
        body=MessageEdit,
        errors=(403, 404, 429),
        tags=TAGS,
    )
)
@user_only
async def edit_message(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = principal(request)
    row, access = await services.messages.editable(who, path_int(request, "message_id"))
    body = await read_model(request, MessageEdit)
    message = await services.messages.edit(who, row, access, body)
    return json_response(MessageAnswer(message=message))


@routes.delete("/api/v1/messages/{message_id}")
@documented(
    Operation(
        "Delete a message (its author, or an admin)",
        USER,
        {204: None},
        errors=(403, 404, 429),
        tags=TAGS,
    )
)
@user_only
async def delete_message(request: web.Request) -> web.Response:
    await request.app[SERVICES].messages.delete(principal(request), path_int(request, "message_id"))
    return web.Response(status=204)


@routes.post("/api/v1/chats/{chat_id}/read")
@documented(
    Operation(
        "Mark the chat read up to a message",
        USER,
        {204: None},
        body=ReadMark,
        errors=(403, 404),
        tags=TAGS,
    )
)
@user_only
async def mark_read(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = principal(request)
    access = await services.messages.access_for_reading(who, path_int(request, "chat_id"))
    body = await read_model(request, ReadMark)
    await services.messages.mark_read(who, access, body)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
