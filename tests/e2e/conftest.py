"""Fixtures of the end-to-end tests: the fake Pachca, and the Pachca mirror's app factory
(``start``, tests/e2e/mirror_kit.py; a module may define a ``start`` of its own)."""

from tests.e2e.mirror_kit import start  # noqa: F401 - the fixture
from tests.fakes import fake_pachca_fixture  # noqa: F401 - the fake_pachca fixture
