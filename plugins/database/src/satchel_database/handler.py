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
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from satchel import AsyncSessionHandler, ConfigError, RequestMetadata, SessionConfig
from satchel import SessionHandler as _SessionHandler
from satchel_database.connection import (
    backend_errors,
    create_sync_engine,
    engine_arguments,
    is_async_url,
    is_retryable,
    parse_url,
)
from satchel_database.options import DatabaseOptions
from satchel_database.schema import sessions_table
from satchel_database.statements import (
    METADATA_COLUMNS,
    PAYLOAD_COLUMNS,
    SessionStatements,
    StoredSession,
    metadata_columns,
    stored_session,
)

logger = logging.getLogger("satchel.database")

Clock = Callable[[], float]
T = TypeVar("T")


def _table(config: SessionConfig) -> sa.Table:
    try:
        return sessions_table(config.table)
    except ValueError as exc:
        raise ConfigError("table", str(exc)) from None


class DatabaseSessionHandler(_SessionHandler):
    """Sessions in an SQL table through a SQLAlchemy engine.

    Besides the contract it can ``touch``, store request metadata
    (``write_with_metadata``), prune in batches for ``satchel gc``
    (``count_expired``/``gc_batches``), list and end a user's sessions, and
    create its table.
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
        self.statements = SessionStatements(
            self.table, engine.dialect.name, self.options.gc_batch_size
        )

    @classmethod
    def from_config(cls, config: SessionConfig) -> DatabaseSessionHandler:
        """The handler for ``config.connection`` and ``config.table``."""
        options = DatabaseOptions.from_config(config)
        table = _table(config)
        engine = create_sync_engine(parse_url(config.connection), options)
        return cls(engine, lifetime_seconds=config.lifetime_seconds, table=table, options=options)

    def _now(self) -> int:
        return int(self.clock())

    def _errors(self) -> Any:
        return backend_errors(self.engine.url, self.table.name)

    def close(self) -> bool:
        """Close the pooled connections; the handler reconnects if used again."""
        self.engine.dispose()
        return True

    def read(self, session_id: str) -> str:
        statement = self.statements.read(session_id, self._now() - self.lifetime_seconds)
        with self._errors(), self.engine.connect() as connection:
            payload: object = connection.execute(statement).scalar_one_or_none()
        return payload if isinstance(payload, str) else ""

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

    def _upsert(self, session_id: str, values: Mapping[str, Any], update: tuple[str, ...]) -> None:
        statement = self.statements.upsert(values, update)
        attempt = 0
        with self._errors():
            while True:
                try:
                    with self.engine.begin() as connection:
                        if statement is not None:
                            connection.execute(statement)
                        else:
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

    def touch(self, session_id: str) -> bool:
        now = self._now()
        statement = self.statements.touch(session_id, now, now - self.lifetime_seconds)
        with self._errors(), self.engine.begin() as connection:
            return bool(connection.execute(statement).rowcount)

    def destroy(self, session_id: str) -> bool:
        with self._errors(), self.engine.begin() as connection:
            connection.execute(self.statements.destroy(session_id))
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
        """Delete idle rows in batches of ``gc_batch_size``, yielding each batch's count."""
        statement = self.statements.gc_batch(self._now() - lifetime)
        while True:
            with self._errors(), self.engine.begin() as connection:
                removed = connection.execute(statement).rowcount
            if removed:
                yield removed
            if removed < self.options.gc_batch_size:
                return

    def sessions_of_user(self, user_id: str) -> list[StoredSession]:
        """Every stored session of ``user_id``, most recently active first."""
        with self._errors(), self.engine.connect() as connection:
            rows = connection.execute(self.statements.sessions_of_user(user_id)).all()
        return [stored_session(row) for row in rows]

    def destroy_user_sessions(self, user_id: str) -> int:
        """End every session of ``user_id`` (logout everywhere); return how many."""
        with self._errors(), self.engine.begin() as connection:
            return int(connection.execute(self.statements.destroy_user_sessions(user_id)).rowcount)

    def create_table(self) -> bool:
        """Create the table and its indexes if missing; True when it was created now."""
        with self._errors(), self.engine.begin() as connection:
            if sa.inspect(connection).has_table(self.table.name):
                return False
            self.table.create(connection, checkfirst=True)
        return True

    def drop_table(self) -> None:
        """Drop the table if it exists (tests and tear-downs)."""
        with self._errors(), self.engine.begin() as connection:
            self.table.drop(connection, checkfirst=True)


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
        self.statements = SessionStatements(
            self.table, engine.dialect.name, self.options.gc_batch_size
        )

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
        try:
            engine = create_async_engine(url, **engine_arguments(url, options))
        except ImportError as exc:
            raise ConfigError(
                "connection", f"the async driver for {url.drivername!r} is not installed ({exc})"
            ) from None
        return cls(engine, lifetime_seconds=config.lifetime_seconds, table=table, options=options)

    def _now(self) -> int:
        return int(self.clock())

    def _errors(self) -> Any:
        return backend_errors(self.engine.url, self.table.name)

    async def close(self) -> bool:
        """Close the pooled connections; the handler reconnects if used again."""
        await self.engine.dispose()
        return True

    async def read(self, session_id: str) -> str:
        statement = self.statements.read(session_id, self._now() - self.lifetime_seconds)
        with self._errors():
            async with self.engine.connect() as connection:
                payload: object = (await connection.execute(statement)).scalar_one_or_none()
        return payload if isinstance(payload, str) else ""

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

    async def _upsert(
        self, session_id: str, values: Mapping[str, Any], update: tuple[str, ...]
    ) -> None:
        statement = self.statements.upsert(values, update)
        attempt = 0
        with self._errors():
            while True:
                try:
                    async with self.engine.begin() as connection:
                        if statement is not None:
                            await connection.execute(statement)
                        else:
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

    async def touch(self, session_id: str) -> bool:
        now = self._now()
        statement = self.statements.touch(session_id, now, now - self.lifetime_seconds)
        with self._errors():
            async with self.engine.begin() as connection:
                return bool((await connection.execute(statement)).rowcount)

    async def destroy(self, session_id: str) -> bool:
        with self._errors():
            async with self.engine.begin() as connection:
                await connection.execute(self.statements.destroy(session_id))
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

    async def create_table(self) -> bool:
        """Create the table and its indexes if missing; True when it was created now."""
        with self._errors():
            async with self.engine.begin() as connection:
                exists = await connection.run_sync(
                    lambda sync: sa.inspect(sync).has_table(self.table.name)
                )
                if exists:
                    return False
                await connection.run_sync(self.table.create, checkfirst=True)
        return True

    async def drop_table(self) -> None:
        """Drop the table if it exists (tests and tear-downs)."""
        with self._errors():
            async with self.engine.begin() as connection:
                await connection.run_sync(self.table.drop, checkfirst=True)


