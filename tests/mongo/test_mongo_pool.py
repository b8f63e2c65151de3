"""The mongo driver's connection pool: ``options.max_pool_size`` and
``options.pool_timeout`` reach pymongo (``maxPoolSize``, ``waitQueueTimeoutMS``,
which otherwise waits for ever), and a wait that runs out, pymongo's
``WaitQueueTimeoutError``, is ``PoolExhausted`` (a 503 in the web glue).

mongomock has no connection pool: on it, only the mapping of pymongo's own
error is tested (the fake collection raises it as pymongo's pool would). The
pool itself running out is tested against a real server only
(``SATCHEL_TEST_MONGO_URL``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from fixtures.mongo_support import TEST_DATABASE, AsyncMongomockClient, real_server_url
from pymongo.errors import WaitQueueTimeoutError

from satchel import ConfigError, PoolExhausted, SessionBackendError, SessionBusy, SessionConfig
from satchel.testing import free_port, new_storage_id
from satchel_mongo import AsyncMongoSessionHandler, MongoSessionHandler

UNUSED_URL = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"


def _wait_queue_timeout(*args: object, **kwargs: object) -> Any:
    raise WaitQueueTimeoutError("timed out while checking out a connection from connection pool")


def _assert_pool_exhausted(error: BaseException) -> None:
    assert isinstance(error, PoolExhausted)
    assert isinstance(error, SessionBusy)
    assert isinstance(error, SessionBackendError)
    assert error.driver == "mongo"
    assert "WaitQueueTimeoutError" in str(error)


def test_the_pool_options_reach_pymongos_clients() -> None:
    config = SessionConfig(
        driver="mongo", connection=UNUSED_URL, options={"max_pool_size": 7, "pool_timeout": 2.5}
    )
    handler = MongoSessionHandler.from_config(config)  # pymongo connects lazily
    assert handler.client is not None
    pool = handler.client.options.pool_options
    assert (pool.max_pool_size, pool.wait_queue_timeout) == (7, 2.5)
    handler.close()

    async def async_pool() -> tuple[int, float | None]:
        twin = AsyncMongoSessionHandler.from_config(config)
        assert twin.client is not None
        options = twin.client.options.pool_options
        await twin.close()
        return options.max_pool_size, options.wait_queue_timeout

    assert asyncio.run(async_pool()) == (7, 2.5)


def test_the_wait_for_a_connection_is_bounded_by_default() -> None:
    handler = MongoSessionHandler.from_config(SessionConfig(driver="mongo", connection=UNUSED_URL))
    assert handler.client is not None
    assert handler.client.options.pool_options.wait_queue_timeout == 10.0
    handler.close()


@pytest.mark.parametrize(
    ("option", "value"), [("pool_timeout", 0), ("pool_timeout", -1), ("max_pool_size", 0)]
)
def test_bad_pool_options_name_the_option(option: str, value: object) -> None:
    config = SessionConfig(driver="mongo", connection=UNUSED_URL, options={option: value})
    with pytest.raises(ConfigError) as caught:
        MongoSessionHandler.from_config(config)
    assert caught.value.key == f"options.{option}"


def test_a_wait_queue_timeout_is_pool_exhausted(
    mock_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mongomock: the mapping only (the fake raises pymongo's own error, as its pool would)."""
    config = SessionConfig(driver="mongo", connection="mongodb://mongomock.invalid")
    handler = MongoSessionHandler.from_config(config, client=mock_client)
    handler.write(new_storage_id(), "stored")  # the indexes exist: the next call is the read
    monkeypatch.setattr(handler.collection, "find_one", _wait_queue_timeout)
    with pytest.raises(PoolExhausted) as caught:
        handler.read(new_storage_id())
    _assert_pool_exhausted(caught.value)

    twin = AsyncMongoSessionHandler.from_config(config, client=AsyncMongomockClient(mock_client))

    async def read() -> str:
        await twin.write(new_storage_id(), "stored")
        return await twin.read(new_storage_id())

    with pytest.raises(PoolExhausted) as caught:
        asyncio.run(read())
    _assert_pool_exhausted(caught.value)


@pytest.mark.needs_real_server("mongo")
def test_a_pool_busy_past_pool_timeout_is_pool_exhausted(collection_name: str) -> None:
    """A real server: the one pooled connection runs a slow query while a read waits for it."""
    url = real_server_url()
    assert url is not None
    config = SessionConfig(
        driver="mongo",
        connection=url,
        options={
            "database": TEST_DATABASE,
            "collection": collection_name,
            "max_pool_size": 1,
            "pool_timeout": 0.3,
        },
    )
    handler = MongoSessionHandler.from_config(config)
    handler.write(new_storage_id(), "stored")
    slow = threading.Thread(
        target=lambda: handler.collection.find_one({"$where": "sleep(1500) || true"})
    )
    slow.start()
    time.sleep(0.3)
    try:
        with pytest.raises(PoolExhausted) as caught:
            handler.read(new_storage_id())
    finally:
        slow.join(10)
        handler.close()
    _assert_pool_exhausted(caught.value)
