"""The command line (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
import yaml

from bridge.cli import main
from store import users
from store.db import Database

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, **sections: dict) -> Path:
    path = tmp_path / "config.yaml"
    data = {"database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}, **sections}
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert main(["check-config", "--config", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_check_config_reports_each_problem_with_its_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, server={"port": "x", "hots": "a"}, feed={"backend": "kafka"})
    assert main(["check-config", "--config", str(path)]) != 0
    err = capsys.readouterr().err
    assert "server.port" in err
    assert "server.hots" in err
    assert "feed.backend" in err


def test_check_config_uses_bridge_config_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, limits={"posts_per_minute": -1})
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    assert main(["check-config"]) != 0


def test_check_config_refuses_weak_secrets_and_plain_http_without_quoting_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path,
        auth={"jwt_secret": "hunter2-secret", "service_tokens": ["hunter2-token"]},
        pachca={"api_url": "http://api.pachca.com/api/shared/v1"},
    )
    assert main(["check-config", "--config", str(path)]) != 0
    err = capsys.readouterr().err
    for key in ("auth.jwt_secret", "auth.service_tokens.0", "pachca.api_url"):
        assert key in err
    assert "hunter2" not in err


def test_serve_refuses_a_config_check_config_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, auth={"jwt_secret": "too-short"})
    assert main(["serve", "--config", str(path)]) != 0  # returns at once, serves nothing
    assert "auth.jwt_secret" in capsys.readouterr().err


def test_shipped_config_passes_check_config() -> None:
    assert main(["check-config", "--config", str(REPO / "config.yaml")]) == 0


def test_migrate_then_token_for_a_known_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, auth={"jwt_secret": "k" * 32})
    assert main(["migrate", "--config", str(path)]) == 0

    async def add_user() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        async with db.write() as conn:
            values = {
                "id": "u-1",
                "role": "student",
                "name": "Ann",
                "email": None,
                "pachca_user_id": None,
                "tutor_id": None,
                "children": None,
            }
            await users.upsert_user(conn, values, datetime.now(UTC))
        await db.dispose()

    asyncio.run(add_user())
    capsys.readouterr()
    assert main(["token", "u-1", "--ttl", "60", "--config", str(path)]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "k" * 32, algorithms=["HS256"])
    assert claims["sub"] == "u-1"
    assert 55 <= claims["exp"] - time.time() <= 61


def test_token_for_unknown_user_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert main(["migrate", "--config", str(path)]) == 0
    assert main(["token", "ghost", "--config", str(path)]) != 0
    assert "unknown user" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, server={"host": "127.0.0.1", "port": port})
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--config", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        body = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    body = r.read()
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        assert body is not None, proc.stderr.read().decode() if proc.poll() is not None else ""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_token_ttl_over_the_cap_fails_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, auth={"jwt_secret": "k" * 32, "max_token_ttl_s": 600})
    assert main(["token", "u-1", "--ttl", "601", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no token printed
    assert "auth.max_token_ttl_s" in captured.err and "600" in captured.err
    # The default cap is a day: a 300-year token is refused before anything else is looked at.
    path = write_config(tmp_path, auth={"jwt_secret": "k" * 32})
    assert main(["token", "u-1", "--ttl", str(300 * 365 * 86400), "--config", str(path)]) == 2
    assert "auth.max_token_ttl_s" in capsys.readouterr().err


# --- the first hour: what a newcomer runs into ----------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expects"),
    [
        ("BRIDGE_AUTH__SERVICE_TOKENS", "dev-token", "JSON list"),
        ("BRIDGE_SERVER__PORT", "abc", "integer"),
        ("BRIDGE_SERVER__PORT", "70000", "65535"),
        ("BRIDGE_PACHCA__CHANNELS__SUBJECTS", "math=1", "JSON object"),
        ("BRIDGE_SERVER__PROT", "8080", "not a config key"),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["check-config"], ["token", "u-1"]])
def test_an_environment_override_that_does_not_parse_is_one_line_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    variable: str,
    value: str,
    expects: str,
) -> None:
    path = write_config(tmp_path)
    monkeypatch.setenv(variable, value)
    assert main([*command, "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert variable in lines[0] and expects in lines[0]
    assert str(path) not in lines[0] and "config.yaml" not in lines[0]  # not the file's fault
    assert value not in lines[0] or value.isdigit()  # secrets come from there: not echoed
    assert not (tmp_path / "cli.db").exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("pachca-bridge ") and out.split()[1][0].isdigit()


def test_token_never_creates_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no config.yaml here: the default ./bridge.db
    assert main(["token", "s1"]) == 1
    err = capsys.readouterr().err
    assert "no database" in err and "pachca-bridge migrate" in err
    assert list(elsewhere.iterdir()) == []


def test_token_on_a_database_not_yet_migrated_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    (tmp_path / "cli.db").write_bytes(b"")  # an empty file: SQLite's empty database
    assert main(["token", "s1", "--config", str(path)]) == 1
    assert "pachca-bridge migrate" in capsys.readouterr().err


def test_the_token_lifetime_cap_is_at_most_30_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, auth={"max_token_ttl_s": 31 * 86400})
    assert main(["check-config", "--config", str(path)]) == 1
    assert "auth.max_token_ttl_s" in capsys.readouterr().err
    path = write_config(tmp_path, auth={"jwt_secret": "k" * 32, "max_token_ttl_s": 30 * 86400})
    assert main(["token", "u-1", "--ttl", str(30 * 86400 + 1), "--config", str(path)]) == 2
    assert "auth.max_token_ttl_s" in capsys.readouterr().err


def run_serve(tmp_path: Path, **sections: dict) -> subprocess.CompletedProcess[str]:
    path = write_config(tmp_path, **sections)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--config", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_serve(tmp_path, server={"port": port}, logging={"level": "error"})
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "address already in use" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://nobody@127.0.0.1:1/nothing",
        "sqlite+aiosqlite:////nonexistent/dir/x.db",
    ],
    ids=["postgresql", "sqlite"],
)
def test_an_unreachable_database_is_one_clear_line(tmp_path: Path, url: str) -> None:
    done = run_serve(tmp_path, database={"url": url}, server={"port": free_port()})
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pachca-bridge: cannot use the database")
    assert "Traceback" not in done.stdout


def test_the_start_names_the_address_and_warns_about_what_is_missing(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, server={"port": port}, logging={"format": "json"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--config", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Pachca is disabled" in line:
                break
        events = [json.loads(line) for line in lines if line.startswith("{")]
        listening = next(e for e in events if e["event"] == "listening")
        assert listening["url"] == f"http://127.0.0.1:{port}"
        warnings = [e["event"] for e in events if e["level"] == "warning"]
        assert any("no service token" in w for w in warnings)
        assert any("Pachca is disabled" in w for w in warnings)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
