"""Authentication of web clients (docs/api.md) and the order of checks: token (401),
existence (404), permission (403), then the body (400)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from bridge.config import parse_config
from handlers.app import create_app
from tests.conftest import JWT_SECRET, SERVICE_TOKEN
from tests.contract import expect_error
from tests.world import World


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token built by hand, for algorithms PyJWT will not sign with here."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def hmac_signed(alg: str, digest: Any, claims: dict[str, Any]) -> str:
    """Correctly signed with the right key, but with an algorithm other than HS256 (signed by
    hand: PyJWT warns about the key's length for these)."""
    signing_input = ".".join(
        [b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()), b64(json.dumps(claims).encode())]
    )
    signature = hmac.new(JWT_SECRET.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def handmade_hs256(claims: dict[str, Any]) -> str:
    """Rightly signed, with claims PyJWT would refuse to encode."""
    return hmac_signed("HS256", hashlib.sha256, claims)


def claims_for(user_id: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "exp": now + 3600, **extra}


def without(claims: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != key}


# Each: how to build a bad token for a known user id.
BAD_TOKENS = {
    "expired": lambda uid: jwt.encode(
        claims_for(uid, exp=int(time.time()) - 5), JWT_SECRET, algorithm="HS256"
    ),
    "wrong_key": lambda uid: jwt.encode(
        claims_for(uid), "another-secret-of-the-same-length-32b!!", algorithm="HS256"
    ),
    "alg_none": lambda uid: handmade({"alg": "none", "typ": "JWT"}, claims_for(uid)),
    "alg_none_pyjwt": lambda uid: jwt.encode(claims_for(uid), None, algorithm="none"),
    "hs512": lambda uid: hmac_signed("HS512", hashlib.sha512, claims_for(uid)),
    "hs384": lambda uid: hmac_signed("HS384", hashlib.sha384, claims_for(uid)),
    "rs256": lambda uid: handmade({"alg": "RS256", "typ": "JWT"}, claims_for(uid), b"\x01" * 256),
    "missing_exp": lambda uid: jwt.encode(
        without(claims_for(uid), "exp"), JWT_SECRET, algorithm="HS256"
    ),
    "missing_sub": lambda uid: jwt.encode(
        without(claims_for(uid), "sub"), JWT_SECRET, algorithm="HS256"
    ),
    "empty_sub": lambda uid: jwt.encode(claims_for(""), JWT_SECRET, algorithm="HS256"),
    "long_sub": lambda uid: jwt.encode(
        claims_for(uid.ljust(65, "x")), JWT_SECRET, algorithm="HS256"
    ),
    "nul_sub": lambda uid: jwt.encode(claims_for(uid + "\x00"), JWT_SECRET, algorithm="HS256"),
    "int_sub": lambda uid: handmade_hs256({**claims_for(uid), "sub": 42}),
    "string_exp": lambda uid: handmade_hs256({**claims_for(uid), "exp": "tomorrow"}),
    "not_yet_valid": lambda uid: jwt.encode(
        claims_for(uid, nbf=int(time.time()) + 600), JWT_SECRET, algorithm="HS256"
    ),
    "unknown_user": lambda uid: jwt.encode(
        claims_for("nobody-" + uid), JWT_SECRET, algorithm="HS256"
    ),
    "tampered_payload": lambda uid: tamper(
        jwt.encode(claims_for(uid), JWT_SECRET, algorithm="HS256"), "someone-else"
    ),
    "garbage": lambda uid: "not-a-jwt",
    "two_parts": lambda uid: "abc.def",
    "service_token": lambda uid: SERVICE_TOKEN,
}


def tamper(token: str, new_sub: str) -> str:
    header, _payload, signature = token.split(".")
    return ".".join([header, b64(json.dumps(claims_for(new_sub)).encode()), signature])


def web_requests(chat_id: int, message_id: int) -> list[tuple[str, str, Any]]:
    """Every web-client endpoint, with a body that would be valid."""
    return [
        ("GET", "/api/v1/chats", None),
        ("GET", f"/api/v1/chats/{chat_id}", None),
        ("GET", f"/api/v1/chats/{chat_id}/messages", None),
        ("POST", f"/api/v1/chats/{chat_id}/messages", {"content": "hi"}),
        ("PATCH", f"/api/v1/messages/{message_id}", {"content": "edited"}),
        ("DELETE", f"/api/v1/messages/{message_id}", None),
        ("POST", f"/api/v1/chats/{chat_id}/read", {"message_id": message_id}),
    ]


class Scene:
    def __init__(self, student: str, teacher: str, chat_id: int, message_id: int):
        self.student, self.teacher = student, teacher
        self.chat_id, self.message_id = chat_id, message_id


@pytest.fixture
async def scene(world: World) -> Scene:
    student = await world.user("student")
    teacher = await world.user("teacher")
    enrolled = await world.enroll(student, teacher)
    chat_id = enrolled.subject_chat["id"]
    message = await world.post(student, chat_id, "hello")
    return Scene(student, teacher, chat_id, message["id"])


async def events_count(client: TestClient, world: World) -> int:
    resp = await client.get("/api/v1/events", params={"limit": "1000"}, headers=world.service)
    return len((await resp.json())["events"])


async def test_a_good_token_is_accepted(client: TestClient, world: World, scene: Scene) -> None:
    resp = await client.get("/api/v1/chats", headers=world.auth(scene.student))
    assert resp.status == 200
    # The scheme is case-insensitive.
    token = world.token(scene.student)
    resp = await client.get("/api/v1/chats", headers={"Authorization": f"bearer {token}"})
    assert resp.status == 200


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "{token}", "Bearer{token}"],
    ids=[
        "absent",
        "empty",
        "scheme_only",
        "scheme_space",
        "basic",
        "other_scheme",
        "no_scheme",
        "no_space",
    ],
)
async def test_missing_or_malformed_authorization_is_401(
    client: TestClient, world: World, scene: Scene, header: str | None
) -> None:
    before = await events_count(client, world)
    headers = (
        {} if header is None else {"Authorization": header.format(token=world.token(scene.student))}
    )
    for method, path, body in web_requests(scene.chat_id, scene.message_id):
        resp = await client.request(method, path, json=body, headers=headers)
        await expect_error(resp, 401, "unauthorized")
    assert await events_count(client, world) == before


