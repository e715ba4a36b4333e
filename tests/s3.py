"""moto's stand-alone S3 server for the tests of the S3 blob store: started once per test
session on a free loopback port (a subprocess, so the app talks to it over real HTTP, as it
would to MinIO or AWS), with a fresh bucket per test."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = _free_port()
    moto_server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto_server), "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield S3Server(url)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh bucket; the ``files.s3`` config section that names it."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    bucket = f"bridge-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{s3_server.endpoint_url}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    return {
        "bucket": bucket,
        "endpoint_url": s3_server.endpoint_url,
        "region": "us-east-1",
        "prefix": "files/",
    }


def bucket_keys(s3_server: S3Server, bucket: str) -> list[str]:
    """Every object key in the bucket (ListObjectsV2's XML, read plainly)."""
    import re

    url = f"{s3_server.endpoint_url}/{bucket}?list-type=2"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = answer.read().decode()
    return re.findall(r"<Key>([^<]+)</Key>", body)
