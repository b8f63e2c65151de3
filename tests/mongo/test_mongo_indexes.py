"""The mongo driver's indexes and its upsert retry, where mongomock alone cannot show them.

mongomock serialises writes, so two first writes never race into a
``DuplicateKeyError``; it raises index conflicts without MongoDB's error codes
and has no ``collMod``. The stubs here wrap a mongomock collection and behave as
a server does at exactly those points; the real-server variants run when
``SATCHEL_TEST_MONGO_URL`` is set.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mongomock
import pytest
from fixtures.mongo_support import TEST_DATABASE, AsyncMongomockCollection, real_server_url
from pymongo.errors import DuplicateKeyError, OperationFailure

from satchel import SessionBackendError, SessionConfig
from satchel.testing import new_storage_id
from satchel_mongo import AsyncMongoSessionHandler, MongoSessionHandler
from satchel_mongo.handler import (
    ACTIVITY_INDEX_NAME,
    INDEX_KEY_SPECS_CONFLICT,
    INDEX_OPTIONS_CONFLICT,
    TTL_INDEX_NAME,
)


class RacedUpserts:
    """A collection whose next ``failures`` upserts lose an insert race.

    Each losing call first lets a competitor insert the document (as the
    winning request would) and then raises the ``DuplicateKeyError`` a server
    gives the loser.
    """

    def __init__(self, collection: Any, failures: float) -> None:
        self._collection = collection
        self.failures = failures
        self.upserts = 0

    def update_one(self, query: Any, update: Any, upsert: bool = False) -> Any:
        if upsert:
            self.upserts += 1
            if self.failures > 0:
                self.failures -= 1
                if self._collection.count_documents({"_id": query["_id"]}) == 0:
                    self._collection.insert_one({"_id": query["_id"], "payload": "competitor"})
                raise DuplicateKeyError(
                    f"E11000 duplicate key error collection: {TEST_DATABASE}.sessions "
                    "index: _id_ dup key",
                    code=11000,
                )
        return self._collection.update_one(query, update, upsert=upsert)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


def fresh_collection() -> Any:
    return mongomock.MongoClient()[TEST_DATABASE][new_storage_id()[:12]]


def test_an_upsert_that_lost_the_insert_race_is_retried_as_an_update() -> None:
    raced = RacedUpserts(fresh_collection(), failures=1)
    handler = MongoSessionHandler(raced, lifetime_seconds=60)  # type: ignore[arg-type]
    key = new_storage_id()
    assert handler.write(key, "ours") is True
    assert raced.upserts == 2
    assert handler.read(key) == "ours"  # the winner's document, updated


def test_a_duplicate_key_on_the_retry_too_is_a_clear_backend_error() -> None:
    raced = RacedUpserts(fresh_collection(), failures=float("inf"))
    handler = MongoSessionHandler(raced, lifetime_seconds=60, address="mongodb://db:27017")  # type: ignore[arg-type]
    key = new_storage_id()
    with pytest.raises(SessionBackendError) as caught:
        handler.write(key, "ours")
    assert raced.upserts == 2  # one retry, not a loop
    assert caught.value.driver == "mongo"
    assert caught.value.address == "mongodb://db:27017"
    assert "collided again after a retry" in str(caught.value)
    assert isinstance(caught.value.__cause__, DuplicateKeyError)
    assert raced.find_one({"_id": key})["payload"] == "competitor"  # nothing of ours written


def test_the_async_twin_retries_a_lost_insert_race_once() -> None:
    async def main() -> None:
        raced = RacedUpserts(fresh_collection(), failures=1)
        handler = AsyncMongoSessionHandler(AsyncMongomockCollection(raced), lifetime_seconds=60)  # type: ignore[arg-type]
        key = new_storage_id()
        assert await handler.write(key, "ours") is True
        assert raced.upserts == 2
        assert await handler.read(key) == "ours"

        stuck = RacedUpserts(fresh_collection(), failures=float("inf"))
        handler = AsyncMongoSessionHandler(AsyncMongomockCollection(stuck), lifetime_seconds=60)  # type: ignore[arg-type]
        with pytest.raises(SessionBackendError, match="collided again after a retry"):
            await handler.write(key, "ours")
        assert stuck.upserts == 2

    asyncio.run(main())


class ServerIndexRules:
    """A mongomock collection whose index conflicts carry MongoDB's codes, with ``collMod``.

    mongomock refuses an index of an existing name with other options, but
    without a code; a server says 85 (IndexOptionsConflict) for other options
    on the same key, 86 (IndexKeySpecsConflict) for the name on another key.
    """

    def __init__(self, collection: Any, database: ServerDatabase) -> None:
        self._collection = collection
        self.database = database

    @property
    def name(self) -> str:
        return str(self._collection.name)

    def create_index(self, key: str, **options: Any) -> Any:
        try:
            return self._collection.create_index(key, **options)
        except OperationFailure as exc:
            existing = self._collection.index_information().get(options.get("name"), {})
            same_key = existing.get("key") == [(key, 1)]
            code = INDEX_OPTIONS_CONFLICT if same_key else INDEX_KEY_SPECS_CONFLICT
            raise OperationFailure(str(exc), code=code) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


class ServerDatabase:
    """``database[name]`` gives :class:`ServerIndexRules`; ``command`` runs ``collMod``."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self.commands: list[dict[str, Any]] = []

    def __getitem__(self, name: str) -> ServerIndexRules:
        return ServerIndexRules(self._database[name], self)

    def command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.commands.append(command)
        if "collMod" not in command:
            raise OperationFailure(f"unsupported command {command}", code=59)
        collection = self._database[command["collMod"]]
        wanted = list(command["index"]["keyPattern"].items())
        for name, index in collection.index_information().items():
            if index["key"] == wanted:
                collection.drop_index(name)
                collection.create_index(
                    wanted, name=name, expireAfterSeconds=command["index"]["expireAfterSeconds"]
                )
                return {"ok": 1.0}
        raise OperationFailure("cannot find index for collMod", code=27)