@pytest.mark.parametrize("kind", BAD_TOKENS.keys())
async def test_bad_tokens_are_401_on_every_web_endpoint(
    client: TestClient, world: World, scene: Scene, kind: str
) -> None:
    token = BAD_TOKENS[kind](scene.student)
    before = await events_count(client, world)
    for method, path, body in web_requests(scene.chat_id, scene.message_id):
        resp = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        await expect_error(resp, 401, "unauthorized")
    assert await events_count(client, world) == before
    # The message is untouched.
    resp = await client.get(
        f"/api/v1/chats/{scene.chat_id}/messages", headers=world.auth(scene.teacher)
    )
    assert [m["content"] for m in (await resp.json())["messages"]] == ["hello"]


async def test_the_error_never_echoes_the_token(
    client: TestClient, world: World, scene: Scene
) -> None:
    token = BAD_TOKENS["wrong_key"](scene.student)
    resp = await client.get("/api/v1/chats", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert token not in await resp.text()


async def test_the_role_comes_from_the_record_not_the_token(
    client: TestClient, world: World, scene: Scene
) -> None:
    parent = await world.user("parent")
    token = jwt.encode(claims_for(parent, role="admin"), JWT_SECRET, algorithm="HS256")
    resp = await client.get("/api/v1/chats", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    assert (await resp.json())["chats"] == []
    resp = await client.get(
        f"/api/v1/chats/{scene.chat_id}", headers={"Authorization": f"Bearer {token}"}
    )
    await expect_error(resp, 403, "forbidden")


async def test_a_token_for_a_user_whose_role_changed_gets_the_new_role(
    client: TestClient, world: World, scene: Scene
) -> None:
    # (A teacher who still has chats keeps the role: 409. A student's may change.)
    token = {"Authorization": f"Bearer {world.token(scene.student)}"}
    assert (await client.get(f"/api/v1/chats/{scene.chat_id}", headers=token)).status == 200
    await world.put_user(scene.student, role="parent", name="Was A Student")
    resp = await client.get(f"/api/v1/chats/{scene.chat_id}", headers=token)
    await expect_error(resp, 403, "forbidden")


# --- audience -----------------------------------------------------------------------------


@pytest.fixture
async def audience_app(
    aiohttp_client: Any, config_data: dict[str, Any], database: Any
) -> tuple[TestClient, World]:
    config_data["auth"]["jwt_audience"] = "forum-web"
    app_client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    return app_client, World(app_client, service_token=SERVICE_TOKEN)


async def test_audience_is_required_when_configured(
    audience_app: tuple[TestClient, World],
) -> None:
    client, world = audience_app
    student = await world.user("student")

    def bearer(**extra: Any) -> dict[str, str]:
        token = jwt.encode(claims_for(student, **extra), JWT_SECRET, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}

    assert (await client.get("/api/v1/chats", headers=bearer(aud="forum-web"))).status == 200
    assert (
        await client.get("/api/v1/chats", headers=bearer(aud=["other", "forum-web"]))
    ).status == 200
    for headers in (bearer(), bearer(aud="other-app"), bearer(aud=["x", "y"])):
        await expect_error(await client.get("/api/v1/chats", headers=headers), 401, "unauthorized")


async def test_audience_is_not_checked_when_not_configured(
    client: TestClient, world: World, scene: Scene
) -> None:
    token = jwt.encode(claims_for(scene.student, aud="anything"), JWT_SECRET, algorithm="HS256")
    resp = await client.get("/api/v1/chats", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


async def test_a_generated_key_is_used_when_none_is_configured(
    aiohttp_client: Any, config_data: dict[str, Any], database: Any
) -> None:
    config_data["auth"]["jwt_secret"] = ""
    app_client = await aiohttp_client(create_app(parse_config(config_data), db=database))
    world = World(app_client, service_token=SERVICE_TOKEN)
    student = await world.user("student")
    # The test secret means nothing to this app: it signs with its own generated key.
    await expect_error(
        await app_client.get("/api/v1/chats", headers=world.auth(student)), 401, "unauthorized"
    )
    from handlers.keys import SERVICES

    token = app_client.app[SERVICES].rt.tokens.issue(student)
    resp = await app_client.get("/api/v1/chats", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


# --- the order of checks ------------------------------------------------------------------


async def test_check_order_token_then_existence_then_permission_then_body(
    client: TestClient, world: World, scene: Scene
) -> None:
    outsider = await world.user("student")
    missing_chat, missing_message = 10**9, 10**9
    bad = {"Authorization": "Bearer not-a-token"}
    outsider_h = world.auth(outsider)
    member_h = world.auth(scene.student)
    invalid_bodies = {
        "post": {"sender": "x"},
        "edit": {"content": 5},
        "read": {"message_id": "x"},
    }
    cases = [
        # (method, path template, body kind)
        ("POST", "/api/v1/chats/{chat}/messages", "post"),
        ("PATCH", "/api/v1/messages/{message}", "edit"),
        ("POST", "/api/v1/chats/{chat}/read", "read"),
    ]
    for method, template, kind in cases:
        body = invalid_bodies[kind]

        def path(chat: int, message: int, template: str = template) -> str:
            return template.format(chat=chat, message=message)

        # A bad token wins over a missing object and a bad body.
        resp = await client.request(
            method, path(missing_chat, missing_message), json=body, headers=bad
        )
        await expect_error(resp, 401, "unauthorized")
        # Existence before permission and body: an outsider asking for a missing object.
        resp = await client.request(
            method, path(missing_chat, missing_message), json=body, headers=outsider_h
        )
        await expect_error(resp, 404, "not_found")
        # Permission before body.
        resp = await client.request(
            method, path(scene.chat_id, scene.message_id), json=body, headers=outsider_h
        )
        await expect_error(resp, 403, "forbidden")
        # Only then the body.
        resp = await client.request(
            method, path(scene.chat_id, scene.message_id), json=body, headers=member_h
        )
        await expect_error(resp, 400, "invalid_request")

    # The same order for the paging parameters of the message list.
    params = {"limit": "0"}
    url = "/api/v1/chats/{}/messages"
    await expect_error(
        await client.get(url.format(missing_chat), params=params, headers=bad), 401, "unauthorized"
    )
    await expect_error(
        await client.get(url.format(missing_chat), params=params, headers=outsider_h),
        404,
        "not_found",
    )
    await expect_error(
        await client.get(url.format(scene.chat_id), params=params, headers=outsider_h),
        403,
        "forbidden",
    )
    await expect_error(
        await client.get(url.format(scene.chat_id), params=params, headers=member_h),
        400,
        "invalid_request",
    )

    # Delete has no body: token, existence, permission.
    path = f"/api/v1/messages/{scene.message_id}"
    await expect_error(
        await client.delete(f"/api/v1/messages/{missing_message}", headers=bad), 401, "unauthorized"
    )
    await expect_error(
        await client.delete(f"/api/v1/messages/{missing_message}", headers=outsider_h),
        404,
        "not_found",
    )
    await expect_error(await client.delete(path, headers=outsider_h), 403, "forbidden")


async def test_malformed_json_from_an_outsider_is_403_not_400(
    client: TestClient, world: World, scene: Scene
) -> None:
    outsider = await world.user("teacher")
    resp = await client.post(
        f"/api/v1/chats/{scene.chat_id}/messages",
        data=b"{not json",
        headers={**world.auth(outsider), "Content-Type": "application/json"},
    )
    await expect_error(resp, 403, "forbidden")


# --- routing errors in the contract's shape -------------------------------------------------


async def test_unknown_route_and_wrong_method_render_json_errors(
    client: TestClient, world: World, scene: Scene
) -> None:
    resp = await client.get("/api/v1/nothing-here", headers=world.auth(scene.student))
    await expect_error(resp, 404, "not_found")
    resp = await client.put(
        f"/api/v1/chats/{scene.chat_id}", json={}, headers=world.auth(scene.student)
    )
    await expect_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers.get("Allow", "")
