"""Shared by the bench scripts: run the real service in a subprocess on loopback and seed it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

SERVICE_TOKEN = "bench-service-token-of-32-characters"
JWT_SECRET = "bench-jwt-secret-bench-jwt-secret-32"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pachca-bridge serve` in a child process, with its own temporary SQLite database
    (or BRIDGE_BENCH_DATABASE_URL), for as long as the `with` block runs."""

    def __init__(
        self,
        extra: dict[str, Any] | None = None,
        log_level: str | None = None,
        database_url: str | None = None,
    ):
        log_level = log_level or os.environ.get("BENCH_LOG_LEVEL", "warning")
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="bridge-bench-")
        url = (
            database_url
            or os.environ.get("BRIDGE_BENCH_DATABASE_URL")
            or (f"sqlite+aiosqlite:///{Path(self.dir.name) / 'bench.db'}")
        )
        self.database_url = url
        config: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "database": {"url": url},
            "auth": {"jwt_secret": JWT_SECRET, "service_tokens": [SERVICE_TOKEN]},
            "limits": {"posts_per_minute": 0},
            "logging": {"format": "json", "level": log_level},
        }
        for section, values in (extra or {}).items():
            # A section given merges into the one above (keeping host and port).
            config[section] = {**config.get(section, {}), **values}
        self.config_path = Path(self.dir.name) / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        self.dir.cleanup()

    def start(self) -> None:
        """Start the service (again, after ``stop``) and wait until it is ready."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--config", str(self.config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            # Appended to, so a restarted server's log follows the first one's; the child
            # holds the file, which closes when it exits.
            stderr=open(os.environ["BENCH_SERVER_LOG"], "ab")  # noqa: SIM115
            if os.environ.get("BENCH_SERVER_LOG")
            else subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        """Stop the service; its database stays (``start`` serves it again)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def postgres_cpu_seconds() -> float:
    """User + system CPU time of every PostgreSQL server process on this machine so far (the
    database's share of the work, when the bench is all it serves)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name, _, rest = stat.partition("(")[2].rpartition(")")
        if name.startswith("postgres"):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def token(user_id: str, ttl: int = 3600) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl}, JWT_SECRET, algorithm="HS256")


async def seed_pairs(
    session: Any, base: str, pairs: int, prefix: str = "b"
) -> list[dict[str, Any]]:
    """`pairs` enrollments of one student and one teacher each; returns their chats."""
    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    out = []
    for i in range(pairs):
        student, teacher = f"{prefix}s{i}", f"{prefix}t{i}"
        for uid, role in ((student, "student"), (teacher, "teacher")):
            async with session.put(
                f"{base}/api/v1/users/{uid}", json={"role": role, "name": uid}, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
        async with session.put(
            f"{base}/api/v1/enrollments/{prefix}e{i}",
            json={
                "student_id": student,
                "teacher_id": teacher,
                "subject": {"id": "math", "name": "Math"},
            },
            headers=headers,
        ) as r:
            assert r.status == 200, await r.text()
            chat_id = next(c["id"] for c in (await r.json())["chats"])
        out.append({"chat_id": chat_id, "student": student, "teacher": teacher})
    return out
