"""satchel-mongo: server-side sessions in MongoDB (pymongo, sync and async).

Driver name ``mongo``; ``config.connection`` is a ``mongodb://`` URL, and
``options`` may name the ``database`` and ``collection``.
"""

from satchel_mongo.handler import AsyncMongoSessionHandler, MongoOptions, MongoSessionHandler

__all__ = ["AsyncMongoSessionHandler", "MongoOptions", "MongoSessionHandler"]
