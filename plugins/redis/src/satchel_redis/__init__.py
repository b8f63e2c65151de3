"""satchel-redis: the ``redis`` session driver (one server, Sentinel, Cluster; sync and asyncio).

One plain server is reached through the driver's own RESP2 clients
(:mod:`satchel_redis.native`), everything else through redis-py.

Installed, it registers itself through the ``satchel`` entry-point group
(:mod:`satchel_redis.plugin`), so ``SessionConfig(driver="redis",
connection="redis://127.0.0.1:6379/0")`` just works. The names below are
imported on first use, so importing the package loads no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from satchel.toolkit import lazy_exports

if TYPE_CHECKING:
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
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncRedisSessionHandler": "satchel_redis.handler",
        "RedisSessionHandler": "satchel_redis.handler",
        "ThreadedRedisSessionHandler": "satchel_redis.handler",
        "RedisTarget": "satchel_redis.connection",
        "parse_connection": "satchel_redis.connection",
        "RedisOptions": "satchel_redis.options",
    },
)
