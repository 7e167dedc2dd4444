"""Fixtures for the real components: one OpenBao dev server per session, scratch PostgreSQL databases."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.bao import BaoDevServer
from tests.support.postgres import postgres_available, scratch_database


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoDevServer]:
    """A real OpenBao dev server shared by the session; tests use unique paths/mounts to stay apart."""
    server = BaoDevServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (SQLAlchemy URL). Skipped with the reason when no server answers,
    except under BYOK_REQUIRE_POSTGRES=1 (CI), where a missing server fails the test."""
    reason = postgres_available()
    if reason:
        if os.environ.get("BYOK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"BYOK_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    with scratch_database() as url:
        yield url
