"""The redis driver's connection pool under a burst: a command waits for a free
connection (``options.max_connections``) up to ``options.pool_timeout``, then fails
with ``PoolExhausted`` (a 503 in the web glue), never with redis-py's
``MaxConnectionsError``.

A server held stopped (SIGSTOP) keeps a command in flight on the pool's only
connection for as long as a test needs (``tests/fixtures/pool_support.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from fixtures.pool_support import (
    IN_FLIGHT_SECONDS,
    check_a_busy_pool_is_pool_exhausted,
    check_a_command_waits_then_succeeds,
)

from satchel import ConfigError, PoolExhausted, SessionBackendError, SessionBusy, SessionConfig
from satchel.testing import free_port, new_storage_id
from satchel.testing.services import frozen_process
from satchel_redis import AsyncRedisSessionHandler, RedisSessionHandler
from satchel_redis.native import NativeRedisClient

SOCKET_TIMEOUT = 10.0  # far longer than any test holds the server stopped


def _config(url: str, prefix: str, **options: Any) -> SessionConfig:
    return SessionConfig(
        driver="redis",
        connection=url,
        prefix=prefix,
        options={"socket_timeout": SOCKET_TIMEOUT, **options},
    )


@pytest.fixture
def own_redis(start_redis: Any) -> Iterator[tuple[str, Any]]:
    """A redis-server of this test (it is stopped and resumed): its URL and process."""
    port = free_port()
    with start_redis(port) as process:
        yield f"redis://127.0.0.1:{port}/0", process


def test_a_command_waits_for_the_busy_pool_then_succeeds(
    own_redis: tuple[str, Any], unique_prefix: str
) -> None:
    url, process = own_redis
    options = {"max_connections": 1, "pool_timeout": 10}
    handler = RedisSessionHandler.from_config(_config(url, unique_prefix, **options))
    check_a_command_waits_then_succeeds(handler, process)


def test_a_pool_busy_past_pool_timeout_is_pool_exhausted(
    own_redis: tuple[str, Any], unique_prefix: str
) -> None:
    url, process = own_redis
    options = {"max_connections": 1, "pool_timeout": 0.3}
    handler = RedisSessionHandler.from_config(_config(url, unique_prefix, **options))
    check_a_busy_pool_is_pool_exhausted(
        handler,
        process,
        driver="redis",
        address=url.removeprefix("redis://"),
        size_option="max_connections",
    )


def test_the_async_twin_waits_for_the_busy_pool_then_fails_past_pool_timeout(
    own_redis: tuple[str, Any], unique_prefix: str
) -> None:
    url, process = own_redis
    waiting = AsyncRedisSessionHandler.from_config(
        _config(url, unique_prefix, max_connections=1, pool_timeout=10)
    )
    impatient = AsyncRedisSessionHandler.from_config(
        _config(url, unique_prefix, max_connections=1, pool_timeout=0.3)
    )
    key = new_storage_id()

    async def scenario(handler: Any) -> list[object]:
        await handler.write(key, "stored")
        with frozen_process(process):
            first = asyncio.ensure_future(handler.read(key))
            await asyncio.sleep(IN_FLIGHT_SECONDS)
            second = asyncio.ensure_future(handler.read(key))
            await asyncio.sleep(IN_FLIGHT_SECONDS)
            if handler is waiting:
                assert not second.done()  # waiting for the connection, not failed
        results = await asyncio.gather(first, second, return_exceptions=True)
        await handler.close()
        return results

    assert asyncio.run(scenario(waiting)) == ["stored", "stored"]
    first, second = asyncio.run(scenario(impatient))
    assert first == "stored"
    assert isinstance(second, PoolExhausted)
    assert isinstance(second, SessionBusy)
    assert isinstance(second, SessionBackendError)
    assert second.driver == "redis"
    assert url.removeprefix("redis://") in str(second)


def test_three_hundred_concurrent_commands_on_ten_connections_all_succeed(
    redis_url: str, unique_prefix: str
) -> None:
    """The burst that ran redis-py's asyncio pool out: every command waits its turn."""
    handler = AsyncRedisSessionHandler.from_config(
        _config(redis_url, unique_prefix, max_connections=10)
    )
    keys = [new_storage_id() for _ in range(300)]

    async def burst() -> list[str]:
        await asyncio.gather(*(handler.write(key, key) for key in keys))
        found = await asyncio.gather(*(handler.read(key) for key in keys))
        await asyncio.gather(*(handler.destroy(key) for key in keys))
        await handler.close()
        return list(found)

    assert asyncio.run(burst()) == keys


