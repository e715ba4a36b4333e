"""Validated inputs of the services: the bodies of CONTRACT sections 4 and 5.

Strict and closed: a wrong type or an unknown field (a forged ``sender``, say) is an error,
never silently coerced or ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bridge.policy import Role

MAX_CONTENT_CHARS = 10_000


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class UserIn(Input):
    role: Role
    name: str = Field(min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    pachca_user_id: int | None = Field(default=None, gt=0)
    tutor_id: str | None = Field(default=None, min_length=1, max_length=64)
    children: list[str] | None = None


class SubjectIn(Input):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)


class EnrollmentIn(Input):
    student_id: str = Field(min_length=1, max_length=64)
    teacher_id: str = Field(min_length=1, max_length=64)
    subject: SubjectIn
    active: bool = True


class NewMessage(Input):
    # Length and blankness are checked by the service: they are `invalid_content`, not
    # `invalid_request`.
    content: str
    reply_to_id: int | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=128)


class MessageEdit(Input):
    content: str


class ReadMark(Input):
    message_id: int
