"""The entry point of satchel-mongo: the one hook that registers the ``mongo`` driver.

``pyproject.toml`` lists this module under ``[project.entry-points.satchel]``;
satchel calls the hook when it first needs a driver.
"""

from __future__ import annotations

from satchel import hookimpl
from satchel.registry import DriverRegistrar
from satchel_mongo.handler import AsyncMongoSessionHandler, MongoSessionHandler


@hookimpl
def register_drivers(register: DriverRegistrar) -> None:
    register(
        "mongo", MongoSessionHandler.from_config, async_factory=AsyncMongoSessionHandler.from_config
    )
