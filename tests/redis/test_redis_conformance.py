"""The shared conformance suite on the redis driver: sync, async, and with ready clients."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import redis
import redis.asyncio

from satchel.testing import ASYNC, LOCK, SYNC, WRITE_EXISTING, DriverConformance
from satchel.testing.conformance import AsyncFactory, SyncFactory
from satchel_redis import AsyncRedisSessionHandler, RedisSessionHandler


class TestRedisConformance(DriverConformance):
    capabilities = frozenset({SYNC, ASYNC, LOCK, WRITE_EXISTING})
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return RedisSessionHandler.from_config

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return AsyncRedisSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(self, redis_url: str, unique_prefix: str) -> Mapping[str, Any]:
        return {"driver": "redis", "connection": redis_url, "prefix": unique_prefix}


class TestReadyClientConformance(DriverConformance):
    """A client the application built itself, handed in as ``options.client``."""

    capabilities = frozenset({SYNC, LOCK, WRITE_EXISTING})
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return RedisSessionHandler.from_config

    @pytest.fixture
    def user_client(self, redis_url: str) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        yield client
        client.close()

    @pytest.fixture
    def satchel_base_config(
        self, user_client: redis.Redis, unique_prefix: str
    ) -> Mapping[str, Any]:
        return {"driver": "redis", "prefix": unique_prefix, "options": {"client": user_client}}


class TestReadyClientInThreadConformance(DriverConformance):
    """Only a sync ``options.client``: the async twin runs that very client in a thread."""

    capabilities = frozenset({ASYNC, LOCK, WRITE_EXISTING})
    gc_removes_expired = False

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return AsyncRedisSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(
        self, redis_url: str, unique_prefix: str
    ) -> Iterator[Mapping[str, Any]]:
        client = redis.Redis.from_url(redis_url)
        yield {"driver": "redis", "prefix": unique_prefix, "options": {"client": client}}
        client.close()


class TestReadyAsyncClientConformance(DriverConformance):
    """A ``redis.asyncio`` client handed in as ``options.async_client``."""

    capabilities = frozenset({ASYNC, LOCK, WRITE_EXISTING})
    gc_removes_expired = False

    @pytest.fixture
    def satchel_async_handler_factory(self, redis_url: str) -> AsyncFactory:
        def factory(config: Any) -> AsyncRedisSessionHandler:
            # Built inside the test's event loop, as an application would at startup.
            client = redis.asyncio.Redis.from_url(redis_url)
            merged = {**config.options, "async_client": client}
            handler = AsyncRedisSessionHandler.from_config(
                type(config).from_dict(
                    {
                        "driver": "redis",
                        "prefix": config.prefix,
                        "lifetime": config.lifetime,
                        "options": merged,
                    }
                )
            )
            assert isinstance(handler, AsyncRedisSessionHandler)
            assert handler.client is client
            return handler

        return factory

    @pytest.fixture
    def satchel_base_config(self, unique_prefix: str) -> Mapping[str, Any]:
        return {"driver": "redis", "prefix": unique_prefix}
