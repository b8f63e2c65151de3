"""The shared conformance suite on SQLite, PostgreSQL and MySQL/MariaDB, sync and async."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.database_support import async_url

from satchel.testing import ASYNC, LOCK, SYNC, WRITE_EXISTING, DriverConformance, MovingClock
from satchel.testing.conformance import AsyncFactory, SyncFactory
from satchel_database import (
    AsyncDatabaseSessionHandler,
    DatabaseSessionHandler,
    ThreadedDatabaseSessionHandler,
    create_async_handler,
    create_handler,
)


class TestDatabaseConformance(DriverConformance):
    """The sync engine; the async twin runs on its own URL below."""

    capabilities = frozenset({SYNC, LOCK, WRITE_EXISTING})

    @pytest.fixture
    def satchel_clock(self) -> MovingClock:
        return MovingClock()  # the handler's clock decides every time it stores

    @pytest.fixture
    def satchel_handler_factory(self, satchel_clock: MovingClock) -> SyncFactory:
        def factory(config: Any) -> DatabaseSessionHandler:
            handler = create_handler(config)
            assert isinstance(handler, DatabaseSessionHandler)
            handler.clock = satchel_clock
            return handler

        return factory

    @pytest.fixture
    def satchel_base_config(
        self, database_url: str, make_table: Callable[[str], str]
    ) -> Mapping[str, Any]:
        return {"driver": "database", "connection": database_url, "table": make_table(database_url)}


class TestAsyncDatabaseConformance(DriverConformance):
    """The asyncio engine: aiosqlite, asyncpg, aiomysql."""

    capabilities = frozenset({ASYNC, LOCK, WRITE_EXISTING})
    async_driver: str | None = None  # the driver the URL must name, when one is given

    @pytest.fixture
    def satchel_clock(self) -> MovingClock:
        return MovingClock()

    @pytest.fixture
    def satchel_async_handler_factory(self, satchel_clock: MovingClock) -> AsyncFactory:
        def factory(config: Any) -> Any:
            handler = create_async_handler(config)
            assert isinstance(handler, AsyncDatabaseSessionHandler)
            if self.async_driver is not None:
                assert handler.engine.url.get_driver_name() == self.async_driver
            handler.clock = satchel_clock
            return handler

        return factory

    @pytest.fixture
    def satchel_base_config(
        self, database_url: str, make_table: Callable[[str], str]
    ) -> Mapping[str, Any]:
        return {
            "driver": "database",
            "connection": async_url(database_url),
            "table": make_table(database_url),
        }


class TestPsycopgAsyncDatabaseConformance(TestAsyncDatabaseConformance):
    """The asyncio engine on psycopg 3's own async mode (``postgresql+psycopg_async``)."""

    async_driver = "psycopg_async"

    @pytest.fixture
    def satchel_base_config(
        self, postgres_url: str, make_table: Callable[[str], str]
    ) -> Mapping[str, Any]:
        url = sa.make_url(postgres_url).set(drivername="postgresql+psycopg_async")
        return {
            "driver": "database",
            "connection": url.render_as_string(hide_password=False),
            "table": make_table(postgres_url),
        }


class TestThreadedAsyncDatabaseConformance(DriverConformance):
    """A sync driver URL under the async twin: the sync handler in worker threads."""

    capabilities = frozenset({ASYNC, LOCK, WRITE_EXISTING})

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        def factory(config: Any) -> Any:
            handler = create_async_handler(config)
            assert isinstance(handler, ThreadedDatabaseSessionHandler)
            return handler

        return factory

    @pytest.fixture
    def satchel_base_config(
        self, sqlite_url: str, make_table: Callable[[str], str]
    ) -> Mapping[str, Any]:
        return {"driver": "database", "connection": sqlite_url, "table": make_table(sqlite_url)}
