"""The database driver under issue 6's load, on real SQLite, PostgreSQL and MySQL/MariaDB.

* The resurrection race (Rack CVE-2025-46336): a request that loaded a
  session before another one ended it (``invalidate``,
  ``regenerate(destroy=True)``) saves late — changed data or only a refresh —
  and the old id must still give an empty session. Sync and async.
* 40 overlapping requests of one session through the real WSGI and ASGI
  middlewares: with ``block = true`` every increment survives; with
  ``merge_on_save`` every request's own key survives. The control cases run
  the same load without either and lose writes, so these tests can fail.
* Hostile cookies made of SQL metacharacters never reach the driver.

Servers are found as in ``tests/database`` (``SATCHEL_TEST_POSTGRES_URL`` /
``SATCHEL_TEST_MYSQL_URL``, else the default local server, else a skip that
``SATCHEL_REQUIRE_SERVICES=postgres,mysql`` turns into a failure), by the
fixtures of ``tests/fixtures/database_servers.py``. The race and the 40
requests are ``satchel.testing.reliability``'s suite.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.database_support import async_url, sync_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from satchel import (
    AsyncSessionHandler,
    LockTimeout,
    SaveOutcome,
    SessionConfig,
    SessionManager,
)
from satchel.handler import AsyncSupportsWriteExisting, SupportsWriteExisting
from satchel.ids import generate_id, storage_key
from satchel.testing import (
    AsyncResurrectionConformance,
    ConcurrencyConformance,
    ResurrectionConformance,
)
from satchel.testing.reliability import logged_in
from satchel_database import (
    AsyncDatabaseSessionHandler,
    DatabaseSessionHandler,
    ThreadedDatabaseSessionHandler,
    create_async_handler,
    create_handler,
)
from satchel_database.schema import locks_table, sessions_table


@pytest.fixture
def table(make_table: Callable[..., str], database_url: str) -> str:
    """A fresh sessions table (and lock table) for the test, dropped afterwards."""
    return make_table(database_url, locks=True)


@pytest.fixture
def make_manager(database_url: str, table: str) -> Iterator[Callable[..., SessionManager]]:
    """A manager on the test's table.

    Its async twin runs the sync handler in worker threads (the driver's
    choice for a sync URL), or with ``asgi_url`` the asyncio engine on that URL.
    """
    made: list[SessionManager] = []
    threaded: list[ThreadedDatabaseSessionHandler] = []

    def make(
        *, asgi_url: str | None = None, clock: Callable[[], float] | None = None, **config: Any
    ) -> SessionManager:
        settings = SessionConfig.from_dict(
            {
                "driver": "database",
                "connection": sync_url(database_url),
                "table": table,
                "lottery": [0, 1],  # no gc mid-test
                "block_wait_seconds": 30,  # 40 waiters polling every 50 ms take a few seconds
                **config,
            }
        )

        def twin(config: SessionConfig) -> AsyncSessionHandler:
            if asgi_url is not None:
                return asyncio_handler(config, asgi_url)
            handler = create_async_handler(config)
            assert isinstance(handler, ThreadedDatabaseSessionHandler)
            threaded.append(handler)
            return handler

        manager = SessionManager(settings, clock=clock)
        manager.extend("database", create_handler, twin)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.handler().close()
    for handler in threaded:
        handler.handler.close()


def asyncio_handler(config: SessionConfig, url: str) -> AsyncDatabaseSessionHandler:
    """The asyncio-engine twin on ``url``, without a connection pool.

    ``satchel.testing.concurrency`` runs the ASGI requests in an event loop of
    its own, which pooled asyncpg/aiomysql/aiosqlite connections would
    outlive. With ``NullPool`` each connection is closed inside that loop; the
    handler, its SQL and its locks are the driver's own.
    """
    return AsyncDatabaseSessionHandler(
        create_async_engine(url, poolclass=NullPool),
        lifetime_seconds=config.lifetime_seconds,
        table=sessions_table(config.table),
    )


# -- the resurrection race and 40 overlapping requests ------------------------------


def test_the_handlers_write_only_over_existing_rows(
    make_manager: Callable[..., SessionManager],
) -> None:
    manager = make_manager()
    handler = manager.handler()
    assert isinstance(handler, DatabaseSessionHandler)
    assert isinstance(handler, SupportsWriteExisting)
    assert isinstance(manager.async_handler(), ThreadedDatabaseSessionHandler)
    assert isinstance(manager.async_handler(), AsyncSupportsWriteExisting)


class TestThreadedTwin(
    ResurrectionConformance, AsyncResurrectionConformance, ConcurrencyConformance
):
    """``satchel.testing.reliability``'s suite; the async twin runs the sync handler in threads."""

    clock_start = 1_000_000.0
    handler_type = DatabaseSessionHandler
    async_handler_type = ThreadedDatabaseSessionHandler

    @pytest.fixture
    def satchel_manager_factory(
        self, make_manager: Callable[..., SessionManager]
    ) -> Callable[..., SessionManager]:
        return make_manager


