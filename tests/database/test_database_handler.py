"""The database driver beyond the shared suite: upsert races, metadata, expiry, gc, errors."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.database_support import async_url, drop_table, fetch_row, sync_url

from satchel import ConfigError, LockTimeout, RequestMetadata, SessionBackendError, SessionConfig
from satchel.handler import (
    SupportsBatchedGc,
    SupportsMetadata,
    SupportsWriteExisting,
)
from satchel.testing import free_port, new_storage_id
from satchel_database import (
    AsyncDatabaseSessionHandler,
    DatabaseSessionHandler,
    ThreadedDatabaseSessionHandler,
    create_async_handler,
    create_handler,
)
from satchel_database.connection import is_busy, is_retryable


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_config(url: str, table: str, **options: Any) -> SessionConfig:
    return SessionConfig(
        driver="database", connection=url, table=table, lifetime=1.0, options=options
    )


@pytest.fixture
def handler_for(make_table: Callable[[str], str]) -> Any:
    made: list[DatabaseSessionHandler] = []

    def build(url: str, clock: FakeClock | None = None, **options: Any) -> DatabaseSessionHandler:
        handler = create_handler(make_config(url, make_table(url), **options))
        if clock is not None:
            handler.clock = clock
        made.append(handler)
        return handler

    yield build
    for handler in made:
        handler.close()


def test_handler_has_the_optional_capabilities(database_url: str, handler_for: Any) -> None:
    handler = handler_for(database_url)
    assert isinstance(handler, SupportsMetadata)
    assert isinstance(handler, SupportsBatchedGc)
    assert isinstance(handler, SupportsWriteExisting)


def test_racing_first_writes_of_one_id_never_raise(database_url: str, handler_for: Any) -> None:
    handler = handler_for(database_url, pool_size=20, max_overflow=20)
    writers = 24
    for _round in range(3):
        key = new_storage_id()
        start = threading.Barrier(writers)

        def first_request(index: int, key: str = key, start: threading.Barrier = start) -> bool:
            start.wait()
            return handler.write(key, f"writer {index}")

        with ThreadPoolExecutor(max_workers=writers) as pool:
            results = list(pool.map(first_request, range(writers)))
        assert results == [True] * writers
        assert handler.read(key) in {f"writer {index}" for index in range(writers)}


def test_async_racing_first_writes_never_raise(
    database_url: str, make_table: Callable[[str], str]
) -> None:
    config = make_config(async_url(database_url), make_table(database_url))

    async def main() -> None:
        handler = create_async_handler(config)
        assert isinstance(handler, AsyncDatabaseSessionHandler)
        try:
            key = new_storage_id()
            results = await asyncio.gather(*(handler.write(key, f"w{i}") for i in range(16)))
            assert results == [True] * 16
            assert await handler.read(key) in {f"w{i}" for i in range(16)}
        finally:
            await handler.close()

    asyncio.run(main())


@pytest.mark.parametrize("server", ["postgres_url", "mysql_url"])
def test_dialects_without_a_native_upsert_fall_back_safely(
    server: str, request: pytest.FixtureRequest, handler_for: Any
) -> None:
    """Update, insert, update again (and the same for locks) when there is no upsert."""
    handler = handler_for(request.getfixturevalue(server), pool_size=20, max_overflow=20)
    handler.statements.dialect_name = "some-other-dialect"
    assert handler.statements.upsert(("payload",)) is None
    key = new_storage_id()
    start = threading.Barrier(12)

    def first_request(index: int) -> bool:
        start.wait()
        return handler.write(key, f"writer {index}")

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert list(pool.map(first_request, range(12))) == [True] * 12
    assert handler.read(key).startswith("writer ")
    handler.write_with_metadata(key, "again", RequestMetadata("192.0.2.9", "ua", {"user_id": 3}))
    assert handler.read(key) == "again"
    with (
        handler.lock(key, lock_seconds=10, wait_seconds=1),
        pytest.raises(LockTimeout),
        handler.lock(key, lock_seconds=10, wait_seconds=0.2),
    ):
        pass
    expired = handler.lock(key, lock_seconds=0.2, wait_seconds=1)
    expired.__enter__()
    with handler.lock(key, lock_seconds=10, wait_seconds=2):  # takes over the expired lock
        pass


def test_metadata_is_stored_beside_the_payload(database_url: str, handler_for: Any) -> None:
    handler = handler_for(database_url)
    key = new_storage_id()
    metadata = RequestMetadata(
        ip_address="2001:db8::1", user_agent="Agent/1.0 " + "x" * 900, values={"user_id": 42}
    )
    assert handler.write_with_metadata(key, "payload", metadata) is True
    row = fetch_row(database_url, handler.table.name, key)
    assert row is not None
    assert row["user_id"] == "42"
    assert row["ip_address"] == "2001:db8::1"
    assert isinstance(row["user_agent"], str)
    assert row["user_agent"].startswith("Agent/1.0 ")
    assert len(row["user_agent"]) == 500
    assert row["payload"] == "payload"
    # A plain write (no request at hand) keeps the metadata the last request left.
    handler.write(key, "changed")
    row = fetch_row(database_url, handler.table.name, key)
    assert row is not None
    assert (row["user_id"], row["ip_address"], row["payload"]) == ("42", "2001:db8::1", "changed")
    # A later request of a logged-out user clears the user.
    handler.write_with_metadata(key, "anon", RequestMetadata(ip_address="10.0.0.7"))
    row = fetch_row(database_url, handler.table.name, key)
    assert row is not None
    assert (row["user_id"], row["ip_address"], row["user_agent"]) == (None, "10.0.0.7", None)


def test_user_key_option_names_the_session_value(sqlite_url: str, handler_for: Any) -> None:
    handler = handler_for(sqlite_url, user_key="account")
    key = new_storage_id()
    handler.write_with_metadata(
        key, "p", RequestMetadata(values={"account": "acct-7", "user_id": 1})
    )
    row = fetch_row(sqlite_url, handler.table.name, key)
    assert row is not None
    assert row["user_id"] == "acct-7"
    # Values that are no id (a mapping, a bool, an over-long string) are left out.
    for value in ({"id": 1}, True, "u" * 300):
        handler.write_with_metadata(key, "p", RequestMetadata(values={"account": value}))
        row = fetch_row(sqlite_url, handler.table.name, key)
        assert row is not None
        assert row["user_id"] is None


SQL_METACHARACTERS = ["' OR 1=1--", "x'; DROP TABLE sessions; --", "\\'", "%_"]
# Shaped like the SHA-256 digests core hands drivers (64 characters), metacharacters first.
DIGEST_SHAPED = [(text + "0" * 64)[:64] for text in SQL_METACHARACTERS]


@pytest.mark.parametrize("hostile", SQL_METACHARACTERS + DIGEST_SHAPED)
def test_sql_metacharacters_in_ids_are_inert(
    database_url: str, handler_for: Any, hostile: str
) -> None:
    handler = handler_for(database_url)
    bystander = new_storage_id()
    handler.write(bystander, "kept")
    assert handler.read(hostile) == ""
    # An injected ``OR 1=1`` would update the bystander's row and report it.
    assert handler.write_existing(hostile, "hostile") is False
    assert handler.read(bystander) == "kept"
    handler.write(hostile, "hostile")
    assert handler.read(hostile) == "hostile"
    assert handler.write_existing(hostile, "hostile, again") is True
    assert handler.read(hostile) == "hostile, again"
    with handler.lock(hostile, lock_seconds=5, wait_seconds=1):
        # Only the hostile id is locked; the bystander's lock is free.
        with pytest.raises(LockTimeout), handler.lock(hostile, lock_seconds=5, wait_seconds=0.2):
            pass
        with handler.lock(bystander, lock_seconds=5, wait_seconds=0.2):
            pass
    handler.destroy(hostile)
    assert handler.read(hostile) == ""
    assert handler.read(bystander) == "kept"
    assert fetch_row(database_url, handler.table.name, bystander) is not None


def test_write_existing_never_revives_an_idle_row(database_url: str, handler_for: Any) -> None:
    clock = FakeClock()
    handler = handler_for(database_url, clock=clock)
    key = new_storage_id()
    handler.write(key, "data")
    clock.now += 60  # exactly the lifetime: still live
    assert handler.write_existing(key, "still live") is True
    clock.now += 61  # idle past the lifetime since that write
    assert handler.write_existing(key, "revived?") is False
    row = fetch_row(database_url, handler.table.name, key)
    assert row is not None  # gc has not run: the idle row is there, untouched
    assert (row["payload"], row["last_activity"]) == ("still live", 1_800_000_060)


def test_write_existing_of_an_unchanged_row_reports_it_exists(
    database_url: str, handler_for: Any
) -> None:
    """MySQL/MariaDB count *changed* rows unless the client asks for found rows.

    SQLAlchemy's pymysql and aiomysql dialects connect with ``CLIENT_FOUND_ROWS``;
    were that lost, an identical save within one second would report the
    session gone and drop the request's changes.
    """
    clock = FakeClock()
    handler = handler_for(database_url, clock=clock)
    key = new_storage_id()
    handler.write(key, "same")
    assert handler.write_existing(key, "same") is True  # same payload, same second


def _with_async_handler(
    config: SessionConfig,
    clock: FakeClock,
    use: Callable[[AsyncDatabaseSessionHandler], Awaitable[None]],
) -> None:
    """Run ``use`` on the async handler of ``config``, on ``clock``; closed afterwards."""

    async def main() -> None:
        handler = create_async_handler(config)
        assert isinstance(handler, AsyncDatabaseSessionHandler)
        handler.clock = clock
        try:
            await use(handler)
        finally:
            await handler.close()

    asyncio.run(main())


def test_async_write_existing_of_an_unchanged_or_idle_row(
    database_url: str, make_table: Callable[[str], str]
) -> None:
    config = make_config(async_url(database_url), make_table(database_url))
    clock = FakeClock()

    async def use(handler: AsyncDatabaseSessionHandler) -> None:
        key = new_storage_id()
        await handler.write(key, "same")
        assert await handler.write_existing(key, "same") is True
        clock.now += 61
        assert await handler.write_existing(key, "revived?") is False
        clock.now -= 61
        assert await handler.read(key) == "same"

    _with_async_handler(config, clock, use)


def test_write_existing_sets_metadata_only_when_given(database_url: str, handler_for: Any) -> None:
    handler = handler_for(database_url)
    key = new_storage_id()
    handler.write_with_metadata(key, "p1", RequestMetadata("192.0.2.1", "A/1", {"user_id": 7}))
    assert handler.write_existing(key, "p2") is True
    row = fetch_row(database_url, handler.table.name, key)
    assert row is not None
    assert (row["payload"], row["user_id"], row["ip_address"], row["user_agent"]) == (
        "p2",
        "7",
        "192.0.2.1",
        "A/1",
    )
    metadata = RequestMetadata("198.51.100.2", "B/2", {"user_id": "u-8"})
    assert handler.write_existing(key, "p3", metadata) is True
    row = fetch_row(database_url, handler.table.name, key)
    assert row is not None
    assert (row["payload"], row["user_id"], row["ip_address"], row["user_agent"]) == (
        "p3",
        "u-8",
        "198.51.100.2",
        "B/2",
    )


def test_reads_ignore_idle_rows_and_write_existing_never_revives(
    sqlite_url: str, handler_for: Any
) -> None:
    clock = FakeClock()
    handler = handler_for(sqlite_url, clock=clock)
    key = new_storage_id()
    handler.write(key, "data")
    clock.now += 60  # exactly the lifetime: still valid
    assert handler.read(key) == "data"
    clock.now += 1
    assert handler.read(key) == ""
    assert handler.write_existing(key, "revived?") is False
    assert handler.read(key) == ""
    # The row is still there until gc: a read never deletes.
    assert fetch_row(sqlite_url, handler.table.name, key) is not None


def test_gc_deletes_in_batches_and_keeps_live_rows(database_url: str, handler_for: Any) -> None:
    clock = FakeClock()
    handler = handler_for(database_url, clock=clock, gc_batch_size=7)
    expired = [new_storage_id() for _ in range(50)]
    live = [new_storage_id() for _ in range(5)]
    for key in expired:
        handler.write(key, "old")
    clock.now += 3600
    for key in live:
        handler.write(key, "new")
    assert handler.count_expired(60) == 50
    assert list(handler.gc_batches(60)) == [7, 7, 7, 7, 7, 7, 7, 1]
    assert handler.count_expired(60) == 0
    assert [handler.read(key) for key in live] == ["new"] * 5
    assert handler.gc(60) == 0


def test_gc_of_a_batch_multiple_stops_after_an_empty_batch(
    sqlite_url: str, handler_for: Any
) -> None:
    clock = FakeClock()
    handler = handler_for(sqlite_url, clock=clock, gc_batch_size=5)
    for _ in range(10):
        handler.write(new_storage_id(), "old")
    clock.now += 3600
    assert handler.gc(60) == 10


def test_user_sessions_are_listed_and_revoked(database_url: str, handler_for: Any) -> None:
    clock = FakeClock()
    handler = handler_for(database_url, clock=clock)
    mine = [new_storage_id() for _ in range(3)]
    theirs = new_storage_id()
    for offset, key in enumerate(mine):
        clock.now += offset
        handler.write_with_metadata(
            key, "p", RequestMetadata("192.0.2.1", "Firefox", {"user_id": "u-1"})
        )
    handler.write_with_metadata(theirs, "p", RequestMetadata(values={"user_id": "u-2"}))
    listed = handler.sessions_of_user("u-1")
    assert [session.id for session in listed] == list(reversed(mine))
    assert {(s.ip_address, s.user_agent, s.user_id) for s in listed} == {
        ("192.0.2.1", "Firefox", "u-1")
    }
    assert handler.destroy_user_sessions("u-1") == 3
    assert [handler.read(key) for key in mine] == ["", "", ""]
    assert handler.read(theirs) == "p"


@pytest.mark.parametrize(
    ("server", "async_driver", "sync_driver"),
    [
        ("sqlite_url", "sqlite+aiosqlite", "pysqlite"),
        ("postgres_url", "postgresql+asyncpg", "psycopg"),
        ("postgres_url", "postgresql+psycopg_async", "psycopg"),
        ("mysql_url", "mysql+aiomysql", "pymysql"),
    ],
)
def test_async_url_works_for_the_sync_handler(
    server: str,
    async_driver: str,
    sync_driver: str,
    request: pytest.FixtureRequest,
    handler_for: Any,
) -> None:
    url = sa.make_url(request.getfixturevalue(server)).set(drivername=async_driver)
    handler = handler_for(url.render_as_string(hide_password=False))
    assert handler.engine.dialect.driver == sync_driver
    key = new_storage_id()
    handler.write(key, "via the sync sibling")
    assert handler.read(key) == "via the sync sibling"


def test_an_async_driver_without_a_sync_sibling_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'connection'.*asyncmy"):
        create_handler(make_config("mysql+asyncmy://root@127.0.0.1/test", "sessions"))


def test_in_memory_sqlite_is_shared_by_threads() -> None:
    handler = create_handler(make_config("sqlite://", "sessions"))
    handler.create_table()
    key = new_storage_id()
    handler.write(key, "one database")
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert pool.submit(handler.read, key).result() == "one database"


def test_the_lock_table_is_made_on_first_lock_and_holds_one_row(
    database_url: str, handler_for: Any
) -> None:
    handler = handler_for(database_url)  # a sessions table migrated without its lock table
    locks = f"{handler.table.name}_locks"
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
    try:
        assert not sa.inspect(engine).has_table(locks)
        key = new_storage_id()
        with handler.lock(key, lock_seconds=30, wait_seconds=1):
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text(f"SELECT id, token, expires_at FROM {locks}")
                ).all()
            assert [row.id for row in rows] == [key]
            assert rows[0].expires_at > handler.clock() * 1000 + 25_000
        with engine.connect() as connection:
            assert connection.execute(sa.text(f"SELECT count(*) FROM {locks}")).scalar() == 0
    finally:
        engine.dispose()


def _lock_rows(url: str, locks: str) -> list[str] | None:
    """The ids in the lock table ``locks``; ``None`` when it does not exist."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        if not sa.inspect(engine).has_table(locks):
            return None
        with engine.connect() as connection:
            return sorted(connection.execute(sa.text(f"SELECT id FROM {locks}")).scalars())
    finally:
        engine.dispose()


