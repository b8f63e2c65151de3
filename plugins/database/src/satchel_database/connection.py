"""Turning ``config.connection`` into SQLAlchemy engines, and store errors into satchel's.

One URL serves both handlers. The async twin runs on SQLAlchemy's asyncio
engine when the URL names an async driver (``+asyncpg``, ``+psycopg_async``,
``+aiosqlite``, ``+aiomysql``: the ones tested); with a sync driver it runs the
sync handler in worker threads. The sync handler (WSGI, the ``satchel``
command) given an async URL uses the same database through the sync sibling
driver in :data:`SYNC_SIBLING_DRIVERS`.
"""

from __future__ import annotations

import select
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InvalidatePoolError,
    NoSuchModuleError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import SingletonThreadPool, StaticPool

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

from satchel import ConfigError
from satchel.toolkit import StoreErrors
from satchel.toolkit import describe_error as toolkit_describe_error
from satchel_database.options import ASYNC_EXTRAS, DRIVER_NAME, DatabaseOptions

# The sync driver that reaches the same server as an async one.
SYNC_SIBLING_DRIVERS = {
    "asyncpg": "psycopg",
    "psycopg_async": "psycopg",
    "aiosqlite": "pysqlite",
    "aiomysql": "pymysql",
}

# The connect() argument each DBAPI takes for its connection timeout.
_TIMEOUT_ARGUMENT = {
    "psycopg": "connect_timeout",
    "psycopg_async": "connect_timeout",
    "psycopg2": "connect_timeout",
    "pymysql": "connect_timeout",
    "mysqldb": "connect_timeout",
    "aiomysql": "connect_timeout",
    "asyncpg": "timeout",
    "pysqlite": "timeout",  # SQLite: how long to wait for another writer's lock
    "aiosqlite": "timeout",
}
# libpq wants whole seconds and treats anything under 2 as 2.
_WHOLE_SECOND_TIMEOUTS = frozenset({"psycopg", "psycopg_async", "psycopg2"})
# The DBAPIs that take options.read_timeout (as read_timeout and write_timeout).
_READ_TIMEOUT_DRIVERS = frozenset({"pymysql"})
# The DBAPIs whose connections give their socket (fileno()), checked by
# watch_liveness instead of a ping per checkout.
_SOCKET_DRIVERS = frozenset({"psycopg", "psycopg2"})
# A pooled connection idle longer than this is pinged before use all the same.
PING_AFTER_IDLE_SECONDS = 10.0
_USED_AT = "satchel_database.used_at"
# Threads (event loops) that keep a connection of create_nowait_engine's at once.
_NOWAIT_THREADS = 32

EXAMPLE_URLS = (
    "sqlite:///sessions.db, postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db"
)


def parse_url(connection: str | None) -> sa.URL:
    """The SQLAlchemy URL in ``config.connection``, or a ``ConfigError`` naming the key."""
    if not connection:
        raise ConfigError(
            "connection", f"the database driver needs an SQLAlchemy URL, e.g. {EXAMPLE_URLS}"
        )
    try:
        url = sa.make_url(connection)
        url.get_dialect()
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError("connection", f"not a usable SQLAlchemy URL: {exc}") from None
    return url


def is_async_url(url: sa.URL) -> bool:
    """True when the URL names an asyncio driver (asyncpg, aiosqlite, aiomysql, ...)."""
    return bool(url.get_dialect().is_async)


def sync_url(url: sa.URL) -> sa.URL:
    """``url`` itself for a sync driver, else the same database through the sync sibling."""
    if not is_async_url(url):
        return url
    driver = url.get_driver_name()
    sibling = SYNC_SIBLING_DRIVERS.get(driver)
    if sibling is None:
        raise ConfigError(
            "connection",
            f"the sync handler cannot use the async driver {driver!r}; "
            f"use one of {', '.join(sorted(SYNC_SIBLING_DRIVERS))} or a sync URL",
        )
    return url.set(drivername=f"{url.get_backend_name()}+{sibling}")


