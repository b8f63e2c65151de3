"""satchel-redis: the ``redis`` session driver (redis-py; one server, Sentinel, Cluster; sync and asyncio).

Installed, it registers itself through the ``satchel`` entry-point group, so
``SessionConfig(driver="redis", connection="redis://127.0.0.1:6379/0")`` just works.
"""

from __future__ import annotations

from satchel.hookspecs import hookimpl
from satchel.registry import DriverRegistrar
from satchel_redis.connection import RedisTarget, parse_connection
from satchel_redis.handler import (
    AsyncRedisSessionHandler,
    RedisSessionHandler,
    ThreadedRedisSessionHandler,
)
from satchel_redis.options import RedisOptions

__all__ = [
    "AsyncRedisSessionHandler",
    "RedisOptions",
    "RedisSessionHandler",
    "RedisTarget",
    "ThreadedRedisSessionHandler",
    "parse_connection",
    "register_drivers",
]


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register(
        "redis", RedisSessionHandler.from_config, async_factory=AsyncRedisSessionHandler.from_config
    )
