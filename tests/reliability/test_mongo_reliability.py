"""The mongo driver under issue 6's load: the resurrection race and 40 overlapping requests.

No MongoDB server can be installed on the project's machines, so this runs
on mongomock, and also against a real server when ``SATCHEL_TEST_MONGO_URL``
is set (``SATCHEL_REQUIRE_SERVICES=mongo`` makes its absence a failure). On
mongomock the driver's own code runs unchanged — its queries, its
``update_one`` without upsert for ``write_existing``, its lock documents —
over an in-memory store that serialises writes per collection.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import mongomock
import pymongo
import pytest

from satchel import AsyncSessionHandler, SaveOutcome, Session, SessionConfig, SessionManager
from satchel.handler import AsyncSupportsWriteExisting, SupportsWriteExisting
from satchel.ids import storage_key
from satchel.testing import service_missing
from satchel.testing.concurrency import concurrent_distinct_keys, concurrent_increments
from satchel_mongo import AsyncMongoSessionHandler, MongoSessionHandler

REQUESTS = 40
VIAS = ["wsgi", "asgi"]
MONGO_URL_ENV = "SATCHEL_TEST_MONGO_URL"
TEST_DATABASE = "satchel_test"


def real_server_url() -> str | None:
    return os.environ.get(MONGO_URL_ENV) or None


class _AsyncCollection:
    """A mongomock collection with awaitable methods, as ``AsyncCollection`` has."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    @property
    def name(self) -> str:
        return str(self._collection.name)

    @property
    def database(self) -> _AsyncDatabase:
        return _AsyncDatabase(self._collection.database)

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        method = getattr(self._collection, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


class _AsyncDatabase:
    def __init__(self, database: Any) -> None:
        self._database = database

    def __getitem__(self, name: str) -> _AsyncCollection:
        return _AsyncCollection(self._database[name])


class _AsyncClient:
    """Just enough of ``AsyncMongoClient`` for the async handler, over mongomock."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getitem__(self, name: str) -> _AsyncDatabase:
        return _AsyncDatabase(self._client[name])

    async def close(self) -> None:
        """The mongomock client is shared by the test; it is not closed here."""


@pytest.fixture(params=["mongomock", "server"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "server" and real_server_url() is None:
        service_missing("mongo", f"no MongoDB server: set {MONGO_URL_ENV} to run this against one")
    return str(request.param)


@pytest.fixture
def collection() -> Iterator[str]:
    name = f"sessions_{secrets.token_hex(5)}"
    yield name
    url = real_server_url()
    if url is not None:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        try:
            client[TEST_DATABASE].drop_collection(name)
            client[TEST_DATABASE].drop_collection(f"{name}_locks")
        finally:
            client.close()


@pytest.fixture
def make_manager(backend: str, collection: str) -> Iterator[Callable[..., SessionManager]]:
    """A manager on the test's collection (mongomock, or the real server)."""
    mock: Any = mongomock.MongoClient()
    made: list[MongoSessionHandler] = []

    def sync_factory(config: SessionConfig) -> MongoSessionHandler:
        client = mock if backend == "mongomock" else None
        handler = MongoSessionHandler.from_config(config, client=client)
        made.append(handler)
        return handler

    def async_factory(config: SessionConfig) -> AsyncSessionHandler:
        if backend == "mongomock":
            wrapped: Any = _AsyncClient(mock)
            return AsyncMongoSessionHandler.from_config(config, client=wrapped)
        return AsyncMongoSessionHandler.from_config(config)

    def make(*, clock: Callable[[], float] | None = None, **config: Any) -> SessionManager:
        url = real_server_url() if backend == "server" else "mongodb://mongomock.invalid"
        settings = SessionConfig.from_dict(
            {
                "driver": "mongo",
                "connection": url,
                "options": {"database": TEST_DATABASE, "collection": collection},
                "lottery": [0, 1],  # no gc mid-test
                "block_wait_seconds": 30,  # 40 waiters polling every 50 ms take a few seconds
                **config,
            }
        )
        manager = SessionManager(settings, clock=clock)
        manager.extend("mongo", sync_factory, async_factory)
        return manager

    yield make
    for handler in made:
        handler.close()


# -- the resurrection race ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


ENDINGS: dict[str, Callable[[Session], None]] = {
    "invalidate": lambda session: session.invalidate(),
    "regenerate-destroy": lambda session: session.regenerate(destroy=True),
}


def logged_in(manager: SessionManager) -> str:
    session = manager.start(None)
    session.put("user_id", 42)
    session.save()
    return session.cookie_value()


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


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_late_write_does_not_resurrect(
    make_manager: Callable[..., SessionManager], ending: str
) -> None:
    clock = Clock()
    manager = make_manager(clock=clock, touch_interval=60)
    cookie = logged_in(manager)
    slow = manager.start(cookie)  # request A: loaded before the logout
    quick = manager.start(cookie)  # request B: logs out
    ENDINGS[ending](quick)
    quick.save()
    slow.put("cart", ["apple"])
    assert slow.save() is SaveOutcome.ENDED
    assert slow.cookie_action() is None
    revived = manager.start(cookie)
    assert revived.all() == {}
    assert revived.id != cookie
    assert manager.handler().read(storage_key(cookie)) == ""


def test_a_late_refresh_does_not_resurrect(make_manager: Callable[..., SessionManager]) -> None:
    clock = Clock()
    manager = make_manager(clock=clock, touch_interval=60)
    cookie = logged_in(manager)
    clock.now += 120  # past touch_interval: A's save would be a refresh
    slow = manager.start(cookie)
    slow.get("user_id")
    quick = manager.start(cookie)
    quick.invalidate()
    quick.save()
    assert slow.save() is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_async_late_write_does_not_resurrect(
    make_manager: Callable[..., SessionManager], ending: str
) -> None:
    clock = Clock()
    manager = make_manager(clock=clock, touch_interval=60)
    cookie = logged_in(manager)

    async def race() -> SaveOutcome:
        twin = manager.async_handler()
        assert isinstance(twin, AsyncMongoSessionHandler)
        try:
            slow = await manager.astart(cookie)
            quick = await manager.astart(cookie)
            ENDINGS[ending](quick)
            await quick.asave()
            slow.put("cart", ["pear"])
            return await slow.asave()
        finally:
            await twin.close()

    assert asyncio.run(race()) is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}
    assert manager.handler().read(storage_key(cookie)) == ""


