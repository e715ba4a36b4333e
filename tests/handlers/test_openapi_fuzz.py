"""Schemathesis against the running service (``pachca-bridge serve`` in a process of its own),
driven by the service's own /api/v1/openapi.json: every operation gets generated requests,
valid and invalid, with a service token or a user token as the operation asks. No answer may
be a 5xx, and every answer must match the document (status, content type, body schema,
headers).

Bounded: MAX_EXAMPLES requests per operation (derandomized, so a run is repeatable), and the
whole run stops generating after TIME_LIMIT_S.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.bridge.test_cli import free_port
from tests.conftest import JWT_SECRET, SERVICE_TOKEN

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

pytestmark = pytest.mark.one_database

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE

MAX_EXAMPLES = 25
TIME_LIMIT_S = 150.0
START_TIMEOUT_S = 60.0
# What "breaks the document": the server's errors and every conformance check.
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
]


class Live:
    def __init__(self, base: str, user_token: str):
        self.base = base
        self.user_token = user_token


def _request(base: str, method: str, path: str, body: bytes | None = None) -> int:
    req = urllib.request.Request(
        base + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        # SQLite, also in the PostgreSQL run: the served process migrates its database, and
        # the shared test database's own schema is not one to migrate.
        "database": {"url": f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}"},
        "auth": {"jwt_secret": JWT_SECRET, "service_tokens": [SERVICE_TOKEN]},
        "limits": {"posts_per_minute": 0},
        "logging": {"level": "warning", "format": "json"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--config", str(path)],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, (tmp / "serve.log").read_text()
                assert time.monotonic() < deadline, "the service did not get ready"
                time.sleep(0.2)
        # Something to find: a student with a chat, whose token the user operations use.
        _request(base, "PUT", "/api/v1/users/s1", b'{"role": "student", "name": "Sam"}')
        _request(base, "PUT", "/api/v1/users/t1", b'{"role": "teacher", "name": "Tess"}')
        body = b'{"student_id": "s1", "teacher_id": "t1", "subject": {"id": "m", "name": "M"}}'
        _request(base, "PUT", "/api/v1/enrollments/e1", body)
        token = jwt.encode(
            {"sub": "s1", "iat": int(time.time()), "exp": int(time.time()) + 3600},
            JWT_SECRET,
            algorithm="HS256",
        )
        # ... and a message in it, so answers carry message objects too.
        req = urllib.request.Request(
            base + "/api/v1/chats/1/messages",
            data=b'{"content": "first", "client_id": "c1"}',
            method="POST",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
        yield Live(base, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    # The service never logged an unexpected error while it was being fuzzed.
    text = (tmp / "serve.log").read_text()
    assert '"level": "error"' not in text, text[-3000:]


def auth_headers(operation: Any, live: Live) -> dict[str, str]:
    schemes = {name for req in operation.definition.raw.get("security", []) for name in req}
    if "userToken" in schemes:
        return {"Authorization": f"Bearer {live.user_token}"}
    if "serviceToken" in schemes:
        return {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    return {}


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> str | None:
    """Run one operation's examples; the failure, if any, as text."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=10)

    try:
        run()
    except Unsatisfiable:
        # No invalid request exists (no parameters, or strings of any kind): fine for the
        # negative mode; a positive mode that cannot generate is a bug of the document.
        if mode is not NEGATIVE:
            return f"{operation.label}: no valid request can be generated"
    except Exception as exc:  # this operation's failure; the others still run
        return f"{operation.label} ({mode.value}): {str(exc)[:1500]}"
    return None


def test_generated_requests_get_no_5xx_and_answers_that_match_the_document(live: Live) -> None:
    schema = schemathesis.openapi.from_url(live.base + "/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    started = time.monotonic()
    for operation in operations:
        for mode in (POSITIVE, NEGATIVE):
            if time.monotonic() - started > TIME_LIMIT_S:
                pytest.fail(f"over {TIME_LIMIT_S:g} s before {operation.label}; so far: {failures}")
            failure = fuzz(operation, mode, auth_headers(operation, live))
            if failure is not None:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
