"""Background work started and stopped with the app: the outbox worker and the scheduler.

Tests tune their timings by setting ``app[OUTBOX_TUNING]`` / ``app[MAINTENANCE_TUNING]`` after
``create_app`` and before the app starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bridge.jobs import Maintenance, MaintenanceTuning
from bridge.outbox import OutboxTuning, OutboxWorker
from handlers.keys import METRICS, SERVICES

OUTBOX_TUNING = web.AppKey("outbox_tuning", OutboxTuning)
MAINTENANCE_TUNING = web.AppKey("maintenance_tuning", MaintenanceTuning)
OUTBOX_WORKER = web.AppKey("outbox_worker", OutboxWorker)
MAINTENANCE = web.AppKey("maintenance", Maintenance)


def setup(app: web.Application) -> None:
    rt = app[SERVICES].rt
    app[OUTBOX_WORKER] = worker = OutboxWorker(rt, app[METRICS])
    app[MAINTENANCE] = maintenance = Maintenance(rt, app[METRICS])

    async def background(app: web.Application) -> AsyncIterator[None]:
        worker.tuning = app.get(OUTBOX_TUNING, worker.tuning)
        maintenance.tuning = app.get(MAINTENANCE_TUNING, maintenance.tuning)
        worker.start()
        maintenance.start()
        yield
        await maintenance.stop()
        await worker.stop()
        await rt.pachca.aclose()

    app.cleanup_ctx.append(background)