def test_async_late_refresh_does_not_resurrect(
    make_manager: Callable[..., SessionManager],
) -> None:
    clock = Clock()
    manager = make_manager(clock=clock, touch_interval=60)
    cookie = logged_in(manager)
    clock.now += 120

    async def race() -> SaveOutcome:
        twin = manager.async_handler()
        try:
            slow = await manager.astart(cookie)
            slow.get("user_id")
            quick = await manager.astart(cookie)
            quick.invalidate()
            await quick.asave()
            return await slow.asave()
        finally:
            await twin.close()

    assert asyncio.run(race()) is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}


def test_ordinary_saves_of_a_live_session_still_write(
    make_manager: Callable[..., SessionManager],
) -> None:
    manager = make_manager()
    cookie = logged_in(manager)
    first = manager.start(cookie)
    second = manager.start(cookie)
    first.put("a", 1)
    assert first.save() is SaveOutcome.WRITTEN
    second.put("b", 2)
    assert second.save() is SaveOutcome.WRITTEN
    assert manager.start(cookie).get("b") == 2


# -- 40 overlapping requests -------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_blocking_keeps_every_increment(
    make_manager: Callable[..., SessionManager], via: str
) -> None:
    manager = make_manager(block=True)
    assert concurrent_increments(manager, via=via, requests=REQUESTS) == REQUESTS  # type: ignore[arg-type]


@pytest.mark.parametrize("via", VIAS)
def test_without_blocking_increments_are_lost(
    make_manager: Callable[..., SessionManager], via: str
) -> None:
    manager = make_manager()
    count = concurrent_increments(manager, via=via, requests=REQUESTS, block=False)  # type: ignore[arg-type]
    assert count < REQUESTS


@pytest.mark.parametrize("via", VIAS)
def test_merge_on_save_keeps_every_key(
    make_manager: Callable[..., SessionManager], via: str
) -> None:
    manager = make_manager(merge_on_save=True)
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert keys == {f"key{index}" for index in range(REQUESTS)}


@pytest.mark.parametrize("via", VIAS)
def test_without_merging_keys_are_lost(
    make_manager: Callable[..., SessionManager], via: str
) -> None:
    manager = make_manager()
    keys = concurrent_distinct_keys(manager, via=via, requests=REQUESTS)  # type: ignore[arg-type]
    assert len(keys) < REQUESTS
