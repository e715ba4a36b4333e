"""``POST /webhooks/pachca``: Pachca's outgoing webhooks (docs/pachca.md).

Checks, in order, each answered before any work that depends on it:

1. source address in ``pachca.allowed_ips`` (when set) - else 403. The address is the direct
   peer's, or, when the peer is one of ``pachca.trusted_proxies``, the nearest address in
   ``X-Forwarded-For`` (every line of it, in order) that is not a trusted proxy. Entries may
   be addresses or networks.
2. body size within ``server.max_body_bytes`` - else 413; the whole body within
   ``server.body_timeout_s`` - else 408 and the connection is closed.
3. ``Pachca-Signature`` over the raw bytes with any of the configured signing secrets - else
   401 (a list of secrets allows rotation; none configured fails closed).
4. the body is JSON - else 400 ``invalid_request`` (it is signed, so it came from Pachca).
5. ``webhook_timestamp`` within ``pachca.webhook_tolerance_s`` of now, either way - else 401.

Then the event is parsed and handed to the relay. Accepted, duplicate, dropped, ignored and
invalid events all get 200 ``{"ok": true}``: a retry could not make them any better. A transient
failure (the database) gets 503 so Pachca delivers again; the relay's transaction leaves nothing
half-written. The config is read on every request, so a reload (a rotated secret, a new
allow-list) applies at once. Outcomes are counted in ``bridge_webhook_events{outcome}``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web
from typing_extensions import TypedDict

from bot.signature import SignatureError, WebhookVerifier
from bot.webhooks import InvalidPayload, parse_webhook
from bridge.config import PachcaConfig
from bridge.errors import RequestTimeout
from bridge.pachca.relay import TRANSIENT_ERRORS
from handlers.body import read_body
from handlers.errors import error_response
from handlers.keys import SERVICES
from handlers.openapi import SIGNED, Operation, documented
from handlers.responses import json_response

log = structlog.get_logger("bridge.webhooks")

PATH = "/webhooks/pachca"
SIGNATURE_HEADER = "Pachca-Signature"
RETRY_AFTER_S = "5"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookAck(TypedDict):
    ok: bool


OK = WebhookAck(ok=True)


def _networks(entries: Iterable[str]) -> tuple[IpNetwork, ...]:
    nets = []
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            # Not an address: it can match nothing. Logged, never fatal, so a typo in a
            # reloaded allow-list does not take the endpoint down (it fails closed instead).
            log.warning("ignoring an invalid address in the pachca config", entry=entry)
    return tuple(nets)


def _address(text: str) -> IpAddress | None:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _within(addr: IpAddress | None, nets: tuple[IpNetwork, ...]) -> bool:
    return addr is not None and any(addr in net for net in nets)


@dataclass(frozen=True, slots=True)
class Settings:
    """What one PachcaConfig means for the endpoint, worked out once per config."""

    config: PachcaConfig
    verifier: WebhookVerifier
    allowed: tuple[IpNetwork, ...]
    trusted: tuple[IpNetwork, ...]

    @classmethod
    def of(cls, config: PachcaConfig, clock: Callable[[], float]) -> Settings:
        return cls(
            config,
            WebhookVerifier(config.signing_secrets, config.webhook_tolerance_s, clock),
            _networks(config.allowed_ips),
            _networks(config.trusted_proxies),
        )

    def client_address(self, peer: str | None, forwarded_for: str | None) -> IpAddress | None:
        addr = _address(peer or "")
        if not forwarded_for or not _within(addr, self.trusted):
            return addr
        # Walk back from the peer: each trusted proxy vouches for the address before it.
        for hop in reversed(forwarded_for.split(",")):
            addr = _address(hop)
            if not _within(addr, self.trusted):
                return addr  # None for a malformed hop: not allowed
        return addr

    def source_allowed(self, request: web.Request) -> bool:
        if not self.config.allowed_ips:
            return True
        # Every line, in order, as one list: a proxy may add a line of its own instead of
        # appending to the client's, and the client writes whatever it likes in the first.
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
        addr = self.client_address(request.remote, forwarded)
        return _within(addr, self.allowed)


class Gate:
    """The endpoint's settings for the config in force, rebuilt when a reload replaces it."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._settings: Settings | None = None

    def settings(self, config: PachcaConfig) -> Settings:
        current = self._settings
        if current is None or current.config is not config:
            current = self._settings = Settings.of(config, self.clock)
        return current


# Edge state, not a service: the parsed allow-lists and verifier of the config in force.
GATE = web.AppKey("webhook_gate", Gate)


@documented(
    Operation(
        "Pachca's outgoing webhook (docs/pachca.md)",
        SIGNED,
        {200: WebhookAck},
        # Pachca's own event payloads (its API describes them): any JSON object here.
        body=dict[str, Any],
        errors=(403, 503),
        tags=("pachca",),
    )
)
async def receive(request: web.Request) -> web.Response:
    app = request.app
    services = app[SERVICES]
    count = services.metrics.webhook_events
    settings = app[GATE].settings(services.config.pachca)

    if not settings.source_allowed(request):
        count.labels("forbidden").inc()
        log.warning("webhook from a source outside pachca.allowed_ips", remote=request.remote)
        return error_response(403, "forbidden", "source address not allowed")
    try:
        raw = await read_body(request)
    except web.HTTPRequestEntityTooLarge:
        count.labels("too_large").inc()
        raise
    except RequestTimeout:
        count.labels("timeout").inc()
        raise
    try:
        settings.verifier.verify_signature(raw, request.headers.get(SIGNATURE_HEADER))
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            count.labels("bad_request").inc()
            return error_response(400, "invalid_request", "the body is not valid JSON")
        settings.verifier.verify_timestamp(
            data.get("webhook_timestamp") if isinstance(data, dict) else None
        )
    except SignatureError as exc:
        count.labels("unauthorized").inc()
        log.warning("webhook refused", reason=exc.reason)
        return error_response(401, "unauthorized", "invalid webhook signature or timestamp")

    try:
        payload = parse_webhook(data)
    except InvalidPayload as exc:
        # Signed by Pachca but not what the spec describes: a retry would be no better.
        count.labels("invalid").inc()
        log.warning("invalid webhook acknowledged", problem=str(exc), webhook_type=exc.type)
        return json_response(OK)
    try:
        result = await services.relay.handle(payload)
    except TRANSIENT_ERRORS as exc:
        count.labels("unavailable").inc()
        # The class only: a database error's text can quote the statement's parameters.
        log.warning("webhook not processed, Pachca will redeliver", error=type(exc).__name__)
        return error_response(
            503,
            "unavailable",
            "temporarily unable to process the event",
            **{"Retry-After": RETRY_AFTER_S},
        )
    count.labels(result.outcome.value).inc()
    return json_response(OK)


def setup(app: web.Application) -> None:
    app[GATE] = Gate()
    app.router.add_post(PATH, receive)
