"""Helpers for the mongo driver's tests (a unique module name: every distribution's
tests run in one pytest process).

No MongoDB server can be installed on the project's machines, so without
``SATCHEL_TEST_MONGO_URL`` the suite runs on mongomock. mongomock is
synchronous; :class:`AsyncMongomockClient` wraps it in coroutines so the async
handler's own code runs unchanged against it (pymongo's ``AsyncMongoClient``
itself is exercised only against a real server, and by the unreachable-server test).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any

MONGO_URL_ENV = "SATCHEL_TEST_MONGO_URL"
TEST_DATABASE = "satchel_test"


def real_server_url() -> str | None:
    """The real server's URL from ``SATCHEL_TEST_MONGO_URL``, or None."""
    return os.environ.get(MONGO_URL_ENV) or None


class AsyncMongomockCollection:
    """A mongomock collection whose methods are awaitable, like ``AsyncCollection``'s."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    @property
    def name(self) -> str:
        return str(self._collection.name)

    @property
    def database(self) -> AsyncMongomockDatabase:
        return AsyncMongomockDatabase(self._collection.database)

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        method = getattr(self._collection, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


class AsyncMongomockDatabase:
    def __init__(self, database: Any) -> None:
        self._database = database

    def __getitem__(self, name: str) -> AsyncMongomockCollection:
        return AsyncMongomockCollection(self._database[name])


class AsyncMongomockClient:
    """Just enough of ``AsyncMongoClient`` for the handler: ``client[db][collection]``, ``close``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getitem__(self, name: str) -> AsyncMongomockDatabase:
        return AsyncMongomockDatabase(self._client[name])

    async def close(self) -> None:
        self._client.close()
