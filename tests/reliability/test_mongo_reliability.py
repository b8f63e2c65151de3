"""The mongo driver under concurrent load: the resurrection race and 40 overlapping requests.

No MongoDB server can be installed on the project's machines, so this runs
on mongomock, and also against a real server when ``SATCHEL_TEST_MONGO_URL``
is set (``SATCHEL_REQUIRE_SERVICES=mongo`` makes its absence a failure). On
mongomock the driver's own code runs unchanged — its queries, its
``update_one`` without upsert for ``write_existing``, its lock documents —
over an in-memory store that serialises writes per collection. The fixtures are
``tests/fixtures/mongo_servers.py``'s; the tests ``satchel.testing.reliability``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from satchel import SessionConfig, SessionManager
from satchel.handler import AsyncSupportsWriteExisting, SupportsWriteExisting
from satchel.testing import (
    AsyncResurrectionConformance,
    ConcurrencyConformance,
    ResurrectionConformance,
)
from satchel_mongo import AsyncMongoSessionHandler, MongoSessionHandler
from satchel_mongo.handler import LOCKS_SUFFIX


@pytest.fixture
def make_manager(
    mongo_config: dict[str, Any], sync_factory: Any, async_factory: Any
) -> Iterator[Callable[..., SessionManager]]:
    """A manager on the test's collection (mongomock, or the real server)."""
    made: list[MongoSessionHandler] = []

    def tracked(config: SessionConfig) -> MongoSessionHandler:
        handler: MongoSessionHandler = sync_factory(config)
        made.append(handler)
        return handler

    def make(*, clock: Callable[[], float] | None = None, **config: Any) -> SessionManager:
        settings = SessionConfig.from_dict(
            {
                **mongo_config,
                "lottery": [0, 1],  # no gc mid-test
                "block_wait_seconds": 30,  # 40 waiters polling every 50 ms take a few seconds
                **config,
            }
        )
        manager = SessionManager(settings, clock=clock)
        manager.extend("mongo", tracked, async_factory)
        return manager

    yield make
    for handler in made:
        handler.close()


# -- the resurrection race and 40 overlapping requests ------------------------------


def test_the_handlers_write_only_over_existing_documents(
    make_manager: Callable[..., SessionManager],
) -> None:
    manager = make_manager()
    assert isinstance(manager.handler(), SupportsWriteExisting)

    async def twin_supports_it() -> bool:
        twin = manager.async_handler()
        try:
            return isinstance(twin, AsyncSupportsWriteExisting)
        finally:
            await twin.close()

    assert asyncio.run(twin_supports_it())


class TestMongo(ResurrectionConformance, AsyncResurrectionConformance, ConcurrencyConformance):
    """``satchel.testing.reliability``'s suite on the test's collection."""

    clock_start = 1_000_000.0
    async_handler_type = AsyncMongoSessionHandler
    close_async_handler = True

    @pytest.fixture
    def satchel_manager_factory(
        self, make_manager: Callable[..., SessionManager]
    ) -> Callable[..., SessionManager]:
        return make_manager

    def stored_state(self, manager: SessionManager) -> object:
        """The ids in the sessions collection and in its lock collection."""
        handler = manager.handler()
        assert isinstance(handler, MongoSessionHandler)
        locks = handler.collection.database[handler.collection.name + LOCKS_SUFFIX]
        return set(handler.collection.distinct("_id")), set(locks.distinct("_id"))
