"""Typed application keys: how handlers reach the services."""

from __future__ import annotations

from aiohttp import web

from bridge.ops.metrics import Metrics
from bridge.ops.reload import ConfigWatcher
from bridge.services import Services

SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", Metrics)
# Present when the app was started with a config file (it reloads on change and SIGHUP).
CONFIG_WATCHER = web.AppKey("config_watcher", ConfigWatcher)
