"""Outgoing webhooks, as Pachca sends them to a bot's webhook URL.

Each body is compact JSON whose `webhook_timestamp` is the moment of sending; the
`Pachca-Signature` header is the hex HMAC-SHA256 of those exact bytes, keyed with the bot's
signing secret. Deliveries go out one at a time, in the order the events happened; one that gets
no 2xx (or no answer within `timeout_s`) is tried again after a growing pause, up to `attempts`
times, each time with a fresh timestamp and signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from sandbox.webhooks import signed

log = structlog.get_logger("sandbox.webhooks")

Json = dict[str, Any]


@dataclass
class Delivery:
    """One webhook body and what became of it."""

    payload: Json
    status: int | None = None  # the last answer's status; None before any or when none came
    attempts: int = 0
    delivered: bool = False
    error: str | None = None
    bodies: list[bytes] = field(default_factory=list)  # the raw bytes of each attempt


class WebhookSender:
    def __init__(
        self,
        *,
        attempts: int = 5,
        first_pause_s: float = 0.5,
        timeout_s: float = 10.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.url: str | None = None
        self.secret = ""
        self.deliveries: list[Delivery] = []
        self.attempts = attempts
        self.first_pause_s = first_pause_s
        self.timeout_s = timeout_s
        self._on_change = on_change  # after each attempt (the page shows deliveries)
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def enqueue(self, payload: Json) -> Delivery:
        delivery = Delivery(dict(payload))
        self.deliveries.append(delivery)
        self._queue.put_nowait(delivery)
        return delivery

    async def drained(self) -> None:
        """Until every delivery queued so far has been delivered or given up."""
        await self._queue.join()

    async def start(self) -> None:
        if self._worker is None:
            self._session = aiohttp.ClientSession()
            self._worker = asyncio.create_task(self._run(), name="sandbox-webhooks")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one delivery stop the rest
                delivery.error = repr(exc)
                log.exception("webhook delivery failed")
            finally:
                self._on_change()
                self._queue.task_done()

    async def _deliver(self, delivery: Delivery) -> None:
        pause = self.first_pause_s
        while True:
            if self.url is None or self._session is None:
                delivery.error = "no webhook URL"
                return
            delivery.attempts += 1
            body = {**delivery.payload, "webhook_timestamp": int(time.time())}
            raw, headers = signed(body, self.secret)
            delivery.bodies.append(raw)
            try:
                timeout = aiohttp.ClientTimeout(total=self.timeout_s)
                async with self._session.post(
                    self.url, data=raw, headers=headers, timeout=timeout
                ) as resp:
                    delivery.status = resp.status
                    await resp.read()
                if 200 <= resp.status < 300:
                    delivery.delivered = True
                    delivery.error = None
                    return
                delivery.error = f"answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                delivery.status = None
                delivery.error = f"{type(exc).__name__}: {exc}"
            if delivery.attempts >= self.attempts:
                log.warning("webhook given up", webhook_type=body.get("type"), error=delivery.error)
                return
            self._on_change()
            log.info(
                "webhook not accepted, will retry",
                webhook_type=body.get("type"),
                webhook_event=body.get("event"),
                attempt=delivery.attempts,
                error=delivery.error,
            )
            await asyncio.sleep(pause)
            pause *= 2