def grace_of(collection: Any) -> int:
    return int(collection.index_information()[TTL_INDEX_NAME]["expireAfterSeconds"])


def test_a_changed_ttl_grace_changes_the_index_in_place() -> None:
    database = ServerDatabase(mongomock.MongoClient()[TEST_DATABASE])
    collection = database["sessions"]
    locks = database["sessions_locks"]
    before = MongoSessionHandler(collection, lifetime_seconds=60, ttl_grace_seconds=60)  # type: ignore[arg-type]
    key = new_storage_id()
    before.write(key, "kept")
    with before.lock(key, lock_seconds=5, wait_seconds=1):
        pass
    assert (grace_of(collection), grace_of(locks)) == (60, 60)

    after = MongoSessionHandler(collection, lifetime_seconds=60, ttl_grace_seconds=300)  # type: ignore[arg-type]
    assert after.read(key) == "kept"  # was: SessionBackendError on every request
    after.write(new_storage_id(), "new")
    with after.lock(key, lock_seconds=5, wait_seconds=1):
        pass
    assert (grace_of(collection), grace_of(locks)) == (300, 300)
    mods = [command for command in database.commands if "collMod" in command]
    assert mods == [
        {
            "collMod": name,
            "index": {"keyPattern": {"expires_at": 1}, "expireAfterSeconds": 300},
        }
        for name in ("sessions", "sessions_locks")
    ]
    after.write(new_storage_id(), "again")  # once per handler, not once per request
    assert len(database.commands) == 2


def test_the_async_twin_changes_a_changed_ttl_grace_in_place() -> None:
    database = ServerDatabase(mongomock.MongoClient()[TEST_DATABASE])
    collection = database["sessions"]
    MongoSessionHandler(collection, lifetime_seconds=60).write(new_storage_id(), "x")  # type: ignore[arg-type]

    async def main() -> None:
        handler = AsyncMongoSessionHandler(
            AsyncMongomockCollection(collection),  # type: ignore[arg-type]
            lifetime_seconds=60,
            ttl_grace_seconds=5,
        )
        key = new_storage_id()
        await handler.write(key, "after")
        assert await handler.read(key) == "after"
        async with handler.lock(key, lock_seconds=5, wait_seconds=1):
            pass

    asyncio.run(main())
    assert (grace_of(collection), grace_of(database["sessions_locks"])) == (5, 5)
    assert [command["collMod"] for command in database.commands] == ["sessions"]


