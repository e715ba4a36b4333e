"""The platform backend's API (docs/api.md), behind service tokens."""

from __future__ import annotations

from aiohttp import web
from typing_extensions import TypedDict

from bridge.errors import InvalidRequest
from bridge.feed.events import EventFrame
from bridge.forum.inputs import EnrollmentIn, UserIn
from bridge.forum.views import ChatObj, EnrollmentObj, IsoTime, UserObj
from handlers.auth import service_only
from handlers.body import int_param, path_id, read_model
from handlers.keys import SERVICES
from handlers.openapi import SERVICE, Operation, Param, documented
from handlers.responses import json_response

routes = web.RouteTableDef()
TAGS = ("platform",)


class UserAnswer(TypedDict):
    user: UserObj


class LinkCode(TypedDict):
    code: str
    expires_at: IsoTime


class EnrollmentAnswer(TypedDict):
    enrollment: EnrollmentObj
    chats: list[ChatObj]


class EventsPage(TypedDict):
    events: list[EventFrame]
    last_event_id: int


@routes.put("/api/v1/users/{user_id}")
@documented(
    Operation(
        "Create or replace a user",
        SERVICE,
        {200: UserAnswer},
        body=UserIn,
        errors=(409, 422),
        description="409: a role change of a teacher or tutor who still has chats.",
        tags=TAGS,
    )
)
@service_only
async def put_user(request: web.Request) -> web.Response:
    body = await read_model(request, UserIn)
    user_id = path_id(request, "user_id", creating=True)
    user = await request.app[SERVICES].users.upsert(user_id, body)
    return json_response(UserAnswer(user=user))


@routes.get("/api/v1/users/{user_id}")
@documented(Operation("A user", SERVICE, {200: UserAnswer}, errors=(404,), tags=TAGS))
@service_only
async def get_user(request: web.Request) -> web.Response:
    user = await request.app[SERVICES].users.get(path_id(request, "user_id"))
    return json_response(UserAnswer(user=user))


@routes.post("/api/v1/users/{user_id}/link-code")
@documented(
    Operation(
        "A one-time code for /link in Pachca", SERVICE, {201: LinkCode}, errors=(404,), tags=TAGS
    )
)
@service_only
async def post_link_code(request: web.Request) -> web.Response:
    code = await request.app[SERVICES].users.new_link_code(path_id(request, "user_id"))
    return json_response(code, status=201)


@routes.put("/api/v1/enrollments/{enrollment_id}")
@documented(
    Operation(
        "Create or replace an enrollment and its chats",
        SERVICE,
        {200: EnrollmentAnswer},
        body=EnrollmentIn,
        errors=(422,),
        tags=TAGS,
    )
)
@service_only
async def put_enrollment(request: web.Request) -> web.Response:
    body = await read_model(request, EnrollmentIn)
    result = await request.app[SERVICES].enrollments.upsert(
        path_id(request, "enrollment_id", creating=True), body
    )
    return json_response(result)


@routes.get("/api/v1/enrollments/{enrollment_id}")
@documented(
    Operation(
        "An enrollment and its chats", SERVICE, {200: EnrollmentAnswer}, errors=(404,), tags=TAGS
    )
)
@service_only
async def get_enrollment(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].enrollments.get(path_id(request, "enrollment_id"))
    return json_response(result)


@routes.delete("/api/v1/enrollments/{enrollment_id}")
@documented(
    Operation(
        "Delete an enrollment, its chats and their messages",
        SERVICE,
        {204: None},
        errors=(404,),
        tags=TAGS,
    )
)
@service_only
async def delete_enrollment(request: web.Request) -> web.Response:
    await request.app[SERVICES].enrollments.delete(path_id(request, "enrollment_id"))
    return web.Response(status=204)


@routes.get("/api/v1/events")
@documented(
    Operation(
        "The event log after `since`, in order",
        SERVICE,
        {200: EventsPage},
        query=(
            Param("since", {"type": "integer", "minimum": 0}, "events after this id (default 0)"),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
        ),
        errors=(400,),
        tags=TAGS,
    )
)
@service_only
async def get_events(request: web.Request) -> web.Response:
    since = int_param(request, "since", 0)
    limit = int_param(request, "limit", 100)
    if since is None or since < 0:
        raise InvalidRequest("since must be a non-negative integer")
    if limit is None or not 1 <= limit <= 1000:
        raise InvalidRequest("limit must be an integer from 1 to 1000")
    body = await request.app[SERVICES].history.page(since, limit)
    return web.Response(body=body, content_type="application/json")


def setup(app: web.Application) -> None:
    app.add_routes(routes)
