"""``DatabaseSessionHandler`` and its async twin: sessions in an SQL table.

Writes are one statement, the dialect's native upsert, so two first requests
racing on one id never raise a duplicate-key error. Reads ignore rows idle
longer than the lifetime. ``gc`` deletes in bounded batches found through the
``last_activity`` index, each batch its own short transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from satchel import AsyncSessionHandler, ConfigError, RequestMetadata, SessionConfig, SessionHandler
from satchel.toolkit import AsyncTokenLock, StoreErrors, ThreadedAsyncHandler, TokenLock
from satchel_database.connection import (
    backend_errors,
    create_async_engine,
    create_nowait_engine,
    create_sync_engine,
    is_async_url,
    is_busy,
    is_retryable,
    parse_url,
)
from satchel_database.direct import DirectStatements
from satchel_database.options import DatabaseOptions
from satchel_database.schema import create_missing_tables, locks_table, sessions_table
from satchel_database.statements import (
    METADATA_COLUMNS,
    PAYLOAD_COLUMNS,
    SessionStatements,
    StoredSession,
    metadata_columns,
    stored_session,
)

if TYPE_CHECKING:  # the asyncio engine is imported only when an async twin is built
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger("satchel.database")

Clock = Callable[[], float]
# The asyncio drivers that switch a connection to autocommit without a round trip.
_LOCAL_AUTOCOMMIT_ASYNC_DRIVERS = frozenset({"asyncpg", "psycopg_async"})
T = TypeVar("T")


def _table(config: SessionConfig) -> sa.Table:
    try:
        locks_table(config.table)  # its name must be valid too
        return sessions_table(config.table)
    except ValueError as exc:
        raise ConfigError("table", str(exc)) from None


def _now_ms(clock: Clock) -> int:
    """Now, in the Unix milliseconds of the lock table."""
    return int(clock() * 1000)


def _lock_deadline(clock: Clock, lock_seconds: float) -> tuple[int, int]:
    """Now and the lock's expiry, in Unix milliseconds."""
    now = _now_ms(clock)
    return now, now + max(1, int(lock_seconds * 1000))


