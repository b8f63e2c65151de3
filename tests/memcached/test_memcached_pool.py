"""The memcached driver's connection pool under a burst: with ``options.max_pool_size``
a command waits for a free connection up to ``options.pool_timeout``, then fails with
``PoolExhausted`` (a 503 in the web glue), never with pymemcache's bare
``RuntimeError: Too many objects``. The async twin runs the same handler in threads.
A server held stopped (SIGSTOP) keeps a command in flight on the pool's only
connection for as long as a test needs (``tests/fixtures/pool_support.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.pool_support import (
    check_a_busy_pool_is_pool_exhausted,
    check_a_command_waits_then_succeeds,
)
from pymemcache.client.base import PooledClient

from satchel import ConfigError, PoolExhausted, SessionConfig
from satchel.testing import free_port, new_storage_id
from satchel_memcached import (
    AsyncMemcachedSessionHandler,
    MemcachedClient,
    MemcachedSessionHandler,
)

TIMEOUT = 10.0  # far longer than any test holds the server stopped


def _config(connection: str, prefix: str, **options: Any) -> SessionConfig:
    return SessionConfig(
        driver="memcached",
        connection=connection,
        prefix=prefix,
        options={"timeout": TIMEOUT, **options},
    )


@pytest.fixture
def own_memcached(start_memcached: Any) -> Iterator[tuple[str, Any]]:
    """A memcached of this test (it is stopped and resumed): its connection and process."""
    port = free_port()
    with start_memcached(port) as process:
        yield f"127.0.0.1:{port}", process


def test_a_command_waits_for_the_busy_pool_then_succeeds(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, process = own_memcached
    options = {"max_pool_size": 1, "pool_timeout": 10}
    handler = MemcachedSessionHandler.from_config(_config(connection, unique_prefix, **options))
    check_a_command_waits_then_succeeds(handler, process)


def test_a_pool_busy_past_pool_timeout_is_pool_exhausted(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, process = own_memcached
    options = {"max_pool_size": 1, "pool_timeout": 0.3}
    handler = MemcachedSessionHandler.from_config(_config(connection, unique_prefix, **options))
    check_a_busy_pool_is_pool_exhausted(
        handler, process, driver="memcached", address=connection, size_option="max_pool_size"
    )


def test_the_async_twin_serves_a_burst_on_two_connections(
    memcached_connection: str, unique_prefix: str
) -> None:
    """100 concurrent commands through the threaded twin on a pool of two: all wait their turn."""
    handler = AsyncMemcachedSessionHandler.from_config(
        _config(memcached_connection, unique_prefix, max_pool_size=2)
    )
    keys = [new_storage_id() for _ in range(100)]

    async def burst() -> list[str]:
        await asyncio.gather(*(handler.write(key, key) for key in keys))
        found = await asyncio.gather(*(handler.read(key) for key in keys))
        await asyncio.gather(*(handler.destroy(key) for key in keys))
        return list(found)

    assert asyncio.run(burst()) == keys


def test_a_client_handed_in_whose_pool_is_full_is_pool_exhausted(
    memcached_connection: str, unique_prefix: str
) -> None:
    host, port = memcached_connection.rsplit(":", 1)
    client = PooledClient((host, int(port)), max_pool_size=1)
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", prefix=unique_prefix, options={"client": client})
    )
    # The pool's only connection, taken.
    with client.client_pool.get_and_release(), pytest.raises(PoolExhausted) as caught:
        handler.read(new_storage_id())
    assert caught.value.driver == "memcached"
    assert handler.read(new_storage_id()) == ""
    client.close()


def test_the_pool_options_size_the_wait() -> None:
    options = {"max_pool_size": 3, "pool_timeout": 2.5}
    handler = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", options=options)
    )
    assert isinstance(handler.client, MemcachedClient)  # one server: the driver's own client
    assert handler.slots is not None
    assert (handler.slots.size, handler.slots.timeout) == (3, 2.5)
    pooled = MemcachedSessionHandler.from_config(
        SessionConfig(driver="memcached", connection="10.0.0.1:11211,10.0.0.2", options=options)
    )
    assert [client.client_pool.max_size for client in pooled.client.clients.values()] == [3, 3]
    assert pooled.slots is not None
    assert (pooled.slots.size, pooled.slots.timeout) == (3, 2.5)
    unbounded = MemcachedSessionHandler.from_config(SessionConfig(driver="memcached"))
    assert unbounded.slots is None  # a pool without a limit never runs out


@pytest.mark.parametrize(
    ("option", "value"), [("pool_timeout", 0), ("pool_timeout", -1), ("max_pool_size", 0)]
)
def test_bad_pool_options_name_the_option(option: str, value: object) -> None:
    config = SessionConfig(driver="memcached", options={option: value})
    with pytest.raises(ConfigError) as caught:
        MemcachedSessionHandler.from_config(config)
    assert caught.value.key == f"options.{option}"