def display_address(url: sa.URL) -> str:
    """The URL without user or password, for error messages and logs."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite:///{url.database or ':memory:'}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"{backend}://{host}{port}/{url.database or ''}"


def is_in_memory_sqlite(url: sa.URL) -> bool:
    """True for ``sqlite://`` and ``sqlite:///:memory:``."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def engine_arguments(url: sa.URL, options: DatabaseOptions) -> dict[str, Any]:
    """Keyword arguments for ``create_engine``/``create_async_engine`` from the options."""
    driver = url.get_driver_name()
    # SQLite is a file: no server that could have dropped the connection.
    pings = url.get_backend_name() != "sqlite" and driver not in _SOCKET_DRIVERS
    arguments: dict[str, Any] = {"pool_pre_ping": options.pool_pre_ping and pings}
    connect_args: dict[str, Any] = {}
    timeout_argument = _TIMEOUT_ARGUMENT.get(driver)
    if timeout_argument is not None and timeout_argument not in url.query:
        timeout: float = options.connect_timeout
        if driver in _WHOLE_SECOND_TIMEOUTS:
            timeout = max(2, round(timeout))
        connect_args[timeout_argument] = timeout
    if driver in _READ_TIMEOUT_DRIVERS and options.read_timeout is not None:
        for name in ("read_timeout", "write_timeout"):
            if name not in url.query:
                connect_args[name] = options.read_timeout
    if is_in_memory_sqlite(url):
        # One shared connection, or every thread would see its own empty database.
        arguments["poolclass"] = StaticPool
        connect_args["check_same_thread"] = False
    else:
        for name in ("pool_size", "max_overflow", "pool_timeout", "pool_recycle"):
            value = getattr(options, name)
            if value is not None:
                arguments[name] = value
    arguments["connect_args"] = connect_args
    return arguments


def create_sync_engine(url: sa.URL, options: DatabaseOptions) -> sa.Engine:
    """The sync engine for ``url`` (an async URL is mapped to its sync sibling driver)."""
    target = sync_url(url)
    try:
        engine = sa.create_engine(target, **engine_arguments(target, options))
    except ImportError as exc:
        raise ConfigError(
            "connection",
            f"the DBAPI driver for {target.drivername!r} is not installed ({exc}); "
            "install satchel-database[postgresql], [mysql] or the driver itself",
        ) from None
    if options.pool_pre_ping and target.get_driver_name() in _SOCKET_DRIVERS:
        watch_liveness(engine)
    return engine


def create_nowait_engine(engine: sa.Engine) -> sa.Engine | None:
    """For a file SQLite database through sqlite3: an engine on the same file whose
    connections (one per thread, never waited for) give up at once on a taken lock;
    ``None`` for any other database."""
    url = engine.url
    if url.get_driver_name() != "pysqlite" or is_in_memory_sqlite(url):
        return None
    return sa.create_engine(
        url,
        poolclass=SingletonThreadPool,
        pool_size=_NOWAIT_THREADS,
        # closed by dispose() from whichever thread calls it
        connect_args={"timeout": 0, "check_same_thread": False},
    )


