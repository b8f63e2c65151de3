"""The redis driver's own RESP2 clients (``satchel_redis.native``), on real servers.

Which configurations they serve (one plain server) and which stay with
redis-py; a connection dropped in the middle of a reply, a server restarted
under kept connections, a password, an ACL user, a database number, a unix
socket, a fork, a script cache flushed under the lock release. The pool's
bound and its ``PoolExhausted`` are in ``test_redis_pool.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions
from fixtures.tcp_proxy import TcpProxy, proxy_to

from satchel import SessionBackendError, SessionConfig
from satchel.testing import free_port, new_storage_id
from satchel.testing.services import frozen_process
from satchel_redis import AsyncRedisSessionHandler, RedisSessionHandler
from satchel_redis.native import (
    AsyncNativeRedisClient,
    NativeRedisClient,
    error_reply,
    pack_command,
    parse_reply,
)

BIG = "x" * 300_000  # a reply that spans many reads


def _config(url: str, prefix: str, **options: Any) -> SessionConfig:
    return SessionConfig(driver="redis", connection=url, prefix=prefix, options=options)


# --- which client -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "native", "sync_type", "async_type"),
    [
        ("redis://127.0.0.1:6379/0", True, NativeRedisClient, AsyncNativeRedisClient),
        ("redis://app:pw@127.0.0.1:6379/4", True, NativeRedisClient, AsyncNativeRedisClient),
        ("unix:///run/redis.sock?db=2", True, NativeRedisClient, AsyncNativeRedisClient),
        ("rediss://127.0.0.1:6379/0", False, redis.Redis, redis.asyncio.Redis),
        ("redis://127.0.0.1:6379/0?protocol=3", False, redis.Redis, redis.asyncio.Redis),
        ("redis://127.0.0.1:6379/0?client_name=app", False, redis.Redis, redis.asyncio.Redis),
        ("redis+sentinel://127.0.0.1:26379/m/1", False, redis.Redis, redis.asyncio.Redis),
    ],
)
def test_one_plain_server_gets_the_native_clients_everything_else_redis_py(
    url: str, native: bool, sync_type: type, async_type: type
) -> None:
    config = SessionConfig(driver="redis", connection=url)
    handler = RedisSessionHandler.from_config(config)
    assert isinstance(handler.client, sync_type)
    async_handler = AsyncRedisSessionHandler.from_config(config)
    assert isinstance(async_handler, AsyncRedisSessionHandler)
    assert isinstance(async_handler.client, async_type)
    assert isinstance(handler.client, NativeRedisClient) is native


def test_a_client_handed_in_is_used_not_a_native_one(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    config = SessionConfig(driver="redis", connection=redis_url, options={"client": client})
    assert RedisSessionHandler.from_config(config).client is client
    client.close()


# --- a connection dropped midway --------------------------------------------------------


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    settings = redis.connection.parse_url(redis_url)
    with proxy_to(
        str(settings.get("host", "127.0.0.1")), int(settings.get("port", 6379))
    ) as running:
        yield running


def _proxied_url(redis_url: str, proxy: TcpProxy) -> str:
    db = redis.connection.parse_url(redis_url).get("db", 0)
    return f"redis://127.0.0.1:{proxy.port}/{db}"


def test_a_reply_cut_midway_fails_and_the_next_request_reads_whole_replies(
    redis_url: str, proxy: TcpProxy, unique_prefix: str
) -> None:
    handler = RedisSessionHandler.from_config(
        _config(_proxied_url(redis_url, proxy), unique_prefix, retries=0)
    )
    key, other = new_storage_id(), new_storage_id()
    handler.write(key, BIG)
    handler.write(other, "small")
    proxy.cut_replies(1)
    with pytest.raises(SessionBackendError) as caught:
        handler.read(key)
    assert "Connection closed by server" in str(caught.value)
    # A reused connection would hand the rest of the big value to this read.
    assert handler.read(other) == "small"
    assert handler.read(key) == BIG


def test_the_async_twin_after_a_reply_cut_midway(
    redis_url: str, proxy: TcpProxy, unique_prefix: str
) -> None:
    handler = AsyncRedisSessionHandler.from_config(
        _config(_proxied_url(redis_url, proxy), unique_prefix, retries=0)
    )
    key, other = new_storage_id(), new_storage_id()

    async def scenario() -> None:
        await handler.write(key, BIG)
        await handler.write(other, "small")
        proxy.cut_replies(1)
        with pytest.raises(SessionBackendError) as caught:
            await handler.read(key)
        assert "Connection closed by server" in str(caught.value)
        assert await handler.read(other) == "small"
        assert await handler.read(key) == BIG
        await handler.close()

    asyncio.run(scenario())


def test_a_retry_gets_past_a_reply_cut_midway(
    redis_url: str, proxy: TcpProxy, unique_prefix: str
) -> None:
    handler = RedisSessionHandler.from_config(
        _config(_proxied_url(redis_url, proxy), unique_prefix, retries=1)
    )
    key = new_storage_id()
    handler.write(key, BIG)
    proxy.cut_replies(1)
    assert handler.read(key) == BIG  # the first attempt was cut
    assert proxy.replies_to_cut == 0
    assert handler.read(key) == BIG


def test_a_cancelled_command_leaves_no_reply_behind(redis_url: str, unique_prefix: str) -> None:
    handler = AsyncRedisSessionHandler.from_config(
        _config(redis_url, unique_prefix, max_connections=1)
    )
    key, other = new_storage_id(), new_storage_id()

    async def scenario() -> None:
        await handler.write(key, BIG)
        await handler.write(other, "small")
        reading = asyncio.ensure_future(handler.read(key))
        await asyncio.sleep(0)  # sent, its reply not read yet
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        for _ in range(3):
            assert await handler.read(other) == "small"
        await handler.close()

    asyncio.run(scenario())


# --- a restarted server ---------------------------------------------------------------------


def test_kept_connections_to_a_restarted_server_are_replaced_without_an_error(
    start_redis: Any, unique_prefix: str
) -> None:
    """Even with no retries: a kept connection closed before it answered is not a failure."""
    port = free_port()
    config = _config(f"redis://127.0.0.1:{port}/0", unique_prefix, retries=0)
    handler = RedisSessionHandler.from_config(config)
    async_handler = AsyncRedisSessionHandler.from_config(config)
    key = new_storage_id()

    async def use_async(value: str) -> str:
        await async_handler.write(key, value)
        return await async_handler.read(key)

    loop = asyncio.new_event_loop()
    try:
        with start_redis(port):
            handler.write(key, "before")
            assert handler.read(key) == "before"
            assert loop.run_until_complete(use_async("async before")) == "async before"
        with start_redis(port):
            assert handler.read(key) == ""  # a new server, empty
            handler.write(key, "after")
            assert handler.read(key) == "after"
            assert loop.run_until_complete(use_async("async after")) == "async after"
            loop.run_until_complete(async_handler.close())
    finally:
        loop.close()


def test_the_async_twin_times_out_on_a_server_that_stops_answering(
    start_redis: Any, unique_prefix: str
) -> None:
    port = free_port()
    options = {"socket_timeout": 1.0, "retries": 0}
    handler = AsyncRedisSessionHandler.from_config(
        _config(f"redis://127.0.0.1:{port}/0", unique_prefix, **options)
    )
    key = new_storage_id()

    async def scenario(process: Any) -> None:
        await handler.write(key, "before")
        for _ in range(3):  # commands within the timeout, on the same connection
            assert await handler.read(key) == "before"
            await asyncio.sleep(0.4)
        with frozen_process(process):  # alive, connected, silent
            started = time.monotonic()
            with pytest.raises(SessionBackendError) as caught:
                await handler.read(key)
            assert 0.9 <= time.monotonic() - started < 2.5
            assert "Timeout reading from" in str(caught.value)
        assert await handler.read(key) == "before"
        await handler.close()

    with start_redis(port) as process:
        asyncio.run(scenario(process))


# --- credentials, databases, sockets -------------------------------------------------------


@pytest.fixture
def guarded_redis(start_redis: Any) -> Iterator[int]:
    """A private redis-server with a password for the default user and an ACL user ``app``."""
    port = free_port()
    acl_user = ("--user", "app", "on", ">app-secret", "~*", "+@all")
    with start_redis(port, "--requirepass", "default-secret", *acl_user):
        yield port


@pytest.mark.parametrize(
    "credentials", [":default-secret", "app:app-secret"], ids=["password", "acl user"]
)
def test_auth_and_the_database_number(
    guarded_redis: int, credentials: str, unique_prefix: str
) -> None:
    url = f"redis://{credentials}@127.0.0.1:{guarded_redis}/3"
    handler = RedisSessionHandler.from_config(_config(url, unique_prefix))
    assert isinstance(handler.client, NativeRedisClient)
    async_handler = AsyncRedisSessionHandler.from_config(_config(url, unique_prefix))
    sync_key, async_key = new_storage_id(), new_storage_id()
    handler.write(sync_key, "sync")

    async def scenario() -> str:
        await async_handler.write(async_key, "async")
        value = await async_handler.read(sync_key)
        await async_handler.close()
        return value

    assert asyncio.run(scenario()) == "sync"
    assert handler.read(async_key) == "async"
    with redis.Redis(port=guarded_redis, password="default-secret", db=3) as observer:
        assert observer.get(f"{unique_prefix}{sync_key}") == b"sync"
        assert observer.get(f"{unique_prefix}{async_key}") == b"async"
        observer.select(0)  # type: ignore[no-untyped-call]
        assert observer.get(f"{unique_prefix}{sync_key}") is None  # not in database 0


@pytest.mark.parametrize("url_credentials", ["", ":wrong-secret@", "app:wrong@"])
def test_a_refused_password_is_a_backend_error_that_never_shows_it(
    guarded_redis: int, url_credentials: str, unique_prefix: str
) -> None:
    url = f"redis://{url_credentials}127.0.0.1:{guarded_redis}/0"
    handler = RedisSessionHandler.from_config(_config(url, unique_prefix, retries=0))
    async_handler = AsyncRedisSessionHandler.from_config(_config(url, unique_prefix, retries=0))
    with pytest.raises(SessionBackendError) as caught:
        handler.read(new_storage_id())

    async def scenario() -> SessionBackendError:
        with pytest.raises(SessionBackendError) as caught:
            await async_handler.read(new_storage_id())
        return caught.value

    async_error = asyncio.run(scenario())
    for error in (caught.value, async_error):
        assert error.driver == "redis"
        assert f"127.0.0.1:{guarded_redis}" in str(error)
        assert "wrong" not in str(error)
        assert "secret" not in str(error)
        assert "Error" in str(error)


def test_a_unix_socket(start_redis: Any, tmp_path: Path, unique_prefix: str) -> None:
    port = free_port()
    path = tmp_path / "redis.sock"
    with start_redis(port, "--unixsocket", str(path), "--unixsocketperm", "700"):
        url = f"unix://{path}?db=2"
        handler = RedisSessionHandler.from_config(_config(url, unique_prefix))
        assert isinstance(handler.client, NativeRedisClient)
        key = new_storage_id()
        handler.write(key, "over the socket")
        async_handler = AsyncRedisSessionHandler.from_config(_config(url, unique_prefix))

        async def scenario() -> str:
            value = await async_handler.read(key)
            await async_handler.close()
            return value

        assert asyncio.run(scenario()) == "over the socket"
        with redis.Redis(port=port, db=2) as observer:
            assert observer.get(f"{unique_prefix}{key}") == b"over the socket"
    with pytest.raises(SessionBackendError) as caught:
        handler.read(key)
    assert str(path) in str(caught.value)


# --- fork, scripts ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_uses_the_parents_connections(
    redis_url: str, unique_prefix: str
) -> None:
    handler = RedisSessionHandler.from_config(_config(redis_url, unique_prefix))
    parent_key, child_key = new_storage_id(), new_storage_id()
    handler.write(parent_key, "parent")  # leaves a kept connection
    pid = os.fork()
    if pid == 0:  # the child: its commands go over a connection of its own
        code = 1
        try:
            if handler.read(parent_key) == "parent":
                handler.write(child_key, "child")
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for _ in range(5):  # the parent's kept connection still answers the parent alone
        assert handler.read(parent_key) == "parent"
        assert handler.read(child_key) == "child"


def test_the_lock_release_survives_a_flushed_script_cache(
    start_redis: Any, unique_prefix: str
) -> None:
    port = free_port()
    with start_redis(port), redis.Redis(port=port) as observer:
        handler = RedisSessionHandler.from_config(
            _config(f"redis://127.0.0.1:{port}/0", unique_prefix)
        )
        key = new_storage_id()
        lock_key = f"{unique_prefix}lock:{key}"
        for _ in range(2):
            with handler.lock(key, lock_seconds=30, wait_seconds=1):
                assert observer.get(lock_key) is not None
            assert observer.get(lock_key) is None
            observer.script_flush()
        assert handler.try_lock(key, "a-token", 30)
        handler.release_lock(key, "another-token")  # not the holder: nothing freed
        assert observer.get(lock_key) == b"a-token"
        handler.release_lock(key, "a-token")
        assert observer.get(lock_key) is None


# --- the protocol -------------------------------------------------------------------------------


def test_commands_are_packed_as_resp_arrays_of_bulk_strings() -> None:
    packed = pack_command(("SET", "k", b"\xff\r\n", 7, "é"))
    assert (
        packed == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\xff\r\n\r\n$1\r\n7\r\n$2\r\n\xc3\xa9\r\n"
    )


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"+OK\r\n", b"OK"),
        (b":42\r\n", 42),
        (b"$-1\r\n", None),
        (b"$0\r\n\r\n", b""),
        (b"$4\r\na\r\nb\r\n", b"a\r\nb"),
        (b"*-1\r\n", None),
        (b"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+x\r\n", [b"a", 1, [b"x"]]),
    ],
)
def test_replies_are_parsed_whole_or_not_at_all(data: bytes, value: object) -> None:
    assert parse_reply(data, 0) == (value, len(data))
    for cut in range(len(data)):  # a reply cut short is incomplete: nothing consumed
        assert parse_reply(data[:cut], 0)[1] == 0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ERR unknown command", redis.exceptions.ResponseError),
        ("NOSCRIPT No matching script", redis.exceptions.NoScriptError),
        ("NOAUTH Authentication required.", redis.exceptions.AuthenticationError),
        ("WRONGPASS invalid username-password pair", redis.exceptions.AuthenticationError),
        ("READONLY You can't write against a read only replica.", redis.exceptions.ReadOnlyError),
    ],
)
def test_error_replies_are_redis_py_exceptions(text: str, kind: type) -> None:
    data = f"-{text}\r\n".encode()
    error, end = parse_reply(data, 0)
    assert type(error) is kind
    assert end == len(data)


@pytest.mark.parametrize(
    ("reply", "error_class", "message"),
    [
        ("NOSCRIPT No matching script.", redis.exceptions.NoScriptError, "No matching script."),
        ("WRONGPASS invalid pair", redis.exceptions.AuthenticationError, "invalid pair"),
        ("NOAUTH Authentication required.", redis.exceptions.AuthenticationError, None),
        ("READONLY a replica", redis.exceptions.ReadOnlyError, "a replica"),
        ("ERR invalid password", redis.exceptions.AuthenticationError, "invalid password"),
        ("ERR max number of clients reached", redis.exceptions.ConnectionError, None),
        ("ERR unknown command 'X'", redis.exceptions.ResponseError, "unknown command 'X'"),
        ("WRONGTYPE Operation", redis.exceptions.ResponseError, "WRONGTYPE Operation"),
    ],
)
def test_an_error_reply_becomes_the_exception_redis_py_raises_for_it(
    reply: str, error_class: type[Exception], message: str | None
) -> None:
    error = error_reply(reply)
    assert type(error) is error_class
    if message is not None:
        assert str(error) == message