@pytest.mark.parametrize(
    "pool",
    [
        pytest.param(lambda url: redis.ConnectionPool.from_url(url, max_connections=1), id="plain"),
        pytest.param(
            lambda url: redis.BlockingConnectionPool.from_url(url, max_connections=1, timeout=0.2),
            id="blocking",
        ),
    ],
)
def test_a_client_handed_in_whose_pool_runs_out_is_pool_exhausted(
    redis_url: str, unique_prefix: str, pool: Any
) -> None:
    """The driver does not size a client it was given; its pool running out is still a 503."""
    client = redis.Redis(connection_pool=pool(redis_url))
    handler = RedisSessionHandler.from_config(
        SessionConfig(driver="redis", prefix=unique_prefix, options={"client": client})
    )
    held = client.connection_pool.get_connection()
    try:
        with pytest.raises(PoolExhausted) as caught:
            handler.read(new_storage_id())
    finally:
        client.connection_pool.release(held)
    assert caught.value.driver == "redis"
    assert handler.read(new_storage_id()) == ""
    client.close()


def test_an_async_client_handed_in_whose_pool_runs_out_is_pool_exhausted(
    redis_url: str, unique_prefix: str
) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, max_connections=1)
        handler = AsyncRedisSessionHandler.from_config(
            SessionConfig(driver="redis", prefix=unique_prefix, options={"async_client": client})
        )
        held = await client.connection_pool.get_connection()
        try:
            with pytest.raises(PoolExhausted):
                await handler.read(new_storage_id())
        finally:
            await client.connection_pool.release(held)
        assert await handler.read(new_storage_id()) == ""
        await client.aclose()

    asyncio.run(scenario())


def _pool_size(client: Any) -> int:
    if isinstance(client, NativeRedisClient):
        return client.max_connections
    return int(client.connection_pool.max_connections)


@pytest.mark.parametrize(
    ("url", "native"),
    [("redis://127.0.0.1:6379/0", True), ("rediss://127.0.0.1:6379/0", False)],
    ids=["native", "redis-py"],
)
def test_the_pool_options_size_the_pool_and_its_wait(url: str, native: bool) -> None:
    config = SessionConfig(
        driver="redis", connection=url, options={"max_connections": 7, "pool_timeout": 2.5}
    )
    handler = RedisSessionHandler.from_config(config)
    assert isinstance(handler.client, NativeRedisClient) is native
    assert _pool_size(handler.client) == 7
    assert handler.slots is not None
    assert (handler.slots.size, handler.slots.timeout) == (7, 2.5)
    defaults = RedisSessionHandler.from_config(SessionConfig(driver="redis", connection=url))
    assert _pool_size(defaults.client) == 100
    assert defaults.slots is not None
    assert (defaults.slots.size, defaults.slots.timeout) == (100, 10.0)


@pytest.mark.parametrize(
    ("option", "value"),
    [("pool_timeout", 0), ("pool_timeout", -1), ("max_connections", 0), ("pool_timeout", "soon")],
)
def test_bad_pool_options_name_the_option(option: str, value: object) -> None:
    config = SessionConfig(driver="redis", options={option: value})
    with pytest.raises(ConfigError) as caught:
        RedisSessionHandler.from_config(config)
    assert caught.value.key == f"options.{option}"
