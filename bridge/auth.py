"""Who is calling: web-client JWTs (HS256) and the platform backend's service tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from bridge.config import AuthConfig, LiveConfig
from bridge.errors import Unauthorized
from store import users as user_store
from store.db import Database

GENERATED_SECRET_KEY = "jwt_secret"
ALGORITHM = "HS256"
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated platform user. The role comes from our record, never from the token."""

    id: str
    role: str
    name: str


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    expires_at: float


def token_rules(auth: AuthConfig) -> tuple[str, str | None, int]:
    """What decides whether a web-client token is accepted: when any of it changes, tokens
    verified before must be verified again (open sockets included)."""
    return (auth.jwt_secret.get_secret_value(), auth.jwt_audience, auth.max_token_ttl_s)


class Tokens:
    """Issues and verifies web-client tokens with the configured (or generated) key."""

    def __init__(
        self, live: LiveConfig, generated_secret: str, clock: Callable[[], float] = time.time
    ):
        self._live = live
        self._generated = generated_secret
        self._clock = clock
        self._cache: dict[str, Claims] = {}
        self._cache_for: tuple[str, str | None, int] = ("", None, 0)

    def use_generated(self, secret: str) -> None:
        """Set the database-kept key (loaded at start-up, before any request)."""
        self._generated = secret

    def _key(self) -> str:
        configured = self._live.current.auth.jwt_secret.get_secret_value()
        return configured or self._generated

    def derived_key(self, purpose: bytes) -> bytes:
        """A key of its own for ``purpose`` (signed file links), derived from the JWT key:
        kept and rotated with it, and no token can be forged from it."""
        return hmac.new(self._key().encode(), purpose, hashlib.sha256).digest()

    def issue(self, user_id: str, ttl_s: int = 3600) -> str:
        """A token for ``user_id``; ValueError when ``ttl_s`` is over auth.max_token_ttl_s
        (the token would be refused)."""
        if ttl_s > self._live.current.auth.max_token_ttl_s:
            raise ValueError("ttl over auth.max_token_ttl_s")
        now = int(self._clock())
        claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_s}
        audience = self._live.current.auth.jwt_audience
        if audience:
            claims["aud"] = audience
        return jwt.encode(claims, self._key(), algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        """The token's claims, or Unauthorized. Verified tokens are remembered (until they
        expire, or the key, audience or lifetime cap changes) so a client's every request
        does not pay for the HMAC and JSON decoding again."""
        auth = self._live.current.auth
        rules = (self._key(), auth.jwt_audience, auth.max_token_ttl_s)
        if rules != self._cache_for:
            self._cache.clear()
            self._cache_for = rules
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token, *rules)
            if len(self._cache) >= VERIFIED_CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = claims
        if claims.expires_at <= self._clock():
            raise Unauthorized("token expired")
        return claims

    def _decode(self, token: str, key: str, audience: str | None, max_ttl_s: int) -> Claims:
        try:
            # algorithms pinned: "none" and every other algorithm are refused.
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                options={"require": ["exp", "sub"], "verify_aud": audience is not None},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        sub = claims.get("sub")
        # A sub no user id can be (ids are at most 64 characters, never NUL) names no one.
        if not isinstance(sub, str) or not sub or len(sub) > 64 or "\x00" in sub:
            raise Unauthorized("invalid token")
        expires_at = float(claims["exp"])
        # The lifetime counts from `iat` (PyJWT has checked it is a number, not in the
        # future), else from now: a token valid for centuries is refused, however old.
        now = self._clock()
        issued = min(float(claims["iat"]), now) if "iat" in claims else now
        if expires_at - issued > max_ttl_s:
            raise Unauthorized("token lifetime over the allowed maximum")
        return Claims(sub, expires_at)

    def is_service_token(self, token: str) -> bool:
        try:
            candidate = token.encode()
        except UnicodeEncodeError:
            return False  # undecodable header bytes (surrogates): no configured token
        # Compare against every token (no early exit) so timing reveals nothing.
        found = False
        for configured in self._live.current.auth.service_tokens:
            value = configured.get_secret_value().encode()
            if value and secrets.compare_digest(candidate, value):
                found = True
        return found


async def load_generated_secret(db: Database) -> str:
    """The JWT key kept in the database for when auth.jwt_secret is empty: made once, shared
    by every instance and the CLI."""
    async with db.write() as conn:
        existing = await user_store.get_setting(conn, GENERATED_SECRET_KEY)
        if existing:
            return existing
        return await user_store.put_setting_once(
            conn, GENERATED_SECRET_KEY, secrets.token_urlsafe(48)
        )


async def _load_principal(db: Database, user_id: str) -> Principal | None:
    async with db.read() as tx:  # one statement
        row = await user_store.get_user(tx, user_id)
    return Principal(row["id"], row["role"], row["name"]) if row is not None else None


class Principals:
    """Known users as requests see them (id, role, name), kept for a few seconds, so that an
    authenticated request does not read the users table each time.

    A change of a user's role or name is told to every instance (``forget``, from the feed's
    control messages, bridge/forum/users.py), and a feed that lost messages clears everything
    (``clear``). Control messages are at-most-once, so entries also expire after ``ttl_s``:
    the longest a change can go unseen on another instance. Unknown users are never kept."""

    MAX_ENTRIES = 50_000

    def __init__(self, db: Database, tokens: Tokens, ttl_s: float = 5.0):
        self._db = db
        self._tokens = tokens
        self.ttl_s = ttl_s
        self._kept: dict[str, tuple[Principal, float]] = {}
        self._generation = 0  # moves on every forget/clear: a read that spans one is not kept

    async def authenticate(self, token: str) -> tuple[Principal, Claims]:
        """The known user a web-client token names, or Unauthorized."""
        claims = self._tokens.verify(token)
        now = time.monotonic()
        kept = self._kept.get(claims.user_id)
        if kept is not None and kept[1] > now:
            return kept[0], claims
        generation = self._generation
        principal = await _load_principal(self._db, claims.user_id)
        if principal is None:
            raise Unauthorized("unknown user")
        if generation == self._generation:
            if len(self._kept) >= self.MAX_ENTRIES:
                self._kept.clear()
            self._kept[claims.user_id] = (principal, now + self.ttl_s)
        return principal, claims

    def forget(self, user_id: str) -> None:
        self._generation += 1
        self._kept.pop(user_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._kept.clear()


def bearer(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when absent or malformed.

    aiohttp decodes header bytes that are not UTF-8 into lone surrogates, which no token can
    hold and which fail every later ``encode()``: such a header is malformed (401, not 500).
    """
    if not header or (not header.isascii() and not _utf8(header)):
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
