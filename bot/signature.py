"""Authenticity checks for Pachca's outgoing webhooks.

Pachca signs every webhook with the bot's signing secret: the `Pachca-Signature` header is the hex
HMAC-SHA256 of the raw request body, and the body carries `webhook_timestamp` (UNIX seconds) for
replay protection. Both are checked here, on the raw bytes, before anything trusts the JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import string
import time
from collections.abc import Callable, Sequence
from typing import Literal

SignatureReason = Literal[
    "missing_signature", "bad_signature", "stale_timestamp", "missing_timestamp"
]

_HEX_DIGITS = frozenset(string.hexdigits)
_SIGNATURE_LEN = hashlib.sha256().digest_size * 2


def sign(raw: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of `raw` keyed with `secret`, exactly as Pachca computes it."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


class SignatureError(Exception):
    """A webhook that must not be trusted; `reason` is short and machine-readable.

    The message is the reason alone: it ends up in logs and responses, so it never carries
    secrets, expected signatures or body contents.
    """

    def __init__(self, reason: SignatureReason) -> None:
        super().__init__(reason)
        self.reason: SignatureReason = reason


class WebhookVerifier:
    """Checks `Pachca-Signature` against one or more secrets, and the body's timestamp.

    Several secrets are accepted so a signing secret can be rotated without downtime: configure
    the new one next to the old, then drop the old one.
    """

    __slots__ = ("_clock", "_keys", "_tolerance_s")

    def __init__(
        self,
        secrets: Sequence[str],
        tolerance_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # A bare str is a Sequence[str] too; iterating it would turn each character into a
        # "secret" and make forging trivial.
        if isinstance(secrets, str):
            raise TypeError("secrets must be a sequence of strings, not a single string")
        if not math.isfinite(tolerance_s) or tolerance_s < 0:
            raise ValueError("tolerance_s must be a finite number >= 0")
        # Empty secrets are dropped: an HMAC keyed with "" is one anyone can compute, and an
        # empty value in config means "not configured", so it must fail closed.
        self._keys: tuple[bytes, ...] = tuple(s.encode() for s in secrets if s)
        self._tolerance_s = float(tolerance_s)
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"WebhookVerifier(secrets=<{len(self._keys)} hidden>, tolerance_s={self._tolerance_s})"
        )

    def verify_signature(self, raw: bytes, header: str | None) -> None:
        """Raise SignatureError unless `header` is the HMAC of `raw` under one of the secrets."""
        if header is None or not header.strip():
            raise SignatureError("missing_signature")
        given = header.strip().lower()
        # Checking the shape first keeps compare_digest on ASCII input (it raises TypeError on
        # other str) and reveals nothing about the secret.
        if len(given) != _SIGNATURE_LEN or not _HEX_DIGITS.issuperset(given):
            raise SignatureError("bad_signature")
        matched = False
        # Every key is tried, even after a match, so timing does not tell which one matched.
        for key in self._keys:
            expected = hmac.new(key, raw, hashlib.sha256).hexdigest()
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise SignatureError("bad_signature")

    def verify_timestamp(self, webhook_timestamp: object) -> None:
        """Raise SignatureError unless `webhook_timestamp` is within +-tolerance of now."""
        # bool is an int subclass, but `true` is no timestamp.
        if isinstance(webhook_timestamp, bool) or not isinstance(webhook_timestamp, int | float):
            raise SignatureError("missing_timestamp")
        if isinstance(webhook_timestamp, float) and not math.isfinite(webhook_timestamp):
            raise SignatureError("missing_timestamp")
        try:
            skew = abs(self._clock() - webhook_timestamp)
        except OverflowError:  # an int too large for a float is certainly not "now"
            raise SignatureError("stale_timestamp") from None
        # Both directions count: a timestamp far in the future is as suspicious as an old one.
        if skew > self._tolerance_s:
            raise SignatureError("stale_timestamp")