def _live_update(
    session_id: str,
    data: str,
    now: int,
    cutoff: int,
    *,
    metadata: RequestMetadata | None,
    options: DatabaseOptions,
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The columns ``write_existing`` sets (as ``write`` or, given metadata,
    ``write_with_metadata``) and the parameters of its statement."""
    values: dict[str, Any] = {"payload": data, "last_activity": now}
    if metadata is not None:
        values.update(metadata_columns(metadata, options))
    return tuple(values), {"key": session_id, "cutoff": cutoff, **values}


class DatabaseSessionHandler(SessionHandler):
    """Sessions in an SQL table through a SQLAlchemy engine.

    Besides the contract it can ``lock`` (session blocking), store
    request metadata (``write_with_metadata``), write only over a live row
    (``write_existing``, so a logout is never undone by a slower request), prune in batches for
    ``satchel gc`` (``count_expired``/``gc_batches``), list and end a user's
    sessions, and create its tables.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        lifetime_seconds: int,
        table: sa.Table | None = None,
        options: DatabaseOptions | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.engine = engine
        self.table = table if table is not None else sessions_table()
        self.lifetime_seconds = lifetime_seconds
        self.options = options or DatabaseOptions()
        self.clock = clock
        self.locks = locks_table(self.table.name)
        self.statements = SessionStatements(
            self.table, self.locks, engine.dialect.name, self.options.gc_batch_size
        )
        self.direct = DirectStatements(engine)
        self._loop_direct: DirectStatements | None = None
        self._locks_ready = False
        self._store_errors = backend_errors(engine.url, self.table.name)

    @classmethod
    def from_config(cls, config: SessionConfig) -> DatabaseSessionHandler:
        """The handler for ``config.connection`` and ``config.table``."""
        options = DatabaseOptions.from_config(config)
        table = _table(config)
        engine = create_sync_engine(parse_url(config.connection), options)
        return cls(engine, lifetime_seconds=config.lifetime_seconds, table=table, options=options)

    def _now(self) -> int:
        return int(self.clock())

    def _errors(self) -> StoreErrors:
        return self._store_errors

    def close(self) -> bool:
        """Close the pooled connections; the handler reconnects if used again."""
        self.engine.dispose()
        if self._loop_direct is not None:
            self._loop_direct.engine.dispose()
        return True

    def read(self, session_id: str) -> str:
        with self._errors():
            return self._read(self.direct, session_id)

    def _read(self, direct: DirectStatements, session_id: str) -> str:
        parameters = {"key": session_id, "cutoff": self._now() - self.lifetime_seconds}
        payload = direct.scalar(self.statements.read, parameters)
        return payload if isinstance(payload, str) else ""

    def read_without_waiting(self, session_id: str) -> str | None:
        """``read`` on a file SQLite database, for the async twin to run on the event loop.

        The statement is local and brief, so it costs less than handing it to
        a worker thread, but it must never wait: it runs on a connection of
        this thread's own (outside the pool, so it never waits for one) that
        gives up at once when another writer holds the file's lock; then, and
        for any other database, the answer is ``None`` and the caller reads
        the usual way.
        """
        direct = self._loop_direct
        if direct is None:
            return None
        try:
            return self._read(direct, session_id)
        except DBAPIError as exc:
            if is_busy(exc):
                return None
            with self._errors():
                raise

    def enable_reads_without_waiting(self) -> None:
        """Let ``read_without_waiting`` read (file SQLite through sqlite3 only)."""
        if self._loop_direct is None:
            engine = create_nowait_engine(self.engine)
            if engine is not None:
                self._loop_direct = DirectStatements(engine)

    def write(self, session_id: str, data: str) -> bool:
        values = {"id": session_id, "payload": data, "last_activity": self._now()}
        self._upsert(session_id, values, PAYLOAD_COLUMNS)
        return True

    def write_with_metadata(self, session_id: str, data: str, metadata: RequestMetadata) -> bool:
        """Write the payload with the user id, client address and user agent of the request."""
        values = {
            "id": session_id,
            "payload": data,
            "last_activity": self._now(),
            **metadata_columns(metadata, self.options),
        }
        self._upsert(session_id, values, PAYLOAD_COLUMNS + METADATA_COLUMNS)
        return True

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a row that still lives; False (nothing written) when it is gone.

        One ``UPDATE ... WHERE id = :id AND last_activity >= :cutoff``, so a
        request that loaded the session before a logout or a
        ``regenerate(destroy=True)`` cannot bring it back when it saves.
        """
        now = self._now()
        values, parameters = _live_update(
            session_id,
            data,
            now,
            now - self.lifetime_seconds,
            metadata=metadata,
            options=self.options,
        )
        with self._errors():
            # rowcount counts matched rows: MySQL/MariaDB drivers are connected
            # with CLIENT_FOUND_ROWS by SQLAlchemy, so an unchanged row counts too.
            return bool(self.direct.rowcount(self.statements.update_live, parameters, values))

    def _upsert(self, session_id: str, values: Mapping[str, Any], update: tuple[str, ...]) -> None:
        statement = self.statements.upsert(update)
        attempt = 0
        with self._errors():
            while True:
                try:
                    if statement is not None:
                        self.direct.rowcount(statement, values, tuple(values))
                    else:
                        with self.engine.begin() as connection:
                            self._update_or_insert(connection, session_id, values, update)
                    return
                except sa.exc.DBAPIError as exc:
                    if attempt >= self.options.write_retries or not is_retryable(exc):
                        raise
                    attempt += 1
                    logger.info("retrying a session write the server aborted (attempt %d)", attempt)

    def _update_or_insert(
        self,
        connection: sa.Connection,
        session_id: str,
        values: Mapping[str, Any],
        update: tuple[str, ...],
    ) -> None:
        # Dialects without a native upsert: update, insert, and on a lost insert
        # race update again (Laravel's approach).
        changes = {name: values[name] for name in update}
        if connection.execute(self.statements.update(session_id, changes)).rowcount:
            return
        try:
            with connection.begin_nested():
                connection.execute(self.statements.insert(values))
        except IntegrityError:
            connection.execute(self.statements.update(session_id, changes))

    def destroy(self, session_id: str) -> bool:
        with self._errors():
            self.direct.rowcount(self.statements.destroy, {"key": session_id}, ())
        return True

    def gc(self, lifetime: int) -> int:
        return sum(self.gc_batches(lifetime))

    def count_expired(self, lifetime: int) -> int | None:
        """How many rows ``gc(lifetime)`` would remove now."""
        statement = self.statements.count_expired(self._now() - lifetime)
        with self._errors(), self.engine.connect() as connection:
            count: object = connection.execute(statement).scalar_one()
        return int(count) if isinstance(count, int) else None

    def gc_batches(self, lifetime: int) -> Iterator[int]:
        """Delete idle rows in batches of ``gc_batch_size``, yielding each batch's count;
        then the expired rows of the lock table (not counted: they hold no session)."""
        statement = self.statements.gc_batch(self._now() - lifetime)
        while True:
            with self._errors(), self.engine.begin() as connection:
                removed = connection.execute(statement).rowcount
            if removed:
                yield removed
            if removed < self.options.gc_batch_size:
                break
        with self._errors(), self.engine.begin() as connection:
            if not self._locks_ready:
                if not sa.inspect(connection).has_table(self.locks.name, self.locks.schema):
                    return  # never locked: no lock table to prune
                self._locks_ready = True
            connection.execute(self.statements.expired_locks(_now_ms(self.clock)))

    def sessions_of_user(self, user_id: str) -> list[StoredSession]:
        """Every stored session of ``user_id``, most recently active first."""
        with self._errors(), self.engine.connect() as connection:
            rows = connection.execute(self.statements.sessions_of_user(user_id)).all()
        return [stored_session(row) for row in rows]

    def destroy_user_sessions(self, user_id: str) -> int:
        """End every session of ``user_id`` (logout everywhere); return how many."""
        with self._errors(), self.engine.begin() as connection:
            return int(connection.execute(self.statements.destroy_user_sessions(user_id)).rowcount)

    def create_table(self) -> list[str]:
        """Create the sessions table (with its indexes) and the lock table where missing.

        Returns the names of the tables created now; one left out already existed.
        """
        with self._errors(), self.engine.begin() as connection:
            return create_missing_tables(connection, self.table, self.locks)

    def drop_table(self) -> None:
        """Drop the table and the lock table if they exist (tests and tear-downs)."""
        with self._errors(), self.engine.begin() as connection:
            self.locks.drop(connection, checkfirst=True)
            self.table.drop(connection, checkfirst=True)

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> TokenLock:
        """Hold the session's lock (a row of the lock table) for session blocking.

        The lock expires by itself after ``lock_seconds``; waiting longer than
        ``wait_seconds`` raises ``LockTimeout``.
        """

        def try_acquire(token: str) -> bool:
            with self._errors():
                return self.claim_lock(session_id, token, lock_seconds)

        return TokenLock(
            try_acquire,
            lambda token: self.release_lock(session_id, token),
            wait_seconds=wait_seconds,
            description="a database session",
        )

    def claim_lock(self, session_id: str, token: str, lock_seconds: float) -> bool:
        """One attempt to take the lock for ``token``; True when it holds it now."""
        if not self._locks_ready:
            # A table migrated before locks existed gets its lock table on first use.
            self.locks.create(self.engine, checkfirst=True)
            self._locks_ready = True
        now, expires_at = _lock_deadline(self.clock, lock_seconds)
        statement = self.statements.claim_lock(session_id, token, expires_at, now)
        try:
            with self.engine.begin() as connection:
                if statement is not None:
                    connection.execute(statement)
                else:
                    try:
                        with connection.begin_nested():
                            connection.execute(
                                self.statements.insert_lock(session_id, token, expires_at)
                            )
                    except IntegrityError:
                        connection.execute(
                            self.statements.take_over_lock(session_id, token, expires_at, now)
                        )
                holder = connection.execute(self.statements.lock_holder(session_id)).scalar()
        except DBAPIError as exc:
            if is_retryable(exc) or is_busy(exc):
                return False  # lost a race for the row or the file; the waiter tries again
            raise
        return bool(holder == token)

    def release_lock(self, session_id: str, token: str) -> None:
        """Let go of the lock if ``token`` still holds it (never another holder's)."""
        with self._errors(), self.engine.begin() as connection:
            connection.execute(self.statements.release_lock(session_id, token))


class AsyncDatabaseSessionHandler(AsyncSessionHandler):
    """The async twin on SQLAlchemy's asyncio engine (asyncpg, aiosqlite, aiomysql)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lifetime_seconds: int,
        table: sa.Table | None = None,
        options: DatabaseOptions | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.engine = engine
        self.table = table if table is not None else sessions_table()
        self.lifetime_seconds = lifetime_seconds
        self.options = options or DatabaseOptions()
        self.clock = clock
        self.locks = locks_table(self.table.name)
        self.statements = SessionStatements(
            self.table, self.locks, engine.dialect.name, self.options.gc_batch_size
        )
        self._locks_ready = False
        self._store_errors = backend_errors(engine.url, self.table.name)
        self._autocommit = engine.url.get_driver_name() in _LOCAL_AUTOCOMMIT_ASYNC_DRIVERS

    @classmethod
    def from_config(cls, config: SessionConfig) -> AsyncDatabaseSessionHandler:
        """The handler for a URL naming an async driver."""
        options = DatabaseOptions.from_config(config)
        table = _table(config)
        url = parse_url(config.connection)
        if not is_async_url(url):
            raise ConfigError(
                "connection", f"{url.drivername!r} is not an async driver (use +asyncpg, ...)"
            )
        engine = create_async_engine(url, options)
        return cls(engine, lifetime_seconds=config.lifetime_seconds, table=table, options=options)

    def _now(self) -> int:
        return int(self.clock())

    def _errors(self) -> StoreErrors:
        return self._store_errors

    async def close(self) -> bool:
        """Close the pooled connections; the handler reconnects if used again."""
        await self.engine.dispose()
        return True

    async def read(self, session_id: str) -> str:
        parameters = {"key": session_id, "cutoff": self._now() - self.lifetime_seconds}
        with self._errors():
            payload = await self._alone(self.statements.read, parameters, write=False)
        return payload if isinstance(payload, str) else ""

    async def _alone(
        self, statement: sa.Executable, parameters: Mapping[str, Any], *, write: bool
    ) -> object:
        """Run one statement on its own: a read's value, a write's row count.

        In autocommit where the driver switches to it without a round trip
        (asyncpg, psycopg), so no BEGIN and COMMIT around it; elsewhere a
        write gets a transaction of its own.
        """
        if self._autocommit:
            async with self.engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                result = await connection.execute(statement, dict(parameters))
                return result.rowcount if write else result.scalar_one_or_none()
        if write:
            async with self.engine.begin() as connection:
                return (await connection.execute(statement, dict(parameters))).rowcount
        async with self.engine.connect() as connection:
            return (await connection.execute(statement, dict(parameters))).scalar_one_or_none()

    async def write(self, session_id: str, data: str) -> bool:
        values = {"id": session_id, "payload": data, "last_activity": self._now()}
        await self._upsert(session_id, values, PAYLOAD_COLUMNS)
        return True

    async def write_with_metadata(
        self, session_id: str, data: str, metadata: RequestMetadata
    ) -> bool:
        """Write the payload with the user id, client address and user agent of the request."""
        values = {
            "id": session_id,
            "payload": data,
            "last_activity": self._now(),
            **metadata_columns(metadata, self.options),
        }
        await self._upsert(session_id, values, PAYLOAD_COLUMNS + METADATA_COLUMNS)
        return True

    async def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a row that still lives; False (nothing written) when it is gone."""
        now = self._now()
        _, parameters = _live_update(
            session_id,
            data,
            now,
            now - self.lifetime_seconds,
            metadata=metadata,
            options=self.options,
        )
        with self._errors():
            return bool(await self._alone(self.statements.update_live, parameters, write=True))

    async def _upsert(
        self, session_id: str, values: Mapping[str, Any], update: tuple[str, ...]
    ) -> None:
        statement = self.statements.upsert(update)
        attempt = 0
        with self._errors():
            while True:
                try:
                    if statement is not None:
                        await self._alone(statement, values, write=True)
                    else:
                        async with self.engine.begin() as connection:
                            await self._update_or_insert(connection, session_id, values, update)
                    return
                except sa.exc.DBAPIError as exc:
                    if attempt >= self.options.write_retries or not is_retryable(exc):
                        raise
                    attempt += 1
                    logger.info("retrying a session write the server aborted (attempt %d)", attempt)

    async def _update_or_insert(
        self,
        connection: AsyncConnection,
        session_id: str,
        values: Mapping[str, Any],
        update: tuple[str, ...],
    ) -> None:
        changes = {name: values[name] for name in update}
        if (await connection.execute(self.statements.update(session_id, changes))).rowcount:
            return
        try:
            async with connection.begin_nested():
                await connection.execute(self.statements.insert(values))
        except IntegrityError:
            await connection.execute(self.statements.update(session_id, changes))

    async def destroy(self, session_id: str) -> bool:
        with self._errors():
            await self._alone(self.statements.destroy, {"key": session_id}, write=True)
        return True

    async def gc(self, lifetime: int) -> int:
        statement = self.statements.gc_batch(self._now() - lifetime)
        total = 0
        while True:
            with self._errors():
                async with self.engine.begin() as connection:
                    removed = (await connection.execute(statement)).rowcount
            total += removed
            if removed < self.options.gc_batch_size:
                break
        locks = self.locks
        with self._errors():
            async with self.engine.begin() as connection:
                if not self._locks_ready:
                    if not await connection.run_sync(
                        lambda sync: sa.inspect(sync).has_table(locks.name, locks.schema)
                    ):
                        return total  # never locked: no lock table to prune
                    self._locks_ready = True
                await connection.execute(self.statements.expired_locks(_now_ms(self.clock)))
        return total

    async def sessions_of_user(self, user_id: str) -> list[StoredSession]:
        """Every stored session of ``user_id``, most recently active first."""
        with self._errors():
            async with self.engine.connect() as connection:
                result = await connection.execute(self.statements.sessions_of_user(user_id))
                rows = result.all()
        return [stored_session(row) for row in rows]

    async def destroy_user_sessions(self, user_id: str) -> int:
        """End every session of ``user_id`` (logout everywhere); return how many."""
        with self._errors():
            async with self.engine.begin() as connection:
                result = await connection.execute(self.statements.destroy_user_sessions(user_id))
                return int(result.rowcount)

    async def create_table(self) -> list[str]:
        """Create the sessions table (with its indexes) and the lock table where missing.

        Returns the names of the tables created now; one left out already existed.
        """
        with self._errors():
            async with self.engine.begin() as connection:
                return await connection.run_sync(create_missing_tables, self.table, self.locks)

    async def drop_table(self) -> None:
        """Drop the table and the lock table if they exist (tests and tear-downs)."""
        with self._errors():
            async with self.engine.begin() as connection:
                await connection.run_sync(self.locks.drop, checkfirst=True)
                await connection.run_sync(self.table.drop, checkfirst=True)

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> AsyncTokenLock:
        """Hold the session's lock (a row of the lock table) for session blocking."""

        async def try_acquire(token: str) -> bool:
            with self._errors():
                return await self.claim_lock(session_id, token, lock_seconds)

        return AsyncTokenLock(
            try_acquire,
            lambda token: self.release_lock(session_id, token),
            wait_seconds=wait_seconds,
            description="a database session",
        )

    async def claim_lock(self, session_id: str, token: str, lock_seconds: float) -> bool:
        """One attempt to take the lock for ``token``; True when it holds it now."""
        if not self._locks_ready:
            async with self.engine.begin() as connection:
                await connection.run_sync(self.locks.create, checkfirst=True)
            self._locks_ready = True
        now, expires_at = _lock_deadline(self.clock, lock_seconds)
        statement = self.statements.claim_lock(session_id, token, expires_at, now)
        try:
            async with self.engine.begin() as connection:
                if statement is not None:
                    await connection.execute(statement)
                else:
                    try:
                        async with connection.begin_nested():
                            await connection.execute(
                                self.statements.insert_lock(session_id, token, expires_at)
                            )
                    except IntegrityError:
                        await connection.execute(
                            self.statements.take_over_lock(session_id, token, expires_at, now)
                        )
                result = await connection.execute(self.statements.lock_holder(session_id))
                holder = result.scalar()
        except DBAPIError as exc:
            if is_retryable(exc) or is_busy(exc):
                return False
            raise
        return bool(holder == token)

    async def release_lock(self, session_id: str, token: str) -> None:
        """Let go of the lock if ``token`` still holds it (never another holder's)."""
        with self._errors():
            async with self.engine.begin() as connection:
                await connection.execute(self.statements.release_lock(session_id, token))


class ThreadedDatabaseSessionHandler(ThreadedAsyncHandler):
    """The async twin for a sync driver URL: the sync handler, run in worker threads.

    On a file SQLite database a read runs on the event loop itself when it can
    without waiting (:meth:`DatabaseSessionHandler.read_without_waiting`).
    """

    handler: DatabaseSessionHandler

    def __init__(self, handler: DatabaseSessionHandler) -> None:
        super().__init__(handler)
        handler.enable_reads_without_waiting()

    async def read(self, session_id: str) -> str:
        payload = self.handler.read_without_waiting(session_id)
        if payload is not None:
            return payload
        return await asyncio.to_thread(self.handler.read, session_id)

    @classmethod
    def from_config(cls, config: SessionConfig) -> ThreadedDatabaseSessionHandler:
        return cls(DatabaseSessionHandler.from_config(config))

    async def sessions_of_user(self, user_id: str) -> list[StoredSession]:
        """Every stored session of ``user_id``, most recently active first."""
        return await asyncio.to_thread(self.handler.sessions_of_user, user_id)

    async def destroy_user_sessions(self, user_id: str) -> int:
        """End every session of ``user_id``; return how many."""
        return await asyncio.to_thread(self.handler.destroy_user_sessions, user_id)


def create_handler(config: SessionConfig) -> DatabaseSessionHandler:
    """The ``database`` driver's factory."""
    return DatabaseSessionHandler.from_config(config)


def create_async_handler(config: SessionConfig) -> AsyncSessionHandler:
    """The async factory: the asyncio engine for an async URL, worker threads otherwise."""
    if is_async_url(parse_url(config.connection)):
        return AsyncDatabaseSessionHandler.from_config(config)
    return ThreadedDatabaseSessionHandler.from_config(config)
