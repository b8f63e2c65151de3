"""The entry point of satchel-redis: registers the ``redis`` driver.

Listed under ``[project.entry-points.satchel]``. It imports no client library:
the factories import the handlers on first use, so an application on another
driver never loads redis-py. A missing redis-py makes the plugin fail to load,
and ``satchel drivers`` says so with the distribution's name.
"""

from __future__ import annotations

from satchel import hookimpl
from satchel.toolkit import DriverRegistrar, lazy_factory, require_modules

require_modules("redis", install='pip install "satchel-redis"')


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register(
        "redis",
        lazy_factory("satchel_redis.handler:RedisSessionHandler.from_config"),
        async_factory=lazy_factory("satchel_redis.handler:AsyncRedisSessionHandler.from_config"),
    )
