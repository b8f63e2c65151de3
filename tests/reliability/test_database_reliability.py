"""The database driver under concurrent load, on real SQLite, PostgreSQL and MySQL/MariaDB.

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

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.database_support import async_url, fetch_row, sync_url
from fixtures.tcp_proxy import TcpProxy, proxy_to
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from satchel import (
    AsyncSessionHandler,
    LockTimeout,
    SaveOutcome,
    Session,
    SessionBackendError,
    SessionConfig,
    SessionManager,
)
from satchel.handler import AsyncSupportsWriteExisting, SupportsWriteExisting
from satchel.ids import generate_id
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

# 40 overlapping requests queue on one SQLite file or one connection pool: under
# the load of parallel test workers they outwait block_wait_seconds.
pytestmark = pytest.mark.serial


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


class StoredRows:
    """``stored_state`` for the suite: the ids in the sessions table and in its lock table."""

    def stored_state(self, manager: SessionManager) -> object:
        handler = manager.handler()
        assert isinstance(handler, DatabaseSessionHandler)
        with handler.engine.connect() as connection:
            sessions = set(connection.execute(sa.select(handler.table.c.id)).scalars())
            locks = set(connection.execute(sa.select(handler.locks.c.id)).scalars())
        return sessions, locks


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
    StoredRows, ResurrectionConformance, AsyncResurrectionConformance, ConcurrencyConformance
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


class TestAsyncioTwin(StoredRows, AsyncResurrectionConformance, ConcurrencyConformance):
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
    bystander = manager.storage_key(generate_id())
    handler.write(bystander, "kept")
    hostile = (text + "0" * 64)[:64]  # shaped like the digests core hands drivers
    assert handler.read(hostile) == ""
    assert handler.write_existing(hostile, "injected?") is False  # ``OR 1=1`` would match
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


# -- an outage of the database server ----------------------------------------------------

CONNECT_TIMEOUT = 2  # seconds; libpq counts whole seconds, at least 2
# How much longer than the timeout a failure may take on a busy two-core machine.
TIMEOUT_SLACK = 3.0


@pytest.fixture(params=["postgres_url", "mysql_url"])
def server_url(request: pytest.FixtureRequest) -> str:
    """PostgreSQL and MariaDB (SQLite has no server to lose)."""
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def proxy(server_url: str) -> Iterator[TcpProxy]:
    """A proxy between the driver and the shared server, which the test cuts instead."""
    url = sa.make_url(server_url)
    default_port = 5432 if url.get_backend_name() == "postgresql" else 3306
    with proxy_to(url.host or "127.0.0.1", url.port or default_port) as started:
        yield started


def through(proxy: TcpProxy, url: str) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def outage_manager(url: str, table: str, **options: Any) -> SessionManager:
    return SessionManager(
        SessionConfig.from_dict(
            {
                "driver": "database",
                "connection": url,
                "table": table,
                "lottery": [0, 1],
                "options": {"connect_timeout": CONNECT_TIMEOUT, **options},
            }
        )
    )


def stored_payload(url: str, table: str, key: str) -> str:
    """The payload column of storage key ``key``, read from the server itself, not the proxy."""
    row = fetch_row(url, table, key)
    assert row is not None
    return str(row["payload"])


def assert_store_down(failure: pytest.ExceptionInfo[SessionBackendError], proxy: TcpProxy) -> None:
    """The error names the driver and the address the application configured."""
    assert failure.value.driver == "database"
    assert f"127.0.0.1:{proxy.port}/" in failure.value.address
    assert f"'database' at {failure.value.address}" in str(failure.value)


def test_a_server_outage_is_a_clear_error_and_the_same_manager_recovers(
    server_url: str, proxy: TcpProxy, make_table: Callable[..., str]
) -> None:
    table = make_table(server_url, locks=True)
    manager = outage_manager(through(proxy, server_url), table)
    session = manager.start(None)
    session.put("cart", ["apple", "pear"])
    assert session.save() is SaveOutcome.WRITTEN
    loaded = manager.start(session.id)
    assert loaded.get("cart") == ["apple", "pear"]  # the pool now holds a live connection
    before = stored_payload(server_url, table, manager.storage_key(session.id))

    proxy.cut()  # the server is gone, the pooled connection reset
    loaded.put("cart", ["overwritten"])
    started = time.monotonic()
    with pytest.raises(SessionBackendError) as failed_write:
        loaded.save()
    with pytest.raises(SessionBackendError) as failed_read:
        manager.start(session.id).all()
    fresh = manager.start(None)  # a new session reads nothing
    fresh.put("cart", ["new"])
    with pytest.raises(SessionBackendError):
        fresh.save()
    elapsed = time.monotonic() - started
    assert_store_down(failed_write, proxy)
    assert_store_down(failed_read, proxy)
    assert elapsed < 3 * CONNECT_TIMEOUT + TIMEOUT_SLACK  # three calls, each within the timeout
    # Nothing overwritten.
    assert stored_payload(server_url, table, manager.storage_key(session.id)) == before

    proxy.restore()  # the same port; no new manager, no restart
    again = manager.start(session.id)
    assert again.get("cart") == ["apple", "pear"]
    again.put("cart", ["apple", "pear", "plum"])
    assert again.save() is SaveOutcome.WRITTEN
    assert manager.start(session.id).get("cart") == ["apple", "pear", "plum"]
    manager.handler().close()


def test_a_server_that_stops_answering_fails_within_the_timeout(
    server_url: str, proxy: TcpProxy, make_table: Callable[..., str]
) -> None:
    """Accepted connections that never get an answer: the connect (and, on MySQL, the
    read) timeout ends the wait instead of hanging the request."""
    table = make_table(server_url, locks=True)
    manager = outage_manager(through(proxy, server_url), table, read_timeout=CONNECT_TIMEOUT)
    session = manager.start(None)
    session.put("user_id", 7)
    session.save()

    proxy.hang()
    started = time.monotonic()
    with pytest.raises(SessionBackendError) as failed_read:
        manager.start(session.id).all()
    elapsed = time.monotonic() - started
    assert_store_down(failed_read, proxy)
    assert CONNECT_TIMEOUT * 0.9 <= elapsed < CONNECT_TIMEOUT + TIMEOUT_SLACK

    proxy.restore()
    assert manager.start(session.id).get("user_id") == 7
    manager.handler().close()


def test_the_asyncio_twin_survives_an_outage_too(
    server_url: str, proxy: TcpProxy, make_table: Callable[..., str]
) -> None:
    table = make_table(server_url, locks=True)
    manager = outage_manager(async_url(through(proxy, server_url)), table)

    async def loaded(session_id: str | None) -> Session:
        session = manager.lazy(session_id)
        await session.aload()
        return session

    async def main() -> None:
        handler = manager.async_handler()
        assert isinstance(handler, AsyncDatabaseSessionHandler)
        try:
            session = await loaded(None)
            session.put("cart", ["apple"])
            assert await session.asave() is SaveOutcome.WRITTEN
            again = await loaded(session.id)
            assert again.get("cart") == ["apple"]
            before = stored_payload(server_url, table, manager.storage_key(session.id))

            proxy.cut()
            again.put("cart", ["overwritten"])
            started = time.monotonic()
            with pytest.raises(SessionBackendError) as failed_write:
                await again.asave()
            with pytest.raises(SessionBackendError) as failed_read:
                await loaded(session.id)
            assert time.monotonic() - started < 2 * CONNECT_TIMEOUT + TIMEOUT_SLACK
            assert_store_down(failed_write, proxy)
            assert_store_down(failed_read, proxy)
            assert stored_payload(server_url, table, manager.storage_key(session.id)) == before

            proxy.restore()
            assert (await loaded(session.id)).get("cart") == ["apple"]
        finally:
            await handler.close()

    asyncio.run(main())
