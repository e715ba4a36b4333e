"""The one application key: how handlers reach the services (bridge/services.py)."""

from __future__ import annotations

from aiohttp import web

from bridge.services import Services

SERVICES = web.AppKey("services", Services)
