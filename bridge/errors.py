"""Domain errors. Services raise these; handlers/errors.py renders them (docs/api.md)."""

from __future__ import annotations


class DomainError(Exception):
    """A failure a client caused or may see. ``code`` is the contract's error code."""

    code = "invalid_request"
    status = 400  # the HTTP status (docs/api.md); the edge reads it, services don't

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(DomainError):
    code, status = "invalid_request", 400


class InvalidContent(DomainError):
    code, status = "invalid_content", 400


class ChatInactive(DomainError):
    code, status = "chat_inactive", 400


class Unauthorized(DomainError):
    code, status = "unauthorized", 401


class Forbidden(DomainError):
    code, status = "forbidden", 403


class NotFound(DomainError):
    code, status = "not_found", 404


class Conflict(DomainError):
    """The request contradicts what the bridge holds (a role change of someone who still
    takes part in chats in their old role)."""

    code, status = "conflict", 409


class RequestTimeout(DomainError):
    """The request body did not fully arrive in time (``server.body_timeout_s``)."""

    code, status = "request_timeout", 408


class UnknownUser(DomainError):
    code, status = "unknown_user", 422


class RateLimited(DomainError):
    code, status = "rate_limited", 429

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class StartupFailed(Exception):
    """The service cannot start (its port is taken, its database cannot be reached): the
    command line says so in one line and exits non-zero, without a traceback."""
