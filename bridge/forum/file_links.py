"""Signed download links of files (docs/api.md, "Files").

A link names a file and a moment it expires, signed with HMAC-SHA256 under a key derived from
the JWT key (configured or generated), so it works without an Authorization header - an
``<img src>`` can use it - and only until then. A changed id, expiry or signature fails the
check, compared in constant time. Changing ``auth.jwt_secret`` invalidates every link given
out; clients ask ``GET /api/v1/files/{id}`` for a fresh one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from bridge.auth import Tokens
from bridge.config import LiveConfig

CONTENT_PATH = "/api/v1/files/{file_id}/content"
_PURPOSE = b"pachca-bridge file links v1"


class FileLinks:
    def __init__(self, live: LiveConfig, tokens: Tokens, clock: Callable[[], float] = time.time):
        self._live = live
        self._tokens = tokens
        self._clock = clock

    def _signature(self, file_id: str, expires: int) -> str:
        key = self._tokens.derived_key(_PURPOSE)
        return hmac.new(key, f"{file_id}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, file_id: str) -> str:
        """A link to the file's bytes, valid ``files.url_ttl_s`` from now."""
        expires = int(self._clock()) + self._live.current.files.url_ttl_s
        signature = self._signature(file_id, expires)
        path = CONTENT_PATH.format(file_id=file_id)
        return f"{path}?expires={expires}&signature={signature}"

    def valid(self, file_id: str, expires: str, signature: str) -> bool:
        """Whether the link's parts were signed here and it has not expired."""
        if not expires.isdigit() or len(expires) > 12:
            return False
        expected = self._signature(file_id, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return False
        return int(expires) > self._clock()
