"""Prometheus metrics (docs/operations.md). One registry per app, so tests can build many."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Answer times range from minutes to days.
ANSWER_BUCKETS_S = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)


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
        self.answer_seconds = Histogram(
            "bridge_answer_seconds",
            "Seconds from a student's first waiting message to the teacher's or tutor's answer",
            buckets=ANSWER_BUCKETS_S,
            registry=r,
        )
        self.chats_waiting = Gauge(
            "bridge_chats_waiting", "Active chats whose student waits for an answer", registry=r
        )
        self.reminders = Counter(
            "bridge_reminders",
            "Reminders about waiting chats, queued or skipped",
            ["result"],
            registry=r,
        )
