"""Populating the app through its own API, the way the platform and web clients do.

Ids are unique per call (a counter plus a random run prefix), so fixtures never collide.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

_run = uuid.uuid4().hex[:6]
_seq = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{_run}-{next(_seq)}"


@dataclass
class Enrolled:
    enrollment_id: str
    body: dict[str, Any]

    @property
    def subject_chat(self) -> dict[str, Any]:
        return next(c for c in self.body["chats"] if c["type"] == "forum_subject")

    @property
    def tutor_chat(self) -> dict[str, Any] | None:
        return next((c for c in self.body["chats"] if c["type"] == "forum_tutor"), None)


class World:
    def __init__(self, client: TestClient, service_token: str, jwt_secret: str | None = None):
        from tests.conftest import JWT_SECRET

        self.client = client
        self.service = {"Authorization": f"Bearer {service_token}"}
        self.jwt_secret = jwt_secret or JWT_SECRET

    async def user(self, role: str, **fields: Any) -> str:
        user_id = unique(role)
        body = {"role": role, "name": fields.pop("name", f"{role.title()} {user_id}"), **fields}
        resp = await self.client.put(f"/api/v1/users/{user_id}", json=body, headers=self.service)
        assert resp.status == 200, await resp.text()
        return user_id

    async def put_user(self, user_id: str, **body: Any) -> dict[str, Any]:
        resp = await self.client.put(f"/api/v1/users/{user_id}", json=body, headers=self.service)
        assert resp.status == 200, await resp.text()
        return (await resp.json())["user"]

    async def enroll(
        self,
        student: str,
        teacher: str,
        *,
        subject: tuple[str, str] | None = None,
        active: bool = True,
        enrollment_id: str | None = None,
    ) -> Enrolled:
        enrollment_id = enrollment_id or unique("enr")
        sid, sname = subject or (unique("subj"), "Mathematics")
        body = {
            "student_id": student,
            "teacher_id": teacher,
            "subject": {"id": sid, "name": sname},
            "active": active,
        }
        resp = await self.client.put(
            f"/api/v1/enrollments/{enrollment_id}", json=body, headers=self.service
        )
        assert resp.status == 200, await resp.text()
        return Enrolled(enrollment_id, await resp.json())

    def token(self, user_id: str, ttl: int = 3600, **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": user_id, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(payload, self.jwt_secret, algorithm="HS256")

    def auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    async def post(self, user_id: str, chat_id: int, content: str, **extra: Any) -> dict[str, Any]:
        resp = await self.client.post(
            f"/api/v1/chats/{chat_id}/messages",
            json={"content": content, **extra},
            headers=self.auth(user_id),
        )
        assert resp.status == 201, await resp.text()
        return (await resp.json())["message"]