def watch_liveness(engine: sa.Engine) -> None:
    """``pool_pre_ping`` without a round trip per checkout, for the DBAPIs in ``_SOCKET_DRIVERS``.

    A pooled connection whose socket has something to read (the server closed
    it, or said why it is about to) or that sat idle past
    ``PING_AFTER_IDLE_SECONDS`` is pinged at checkout, and one that fails the
    ping is replaced, with every connection older than it (as SQLAlchemy's own
    pre-ping does); any other is used as it is. A restarted server closes its
    connections, so it still costs one reconnect rather than one failed request.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def connected(dbapi_connection: Any, record: Any) -> None:
        record.info[_USED_AT] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_USED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        used_at = record.info.get(_USED_AT)
        if (
            used_at is not None
            and time.monotonic() - used_at < PING_AFTER_IDLE_SECONDS
            and not _socket_has_news(dbapi_connection)
        ):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(str(exc)) from exc
            raise


def _socket_has_news(dbapi_connection: Any) -> bool:
    """True when the connection's socket is readable, in error or gone (no round trip):
    an idle connection's server has nothing to say unless it closed it."""
    try:
        descriptor = dbapi_connection.fileno()
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(descriptor, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, failed = select.select([descriptor], [], [descriptor], 0)
        return bool(readable or failed)
    except Exception:  # a closed connection (the DBAPI's own error), a bad descriptor
        return True


def create_async_engine(url: sa.URL, options: DatabaseOptions) -> AsyncEngine:
    """SQLAlchemy's asyncio engine for ``url``, imported only now.

    SQLAlchemy's asyncio support (greenlet) and the async DBAPI come with this
    distribution's extras; without them the error names the extra to install.
    """
    try:
        from sqlalchemy.ext.asyncio import (  # noqa: PLC0415 - only for the async twin
            create_async_engine as create_engine,
        )

        return create_engine(url, **engine_arguments(url, options))
    except ImportError as exc:
        driver = url.get_driver_name()
        extra = ASYNC_EXTRAS.get(driver)
        install = (
            f'pip install "satchel-database[{extra}]"'
            if extra is not None
            else f'pip install "sqlalchemy[asyncio]" and the {driver} driver'
        )
        raise ConfigError(
            "connection",
            f"the async twin for {url.drivername!r} needs SQLAlchemy's asyncio support and the "
            f"{driver} driver, which are not installed ({exc}); install them with: {install}",
        ) from None


def describe_error(exc: BaseException, url: sa.URL, table: str) -> str:
    """One line about a store failure, with a hint when the table is missing."""
    original = getattr(exc, "orig", None) or exc
    message = toolkit_describe_error(original, hide=[str(url.password or "")])
    lowered = str(original).lower()
    if table.lower() in lowered and (
        "exist" in lowered or "no such table" in lowered or "undefined" in lowered
    ):
        message += "; create the table with `satchel migrate`"
    return message


def is_retryable(exc: BaseException) -> bool:
    """True for a deadlock or serialisation failure that the server asks to retry.

    The error may be the context of the one raised: on MySQL/MariaDB a
    deadlock inside a savepoint rolls back the whole transaction, so rolling
    back to the savepoint then fails with "SAVEPOINT ... does not exist".
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if _is_retryable_error(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_retryable_error(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    original = exc.orig
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in ("40P01", "40001"):
        return True
    args: tuple[object, ...] = tuple(getattr(original, "args", ()))
    # MySQL/MariaDB: 1213 deadlock, 1205 lock wait timeout.
    return len(args) > 0 and args[0] in (1213, 1205)


def is_busy(exc: BaseException) -> bool:
    """True when SQLite's single write lock stayed taken past the busy timeout.

    For a lock claim that only means "not this time": the waiter polls again
    until ``block_wait_seconds`` runs out, instead of failing the request.
    """
    original = exc.orig if isinstance(exc, DBAPIError) else None
    return (
        original is not None
        and type(original).__module__ == "sqlite3"
        and "database is locked" in str(original)
    )


def backend_errors(url: sa.URL, table: str) -> StoreErrors:
    """Turns SQLAlchemy and socket errors into ``SessionBackendError`` naming the store.

    A pool whose connections all stayed in use for ``pool_timeout`` is
    ``PoolExhausted``: the store is busy, not failing (the web glue answers 503).
    """
    return StoreErrors(
        DRIVER_NAME,
        display_address(url),
        (SQLAlchemyError, OSError),
        busy=lambda exc: isinstance(exc, PoolTimeoutError),
        describe=lambda exc: describe_error(exc, url, table),
    )
