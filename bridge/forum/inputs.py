"""Validated inputs of the services: the request bodies of docs/api.md.

Strict and closed: a wrong type or an unknown field (a forged ``sender``, say) is an error,
never silently coerced or ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bridge.policy import Role

MAX_CONTENT_CHARS = 10_000
MAX_FILES_PER_MESSAGE = 10
MAX_ID_CHARS = 64  # platform ids are VARCHAR(64) columns
# Integers are BIGINT columns: a larger one can name nothing, and the driver cannot bind it.
MAX_INT = 2**63 - 1


def no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refused everywhere so both databases behave alike.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(no_nul)]
PlatformId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(no_nul)]
ClientId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(no_nul)]
FileId = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(no_nul)]


def no_repeats(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not name a file twice")
    return values


Int64 = Annotated[int, Field(ge=-MAX_INT - 1, le=MAX_INT)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class UserIn(Input):
    role: Role
    name: Text = Field(min_length=1, max_length=255)
    email: Text | None = Field(default=None, max_length=255)
    pachca_user_id: Int64 | None = Field(default=None, gt=0)
    tutor_id: PlatformId | None = None
    children: list[PlatformId] | None = None


class SubjectIn(Input):
    id: PlatformId
    name: Text = Field(min_length=1, max_length=255)


class EnrollmentIn(Input):
    student_id: PlatformId
    teacher_id: PlatformId
    subject: SubjectIn
    active: bool = True


class NewMessage(Input):
    # Length, blankness and NUL are checked by the service: they are `invalid_content`, not
    # `invalid_request`.
    content: str
    reply_to_id: Int64 | None = None
    client_id: ClientId | None = None
    # Files uploaded to the chat beforehand (docs/api.md, "Files"), in the message's order.
    file_ids: Annotated[
        list[FileId], Field(max_length=MAX_FILES_PER_MESSAGE), AfterValidator(no_repeats)
    ] = Field(default_factory=list)


class MessageEdit(Input):
    content: str


class ReadMark(Input):
    message_id: Int64
