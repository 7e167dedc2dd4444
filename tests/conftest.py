"""Fixtures for the real components: one OpenBao dev server per session, scratch PostgreSQL databases (and
the same tests on SQLite), certificates for every identity."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.postgres import postgres_available, scratch_database
from tests.support.stack import Identities


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


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on a fresh SQLite file (the embedded default) and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ks.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    """Certificates for every identity (CA, keyservice, proxy, admin, callers), made once per module."""
    return Identities.create(tmp_path_factory.mktemp("certs"))
