"""Typed application keys: how handlers reach the services."""

from __future__ import annotations

from aiohttp import web

from bridge.metrics import Metrics
from bridge.services import Services

SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", Metrics)
