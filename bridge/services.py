"""The composition root: every service built once, over one Runtime, and the background parts
(feed, hub, outbox worker, housekeeping, config watcher) started and stopped together.

``create_app`` (handlers/app.py) builds one ``Services`` and hands it to the handlers as their
only way in: they authenticate, read the config and call services through it, and never touch
the database themselves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import structlog

from bridge.auth import Claims, Principal, Principals, Tokens, load_generated_secret
from bridge.config import Config, LiveConfig
from bridge.errors import StartupFailed
from bridge.feed.history import History
from bridge.feed.hub import Hub
from bridge.feed.redis import RedisFeed
from bridge.feed.transport import (
    CHAT_CHANGED,
    USER_CHANGED,
    USER_UPDATED,
    Control,
    Feed,
    MemoryFeed,
)
from bridge.forum.access_cache import AccessCache
from bridge.forum.chats import ChatReader
from bridge.forum.enrollments import Enrollments
from bridge.forum.files import Files
from bridge.forum.messages import MessageWriter
from bridge.forum.reactions import Reactions
from bridge.forum.users import Users
from bridge.forum.waiting import WaitingList
from bridge.ops.maintenance import Maintenance
from bridge.ops.metrics import Metrics
from bridge.ops.outbox_admin import OutboxAdmin
from bridge.ops.reload import ConfigWatcher, share_auth_changes
from bridge.ops.reminders import Reminders
from bridge.pachca.relay import Relay
from bridge.pachca.worker import OutboxWorker
from bridge.runtime import Runtime
from store import migrate
from store.db import Database, safe_url

__all__ = ["Database", "Services", "make_feed"]  # Database: what create_app may be given

log = structlog.get_logger("bridge.app")


def make_feed(config: Config) -> Feed:
    if config.feed.backend == "redis":
        assert config.feed.url is not None  # the config validator requires it
        return RedisFeed(config.feed.url, config.feed.channel)
    return MemoryFeed()


@dataclass(eq=False)
class Services:
    rt: Runtime
    metrics: Metrics
    users: Users
    enrollments: Enrollments
    chats: ChatReader
    messages: MessageWriter
    history: History
    hub: Hub
    relay: Relay
    outbox_admin: OutboxAdmin
    reactions: Reactions
    waiting: WaitingList
    files: Files
    principals: Principals  # known users, cached briefly (bridge/auth.py)
    access: AccessCache  # chats' access for posting, cached briefly (bridge/forum/access_cache.py)
    # Background work. Tests may set ``worker.tuning`` and ``maintenance.tuning`` after
    # ``build`` and before ``start``.
    worker: OutboxWorker
    maintenance: Maintenance
    reminders: Reminders
    # Present when the service runs from a config file (it reloads on change and SIGHUP).
    watcher: ConfigWatcher | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        db: Database | None = None,
        config_path: str | Path | None = None,
    ) -> Services:
        """Everything, wired, nothing started. ``db`` defaults to ``database.url``'s."""
        live = LiveConfig(config)
        database = db or Database(config.database.url)
        rt = Runtime(live=live, db=database, feed=make_feed(config), tokens=Tokens(live, ""))
        metrics = Metrics()
        rt.observe_answer = metrics.answer_seconds.observe
        watcher = ConfigWatcher(live, config_path) if config_path is not None else None
        share_auth_changes(live, rt.feed, watcher)
        history = History(rt)
        hub = Hub(rt, metrics, queue_size=config.feed.send_queue_size, history=history)
        hub.attach(rt.feed)
        worker = OutboxWorker(rt, metrics)
        principals = Principals(database, rt.tokens)
        forget_changed_users(rt.feed, principals)
        access = AccessCache(database)
        forget_changed_chats(rt.feed, access)
        return cls(
            rt=rt,
            metrics=metrics,
            users=Users(rt),
            enrollments=Enrollments(rt),
            chats=ChatReader(rt),
            messages=MessageWriter(rt, access),
            history=history,
            hub=hub,
            relay=Relay(rt),
            outbox_admin=OutboxAdmin(rt),
            reactions=Reactions(rt),
            waiting=WaitingList(rt),
            files=Files(rt),
            worker=worker,
            maintenance=Maintenance(rt, metrics),
            reminders=Reminders(rt, metrics),
            watcher=watcher,
            principals=principals,
            access=access,
        )

    # --- what handlers ask ------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config in force (reloads replace it)."""
        return self.rt.live.current

    async def authenticate(self, token: str) -> tuple[Principal, Claims]:
        """The known user a web-client token names, or Unauthorized."""
        return await self.principals.authenticate(token)

    def is_service_token(self, token: str) -> bool:
        return self.rt.tokens.is_service_token(token)

    async def schema_is_current(self) -> bool:
        """Whether the database answers and its schema is the code's; raises when the
        database cannot be reached."""
        return await migrate.is_current(self.rt.db)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, *, migrate_first: bool = True) -> None:
        rt = self.rt
        try:
            try:
                if migrate_first:
                    await migrate.upgrade(rt.db)
                rt.tokens.use_generated(await load_generated_secret(rt.db))
            except Exception as exc:
                # A driver's text names no value here (connecting, or the migrations' DDL).
                raise StartupFailed(
                    f"cannot use the database {safe_url(rt.db.url)}: {describe_failure(exc)}"
                ) from exc
            rt.db.start_checkpoints()
            await rt.blobs.start()
            await rt.feed.start()
            if self.watcher is not None:
                self.watcher.start()
            await self.hub.start()
            self.worker.start()
            self.maintenance.start()
            self.reminders.start()
        except BaseException:
            # Whatever did start stops again (each part's stop is safe when it never ran).
            with contextlib.suppress(Exception):
                await self.stop()
            raise
        config = self.config
        log.info(
            "started",
            database=safe_url(rt.db.url),
            feed=config.feed.backend,
            pachca_enabled=config.pachca.enabled,
        )

    async def stop(self) -> None:
        """Stop the background parts in the reverse order, then close the database. Sockets
        are closed before this, by ``hub.shutdown`` (while requests in flight finish)."""
        await self.reminders.stop()
        await self.maintenance.stop()
        await self.worker.stop()
        await self.rt.pachca.aclose()
        await self.hub.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        await self.rt.feed.stop()
        await self.rt.blobs.close()
        await self.rt.db.dispose()


def describe_failure(exc: BaseException) -> str:
    """The innermost cause of a failure, as one line (the driver's own reason)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def forget_changed_users(feed: Feed, principals: Principals) -> None:
    """Cached users go when they change on any instance, and all of them when the feed may
    have lost control messages."""

    def heard(control: Control, remote: bool) -> None:
        if control.kind in (USER_CHANGED, USER_UPDATED) and control.user_id is not None:
            principals.forget(control.user_id)

    feed.subscribe_control(heard)
    feed.on_resync(principals.clear)


def forget_changed_chats(feed: Feed, access: AccessCache) -> None:
    """A chat's cached access goes when it changes on any instance, and every chat's when the
    feed may have lost control messages."""

    def heard(control: Control, remote: bool) -> None:
        if control.kind == CHAT_CHANGED and control.chat_id is not None:
            access.forget(control.chat_id)

    feed.subscribe_control(heard)
    feed.on_resync(access.clear)