def test_gc_removes_the_locks_their_holders_never_released(
    database_url: str, handler_for: Any
) -> None:
    clock = FakeClock()
    handler = handler_for(database_url, clock=clock)
    locks = f"{handler.table.name}_locks"
    assert handler.gc(60) == 0
    assert _lock_rows(database_url, locks) is None  # gc makes no lock table
    crashed = new_storage_id()
    assert handler.claim_lock(crashed, "a-holder-that-never-released", 30)
    clock.now += 60  # its lock has expired; nothing else would remove its row
    held = new_storage_id()
    with handler.lock(held, lock_seconds=30, wait_seconds=1):
        assert handler.gc(3600) == 0  # lock rows hold no session: not counted
        assert _lock_rows(database_url, locks) == [held]
    assert _lock_rows(database_url, locks) == []


def test_async_gc_removes_the_locks_their_holders_never_released(
    database_url: str, make_table: Callable[[str], str]
) -> None:
    table = make_table(database_url)
    clock = FakeClock()

    async def use(handler: AsyncDatabaseSessionHandler) -> None:
        assert await handler.gc(60) == 0
        assert _lock_rows(database_url, f"{table}_locks") is None
        crashed, held = new_storage_id(), new_storage_id()
        assert await handler.claim_lock(crashed, "a-holder-that-never-released", 30)
        clock.now += 60
        assert await handler.claim_lock(held, "a-holder-still-running", 30)
        assert await handler.gc(3600) == 0
        assert _lock_rows(database_url, f"{table}_locks") == [held]

    _with_async_handler(make_config(async_url(database_url), table), clock, use)


