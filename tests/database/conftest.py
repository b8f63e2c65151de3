"""Fixtures for the database driver's tests: real SQLite, PostgreSQL and MySQL/MariaDB.

Each server is found in this order: a URL in ``SATCHEL_TEST_POSTGRES_URL`` /
``SATCHEL_TEST_MYSQL_URL``, else the server on its default local port, else a
skip (a failure when ``SATCHEL_REQUIRE_SERVICES`` names ``postgres``/``mysql``).
Every test gets its own table, ``sessions_<random>``, dropped afterwards, so
parallel runs never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from database_support import drop_table, sync_url

from satchel.testing import service_missing
from satchel_database.schema import sessions_table

DEFAULT_POSTGRES_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)
DEFAULT_MYSQL_URLS = ("mysql+pymysql://root@127.0.0.1:3306/test",)
BACKENDS = ("sqlite", "postgresql", "mysql")


def _reachable(url: str) -> str | None:
    """None when ``url`` answers ``SELECT 1``, else why not."""
    engine = sa.create_engine(
        sync_url(url), poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()


def _find_server(env_name: str, defaults: tuple[str, ...], service: str) -> str:
    configured = os.environ.get(env_name)
    candidates = (configured,) if configured else defaults
    reasons = []
    for url in candidates:
        reason = _reachable(url)
        if reason is None:
            return url
        reasons.append(f"{sa.make_url(url).render_as_string(hide_password=True)}: {reason}")
    where = f"${env_name}" if configured else f"the default local server (set ${env_name})"
    service_missing(service, f"{where} did not answer: {'; '.join(reasons)}")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _find_server("SATCHEL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URLS, "postgres")


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return _find_server("SATCHEL_TEST_MYSQL_URL", DEFAULT_MYSQL_URLS, "mysql")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.db'}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """The sync URL of each database in turn."""
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}
    return str(request.getfixturevalue(name[request.param]))


@pytest.fixture
def table_name(request: pytest.FixtureRequest) -> str:
    return f"sessions_{secrets.token_hex(5)}"


@pytest.fixture
def make_table(table_name: str) -> Iterator[Callable[[str], str]]:
    """Create the test's table on a database (by URL); every one made is dropped afterwards."""
    made: list[str] = []

    def make(url: str) -> str:
        engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
        try:
            sessions_table(table_name).create(engine, checkfirst=True)
        finally:
            engine.dispose()
        made.append(url)
        return table_name

    yield make
    for url in made:
        drop_table(url, table_name)
