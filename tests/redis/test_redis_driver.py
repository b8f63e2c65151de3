"""The redis driver's own promises: URL forms, options, keys, expiry, round trips, registration."""

from __future__ import annotations

import asyncio
import gc
import secrets
from types import ModuleType
from typing import Any

import pytest
import redis
import redis.sentinel

from satchel import ConfigError, SessionBackendError, SessionConfig
from satchel.handler import SupportsLock, SupportsWriteExisting
from satchel.plugins import load_plugins
from satchel.testing import free_port, new_storage_id
from satchel_redis import (
    AsyncRedisSessionHandler,
    RedisOptions,
    RedisSessionHandler,
    parse_connection,
)

# --- connection URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "hosts", "tls", "db", "address"),
    [
        ("redis://127.0.0.1:6379/0", "single", (("127.0.0.1", 6379),), False, 0,
         "redis://127.0.0.1:6379/0"),
        ("redis://:pw@cache.internal/4", "single", (("cache.internal", 6379),), False, 4,
         "redis://cache.internal:6379/4"),
        ("rediss://user:pw@cache.example.com:6380/1", "single",
         (("cache.example.com", 6380),), True, 1, "rediss://cache.example.com:6380/1"),
        ("unix://:pw@/run/redis/redis.sock?db=2", "single", (), False, 2,
         "unix:///run/redis/redis.sock"),
        ("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380,[::1]/mymaster/3", "sentinel",
         (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26379)), False, 3,
         "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,[::1]:26379/mymaster/3"),
        ("rediss+sentinel://s1:26379/mymaster", "sentinel", (("s1", 26379),), True, 0,
         "rediss+sentinel://s1:26379/mymaster/0"),
        ("redis+cluster://:pw@n1:7000,n2:7001,n3", "cluster",
         (("n1", 7000), ("n2", 7001), ("n3", 6379)), False, 0,
         "redis+cluster://n1:7000,n2:7001,n3:6379"),
        ("rediss+cluster://n1:7000", "cluster", (("n1", 7000),), True, 0,
         "rediss+cluster://n1:7000"),
    ],
)  # fmt: skip
def test_connection_url_forms(
    url: str, kind: str, hosts: tuple[tuple[str, int], ...], tls: bool, db: int, address: str
) -> None:
    target = parse_connection(url)
    assert (target.kind, target.hosts, target.tls, target.db) == (kind, hosts, tls, db)
    assert target.address == address
    assert "pw@" not in target.address
    assert "pw" not in repr(target)


def test_sentinel_url_names_service_and_credentials() -> None:
    target = parse_connection("redis+sentinel://app:s%40cret@h:26379/sessions-master/1")
    assert target.service == "sessions-master"
    assert (target.username, target.password) == ("app", "s@cret")


def test_no_connection_means_the_local_default() -> None:
    assert parse_connection(None).address == "redis://127.0.0.1:6379/0"


def test_cluster_flag_on_a_plain_url() -> None:
    target = parse_connection("redis://n1:7000", cluster=True)
    assert target.kind == "cluster"
    assert target.hosts == (("n1", 7000),)


