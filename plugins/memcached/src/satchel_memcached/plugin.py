"""The entry point of satchel-memcached: registers the ``memcached`` driver.

Listed under ``[project.entry-points.satchel]``. It imports no client library:
the factories import the handlers on first use, so an application on another
driver never loads pymemcache. A missing pymemcache makes the plugin fail to
load, and ``satchel drivers`` says so with the distribution's name.
"""

from __future__ import annotations

from satchel import hookimpl
from satchel.toolkit import DriverRegistrar, lazy_factory, require_modules

require_modules("pymemcache", install='pip install "satchel-memcached"')


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register(
        "memcached",
        lazy_factory("satchel_memcached.handler:MemcachedSessionHandler.from_config"),
        async_factory=lazy_factory(
            "satchel_memcached.handler:AsyncMemcachedSessionHandler.from_config"
        ),
    )
