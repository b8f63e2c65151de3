"""The conformance suite on a real Redis Cluster and behind a real Sentinel, plus a failover."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import redis
import redis.sentinel

from satchel import SessionConfig
from satchel.testing import DriverConformance, new_storage_id
from satchel.testing.conformance import AsyncFactory, SyncFactory
from satchel_redis import AsyncRedisSessionHandler, RedisSessionHandler

QUICK = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}


class TestRedisClusterConformance(DriverConformance):
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return RedisSessionHandler.from_config

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return AsyncRedisSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(self, redis_cluster_url: str, unique_prefix: str) -> Mapping[str, Any]:
        return {"driver": "redis", "connection": redis_cluster_url, "prefix": unique_prefix,
                "options": QUICK}  # fmt: skip

    def test_the_client_is_a_cluster_client_and_keys_spread_over_masters(
        self, handler: RedisSessionHandler, redis_cluster_url: str, unique_prefix: str
    ) -> None:
        assert isinstance(handler.client, redis.RedisCluster)
        keys = [new_storage_id() for _ in range(30)]
        for key in keys:
            handler.write(key, "spread")
        ports = [int(node.rsplit(":", 1)[1]) for node in redis_cluster_url[16:].split(",")]
        holding = [
            port
            for port in ports
            if redis.Redis(port=port).keys(f"{unique_prefix}*")  # each master holds its own
        ]
        assert len(holding) == 3
        assert all(handler.read(key) == "spread" for key in keys)


def test_cluster_flag_turns_a_redis_url_into_a_cluster_client(
    redis_cluster_url: str, unique_prefix: str
) -> None:
    seed = redis_cluster_url.removeprefix("redis+cluster://").split(",")[0]
    handler = RedisSessionHandler.from_config(
        SessionConfig(
            driver="redis",
            connection=f"redis://{seed}",
            prefix=unique_prefix,
            options={"cluster": True, **QUICK},
        )
    )
    assert isinstance(handler.client, redis.RedisCluster)
    key = new_storage_id()
    handler.write(key, "via one seed node")
    assert handler.read(key) == "via one seed node"


class TestRedisSentinelConformance(DriverConformance):
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return RedisSessionHandler.from_config

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return AsyncRedisSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(
        self, redis_sentinel: dict[str, Any], unique_prefix: str
    ) -> Mapping[str, Any]:
        return {"driver": "redis", "connection": redis_sentinel["url"], "prefix": unique_prefix,
                "options": QUICK}  # fmt: skip

    def test_writes_reach_the_master_and_its_replica(
        self, handler: RedisSessionHandler, redis_sentinel: dict[str, Any], unique_prefix: str
    ) -> None:
        key = new_storage_id()
        handler.write(key, "replicated")
        master = redis.Redis(port=redis_sentinel["master_port"])
        assert master.get(f"{unique_prefix}{key}") == b"replicated"
        master.wait(1, 5000)
        replica = redis.Redis(port=redis_sentinel["replica_port"])
        assert replica.get(f"{unique_prefix}{key}") == b"replicated"


def test_async_cluster_handler_survives_a_burst_of_first_commands(
    redis_cluster_url: str, unique_prefix: str
) -> None:
    """redis.asyncio's RedisCluster can drop commands sent concurrently before it
    has discovered the slots; the handler discovers them first."""
    config = SessionConfig(
        driver="redis", connection=redis_cluster_url, prefix=unique_prefix, options=QUICK
    )

    async def burst() -> None:
        handler = AsyncRedisSessionHandler.from_config(config)
        keys = [new_storage_id() for _ in range(60)]
        await asyncio.gather(*(handler.write(key, key) for key in keys))
        assert await asyncio.gather(*(handler.read(key) for key in keys)) == keys
        await handler.close()

    for _ in range(8):  # each with a fresh client, as each app process starts
        asyncio.run(burst())


def _exercise(handler: RedisSessionHandler) -> None:
    key = new_storage_id()
    assert handler.read(key) == ""
    handler.write(key, "kept")
    assert handler.write_existing(key, "updated") is True
    with handler.lock(key, lock_seconds=5, wait_seconds=1):
        assert handler.read(key) == "updated"
    handler.destroy(key)
    assert handler.read(key) == ""


def test_a_ready_cluster_client_is_used_as_it_is(
    redis_cluster_url: str, unique_prefix: str
) -> None:
    host, port = redis_cluster_url.removeprefix("redis+cluster://").split(",")[0].split(":")
    client = redis.RedisCluster(host=host, port=int(port))
    handler = RedisSessionHandler.from_config(
        SessionConfig(driver="redis", prefix=unique_prefix, options={"client": client})
    )
    assert handler.client is client
    assert handler.address.startswith("redis cluster ")
    _exercise(handler)
    client.close()


def test_a_ready_sentinel_master_is_used_as_it_is(
    redis_sentinel: dict[str, Any], unique_prefix: str
) -> None:
    sentinel = redis.sentinel.Sentinel([("127.0.0.1", redis_sentinel["sentinel_port"])])
    master = sentinel.master_for(redis_sentinel["service"], socket_timeout=2)
    handler = RedisSessionHandler.from_config(
        SessionConfig(driver="redis", prefix=unique_prefix, options={"client": master})
    )
    assert handler.client is master
    assert redis_sentinel["service"] in handler.address
    _exercise(handler)