@pytest.mark.parametrize(
    "url",
    [
        "memcached://127.0.0.1:11211",
        "127.0.0.1:6379",
        "redis+sentinel://127.0.0.1:26379",  # no service name
        "redis+cluster://",
        "redis+cluster://n1:notaport",
        "unix://",
    ],
)
def test_bad_connection_urls_are_config_errors_naming_connection(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisSessionHandler.from_config(SessionConfig(driver="redis", connection=url))
    assert caught.value.key == "connection"


# --- options ---------------------------------------------------------------------------------


def test_unknown_option_is_named() -> None:
    config = SessionConfig(driver="redis", options={"sentinal_password": "x"})
    with pytest.raises(ConfigError) as caught:
        RedisSessionHandler.from_config(config)
    assert caught.value.key == "options.sentinal_password"
    assert "sentinel_password" in str(caught.value)  # the known options are listed


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"socket_timeout": 0}, "options.socket_timeout"),
        ({"socket_timeout": "soon"}, "options.socket_timeout"),
        ({"retries": -1}, "options.retries"),
        ({"ssl_cert_reqs": "maybe"}, "options.ssl_cert_reqs"),
        ({"cluster": "perhaps"}, "options.cluster"),
        ({"max_connections": 0}, "options.max_connections"),
    ],
)
def test_bad_option_values_are_named(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisSessionHandler.from_config(SessionConfig(driver="redis", options=options))
    assert caught.value.key == key
    assert key.split(".")[1] in str(caught.value)


def test_options_from_json_like_values() -> None:
    config = SessionConfig.from_env(
        {"SESSION_DRIVER": "redis", "SESSION_OPTIONS": '{"socket_timeout": "1.5", "cluster": "no"}'}
    )
    options = config.structure_options(RedisOptions, driver="redis")
    assert options.socket_timeout == 1.5
    assert options.cluster is False


def test_tls_options_reach_the_connection() -> None:
    handler = RedisSessionHandler.from_config(
        SessionConfig(
            driver="redis",
            connection="rediss://cache.example.com:6380/0",
            options={"ssl_ca_certs": "/etc/ssl/certs/ca.pem", "ssl_cert_reqs": "required"},
        )
    )
    kwargs = handler.client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == "/etc/ssl/certs/ca.pem"
    assert handler.client.connection_pool.connection_class is redis.SSLConnection


def _asyncio_clients() -> list[Any]:
    import redis.asyncio  # noqa: PLC0415
    import redis.asyncio.cluster  # noqa: PLC0415
    import redis.asyncio.sentinel  # noqa: PLC0415

    # None of these connects before its first command.
    return [
        redis.asyncio.Redis(port=free_port()),
        redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode("127.0.0.1", free_port())]
        ),
        redis.asyncio.sentinel.Sentinel([("127.0.0.1", free_port())]).master_for("m"),
    ]


@pytest.mark.parametrize("index", range(3), ids=["Redis", "RedisCluster", "Sentinel master"])
def test_an_asyncio_client_as_client_is_refused(index: int) -> None:
    """Its commands return coroutines: the sync handler would lose every write silently."""
    client = _asyncio_clients()[index]
    config = SessionConfig(driver="redis", options={"client": client})
    for factory in (RedisSessionHandler.from_config, AsyncRedisSessionHandler.from_config):
        with pytest.raises(ConfigError) as caught:
            factory(config)
        assert caught.value.key == "options.client"
        assert "async_client" in str(caught.value)  # says where it belongs


@pytest.mark.parametrize("kind", ["Redis", "Sentinel master"])
def test_a_sync_client_as_async_client_is_refused(kind: str) -> None:
    client = (
        redis.Redis(port=free_port())
        if kind == "Redis"
        else redis.sentinel.Sentinel([("127.0.0.1", free_port())]).master_for("m")
    )
    config = SessionConfig(driver="redis", options={"async_client": client})
    with pytest.raises(ConfigError) as caught:
        AsyncRedisSessionHandler.from_config(config)
    assert caught.value.key == "options.async_client"
    assert "options.client" in str(caught.value)


def test_only_an_async_client_is_not_enough_for_the_sync_handler() -> None:
    import redis.asyncio  # noqa: PLC0415

    config = SessionConfig(driver="redis", options={"async_client": redis.asyncio.Redis()})
    with pytest.raises(ConfigError) as caught:
        RedisSessionHandler.from_config(config)
    assert caught.value.key == "options.client"


# --- behaviour on a real server ---------------------------------------------------------


@pytest.fixture
def handler(redis_url: str, unique_prefix: str) -> RedisSessionHandler:
    return RedisSessionHandler.from_config(
        SessionConfig(driver="redis", connection=redis_url, prefix=unique_prefix, lifetime=30)
    )


def test_handler_declares_lock_and_write_existing(handler: RedisSessionHandler) -> None:
    assert isinstance(handler, SupportsWriteExisting)
    assert isinstance(handler, SupportsLock)


