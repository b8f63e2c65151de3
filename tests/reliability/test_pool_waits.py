"""A driver whose client fails when its pool is in use (redis-py, pymemcache) waits instead.

A server held stopped (SIGSTOP) keeps a command in flight on the pool's only
connection; a second command waits for that connection, and gets it once the
server answers again, or fails with ``PoolExhausted`` (a 503 in the web glue)
naming the driver and its address once ``options.pool_timeout`` has passed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from fixtures.pool_support import IN_FLIGHT_SECONDS, race_for_one_connection

from satchel import (
    PoolExhausted,
    SessionBackendError,
    SessionBusy,
    SessionConfig,
    SessionHandler,
    SessionManager,
)
from satchel.testing import free_port, new_storage_id


@attrs.frozen
class PoolDriver:
    name: str
    size_option: str
    connection: Callable[[int], str]
    quiet_server_timeout: dict[str, float]  # far longer than the test holds the server stopped

    def handler(self, connection: str, prefix: str, **options: Any) -> SessionHandler:
        config = SessionConfig(
            driver=self.name,
            connection=connection,
            prefix=prefix,
            options={**self.quiet_server_timeout, **options},
        )
        return SessionManager(config).handler()


DRIVERS = [
    PoolDriver(
        "redis",
        "max_connections",
        lambda port: f"redis://127.0.0.1:{port}/0",
        {"socket_timeout": 10},
    ),
    PoolDriver("memcached", "max_pool_size", lambda port: f"127.0.0.1:{port}", {"timeout": 10}),
]


@pytest.fixture(params=DRIVERS, ids=[driver.name for driver in DRIVERS])
def own_server(request: pytest.FixtureRequest) -> Iterator[tuple[PoolDriver, str, Any]]:
    """A server of this test (it is stopped and resumed): its driver, connection and process."""
    driver: PoolDriver = request.param
    start = request.getfixturevalue(f"start_{driver.name}")
    port = free_port()
    with start(port) as process:
        yield driver, driver.connection(port), process


def test_a_command_waits_for_the_busy_pool_then_succeeds(
    own_server: tuple[PoolDriver, str, Any], unique_prefix: str
) -> None:
    driver, connection, process = own_server
    options = {driver.size_option: 1, "pool_timeout": 10}
    handler = driver.handler(connection, unique_prefix, **options)
    key = new_storage_id()
    handler.write(key, "stored")
    race = race_for_one_connection(
        process, lambda: handler.read(key), lambda: handler.read(key), hold=IN_FLIGHT_SECONDS
    )
    assert race.second_waited  # waiting for the connection, not failed
    assert (race.first, race.second) == ("stored", "stored")


def test_a_pool_busy_past_pool_timeout_is_pool_exhausted(
    own_server: tuple[PoolDriver, str, Any], unique_prefix: str
) -> None:
    driver, connection, process = own_server
    options = {driver.size_option: 1, "pool_timeout": 0.3}
    handler = driver.handler(connection, unique_prefix, **options)
    key = new_storage_id()
    handler.write(key, "stored")
    race = race_for_one_connection(
        process, lambda: handler.read(key), lambda: handler.write(key, "refused"), hold=5
    )
    assert not race.second_waited  # failed after pool_timeout, long before the server resumed
    error = race.second
    assert isinstance(error, PoolExhausted)
    assert isinstance(error, SessionBusy)
    assert isinstance(error, SessionBackendError)
    assert error.driver == driver.name
    assert connection.removeprefix("redis://") in str(error)
    assert f"options.{driver.size_option}" in str(error)
    assert race.first == "stored"
    assert handler.read(key) == "stored"
