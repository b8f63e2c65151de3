"""satchel-mongo: server-side sessions in MongoDB (pymongo, sync and async).

Driver name ``mongo``; ``config.connection`` is a ``mongodb://`` URL, and
``options`` may name the ``database`` and ``collection``. The names below are
imported on first use, so importing the package loads no pymongo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from satchel.toolkit import lazy_exports

if TYPE_CHECKING:
    from satchel_mongo.handler import AsyncMongoSessionHandler, MongoSessionHandler
    from satchel_mongo.options import MongoOptions

__all__ = ["AsyncMongoSessionHandler", "MongoOptions", "MongoSessionHandler"]

__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncMongoSessionHandler": "satchel_mongo.handler",
        "MongoSessionHandler": "satchel_mongo.handler",
        "MongoOptions": "satchel_mongo.options",
    },
)