def test_create_table_is_idempotent(database_url: str, table_name: str) -> None:
    handler = create_handler(make_config(database_url, table_name))
    try:
        assert handler.create_table() == [table_name, f"{table_name}_locks"]
        assert handler.create_table() == []
        inspector = sa.inspect(sa.create_engine(sync_url(database_url)))
        indexed = {tuple(index["column_names"]) for index in inspector.get_indexes(table_name)}
        assert {("user_id",), ("last_activity",)} <= indexed
    finally:
        handler.close()
        drop_table(database_url, table_name)


def test_async_create_table_names_the_tables_it_created(
    database_url: str, make_table: Callable[..., str]
) -> None:
    table = make_table(database_url)  # the sessions table alone, without its lock table
    config = make_config(async_url(database_url), table)

    async def main() -> tuple[list[str], list[str]]:
        handler = create_async_handler(config)
        assert isinstance(handler, AsyncDatabaseSessionHandler)
        try:
            return await handler.create_table(), await handler.create_table()
        finally:
            await handler.close()

    assert asyncio.run(main()) == ([f"{table}_locks"], [])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://satchel:s3cretpw@127.0.0.1:{port}/test",
        "mysql+pymysql://satchel:s3cretpw@127.0.0.1:{port}/test",
    ],
)
def test_an_unreachable_server_is_a_backend_error_without_the_password(url: str) -> None:
    handler = create_handler(
        make_config(url.format(port=free_port()), "sessions", connect_timeout=2)
    )
    with pytest.raises(SessionBackendError) as caught:
        handler.read(new_storage_id())
    message = str(caught.value)
    assert caught.value.driver == "database"
    assert "127.0.0.1" in caught.value.address
    assert "'database'" in message
    assert "s3cretpw" not in message
    assert "s3cretpw" not in caught.value.address


