"""The mongo driver beyond the shared suite: documents, expiry checks, the TTL index, errors."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pymongo
import pytest
from fixtures.mongo_support import TEST_DATABASE, real_server_url

from satchel import ConfigError, LockTimeout, SessionBackendError, SessionConfig
from satchel.handler import SupportsWriteExisting
from satchel.testing import free_port, new_storage_id
from satchel.testing.plugin import check_driver_listed
from satchel_mongo import AsyncMongoSessionHandler, MongoSessionHandler
from satchel_mongo.handler import TTL_INDEX_NAME


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def handler(sync_factory: Any, mongo_config: dict[str, Any]) -> Any:
    made = sync_factory(SessionConfig.from_dict({**mongo_config, "lifetime": 1}))
    yield made
    made.close()


def test_documents_hold_payload_last_activity_and_expiry(handler: MongoSessionHandler) -> None:
    assert isinstance(handler, SupportsWriteExisting)
    key = new_storage_id()
    handler.write(key, '{"cart": [1, 2]}')
    document = handler.collection.find_one({"_id": key})
    assert document is not None
    assert set(document) == {"_id", "payload", "last_activity", "expires_at"}
    assert document["payload"] == '{"cart": [1, 2]}'
    lifetime = document["expires_at"] - document["last_activity"]
    assert abs(lifetime - timedelta(seconds=60)) < timedelta(milliseconds=2)


def test_the_ttl_index_is_made_at_first_use_and_again_harmlessly(
    sync_factory: Any, mongo_config: dict[str, Any]
) -> None:
    config = SessionConfig.from_dict(mongo_config)
    first = sync_factory(config)
    assert TTL_INDEX_NAME not in first.collection.index_information()  # building needs no server
    first.read(new_storage_id())
    index = first.collection.index_information()[TTL_INDEX_NAME]
    assert index["key"] == [("expires_at", 1)]
    assert index["expireAfterSeconds"] == 60
    second = sync_factory(config)
    second.write(new_storage_id(), "x")  # the same index again is no error
    assert second.collection.index_information()[TTL_INDEX_NAME] == index


def test_reads_check_expiry_themselves(sync_factory: Any, mongo_config: dict[str, Any]) -> None:
    # Past expires_at but inside the TTL grace: the document is still stored
    # (as it is on a real server until the TTL monitor runs) and reads ignore it.
    clock = FakeClock(time.time())
    handler = sync_factory(SessionConfig.from_dict({**mongo_config, "lifetime": 1}))
    handler.documents.clock = clock
    key = new_storage_id()
    handler.write(key, "data")
    clock.now += 59
    assert handler.read(key) == "data"
    clock.now += 2
    assert handler.read(key) == ""
    assert handler.write_existing(key, "revived?") is False  # an expired session stays ended
    assert handler.read(key) == ""
    assert handler.collection.count_documents({"_id": key}) == 1


def test_write_existing_never_revives_an_expired_document(
    sync_factory: Any, mongo_config: dict[str, Any]
) -> None:
    clock = FakeClock(time.time())
    handler = sync_factory(SessionConfig.from_dict({**mongo_config, "lifetime": 1}))
    handler.documents.clock = clock
    key = new_storage_id()
    handler.write(key, "data")
    clock.now += 59
    assert handler.write_existing(key, "still live") is True
    assert handler.write_existing(key, "still live") is True  # an unchanged document counts
    clock.now += 61
    assert handler.write_existing(key, "revived?") is False
    document = handler.collection.find_one({"_id": key})
    assert document is not None  # still stored (the TTL monitor has not run), untouched
    assert document["payload"] == "still live"
    assert handler.write_existing(new_storage_id(), "created?") is False
    assert handler.collection.count_documents({}) == 1  # never an upsert


def test_async_write_existing_never_revives_an_expired_document(
    async_factory: Any, mongo_config: dict[str, Any]
) -> None:
    clock = FakeClock(time.time())

    async def main() -> None:
        handler = async_factory(SessionConfig.from_dict({**mongo_config, "lifetime": 1}))
        handler.documents.clock = clock
        try:
            key = new_storage_id()
            await handler.write(key, "data")
            assert await handler.write_existing(key, "still live") is True
            clock.now += 61
            assert await handler.write_existing(key, "revived?") is False
            clock.now -= 61
            assert await handler.read(key) == "still live"
        finally:
            await handler.close()

    asyncio.run(main())


@pytest.mark.parametrize("hostile", ["' OR 1=1--", "$where", "{'$gt': ''}", "a.b"])
def test_odd_ids_are_plain_strings(handler: MongoSessionHandler, hostile: str) -> None:
    bystander = new_storage_id()
    handler.write(bystander, "kept")
    assert handler.read(hostile) == ""
    assert handler.write_existing(hostile, "odd") is False
    handler.write(hostile, "odd")
    assert handler.read(hostile) == "odd"
    assert handler.write_existing(hostile, "odder") is True
    assert handler.read(hostile) == "odder"
    with handler.lock(hostile, lock_seconds=5, wait_seconds=1):
        with pytest.raises(LockTimeout), handler.lock(hostile, lock_seconds=5, wait_seconds=0.2):
            pass
        with handler.lock(bystander, lock_seconds=5, wait_seconds=0.2):
            pass
    handler.destroy(hostile)
    assert handler.read(hostile) == ""
    assert handler.read(bystander) == "kept"


def test_racing_first_writes_of_one_id_never_raise(handler: MongoSessionHandler) -> None:
    writers = 16
    key = new_storage_id()
    start = threading.Barrier(writers)

    def first_request(index: int) -> bool:
        start.wait()
        return handler.write(key, f"writer {index}")

    with ThreadPoolExecutor(max_workers=writers) as pool:
        assert list(pool.map(first_request, range(writers))) == [True] * writers
    assert handler.read(key) in {f"writer {index}" for index in range(writers)}


def test_locks_are_documents_that_go_on_release(handler: MongoSessionHandler) -> None:
    locks = handler.collection.database[handler.collection.name + "_locks"]
    key = new_storage_id()
    with handler.lock(key, lock_seconds=10, wait_seconds=1):
        held = locks.find_one({"_id": key})
        assert held is not None
        assert set(held) == {"_id", "token", "expires_at"}
        assert TTL_INDEX_NAME in locks.index_information()
    assert locks.find_one({"_id": key}) is None


def test_an_unreachable_server_is_a_backend_error_without_the_password() -> None:
    url = f"mongodb://satchel:s3cretpw@127.0.0.1:{free_port()}/?directConnection=true"
    config = SessionConfig(driver="mongo", connection=url, options={"timeout": 0.5})
    handler = MongoSessionHandler.from_config(config)
    with pytest.raises(SessionBackendError) as caught:
        handler.read(new_storage_id())
    handler.close()
    assert caught.value.driver == "mongo"
    assert caught.value.address.startswith("mongodb://127.0.0.1:")
    assert "s3cretpw" not in str(caught.value)


def test_the_async_twin_reports_an_unreachable_server_too() -> None:
    url = f"mongodb://satchel:s3cretpw@127.0.0.1:{free_port()}/?directConnection=true"
    config = SessionConfig(driver="mongo", connection=url, options={"timeout": 0.5})

    async def main() -> None:
        handler = AsyncMongoSessionHandler.from_config(config)
        try:
            with pytest.raises(SessionBackendError) as caught:
                await handler.write(new_storage_id(), "x")
            assert "s3cretpw" not in str(caught.value)
        finally:
            await handler.close()

    asyncio.run(main())


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="'connection'"):
        MongoSessionHandler.from_config(SessionConfig(driver="mongo"))
    with pytest.raises(ConfigError, match="'connection'"):
        MongoSessionHandler.from_config(SessionConfig(driver="mongo", connection="http://x"))
    with pytest.raises(ConfigError, match=r"options\.colection"):
        MongoSessionHandler.from_config(
            SessionConfig(driver="mongo", connection="mongodb://x", options={"colection": "s"})
        )
    with pytest.raises(ConfigError, match=r"options\.timeout"):
        MongoSessionHandler.from_config(
            SessionConfig(driver="mongo", connection="mongodb://x", options={"timeout": 0})
        )


def test_database_and_collection_come_from_the_options() -> None:
    config = SessionConfig(
        driver="mongo",
        connection="mongodb://127.0.0.1:1/",
        options={"database": "app", "collection": "web_sessions"},
    )
    handler = MongoSessionHandler.from_config(config)
    assert (handler.collection.database.name, handler.collection.name) == ("app", "web_sessions")
    handler.close()
    default = MongoSessionHandler.from_config(
        SessionConfig(driver="mongo", connection="mongodb://127.0.0.1:1/")
    )
    assert (default.collection.database.name, default.collection.name) == ("satchel", "sessions")
    default.close()


def test_drivers_lists_the_mongo_driver_and_its_distribution(
    satchel_drivers_listing: subprocess.CompletedProcess[str],
) -> None:
    check_driver_listed(satchel_drivers_listing, "mongo", "satchel-mongo", twin=True)


@pytest.mark.needs_real_server("mongo")
def test_the_ttl_monitor_deletes_expired_documents(collection_name: str) -> None:
    """MongoDB's own TTL monitor removes documents past ``expires_at`` plus the grace."""
    url = real_server_url()
    assert url is not None
    config = SessionConfig(
        driver="mongo",
        connection=url,
        options={"database": TEST_DATABASE, "collection": collection_name, "ttl_grace_seconds": 0},
    )
    handler = MongoSessionHandler.from_config(config)
    admin: pymongo.MongoClient[Any] = pymongo.MongoClient(url)
    previous: int | None = None
    try:
        # The monitor runs every 60 s; ask for every second while this test runs, when allowed.
        with contextlib.suppress(pymongo.errors.OperationFailure):
            reply = admin.admin.command("getParameter", 1, ttlMonitorSleepSecs=1)
            admin.admin.command("setParameter", 1, ttlMonitorSleepSecs=1)
            previous = int(reply["ttlMonitorSleepSecs"])
        handler.documents.clock = lambda: time.time() - 3600  # written an hour ago
        key = new_storage_id()
        handler.write(key, "expired long ago")
        deadline = time.monotonic() + 130
        while handler.collection.count_documents({"_id": key}) and time.monotonic() < deadline:
            time.sleep(1)
        assert handler.collection.count_documents({"_id": key}) == 0
    finally:
        if previous is not None:
            admin.admin.command("setParameter", 1, ttlMonitorSleepSecs=previous)
        handler.close()
        admin.close()
