"""Editing config.yaml while the service runs (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bridge.config import LiveConfig, load_config
from bridge.ops.reload import ConfigWatcher
from tests.eventually import eventually

OLD_TOKEN = "old-service-token-0123456789"
NEW_TOKEN = "new-service-token-0123456789"


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data))


def base(tmp_path: Path) -> dict[str, Any]:
    return {
        "server": {"port": 8080},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"},
        "limits": {"posts_per_minute": 120},
        "auth": {"service_tokens": [OLD_TOKEN]},
    }


def test_live_sections_apply_and_restart_sections_wait(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = base(tmp_path)
    write(path, data)
    live = LiveConfig(load_config(path))
    data["limits"]["posts_per_minute"] = 5
    data["auth"]["service_tokens"] = [NEW_TOKEN]
    data["server"]["port"] = 9090
    write(path, data)

    assert ConfigWatcher(live, path).reload()
    assert live.current.limits.posts_per_minute == 5
    assert [t.get_secret_value() for t in live.current.auth.service_tokens] == [NEW_TOKEN]
    assert live.current.server.port == 8080  # needs a restart


def test_reminders_apply_at_once(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = base(tmp_path)
    write(path, data)
    live = LiveConfig(load_config(path))
    data["reminders"] = {"enabled": True, "after_s": 600, "repeat_s": 3600}
    write(path, data)

    assert ConfigWatcher(live, path).reload()
    assert live.current.reminders.enabled
    assert (live.current.reminders.after_s, live.current.reminders.repeat_s) == (600, 3600)


def test_invalid_edit_keeps_last_good_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write(path, base(tmp_path))
    live = LiveConfig(load_config(path))
    before = live.current
    path.write_text("limits: {posts_per_minute: lots}\n")

    assert not ConfigWatcher(live, path).reload()
    assert live.current is before


def test_an_edit_with_a_weak_secret_is_ignored_like_any_invalid_edit(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = base(tmp_path)
    write(path, data)
    live = LiveConfig(load_config(path))
    before = live.current
    data["auth"]["service_tokens"] = [OLD_TOKEN, "short-token"]
    write(path, data)

    assert not ConfigWatcher(live, path).reload()
    assert live.current is before


async def test_file_change_is_picked_up_while_running(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = base(tmp_path)
    write(path, data)
    live = LiveConfig(load_config(path))
    watcher = ConfigWatcher(live, path, poll_s=0.05)
    watcher.start()
    try:
        data["limits"]["posts_per_minute"] = 7
        data["pachca"] = {"bot_user_id": 77}
        write(path, data)
        await eventually(
            lambda: live.current.limits.posts_per_minute == 7, what="the change to apply"
        )
        assert live.current.limits.posts_per_minute == 7
        assert live.current.pachca.bot_user_id == 77
    finally:
        await watcher.stop()
