"""The web-client API (docs/api.md), behind user tokens."""

from __future__ import annotations

from aiohttp import web

from bridge.forum.inputs import MessageEdit, NewMessage, ReadMark
from handlers.auth import principal, user_only
from handlers.body import int_param, path_int, read_model
from handlers.keys import SERVICES
from handlers.responses import json_response

routes = web.RouteTableDef()


@routes.get("/api/v1/chats")
@user_only
async def list_chats(request: web.Request) -> web.Response:
    chats = await request.app[SERVICES].chats.list_chats(principal(request))
    return json_response({"chats": chats})


@routes.get("/api/v1/chats/{chat_id}")
@user_only
async def get_chat(request: web.Request) -> web.Response:
    chat_id = path_int(request, "chat_id")
    chat = await request.app[SERVICES].chats.get_chat(principal(request), chat_id)
    return json_response({"chat": chat})


@routes.get("/api/v1/chats/{chat_id}/messages")
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
@user_only
async def post_message(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = principal(request)
    access = await services.messages.access_for_posting(who, path_int(request, "chat_id"))
    body = await read_model(request, NewMessage)
    posted = await services.messages.post(who, access, body)
    return json_response({"message": posted.message}, status=201 if posted.created else 200)


@routes.patch("/api/v1/messages/{message_id}")
@user_only
async def edit_message(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = principal(request)
    row, access = await services.messages.editable(who, path_int(request, "message_id"))
    body = await read_model(request, MessageEdit)
    message = await services.messages.edit(who, row, access, body)
    return json_response({"message": message})


@routes.delete("/api/v1/messages/{message_id}")
@user_only
async def delete_message(request: web.Request) -> web.Response:
    await request.app[SERVICES].messages.delete(principal(request), path_int(request, "message_id"))
    return web.Response(status=204)


@routes.post("/api/v1/chats/{chat_id}/read")
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