class ThreadedDatabaseSessionHandler(AsyncSessionHandler):
    """The async twin for a sync driver URL: the sync handler, run in worker threads."""

    def __init__(self, handler: DatabaseSessionHandler) -> None:
        self.handler = handler

    @classmethod
    def from_config(cls, config: SessionConfig) -> ThreadedDatabaseSessionHandler:
        return cls(DatabaseSessionHandler.from_config(config))

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, *args)

    async def close(self) -> bool:
        return await self._call(self.handler.close)

    async def read(self, session_id: str) -> str:
        return await self._call(self.handler.read, session_id)

    async def write(self, session_id: str, data: str) -> bool:
        return await self._call(self.handler.write, session_id, data)

    async def write_with_metadata(
        self, session_id: str, data: str, metadata: RequestMetadata
    ) -> bool:
        """Write the payload with the request metadata, in a worker thread."""
        return await self._call(self.handler.write_with_metadata, session_id, data, metadata)

    async def touch(self, session_id: str) -> bool:
        return await self._call(self.handler.touch, session_id)

    async def destroy(self, session_id: str) -> bool:
        return await self._call(self.handler.destroy, session_id)

    async def gc(self, lifetime: int) -> int:
        return await self._call(self.handler.gc, lifetime)

    async def sessions_of_user(self, user_id: str) -> list[StoredSession]:
        """Every stored session of ``user_id``, most recently active first."""
        return await self._call(self.handler.sessions_of_user, user_id)

    async def destroy_user_sessions(self, user_id: str) -> int:
        """End every session of ``user_id``; return how many."""
        return await self._call(self.handler.destroy_user_sessions, user_id)


def create_handler(config: SessionConfig) -> DatabaseSessionHandler:
    """The ``database`` driver's factory."""
    return DatabaseSessionHandler.from_config(config)


def create_async_handler(config: SessionConfig) -> AsyncSessionHandler:
    """The async factory: the asyncio engine for an async URL, worker threads otherwise."""
    if is_async_url(parse_url(config.connection)):
        return AsyncDatabaseSessionHandler.from_config(config)
    return ThreadedDatabaseSessionHandler.from_config(config)
