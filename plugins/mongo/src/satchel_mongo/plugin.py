"""The entry point of satchel-mongo: the one hook that registers the ``mongo`` driver.

``pyproject.toml`` lists this module under ``[project.entry-points.satchel]``.
It imports no client library: the factories import the handlers on first use,
so an application on another driver never loads pymongo. A missing pymongo
makes the plugin fail to load, and ``satchel drivers`` says so with the
distribution's name.
"""

from __future__ import annotations

from satchel import hookimpl
from satchel.toolkit import DriverRegistrar, lazy_factory, require_modules

require_modules("pymongo", install='pip install "satchel-mongo"')


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register(
        "mongo",
        lazy_factory("satchel_mongo.handler:MongoSessionHandler.from_config"),
        async_factory=lazy_factory("satchel_mongo.handler:AsyncMongoSessionHandler.from_config"),
    )