def test_our_index_name_on_another_key_is_dropped_and_made_again() -> None:
    database = ServerDatabase(mongomock.MongoClient()[TEST_DATABASE])
    collection = database["sessions"]
    collection.create_index("payload", name=TTL_INDEX_NAME)
    handler = MongoSessionHandler(collection, lifetime_seconds=60)  # type: ignore[arg-type]
    key = new_storage_id()
    handler.write(key, "x")
    assert collection.index_information()[TTL_INDEX_NAME]["key"] == [("expires_at", 1)]
    assert grace_of(collection) == 60
    assert database.commands == []


def test_another_index_failure_is_still_a_backend_error() -> None:
    class Refusing(ServerIndexRules):
        def create_index(self, key: str, **options: Any) -> Any:
            raise OperationFailure("not authorized on satchel to execute createIndexes", code=13)

    database = ServerDatabase(mongomock.MongoClient()[TEST_DATABASE])
    refusing = Refusing(database._database["sessions"], database)
    handler = MongoSessionHandler(refusing, lifetime_seconds=60)  # type: ignore[arg-type]
    with pytest.raises(SessionBackendError, match="not authorized"):
        handler.read(new_storage_id())


@pytest.fixture
def handler(sync_factory: Any, mongo_config: dict[str, Any]) -> Any:
    made = sync_factory(SessionConfig.from_dict(mongo_config))
    yield made
    made.close()


def test_gc_has_an_index_on_last_activity(handler: MongoSessionHandler) -> None:
    handler.read(new_storage_id())
    indexes = handler.collection.index_information()
    assert indexes[ACTIVITY_INDEX_NAME]["key"] == [("last_activity", 1)]
    assert "expireAfterSeconds" not in indexes[ACTIVITY_INDEX_NAME]
    assert indexes[TTL_INDEX_NAME]["key"] == [("expires_at", 1)]


def test_the_async_twin_makes_the_last_activity_index(
    async_factory: Any, mongo_config: dict[str, Any]
) -> None:
    async def main() -> dict[str, Any]:
        handler = async_factory(SessionConfig.from_dict(mongo_config))
        try:
            await handler.gc(60)
            return dict(await handler.collection.index_information())
        finally:
            await handler.close()

    indexes = asyncio.run(main())
    assert indexes[ACTIVITY_INDEX_NAME]["key"] == [("last_activity", 1)]
    assert TTL_INDEX_NAME in indexes


def test_an_existing_index_on_last_activity_serves(handler: MongoSessionHandler) -> None:
    handler.collection.create_index("last_activity", name="apps_own_activity_index")
    key = new_storage_id()
    handler.write(key, "x")  # no error whether or not the server allows a second index
    assert handler.read(key) == "x"


@pytest.mark.needs_real_server("mongo")
def test_a_changed_ttl_grace_on_a_real_server(collection_name: str) -> None:
    url = real_server_url()
    assert url is not None

    def handler_with(grace: int) -> MongoSessionHandler:
        options = {"database": TEST_DATABASE, "collection": collection_name}
        return MongoSessionHandler.from_config(
            SessionConfig(
                driver="mongo",
                connection=url,
                options={**options, "ttl_grace_seconds": grace},
            )
        )

    before = handler_with(60)
    key = new_storage_id()
    before.write(key, "kept")
    with before.lock(key, lock_seconds=5, wait_seconds=1):
        pass
    before.close()
    after = handler_with(300)
    try:
        assert after.read(key) == "kept"
        with after.lock(key, lock_seconds=5, wait_seconds=1):
            pass
        assert grace_of(after.collection) == 300
        locks = after.collection.database[f"{collection_name}_locks"]
        assert grace_of(locks) == 300
        indexes = after.collection.index_information()
        assert indexes[ACTIVITY_INDEX_NAME]["key"] == [("last_activity", 1)]
    finally:
        after.close()
