"""Reloading config.yaml while running: on a file change (polled) and on SIGHUP.

``auth``, ``limits``, ``pachca``, ``reminders`` and ``files`` apply at once - except
``files.storage``, ``files.path`` and ``files.s3``, which choose the blob store built at start;
those, ``server``, ``database``, ``feed`` and ``logging`` keep their running values until a
restart, and the log says so. An invalid edit is logged and ignored: the last good config stays
in force.

Instances sharing a database keep their token rules in step (``share_auth_changes``): a change
of the key, audience or lifetime cap here is told to the others over the feed, and each one
that hears it reads its own file at once rather than at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog

from bridge.auth import token_rules
from bridge.config import Config, ConfigError, LiveConfig, load_config
from bridge.feed.transport import AUTH_CHANGED, Control, Feed

log = structlog.get_logger("bridge.config")

LIVE_SECTIONS = ("auth", "limits", "pachca", "reminders", "files")
# Keys of a live section that still need a restart: they choose what is built at start.
RESTART_KEYS = {"files": ("storage", "path", "s3")}
RESTART_SECTIONS = ("server", "database", "feed", "logging")


class ConfigWatcher:
    def __init__(self, live: LiveConfig, path: str | Path, poll_s: float = 1.0):
        self.live = live
        self.path = Path(path)
        self.poll_s = poll_s
        self._stamp = self._file_stamp()
        self._task: asyncio.Task[None] | None = None

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def reload(self) -> bool:
        """Read the file again and apply what may change live. True when it applied."""
        self._stamp = self._file_stamp()
        try:
            fresh = load_config(self.path)
        except ConfigError as exc:
            log.error(
                "config reload rejected; the last good config stays in force",
                path=str(self.path),
                problems=[f"{p}: {m}" for p, m in exc.problems],
            )
            return False
        current = self.live.current
        pending = [s for s in RESTART_SECTIONS if getattr(fresh, s) != getattr(current, s)]
        for section, keys in RESTART_KEYS.items():
            old, new = getattr(current, section), getattr(fresh, section)
            pending += [f"{section}.{k}" for k in keys if getattr(old, k) != getattr(new, k)]
            # The running values stay in force.
            fresh = fresh.model_copy(
                update={section: new.model_copy(update={k: getattr(old, k) for k in keys})}
            )
        if pending:
            log.warning("config sections changed that apply after a restart", sections=pending)
        changed = [s for s in LIVE_SECTIONS if getattr(fresh, s) != getattr(current, s)]
        self.live.current = current.model_copy(update={s: getattr(fresh, s) for s in LIVE_SECTIONS})
        log.info("config reloaded", path=str(self.path), applied=changed)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self._file_stamp() != self._stamp:
                self.reload()

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="config-watch")
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # Only the main thread of a Unix process can take signals; tests may be neither.
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def share_auth_changes(live: LiveConfig, feed: Feed, watcher: ConfigWatcher | None) -> None:
    """Tell other instances when the token rules change here; reload (when there is a file)
    when another instance tells us. A reload that changes nothing tells no one, so two
    instances never echo each other for long."""

    def changed(old: Config, new: Config) -> None:
        if token_rules(old.auth) != token_rules(new.auth):
            feed.publish_control(Control(AUTH_CHANGED))

    live.subscribe(changed)
    if watcher is None:
        return

    def heard(control: Control, remote: bool) -> None:
        if remote and control.kind == AUTH_CHANGED:
            log.info("token rules changed on another instance; reloading the config file")
            watcher.reload()

    feed.subscribe_control(heard)
