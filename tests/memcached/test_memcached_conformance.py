"""The shared conformance suite on the memcached driver: one server and a pool, sync and async."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pymemcache.client.base import PooledClient

from satchel.testing import LOCK, SYNC, WRITE_EXISTING, DriverConformance
from satchel.testing.conformance import AsyncFactory, SyncFactory
from satchel_memcached import AsyncMemcachedSessionHandler, MemcachedSessionHandler


class TestMemcachedConformance(DriverConformance):
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return MemcachedSessionHandler.from_config

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return AsyncMemcachedSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(
        self, memcached_connection: str, unique_prefix: str
    ) -> Mapping[str, Any]:
        return {"driver": "memcached", "connection": memcached_connection, "prefix": unique_prefix}


def _pool_connection(ports: list[int]) -> str:
    return ",".join(f"127.0.0.1:{port}" for port in ports)


class TestMemcachedPoolConformance(DriverConformance):
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return MemcachedSessionHandler.from_config

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return AsyncMemcachedSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(
        self, memcached_pool: list[int], unique_prefix: str
    ) -> Mapping[str, Any]:
        return {"driver": "memcached", "connection": _pool_connection(memcached_pool),
                "prefix": unique_prefix}  # fmt: skip


class TestReadyClientConformance(DriverConformance):
    """A pymemcache client the application built itself, handed in as ``options.client``."""

    capabilities = frozenset({SYNC, LOCK, WRITE_EXISTING})
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return MemcachedSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(
        self, memcached_connection: str, unique_prefix: str
    ) -> Iterator[Mapping[str, Any]]:
        host, _, port = memcached_connection.split(",", maxsplit=1)[0].rpartition(":")
        client = PooledClient(
            (host, int(port)), default_noreply=False, connect_timeout=3, timeout=3
        )
        yield {"driver": "memcached", "prefix": unique_prefix, "options": {"client": client}}
        client.close()