def test_an_unreachable_server_is_a_backend_error_for_the_async_twin() -> None:
    url = f"postgresql+asyncpg://satchel:s3cretpw@127.0.0.1:{free_port()}/test"

    async def main() -> None:
        handler = create_async_handler(make_config(url, "sessions", connect_timeout=2))
        with pytest.raises(SessionBackendError) as caught:
            await handler.write(new_storage_id(), "x")
        assert "s3cretpw" not in str(caught.value)
        await handler.close()

    asyncio.run(main())


def test_a_missing_table_names_the_fix(database_url: str) -> None:
    handler = create_handler(make_config(database_url, "no_such_sessions_table"))
    try:
        with pytest.raises(SessionBackendError, match="satchel migrate"):
            handler.read(new_storage_id())
    finally:
        handler.close()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="'connection'"):
        create_handler(SessionConfig(driver="database"))
    with pytest.raises(ConfigError, match="'connection'"):
        create_handler(SessionConfig(driver="database", connection="not a url"))
    with pytest.raises(ConfigError, match=r"options\.bogus"):
        create_handler(make_config("sqlite://", "sessions", bogus=1))
    with pytest.raises(ConfigError, match=r"options\.gc_batch_size"):
        create_handler(make_config("sqlite://", "sessions", gc_batch_size=0))
    with pytest.raises(ConfigError, match=r"options\.read_timeout"):
        create_handler(make_config("sqlite://", "sessions", read_timeout=0))
    with pytest.raises(ConfigError, match="'table'"):
        create_handler(make_config("sqlite://", "sessions; drop table users"))