def test_keys_carry_the_prefix_and_expire_after_the_lifetime(
    handler: RedisSessionHandler, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    handler.write(key, "payload")
    assert raw_redis.get(f"{unique_prefix}{key}") == b"payload"
    assert raw_redis.get(key) is None
    assert 30 * 60 - 2 <= raw_redis.ttl(f"{unique_prefix}{key}") <= 30 * 60


def test_default_prefix_is_satchel(redis_url: str) -> None:
    handler = RedisSessionHandler.from_config(SessionConfig(driver="redis", connection=redis_url))
    assert handler.prefix == "satchel:"
    assert handler._key("abc") == "satchel:abc"


def test_app_cache_keys_and_flushes_of_other_prefixes_leave_sessions_alone(
    handler: RedisSessionHandler, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    handler.write(key, "the session")
    # The application caches something under the very same id, then clears its cache prefix.
    app_prefix = f"app-cache-{secrets.token_hex(4)}:"
    raw_redis.set(key, "app value")
    raw_redis.set(f"{app_prefix}{key}", "app value")
    for app_key in raw_redis.scan_iter(f"{app_prefix}*"):
        raw_redis.delete(app_key)
    raw_redis.delete(key)
    assert handler.read(key) == "the session"


def test_gc_returns_zero_and_deletes_nothing(
    handler: RedisSessionHandler, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    handler.write(key, "kept")
    assert handler.gc(0) == 0
    assert handler.read(key) == "kept"


def test_a_value_that_is_not_utf8_reads_as_no_session(
    handler: RedisSessionHandler, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    raw_redis.set(f"{unique_prefix}{key}", b"\xff\xfe\x80 not utf-8")
    assert handler.read(key) == ""


def test_lock_key_holds_a_token_with_a_millisecond_expiry(
    handler: RedisSessionHandler, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    with handler.lock(key, lock_seconds=2.5, wait_seconds=1):
        lock_key = f"{unique_prefix}lock:{key}"
        token = raw_redis.get(lock_key)
        assert token is not None
        assert len(token) == 32
        assert 2000 < raw_redis.pttl(lock_key) <= 2500
        assert raw_redis.get(f"{unique_prefix}{key}") is None  # the lock is not the session
    assert raw_redis.get(lock_key) is None


class LosesLockReplies:
    """A redis-py client whose lock claims reach the server but whose reply is lost."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        result = self.client.set(*args, **kwargs)
        if kwargs.get("nx"):
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return result


def test_a_lock_claim_whose_reply_was_lost_is_released(
    redis_url: str, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    lossy = RedisSessionHandler(
        LosesLockReplies(redis.Redis.from_url(redis_url)),
        lifetime_seconds=30,
        prefix=unique_prefix,
    )
    key = new_storage_id()
    with pytest.raises(SessionBackendError, match="SET NX failed: TimeoutError"):
        lossy.lock(key, lock_seconds=30, wait_seconds=1).__enter__()
    # The claim landed: it is released with its token rather than left for 30 seconds.
    assert raw_redis.get(f"{unique_prefix}lock:{key}") is None


def test_a_lock_entered_and_abandoned_is_not_released_by_the_collector(
    handler: RedisSessionHandler, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    held = handler.lock(key, lock_seconds=30, wait_seconds=1)
    held.__enter__()
    del held
    gc.collect()
    # No network call from the garbage collector: the lock expires as a dead holder's does.
    assert raw_redis.get(f"{unique_prefix}lock:{key}") is not None
    raw_redis.delete(f"{unique_prefix}lock:{key}")


def test_a_request_cancelled_while_it_releases_its_async_lock_still_releases_it(
    redis_url: str, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    lock_key = f"{unique_prefix}lock:{key}"

    async def main() -> None:
        handler = AsyncRedisSessionHandler.from_config(
            SessionConfig(driver="redis", connection=redis_url, prefix=unique_prefix)
        )
        release_lock = handler.release_lock

        async def slow_release(session_id: str, token: str) -> None:
            await asyncio.sleep(0.2)  # a slow round trip, during which the request is cancelled
            await release_lock(session_id, token)

        handler.release_lock = slow_release  # type: ignore[method-assign]

        async def request() -> None:
            async with handler.lock(key, lock_seconds=30, wait_seconds=1):
                pass

        task = asyncio.create_task(request())
        await asyncio.sleep(0.1)
        assert raw_redis.get(lock_key) is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        await handler.close()

    asyncio.run(main())
    assert raw_redis.get(lock_key) is None


@pytest.mark.parametrize(
    "url", ["redis+cluster://bad host:7000", "redis+sentinel://s1:26379,s 2:26379/mymaster"]
)
def test_a_host_list_with_what_no_host_holds_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_connection(url)
    assert caught.value.key == "connection"


def test_one_round_trip_per_operation(
    start_redis: Any, unique_prefix: str, redis_round_trips: ModuleType
) -> None:
    port = free_port()
    with start_redis(port):
        url = f"redis://127.0.0.1:{port}/0"
        handler = RedisSessionHandler.from_config(
            SessionConfig(driver="redis", connection=url, prefix=unique_prefix)
        )
        handler.read(new_storage_id())  # connect (HELLO/CLIENT SETINFO) outside the count
        observer = redis.Redis.from_url(url)
        key = new_storage_id()
        steps = [
            (lambda: handler.read(key), {"get": 1}),
            (lambda: handler.write(key, "x"), {"set": 1}),
            (lambda: handler.write_existing(key, "y"), {"set": 1}),
            (lambda: handler.destroy(key), {"del": 1}),
            (lambda: handler.gc(60), {}),
        ]
        for step, expected in steps:
            assert redis_round_trips.count_commands(observer, step) == expected
        observer.close()


# --- registration -------------------------------------------------------------------------


def test_registered_through_the_entry_point_with_an_async_twin() -> None:
    loaded = load_plugins()
    spec = loaded.registry.get("redis")
    assert spec.distribution == "satchel-redis"
    config = SessionConfig(driver="redis")
    assert isinstance(spec.build(config), RedisSessionHandler)
    assert spec.async_factory is not None
    assert isinstance(spec.build_async(config), AsyncRedisSessionHandler)
    assert not [failure for failure in loaded.failures if "redis" in failure.distribution]


@pytest.mark.parametrize("name", ["client", "async_client"])
def test_something_that_is_not_a_client_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisSessionHandler.from_config(
            SessionConfig(
                driver="redis", connection="redis://127.0.0.1/0", options={name: "redis://x"}
            )
        )
    assert caught.value.key == f"options.{name}"


def test_a_ready_client_that_fails_is_named_by_its_address(unique_prefix: str) -> None:
    port = free_port()  # nothing listens here
    client = redis.Redis(port=port, socket_connect_timeout=1, password="hunter2secret")
    handler = RedisSessionHandler.from_config(
        SessionConfig(driver="redis", prefix=unique_prefix, options={"client": client})
    )
    with pytest.raises(SessionBackendError) as caught:
        handler.read(new_storage_id())
    assert f"localhost:{port}" in str(caught.value)
    assert "hunter2secret" not in str(caught.value)
    assert handler.client is client  # used as it is, never replaced


def test_async_write_existing_never_brings_back_a_destroyed_session(
    redis_url: str, unique_prefix: str
) -> None:
    import asyncio  # noqa: PLC0415

    config = SessionConfig(driver="redis", connection=redis_url, prefix=unique_prefix)

    async def main() -> None:
        handler = AsyncRedisSessionHandler.from_config(config)
        key = new_storage_id()
        assert await handler.write_existing(key, "never was") is False
        assert await handler.read(key) == ""
        await handler.write(key, "logged in")
        assert await handler.write_existing(key, "updated") is True
        assert await handler.read(key) == "updated"
        await handler.destroy(key)
        assert await handler.write_existing(key, "again?") is False
        assert await handler.read(key) == ""
        await handler.close()

    asyncio.run(main())


def test_write_existing_keeps_the_lifetime_ttl(
    handler: RedisSessionHandler, raw_redis: redis.Redis, unique_prefix: str
) -> None:
    key = new_storage_id()
    handler.write(key, "v1")
    raw_redis.expire(f"{unique_prefix}{key}", 5)
    assert handler.write_existing(key, "v2") is True
    assert raw_redis.ttl(f"{unique_prefix}{key}") > 30 * 60 - 3
