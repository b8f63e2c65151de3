"""satchel-memcached: the ``memcached`` session driver (one server or a hashing pool).

Installed, it registers itself through the ``satchel`` entry-point group
(:mod:`satchel_memcached.plugin`), so ``SessionConfig(driver="memcached",
connection="127.0.0.1:11211")`` just works. The names below are imported on
first use, so importing the package loads no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from satchel.toolkit import lazy_exports

if TYPE_CHECKING:
    from satchel_memcached.aio import AsyncMemcachedClient
    from satchel_memcached.client import MemcachedClient
    from satchel_memcached.connection import StrictHashClient, parse_servers
    from satchel_memcached.handler import (
        AsyncMemcachedSessionHandler,
        MemcachedSessionHandler,
        ThreadedMemcachedSessionHandler,
        is_valid_key,
        key_id,
        memcached_expiry,
    )
    from satchel_memcached.options import MemcachedOptions

__all__ = [
    "AsyncMemcachedClient",
    "AsyncMemcachedSessionHandler",
    "MemcachedClient",
    "MemcachedOptions",
    "MemcachedSessionHandler",
    "StrictHashClient",
    "ThreadedMemcachedSessionHandler",
    "is_valid_key",
    "key_id",
    "memcached_expiry",
    "parse_servers",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncMemcachedClient": "satchel_memcached.aio",
        "MemcachedClient": "satchel_memcached.client",
        "AsyncMemcachedSessionHandler": "satchel_memcached.handler",
        "MemcachedSessionHandler": "satchel_memcached.handler",
        "ThreadedMemcachedSessionHandler": "satchel_memcached.handler",
        "is_valid_key": "satchel_memcached.handler",
        "key_id": "satchel_memcached.handler",
        "memcached_expiry": "satchel_memcached.handler",
        "StrictHashClient": "satchel_memcached.connection",
        "parse_servers": "satchel_memcached.connection",
        "MemcachedOptions": "satchel_memcached.options",
        "connection": "satchel_memcached.connection",
    },
)
