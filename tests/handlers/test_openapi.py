"""GET /api/v1/openapi.json (docs/api.md): a valid OpenAPI 3.1 document that lists every route
of the app, and whose schemas the real answers match - success and error alike.
tests/handlers/test_openapi_fuzz.py throws schemathesis at the running service with it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from bridge.config import Config
from handlers.app import create_app
from handlers.openapi import undocumented_routes
from store.db import Database
from tests.world import World


async def document(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return await resp.json()


async def test_the_document_is_valid_openapi_3_1(client: TestClient) -> None:
    doc = await document(client)
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any problem


async def test_every_route_is_in_the_document(client: TestClient) -> None:
    doc = await document(client)
    described = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    routes = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert described == routes
    assert undocumented_routes(client.app) == []
    # Every request body and every answer has a schema (204 and 304 excepted: no body).
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in ("put", "post", "patch") and "requestBody" in op:
                (media,) = op["requestBody"]["content"]  # JSON, or multipart for uploads
                assert op["requestBody"]["content"][media]["schema"], (method, path)
            for status, answer in op["responses"].items():
                if status not in ("101", "204", "304"):
                    assert answer.get("content"), (method, path, status)


async def test_a_route_without_a_declaration_is_named(config: Config, database: Database) -> None:
    app = create_app(config, db=database)

    async def undeclared(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/new-thing/{thing_id}", undeclared)
    assert undocumented_routes(app) == ["GET /api/v1/new-thing/{thing_id}"]


class Conformance:
    """Checks answers against the document's schema for their operation and status."""

    def __init__(self, doc: dict[str, Any]):
        self.doc = doc

    async def check(self, resp: Any, method: str, path: str) -> Any:
        op = self.doc["paths"][path][method.lower()]
        answers = op["responses"]
        answer = answers.get(str(resp.status)) or answers["default"]
        if "content" not in answer:
            assert not await resp.read(), (method, path, resp.status)
            return None
        assert resp.content_type in answer["content"], (method, path, resp.content_type)
        body = await resp.json()
        schema = {
            **answer["content"][resp.content_type]["schema"],
            "components": self.doc["components"],
        }
        errors = list(Draft202012Validator(schema).iter_errors(body))
        assert not errors, (method, path, resp.status, [e.message for e in errors][:3])
        return body


async def test_real_answers_match_the_document(client: TestClient, world: World) -> None:
    conf = Conformance(await document(client))
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor, email="s@example.org")
    teacher = await world.user("teacher", pachca_user_id=77)
    parent = await world.user("parent", children=[student])
    enrolled = await world.enroll(student, teacher)
    chat = enrolled.subject_chat["id"]
    s, t, svc = world.auth(student), world.auth(teacher), world.service
    first = await world.post(student, chat, "hello", reply_to_id=None)
    await world.post(teacher, chat, "hi", reply_to_id=first["id"])

    async def call(method: str, path: str, url: str, headers: dict, **kw: Any) -> Any:
        return await conf.check(
            await client.request(method, url, headers=headers, **kw), method, path
        )

    m = "/api/v1/messages/{message_id}"
    r = "/api/v1/messages/{message_id}/reactions/{emoji}"
    c = "/api/v1/chats/{chat_id}"
    await call("PUT", r, f"/api/v1/messages/{first['id']}/reactions/%F0%9F%91%8D", t)
    await call(
        "POST", c + "/read", f"/api/v1/chats/{chat}/read", t, json={"message_id": first["id"]}
    )
    await call("PATCH", m, f"/api/v1/messages/{first['id']}", s, json={"content": "hello!"})
    for path, url, headers in [
        ("/api/v1/chats", "/api/v1/chats", s),
        (c, f"/api/v1/chats/{chat}", s),
        (c + "/messages", f"/api/v1/chats/{chat}/messages?limit=5", s),
        ("/api/v1/users/{user_id}", f"/api/v1/users/{parent}", svc),
        (
            "/api/v1/enrollments/{enrollment_id}",
            f"/api/v1/enrollments/{enrolled.enrollment_id}",
            svc,
        ),
        ("/api/v1/admin/outbox", "/api/v1/admin/outbox?status=pending", svc),
        ("/healthz", "/healthz", {}),
        ("/readyz", "/readyz", {}),
        ("/api/v1/openapi.json", "/api/v1/openapi.json", {}),
    ]:
        assert await call("GET", path, url, headers) is not None
    # Errors: every one the same documented shape.
    for method, path, url, headers, kw in [
        ("GET", "/api/v1/chats", "/api/v1/chats", {}, {}),
        ("GET", c, "/api/v1/chats/999999", s, {}),
        ("POST", c + "/messages", f"/api/v1/chats/{chat}/messages", s, {"json": {"x": 1}}),
        ("PUT", "/api/v1/users/{user_id}", "/api/v1/users/u", svc, {"json": {"role": "?"}}),
        ("GET", "/api/v1/events", "/api/v1/events?since=-1", svc, {}),
        (
            "PUT",
            "/api/v1/users/{user_id}",
            f"/api/v1/users/{teacher}",
            svc,
            {"json": {"role": "admin", "name": "T"}},
        ),
    ]:
        resp = await client.request(method, url, headers=headers, **kw)
        assert resp.status >= 400
        await conf.check(resp, method, path)

    await call(
        "POST", "/api/v1/users/{user_id}/link-code", f"/api/v1/users/{student}/link-code", svc
    )
    await call("DELETE", r, f"/api/v1/messages/{first['id']}/reactions/%F0%9F%91%8D", t)
    await call("DELETE", m, f"/api/v1/messages/{first['id']}", s)
    await call(
        "DELETE",
        "/api/v1/enrollments/{enrollment_id}",
        f"/api/v1/enrollments/{enrolled.enrollment_id}",
        svc,
    )
    events = await call("GET", "/api/v1/events", "/api/v1/events?limit=1000", svc)
    kinds = {e["type"] for e in events["events"]}
    assert {
        "chat.created",
        "message.created",
        "message.updated",
        "message.deleted",
        "read",
    } <= kinds
    assert {"reaction.added", "reaction.removed", "chat.deleted"} <= kinds


@pytest.mark.parametrize("path", ["/api/v1/openapi.json"])
async def test_the_document_needs_no_token(client: TestClient, path: str) -> None:
    assert (await client.get(path)).status == 200
