"""satchel-memcached: the ``memcached`` session driver (pymemcache; one server or a hashing pool).

Installed, it registers itself through the ``satchel`` entry-point group, so
``SessionConfig(driver="memcached", connection="127.0.0.1:11211")`` just works.
"""

from __future__ import annotations

from satchel.hookspecs import hookimpl
from satchel.registry import DriverRegistrar
from satchel_memcached.connection import StrictHashClient, parse_servers
from satchel_memcached.handler import (
    AsyncMemcachedSessionHandler,
    MemcachedSessionHandler,
    is_valid_key,
    key_id,
    memcached_expiry,
)
from satchel_memcached.options import MemcachedOptions

__all__ = [
    "AsyncMemcachedSessionHandler",
    "MemcachedOptions",
    "MemcachedSessionHandler",
    "StrictHashClient",
    "is_valid_key",
    "key_id",
    "memcached_expiry",
    "parse_servers",
    "register_drivers",
]


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register(
        "memcached",
        MemcachedSessionHandler.from_config,
        async_factory=AsyncMemcachedSessionHandler.from_config,
    )