def test_a_deadlock_behind_a_lost_savepoint_is_retried() -> None:
    """MySQL/MariaDB: a deadlock inside a savepoint rolls back the whole transaction,
    so the savepoint's rollback fails; the deadlock behind it still asks for a retry."""
    lost_savepoint = sa.exc.OperationalError(
        "ROLLBACK TO SAVEPOINT sa_savepoint_1", {}, Exception(1305, "SAVEPOINT does not exist")
    )
    assert not is_retryable(lost_savepoint)
    # Raised while the deadlock was being handled, as SQLAlchemy's savepoint rollback does.
    lost_savepoint.__context__ = sa.exc.OperationalError(
        "INSERT", {}, Exception(1213, "Deadlock found")
    )
    assert is_retryable(lost_savepoint)


def test_a_busy_sqlite_file_makes_a_lock_claim_wait_not_fail(
    sqlite_url: str, handler_for: Any
) -> None:
    """Another connection holding SQLite's write lock past the busy timeout means the
    session lock is not free yet: the waiter polls on and ends in LockTimeout, not a
    backend error."""
    handler = handler_for(sqlite_url, connect_timeout=0.05)
    key = new_storage_id()
    with handler.lock(key, lock_seconds=30, wait_seconds=1):
        pass  # the lock table exists now
    blocker = sa.create_engine(sync_url(sqlite_url), poolclass=sa.pool.NullPool)
    try:
        with blocker.connect() as connection:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
            assert handler.claim_lock(key, "token", 30) is False
            with pytest.raises(LockTimeout), handler.lock(key, lock_seconds=30, wait_seconds=0.3):
                pass
            connection.exec_driver_sql("ROLLBACK")
        with handler.lock(key, lock_seconds=30, wait_seconds=1):
            pass  # free again once the file is
    finally:
        blocker.dispose()


