"""Fakes of external services for end-to-end tests.

The `fake_pachca` fixture starts a FakePachca on loopback; point the bridge at `fake.base_url`.
Enable it with `pytest_plugins = ["tests.fakes"]` in the top-level tests/conftest.py, or with
`from tests.fakes import fake_pachca_fixture  # noqa: F401` in a test module.

`tests.fakes.webhooks` builds Pachca's webhook bodies; `tests.fakes.webhook_kit` signs and
delivers them, and builds the forum they are delivered into.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.pachca import FAKE_API_PREFIX, FakePachca, RecordedRequest, Violation, spec_errors

__all__ = [
    "FAKE_API_PREFIX",
    "FAKE_PACHCA_TOKEN",
    "FakePachca",
    "RecordedRequest",
    "Violation",
    "fake_pachca_fixture",
    "spec_errors",
]

FAKE_PACHCA_TOKEN = "test-token"


# Named apart from the fixture so importing it into a test module does not shadow parameters.
@pytest.fixture(name="fake_pachca")
async def fake_pachca_fixture(
    aiohttp_server: Callable[[web.Application], Awaitable[Any]],
) -> AsyncIterator[FakePachca]:
    fake = FakePachca(token=FAKE_PACHCA_TOKEN)
    await fake.serve(aiohttp_server)
    yield fake
    # Whatever the test did, the fake itself answered as the spec says Pachca answers.
    assert not fake.answer_errors, fake.answer_errors
