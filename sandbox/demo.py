"""`pachca-bridge demo`: the whole loop on one machine, without a Pachca account.

One process runs two servers: the service on 127.0.0.1:PORT, with its database in a temporary
folder, and the Pachca sandbox on the next port (or any free one) as the service's Pachca. The
sandbox gets its own port because it stands for another host: its page has its own origin (and
its own Content-Security-Policy), nothing of the service's edge (middlewares, metrics, limits)
touches it, and the service reaches it over HTTP exactly as it reaches Pachca.

Through the platform API the demo then creates a student, a teacher and a tutor (both linked to
people of the sandbox by `pachca_user_id`) and an enrollment, waits until the service has opened
the enrollment's threads in the sandbox's channel and added the teacher and tutor, posts a first
question as the student, and prints two links: the student's web client, and the sandbox page
where one acts as the teacher. SIGINT or SIGTERM stops both servers, deletes the folder, and
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from pydantic import SecretStr

from bridge.config import (
    ChannelsConfig,
    Config,
    DatabaseConfig,
    FeedConfig,
    LiveConfig,
    PachcaConfig,
)
from sandbox.pachca import PachcaSandbox

HOST = "127.0.0.1"
CHANNEL_ID = 100
BOT_USER_ID = 1
TEACHER_PACHCA_ID = 2001
TUTOR_PACHCA_ID = 2002
SETUP_TIMEOUT_S = 60.0
STUDENT = {"id": "student-1", "role": "student", "name": "Sam Student"}
TEACHER = {"id": "teacher-1", "role": "teacher", "name": "Tess Teacher"}
TUTOR = {"id": "tutor-1", "role": "tutor", "name": "Tom Tutor"}
ENROLLMENT_ID = "enrollment-1"
SUBJECT = {"id": "math", "name": "Mathematics"}
FIRST_QUESTION = "Hello! I am stuck on exercise 3: where do I start?"


class DemoError(Exception):
    """The demo could not start; the message says why."""


@dataclass(frozen=True)
class Links:
    student: str  # the web client, signed in as the student
    teacher: str  # the sandbox page, acting as the teacher


def demo_config(base: Config, workdir: Path, port: int, sandbox: PachcaSandbox) -> Config:
    """The service's config for the demo: `base` (logging, limits, the server's and auth's other
    keys) with its own database, in-process feed, service token, web-token key, and the sandbox
    as its Pachca. Built without re-reading the environment, so no BRIDGE_* variable can point
    the demo at a real database, feed or Pachca."""
    assert sandbox.base_url is not None
    auth = base.auth.model_copy(
        update={
            "service_tokens": [SecretStr(secrets.token_urlsafe(32))],
            "jwt_secret": base.auth.jwt_secret
            if base.auth.jwt_secret.get_secret_value()
            else SecretStr(secrets.token_urlsafe(48)),
        }
    )
    update: dict[str, Any] = {
        "server": base.server.model_copy(update={"host": HOST, "port": port}),
        "database": DatabaseConfig(url=f"sqlite+aiosqlite:///{workdir / 'bridge.db'}"),
        "feed": FeedConfig(),
        "auth": auth,
        "pachca": PachcaConfig(
            enabled=True,
            api_url=sandbox.base_url,
            token=SecretStr(sandbox.token),
            signing_secret=SecretStr(sandbox.signing_secret),
            bot_user_id=sandbox.bot_user_id,
            channels=ChannelsConfig(default=CHANNEL_ID),
        ),
    }
    files = getattr(base, "files", None)
    if files is not None:  # uploaded files (when the service keeps them) stay in the folder too
        update["files"] = files.model_copy(
            update={"storage": "local", "path": str(workdir / "files")}
        )
    return base.model_copy(update=update)


class Demo:
    def __init__(self, base: Config, workdir: Path, port: int):
        self.base = base
        self.workdir = workdir
        self.port = port
        self.sandbox = PachcaSandbox(
            token=secrets.token_urlsafe(32),
            bot_user_id=BOT_USER_ID,
            bot_name="Forum bridge",
            signing_secret=secrets.token_urlsafe(32),
            save_history=True,
        )
        self.config: Config | None = None
        self._service: Any = None

    async def start(self) -> Links:
        sandbox = self.sandbox
        sandbox.add_user(TEACHER_PACHCA_ID, TEACHER["name"])
        sandbox.add_user(TUTOR_PACHCA_ID, TUTOR["name"])
        sandbox.name_chat(CHANNEL_ID, "Forum")
        await self._start_sandbox()
        self.config = config = demo_config(self.base, self.workdir, self.port, sandbox)
        port = await self._start_service(config)
        sandbox.webhook_url = f"http://{HOST}:{port}/webhooks/pachca"
        service_token = config.auth.service_tokens[0].get_secret_value()
        async with aiohttp.ClientSession(
            base_url=f"http://{HOST}:{port}", timeout=aiohttp.ClientTimeout(total=10)
        ) as http:
            platform = {"Authorization": f"Bearer {service_token}"}
            chat_id = await self._populate(http, platform)
            await self._wait_for_threads()
            student_token = self._token(config, STUDENT["id"])
            student = {"Authorization": f"Bearer {student_token}"}
            await _call(
                http.post(
                    f"/api/v1/chats/{chat_id}/messages",
                    json={"content": FIRST_QUESTION},
                    headers=student,
                )
            )
        return Links(
            student=f"http://{HOST}:{port}/#token={student_token}",
            teacher=f"{sandbox.origin}/#as={TEACHER_PACHCA_ID}",
        )

    async def stop(self) -> None:
        """Stop the service (its outbox stops calling the sandbox), then the sandbox."""
        if self._service is not None:
            await self._service.stop()
            self._service = None
        await self.sandbox.stop()

    async def _start_sandbox(self) -> None:
        # Beside the service when that port is free, so the two links are easy to tell apart.
        preferred = self.port + 1 if 0 < self.port < 65535 else 0
        try:
            await self.sandbox.start(HOST, preferred)
        except OSError:
            await self.sandbox.start(HOST, 0)

    async def _start_service(self, config: Config) -> int:
        # The HTTP edge sits above this package; imported here, at the top of the stack.
        from handlers.app import create_app
        from handlers.server import Service

        service = Service(create_app(config), config.server)
        try:
            await service.start()
        except OSError as exc:
            await service.stop()
            raise DemoError(f"cannot listen on {HOST}:{self.port}: {exc.strerror}") from None
        self._service = service
        return int(service.port)

    async def _populate(self, http: aiohttp.ClientSession, auth: dict[str, str]) -> int:
        """The platform backend's calls; returns the enrollment's subject chat id."""
        people = [
            (TUTOR, {"pachca_user_id": TUTOR_PACHCA_ID}),
            (TEACHER, {"pachca_user_id": TEACHER_PACHCA_ID}),
            (STUDENT, {"tutor_id": TUTOR["id"]}),
        ]
        for person, extra in people:
            body = {"role": person["role"], "name": person["name"], **extra}
            await _call(http.put(f"/api/v1/users/{person['id']}", json=body, headers=auth))
        enrollment = {
            "student_id": STUDENT["id"],
            "teacher_id": TEACHER["id"],
            "subject": SUBJECT,
        }
        answer = await _call(
            http.put(f"/api/v1/enrollments/{ENROLLMENT_ID}", json=enrollment, headers=auth)
        )
        return next(c["id"] for c in answer["chats"] if c["type"] == "forum_subject")

    async def _wait_for_threads(self) -> None:
        """Until the service has opened a thread for each chat and added its teacher or tutor:
        the sandbox's state says so, as Pachca's would."""

        def opened() -> bool:
            members = [self.sandbox.members(t["chat_id"]) for t in self.sandbox.threads.values()]
            return all(any(p in m for m in members) for p in (TEACHER_PACHCA_ID, TUTOR_PACHCA_ID))

        while not opened():
            await self.sandbox.changed_after(self.sandbox.version, 1.0)

    @staticmethod
    def _token(config: Config, user_id: str) -> str:
        from bridge.auth import Tokens

        # As long as a token may live: the demo runs until it is stopped.
        return Tokens(LiveConfig(config), "").issue(user_id, config.auth.max_token_ttl_s)


async def _call(request: Any) -> Any:
    """The JSON of a platform or web-client call (`request` as aiohttp's `session.put(...)`);
    DemoError unless it succeeded."""
    async with request as resp:
        if resp.status >= 300:
            raise DemoError(f"{resp.method} {resp.url.path}: {resp.status} {await resp.text()}")
        return await resp.json() if resp.status != 204 else None


def print_links(links: Links, out: TextIO) -> None:
    out.write(
        "The demo is running. Ctrl-C stops it and deletes everything it made.\n"
        "\n"
        "Student, in the web client:\n"
        f"  {links.student}\n"
        "Teacher, in the Pachca sandbox:\n"
        f"  {links.teacher}\n"
        "\n"
        "Open each link in its own browser window. The student's first question is already in\n"
        "the sandbox's thread; reply there as the teacher and the reply reaches the student's\n"
        "page, and what the student writes appears in the thread.\n"
    )
    out.flush()


async def run(base: Config, port: int, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the demo until SIGINT or SIGTERM; 0 then, 1 when it could not start."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        with tempfile.TemporaryDirectory(prefix="pachca-bridge-demo-") as tmp:
            demo = Demo(base, Path(tmp), port)
            try:
                links = await _until(stop, asyncio.wait_for(demo.start(), SETUP_TIMEOUT_S))
                if links is not None:
                    print_links(links, out)
                    await stop.wait()
            except (DemoError, TimeoutError) as exc:
                reason = str(exc) or f"the service was not ready within {SETUP_TIMEOUT_S:.0f} s"
                err.write(f"pachca-bridge demo: {reason}\n")
                return 1
            finally:
                await demo.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


async def _until(stop: asyncio.Event, work: Awaitable[Links]) -> Links | None:
    """`work`'s result, or None when `stop` is set first (the work is then cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


def main(base: Config, port: int | None) -> int:
    """The `demo` command: `port` None means `server.port` of the config."""
    from bridge.ops import logs

    # Warnings only: a line per request would bury the two links.
    logs.configure(base.logging.format, "warning")
    return asyncio.run(run(base, base.server.port if port is None else port))