class TestAsyncioTwin(AsyncResurrectionConformance, ConcurrencyConformance):
    """The async race and the ASGI requests on the asyncio engine (asyncpg, aiomysql, aiosqlite)."""

    clock_start = 1_000_000.0
    async_handler_type = AsyncDatabaseSessionHandler
    close_async_handler = True

    @pytest.fixture(params=["asgi"])
    def via(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def satchel_manager_factory(
        self, make_manager: Callable[..., SessionManager], database_url: str
    ) -> Callable[..., SessionManager]:
        return functools.partial(make_manager, asgi_url=async_url(database_url))


# -- SQL metacharacters ------------------------------------------------------------------

SQL_METACHARACTERS = ["' OR 1=1--", "x'; DROP TABLE sessions; --", "\\'", "%_", "1' OR '1'='1"]


@pytest.mark.parametrize("text", SQL_METACHARACTERS)
def test_a_cookie_of_sql_metacharacters_never_reaches_the_driver(
    make_manager: Callable[..., SessionManager],
    text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = make_manager()
    bystander = logged_in(manager)
    handler = manager.handler()
    calls: list[str] = []
    for name in (
        "read",
        "write",
        "write_with_metadata",
        "write_existing",
        "destroy",
        "touch",
        "lock",
    ):
        original = getattr(handler, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(handler, name, spy)
    cookie = (text + "A" * 40)[:40]  # the length of a real id, but not its alphabet
    with caplog.at_level(logging.DEBUG, logger="satchel"):
        session = manager.start(cookie)
        assert session.all() == {}
        assert session.id != cookie
        assert calls == []  # strict mode: a malformed id is never looked up
        session.put("cart", ["apple"])
        assert session.save() is SaveOutcome.WRITTEN
    assert calls == ["write_with_metadata"]  # a new session: stored under a fresh id
    assert cookie not in caplog.text
    assert manager.start(bystander).get("user_id") == 42
    assert manager.start(session.id).get("cart") == ["apple"]


@pytest.mark.parametrize("text", SQL_METACHARACTERS)
def test_a_digest_of_sql_metacharacters_is_inert_in_every_handler_call(
    make_manager: Callable[..., SessionManager], database_url: str, table: str, text: str
) -> None:
    manager = make_manager()
    handler = manager.handler()
    assert isinstance(handler, DatabaseSessionHandler)
    bystander = storage_key(generate_id())
    handler.write(bystander, "kept")
    hostile = (text + "0" * 64)[:64]  # shaped like the digests core hands drivers
    assert handler.read(hostile) == ""
    assert handler.write_existing(hostile, "injected?") is False  # ``OR 1=1`` would match
    assert handler.touch(hostile) is False
    assert handler.destroy(hostile) is True
    with handler.lock(hostile, lock_seconds=5, wait_seconds=1):
        with pytest.raises(LockTimeout), handler.lock(hostile, lock_seconds=5, wait_seconds=0.2):
            pass
        with handler.lock(bystander, lock_seconds=5, wait_seconds=0.2):
            pass  # only the hostile id's lock is held
    assert handler.write(hostile, "hostile") is True
    assert handler.write_existing(hostile, "hostile, again") is True
    assert handler.read(hostile) == "hostile, again"
    handler.destroy(hostile)
    assert handler.read(hostile) == ""
    assert handler.read(bystander) == "kept"
    engine = sa.create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(sessions_table(table).c.id)).scalars().all()
            lock_rows = connection.execute(sa.select(locks_table(table).c.id)).scalars().all()
    finally:
        engine.dispose()
    assert rows == [bystander]  # the table is there and holds exactly the bystander
    assert lock_rows == []  # every lock taken was released
