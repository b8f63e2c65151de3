"""The memcached driver's asyncio client (one server), against real memcached servers.

What it must share with the sync driver (keys, values, the lock) is checked by the
conformance suites, its commands in test_memcached_own_clients.py; here: which configurations get it, an
outage or a frozen server (a clear ``SessionBackendError``, and no answer ever read
by the wrong command), and the pool bound (a burst waits; past ``pool_timeout`` it
is ``PoolExhausted``, a 503 in the web glue, never a 500).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import pytest
from fixtures.memcached_servers import connections_opened
from pymemcache.client.base import Client

from satchel import PoolExhausted, SessionBackendError, SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware
from satchel.testing import free_port, new_storage_id
from satchel.testing.concurrency import call_asgi, seed_session
from satchel.testing.services import frozen_process
from satchel_memcached import (
    AsyncMemcachedSessionHandler,
    ThreadedMemcachedSessionHandler,
)

Message = MutableMapping[str, Any]


def _config(connection: str, prefix: str, **options: Any) -> SessionConfig:
    return SessionConfig(
        driver="memcached", connection=connection, prefix=prefix, lottery=(0, 1), options=options
    )


def _native(connection: str, prefix: str, **options: Any) -> AsyncMemcachedSessionHandler:
    handler = AsyncMemcachedSessionHandler.from_config(_config(connection, prefix, **options))
    assert isinstance(handler, AsyncMemcachedSessionHandler)
    return handler


@pytest.fixture
def own_memcached(start_memcached: Any) -> Iterator[tuple[str, Any]]:
    """A memcached of this test (stopped, frozen or counted): its connection and process."""
    port = free_port()
    with start_memcached(port) as process:
        yield f"127.0.0.1:{port}", process


def test_one_server_gets_the_asyncio_handler_the_rest_the_threaded_one(
    memcached_connection: str, memcached_pool_connection: str, unique_prefix: str
) -> None:
    native = AsyncMemcachedSessionHandler.from_config(_config(memcached_connection, unique_prefix))
    assert isinstance(native, AsyncMemcachedSessionHandler)
    for config in (
        _config(memcached_pool_connection, unique_prefix),
        _config(memcached_connection, unique_prefix, tls=True, tls_verify=False),
        _config(memcached_connection, unique_prefix, client=Client(("127.0.0.1", 1))),
    ):
        assert isinstance(
            AsyncMemcachedSessionHandler.from_config(config), ThreadedMemcachedSessionHandler
        )


def test_an_outage_names_driver_and_address_and_a_restart_needs_no_new_handler(
    start_memcached: Any, unique_prefix: str
) -> None:
    port = free_port()
    connection = f"127.0.0.1:{port}"
    handler = _native(connection, unique_prefix, connect_timeout=1, timeout=1)
    keys = [new_storage_id() for _ in range(3)]

    async def main() -> None:
        with start_memcached(port):
            # Three connections kept idle, which the restart below leaves closed.
            await asyncio.gather(*(handler.write(key, key) for key in keys))
        for action in (handler.read(keys[0]), handler.write(keys[0], "x")):
            with pytest.raises(SessionBackendError) as caught:
                await action
            assert caught.value.driver == "memcached"
            assert connection in str(caught.value)
        with start_memcached(port):
            await handler.write(keys[0], "after")  # on a new connection, first time
            assert await handler.read(keys[0]) == "after"
        with start_memcached(port):
            assert await handler.read(keys[0]) == ""  # a new server, empty: no error
        await handler.close()

    asyncio.run(main())


def test_a_frozen_server_times_out_and_its_late_answer_reaches_no_one(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, process = own_memcached
    handler = _native(connection, unique_prefix, timeout=0.3)
    first, second = new_storage_id(), new_storage_id()

    async def main() -> None:
        await handler.write(first, "first")
        await handler.write(second, "second")
        with frozen_process(process):
            with pytest.raises(SessionBackendError) as caught:
                await handler.read(first)
            assert connection in str(caught.value)
            assert "0.3 seconds" in str(caught.value)
        await asyncio.sleep(0.1)  # the server answers the timed-out get now
        assert await handler.read(second) == "second"
        await handler.close()

    asyncio.run(main())


def test_a_burst_waits_for_the_pool_and_opens_no_more_connections(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, _ = own_memcached
    handler = _native(connection, unique_prefix, max_pool_size=2, pool_timeout=30, timeout=30)
    keys = [new_storage_id() for _ in range(100)]

    async def burst() -> list[str]:
        await asyncio.gather(*(handler.write(key, key) for key in keys))
        found = await asyncio.gather(*(handler.read(key) for key in keys))
        await handler.close()
        return list(found)

    found: list[str] = []
    # The pool of two was used and never exceeded.
    assert connections_opened(connection, lambda: found.extend(asyncio.run(burst()))) == 2
    assert found == keys


def test_a_pool_busy_past_pool_timeout_is_pool_exhausted(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, process = own_memcached
    handler = _native(connection, unique_prefix, max_pool_size=1, pool_timeout=0.2, timeout=10)
    key = new_storage_id()

    async def main() -> None:
        await handler.write(key, "stored")
        with frozen_process(process):
            in_flight = asyncio.ensure_future(handler.read(key))
            await asyncio.sleep(0.05)
            with pytest.raises(PoolExhausted) as caught:
                await handler.write(key, "refused")
        assert await in_flight == "stored"
        assert caught.value.driver == "memcached"
        assert connection in str(caught.value)
        assert "options.max_pool_size" in str(caught.value)
        assert await handler.read(key) == "stored"
        await handler.close()

    asyncio.run(main())


def reading_app() -> Callable[[Message, Any, Any], Awaitable[None]]:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        scope["session"].put("seen", True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_an_asgi_burst_on_a_tiny_pool_gets_503_never_500(
    own_memcached: tuple[str, Any], unique_prefix: str
) -> None:
    connection, process = own_memcached
    manager = SessionManager(
        _config(connection, unique_prefix, max_pool_size=1, pool_timeout=0.05, timeout=10)
    )
    cookie = seed_session(manager, {"user": 1})
    app = SessionMiddleware(reading_app(), manager)
    headers = [(b"cookie", f"{manager.config.cookie}={cookie}".encode())]

    async def burst() -> collections.Counter[int]:
        await call_asgi(app, headers)  # the one connection, open
        with frozen_process(process):
            requests = [asyncio.ensure_future(call_asgi(app, headers)) for _ in range(30)]
            await asyncio.sleep(0.3)
        return collections.Counter(await asyncio.gather(*requests))

    statuses = asyncio.run(burst())
    assert set(statuses) == {200, 503}, dict(statuses)
