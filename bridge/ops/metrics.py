"""Prometheus metrics (docs/operations.md). One registry per app, so tests can build many."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "bridge_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.webhook_events = Counter(
            "bridge_webhook_events", "Pachca webhook events by outcome", ["outcome"], registry=r
        )
        self.outbox_depth = Gauge(
            "bridge_outbox_depth", "Outbox jobs by status", ["status"], registry=r
        )
        self.deliveries = Counter(
            "bridge_pachca_deliveries",
            "Outbox deliveries to Pachca by kind and result",
            ["kind", "result"],
            registry=r,
        )
        self.websockets = Gauge(
            "bridge_websockets_connected", "Connected WebSocket clients", registry=r
        )
        self.feed_events = Counter(
            "bridge_feed_events", "Events published to the feed", ["type"], registry=r
        )
        self.connections_refused = Counter(
            "bridge_connections_refused",
            "Connections closed on arrival because server.max_connections were open",
            registry=r,
        )