def test_a_busy_sqlite_file_is_no_retryable_error_elsewhere() -> None:
    busy = sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    other = sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("no such table: x"))
    assert is_busy(busy)
    assert not is_busy(other)
    assert not is_retryable(busy)  # a write still reports it after the busy timeout


def test_the_threaded_twin_reads_file_sqlite_on_the_event_loop_but_never_waits_there(
    sqlite_url: str, make_table: Callable[[str], str]
) -> None:
    """The threaded twin reads a file SQLite database on the event loop, where a read
    costs less than a worker thread; while another connection holds the file's lock
    that read gives up at once and waits in a worker thread, so the loop stays free."""
    config = make_config(sqlite_url, make_table(sqlite_url))
    path = sa.make_url(sqlite_url).database
    assert path is not None

    async def main() -> None:
        twin = create_async_handler(config)
        assert isinstance(twin, ThreadedDatabaseSessionHandler)
        key = new_storage_id()
        assert await twin.write(key, "stored")
        loop_thread = threading.get_ident()
        threads: list[int] = []
        real_read = twin.handler.read

        def threaded_read(session_id: str) -> str:
            threads.append(threading.get_ident())
            return real_read(session_id)

        twin.handler.read = threaded_read  # type: ignore[method-assign]
        assert await twin.read(key) == "stored"
        assert threads == []  # answered on the loop
        assert twin.handler.read_without_waiting(key) == "stored"

        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN EXCLUSIVE")
        try:
            assert twin.handler.read_without_waiting(key) is None
            reading = asyncio.ensure_future(twin.read(key))
            await asyncio.sleep(0.3)
            assert not reading.done()  # waiting in a worker thread while the loop runs
        finally:
            writer.execute("COMMIT")
            writer.close()
        assert await reading == "stored"
        assert len(threads) == 1
        assert threads[0] != loop_thread
        await twin.close()

    asyncio.run(main())


def test_reads_without_waiting_are_for_file_sqlite_only(
    database_url: str, make_table: Callable[[str], str]
) -> None:
    handler = DatabaseSessionHandler.from_config(
        make_config(database_url, make_table(database_url))
    )
    handler.enable_reads_without_waiting()
    key = new_storage_id()
    handler.write(key, "stored")
    expected = "stored" if database_url.startswith("sqlite") else None
    assert handler.read_without_waiting(key) == expected
    memory = DatabaseSessionHandler.from_config(make_config("sqlite://", "sessions"))
    memory.enable_reads_without_waiting()
    assert memory.read_without_waiting(key) is None
    handler.close()
    memory.close()
