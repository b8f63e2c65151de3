"""The database driver's connection pool under a burst: a request waits for a free
connection up to ``options.pool_timeout``, then fails with ``PoolExhausted`` (a 503 in
the web glue) naming the driver and the database, never with SQLAlchemy's bare
``TimeoutError`` (a 500). On SQLite, PostgreSQL and MariaDB, sync and asyncio.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.database_support import async_url, sync_url

from satchel import ConfigError, PoolExhausted, SessionBackendError, SessionBusy, SessionConfig
from satchel.testing import new_storage_id
from satchel_database import AsyncDatabaseSessionHandler, DatabaseSessionHandler

HELD_SECONDS = 0.5


def _config(url: str, table: str, **options: Any) -> SessionConfig:
    pool = {"pool_size": 1, "max_overflow": 0, **options}
    return SessionConfig(driver="database", connection=url, table=table, options=pool)


def _assert_names_the_database(error: PoolExhausted, url: str) -> None:
    assert isinstance(error, SessionBusy)
    assert isinstance(error, SessionBackendError)
    assert error.driver == "database"
    assert url.split("://", 1)[0].split("+", 1)[0] in error.address
    assert "TimeoutError" in str(error)


def test_a_request_waits_for_the_busy_pool_then_succeeds(
    database_url: str, make_table: Any
) -> None:
    handler = DatabaseSessionHandler.from_config(
        _config(database_url, make_table(database_url), pool_timeout=10)
    )
    key = new_storage_id()
    handler.write(key, "stored")
    found: list[str] = []
    with handler.engine.connect():  # the pool's only connection, taken
        reader = threading.Thread(target=lambda: found.append(handler.read(key)))
        reader.start()
        reader.join(HELD_SECONDS)
        assert reader.is_alive()  # waiting for the connection, not failed
    reader.join(10)
    assert found == ["stored"]


def test_a_pool_busy_past_pool_timeout_is_pool_exhausted(
    database_url: str, make_table: Any
) -> None:
    handler = DatabaseSessionHandler.from_config(
        _config(database_url, make_table(database_url), pool_timeout=0.3)
    )
    key = new_storage_id()
    handler.write(key, "stored")
    with handler.engine.connect():
        started = time.monotonic()
        with pytest.raises(PoolExhausted) as caught:
            handler.write(key, "refused")
        assert 0.25 <= time.monotonic() - started < 5
    _assert_names_the_database(caught.value, database_url)
    assert handler.read(key) == "stored"


def test_the_asyncio_twin_waits_then_fails_past_pool_timeout(
    database_url: str, make_table: Any
) -> None:
    url = async_url(database_url)
    table = make_table(database_url)

    async def scenario() -> None:
        waiting = AsyncDatabaseSessionHandler.from_config(_config(url, table, pool_timeout=10))
        key = new_storage_id()
        await waiting.write(key, "stored")
        async with waiting.engine.connect():
            reader = asyncio.ensure_future(waiting.read(key))
            await asyncio.sleep(HELD_SECONDS)
            assert not reader.done()  # waiting for the connection, not failed
        assert await reader == "stored"
        await waiting.close()

        impatient = AsyncDatabaseSessionHandler.from_config(_config(url, table, pool_timeout=0.3))
        async with impatient.engine.connect():
            with pytest.raises(PoolExhausted) as caught:
                await impatient.write(key, "refused")
        _assert_names_the_database(caught.value, database_url)
        assert await impatient.read(key) == "stored"
        await impatient.close()

    asyncio.run(scenario())


def test_pool_timeout_has_a_default_and_is_checked() -> None:
    url = "sqlite:///unused.db"
    handler = DatabaseSessionHandler.from_config(SessionConfig(driver="database", connection=url))
    assert handler.engine.pool.timeout() == 10.0
    for bad in (0, -1):
        with pytest.raises(ConfigError) as caught:
            DatabaseSessionHandler.from_config(
                SessionConfig(driver="database", connection=url, options={"pool_timeout": bad})
            )
        assert caught.value.key == "options.pool_timeout"


def _terminate_backend_of(handler: DatabaseSessionHandler, postgres_url: str) -> None:
    """End, from the server's side, the pooled connection ``handler`` would use next."""
    with handler.engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = sa.create_engine(sync_url(postgres_url), poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(100):  # until the server has let it go
                gone = connection.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                ).scalar()
                if not gone:
                    break
                time.sleep(0.05)
    finally:
        admin.dispose()


def test_a_pooled_connection_the_server_closed_is_replaced_before_use(
    postgres_url: str, make_table: Any
) -> None:
    """pool_pre_ping on psycopg: no ping per checkout, yet a connection the server
    ended (a restart, an administrator) is noticed at checkout and replaced, so no
    request fails; with the check off the same request fails."""
    table = make_table(postgres_url)
    handler = DatabaseSessionHandler.from_config(_config(postgres_url, table))
    key = new_storage_id()
    handler.write(key, "stored")
    _terminate_backend_of(handler, postgres_url)
    assert handler.read(key) == "stored"
    _terminate_backend_of(handler, postgres_url)
    handler.write(key, "again")
    assert handler.read(key) == "again"

    unchecked = DatabaseSessionHandler.from_config(
        _config(postgres_url, table, pool_pre_ping=False)
    )
    assert unchecked.read(key) == "again"
    _terminate_backend_of(unchecked, postgres_url)
    with pytest.raises(SessionBackendError):
        unchecked.read(key)
    assert unchecked.read(key) == "again"  # the dropped connection was not kept
    handler.close()
    unchecked.close()
