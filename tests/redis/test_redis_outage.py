"""Outages: a stopped server gives a clear error in bounded time, the writes refused
during it overwrite nothing, and a restarted one just works with the same manager.

The outage tests' server keeps its data in an append-only file across the
restart, so a session read back after it proves the failed writes changed
nothing (on a server without persistence an empty read could not tell).

Also a Sentinel failover: the master dies, the replica is promoted, sessions
written before (and replicated) are still there and new writes go to the new master.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import redis

from satchel import SessionBackendError, SessionConfig, SessionManager
from satchel.testing import free_port, new_storage_id
from satchel.testing.concurrency import call_wsgi, seed_session, wsgi_environ
from satchel.testing.services import frozen_process
from satchel.wsgi import SessionMiddleware as WsgiSessionMiddleware
from satchel_redis import AsyncRedisSessionHandler, RedisSessionHandler

TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "retries": 1}
# (retries + 1) connection attempts, each refused at once or cut off by the timeout.
ERROR_WITHIN_SECONDS = 2 * (1.0 + 0.05) + 1.0


def _config(port: int, prefix: str) -> SessionConfig:
    return SessionConfig(
        driver="redis",
        connection=f"redis://127.0.0.1:{port}/0",
        prefix=prefix,
        options=TIMEOUTS,
    )


def _persistent(folder: Path) -> tuple[str, ...]:
    """Arguments for a redis-server whose data survives its restart: every write is in
    the append-only file before it is acknowledged, and the file is read back on start."""
    return ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(folder))


def _assert_clear_outage_error(error: SessionBackendError, port: int, started: float) -> None:
    assert time.monotonic() - started < ERROR_WITHIN_SECONDS
    assert error.driver == "redis"
    assert "'redis'" in str(error)
    assert f"127.0.0.1:{port}" in str(error)


def test_the_persistent_server_does_keep_data_across_a_restart(
    start_redis: Any, tmp_path: Path
) -> None:
    """So an empty read after the outage below would mean lost, not merely never stored."""
    port = free_port()
    with start_redis(port, *_persistent(tmp_path)):
        redis.Redis(port=port).set("kept", "yes")
    with start_redis(port, *_persistent(tmp_path)):
        assert redis.Redis(port=port).get("kept") == b"yes"


def test_sync_outage_is_a_clear_error_overwrites_nothing_and_needs_no_restart(
    start_redis: Any, unique_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    config = _config(port, unique_prefix)
    manager = SessionManager(config)
    with start_redis(port, *_persistent(tmp_path)):
        cookie = seed_session(manager, {"user": 42, "cart": ["book"]})
        loaded = manager.start(cookie)  # read before the outage, changed during it
        handler = manager.handler()
    loaded.put("user", 666)
    started = time.monotonic()
    with pytest.raises(SessionBackendError) as caught:
        loaded.save()
    _assert_clear_outage_error(caught.value, port, started)
    started = time.monotonic()
    with pytest.raises(SessionBackendError) as caught:
        handler.write(manager.storage_key(cookie), "during the outage")
    _assert_clear_outage_error(caught.value, port, started)

    # A request through the WSGI middleware: the same clear error, raised, never a hang.
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = environ["satchel.session"]
        session.put("visits", int(session.get("visits", 0)) + 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = WsgiSessionMiddleware(app, manager)
    started = time.monotonic()
    with pytest.raises(SessionBackendError) as caught:
        call_wsgi(middleware, wsgi_environ(f"{config.cookie}={cookie}"))
    _assert_clear_outage_error(caught.value, port, started)

    with start_redis(port, *_persistent(tmp_path)):
        # Same manager, same handler, same pool: the session is as it was before the outage.
        assert manager.handler() is handler
        assert manager.start(cookie).all() == {"user": 42, "cart": ["book"]}
        status, _, _ = call_wsgi(middleware, wsgi_environ(f"{config.cookie}={cookie}"))
        assert status.startswith("200")
        assert manager.start(cookie).all() == {"user": 42, "cart": ["book"], "visits": 1}


def test_async_outage_is_a_clear_error_overwrites_nothing_and_needs_no_restart(
    start_redis: Any, unique_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    manager = SessionManager(_config(port, unique_prefix))

    async def main() -> None:
        with start_redis(port, *_persistent(tmp_path)):
            cookie = seed_session(manager, {"user": 42})
            loaded = await manager.astart(cookie)
            handler = manager.async_handler()
            assert isinstance(handler, AsyncRedisSessionHandler)  # redis.asyncio, not a thread
        loaded.put("user", 666)
        started = time.monotonic()
        with pytest.raises(SessionBackendError) as caught:
            await loaded.asave()
        _assert_clear_outage_error(caught.value, port, started)
        started = time.monotonic()
        with pytest.raises(SessionBackendError) as caught:
            await manager.astart(cookie)
        _assert_clear_outage_error(caught.value, port, started)
        with start_redis(port, *_persistent(tmp_path)):
            assert manager.async_handler() is handler
            session = await manager.astart(cookie)
            assert session.all() == {"user": 42}
            session.put("user", 7)
            await session.asave()
            assert (await manager.astart(cookie)).get("user") == 7
            await handler.close()

    asyncio.run(main())


def test_unreachable_address_never_shows_the_password(unique_prefix: str) -> None:
    port = free_port()  # nothing listens here
    handler = RedisSessionHandler.from_config(
        SessionConfig(
            driver="redis",
            connection=f"redis://session-user:hunter2secret@127.0.0.1:{port}/3",
            prefix=unique_prefix,
            options=TIMEOUTS,
        )
    )
    with pytest.raises(SessionBackendError) as caught:
        handler.write(new_storage_id(), "x")
    assert "hunter2secret" not in str(caught.value)
    assert "hunter2secret" not in repr(caught.value)
    assert caught.value.address == f"redis://127.0.0.1:{port}/3"


def test_lock_on_a_dead_server_is_a_backend_error_not_a_timeout(unique_prefix: str) -> None:
    handler = RedisSessionHandler.from_config(_config(free_port(), unique_prefix))
    with (
        pytest.raises(SessionBackendError),
        handler.lock(new_storage_id(), lock_seconds=5, wait_seconds=5),
    ):
        pass


def test_sentinel_failover_keeps_sessions_and_takes_new_writes(
    own_redis_sentinel: dict[str, Any], unique_prefix: str
) -> None:
    group = own_redis_sentinel
    handler = RedisSessionHandler.from_config(
        SessionConfig(
            driver="redis", connection=group["url"], prefix=unique_prefix, options=TIMEOUTS
        )
    )
    key = new_storage_id()
    handler.write(key, "written before the failover")
    handler.client.wait(1, 5000)  # replicated before the master dies
    process = group["master_process"]
    process.terminate()
    process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while True:
        try:
            assert handler.read(key) == "written before the failover"
            break
        except SessionBackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    handler.write(key, "written after the failover")
    assert handler.read(key) == "written after the failover"


def test_a_server_that_stops_answering_fails_within_the_socket_timeout(
    start_redis: Any, unique_prefix: str
) -> None:
    port = free_port()
    key = new_storage_id()
    with start_redis(port) as process:
        handler = RedisSessionHandler.from_config(_config(port, unique_prefix))
        handler.write(key, "before")
        with frozen_process(process):  # alive, connected, silent
            started = time.monotonic()
            with pytest.raises(SessionBackendError) as caught:
                handler.read(key)
            elapsed = time.monotonic() - started
            assert 0.9 <= elapsed < ERROR_WITHIN_SECONDS
            assert "Timeout" in str(caught.value)
        assert handler.read(key) == "before"


def test_a_refused_write_is_a_clear_error(start_redis: Any, unique_prefix: str) -> None:
    """NOREPLICAS from a master with no Sentinel in front: an error naming it, never a retry loop."""
    port = free_port()
    with start_redis(port):
        redis.Redis(port=port).config_set("min-replicas-to-write", 1)  # it has none
        handler = RedisSessionHandler.from_config(_config(port, unique_prefix))
        key = new_storage_id()
        with pytest.raises(SessionBackendError, match="NOREPLICAS"):
            handler.write(key, "refused")
        assert handler.read(key) == ""


def test_noreplicas_behind_sentinel_without_a_failover_is_a_clear_error(
    redis_sentinel: dict[str, Any], unique_prefix: str
) -> None:
    """The Sentinels still name the same master: the one resend is refused too, and the
    error says why (the driver follows NOREPLICAS only to a master the Sentinels name)."""
    group = redis_sentinel
    master = redis.Redis(port=group["master_port"])
    config = SessionConfig(
        driver="redis", connection=group["url"], prefix=unique_prefix, options=TIMEOUTS
    )
    handler = RedisSessionHandler.from_config(config)
    key = new_storage_id()
    handler.write(key, "before")
    master.config_set("min-replicas-to-write", 2)  # it has one
    try:
        with pytest.raises(SessionBackendError, match="NOREPLICAS"):
            handler.write(key, "refused")

        async def async_write() -> None:
            twin = AsyncRedisSessionHandler.from_config(config)
            try:
                await twin.write(key, "refused")
            finally:
                await twin.close()

        with pytest.raises(SessionBackendError, match="NOREPLICAS"):
            asyncio.run(async_write())
    finally:
        master.config_set("min-replicas-to-write", 0)
    assert handler.read(key) == "before"
