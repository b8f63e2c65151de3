"""Fixtures for the mongo driver's tests: a real server when ``SATCHEL_TEST_MONGO_URL``
is set, mongomock otherwise.

Tests that a fake cannot honour carry ``@pytest.mark.needs_real_server("mongo")``
and are skipped without a server (failed when ``SATCHEL_REQUIRE_SERVICES``
names ``mongo``). Each test uses its own collection, dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import mongomock
import pymongo
import pytest
from mongo_support import MONGO_URL_ENV, TEST_DATABASE, AsyncMongomockClient, real_server_url

from satchel import SessionConfig
from satchel.testing import service_missing
from satchel_mongo import AsyncMongoSessionHandler, MongoSessionHandler

NO_SERVER = (
    f"no MongoDB server: set {MONGO_URL_ENV} to run this against one "
    "(none can be installed on the project's machines)"
)


@pytest.fixture(autouse=True)
def _needs_real_server(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("needs_real_server")
    if marker is not None and "mongo" in marker.args and real_server_url() is None:
        service_missing("mongo", f"a fake cannot honour this test; {NO_SERVER}")


@pytest.fixture(params=["mongomock", "server"])
def mongo_backend(request: pytest.FixtureRequest) -> str:
    """Each test runs on mongomock and, when one is configured, on the real server."""
    if request.param == "server" and real_server_url() is None:
        service_missing("mongo", NO_SERVER)
    return str(request.param)


@pytest.fixture
def collection_name() -> Iterator[str]:
    name = f"sessions_{secrets.token_hex(5)}"
    yield name
    url = real_server_url()
    if url is not None:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        try:
            client[TEST_DATABASE].drop_collection(name)
            client[TEST_DATABASE].drop_collection(f"{name}_locks")
        finally:
            client.close()


@pytest.fixture
def mock_client() -> Any:
    """One in-memory mongomock server per test, shared by every handler the test builds."""
    return mongomock.MongoClient()


@pytest.fixture
def mongo_config(mongo_backend: str, collection_name: str) -> dict[str, Any]:
    url = real_server_url() if mongo_backend == "server" else "mongodb://mongomock.invalid"
    return {
        "driver": "mongo",
        "connection": url,
        "options": {"database": TEST_DATABASE, "collection": collection_name},
    }


@pytest.fixture
def sync_factory(mongo_backend: str, mock_client: Any) -> Any:
    def factory(config: SessionConfig) -> MongoSessionHandler:
        if mongo_backend == "mongomock":
            return MongoSessionHandler.from_config(config, client=mock_client)
        return MongoSessionHandler.from_config(config)

    return factory


@pytest.fixture
def async_factory(mongo_backend: str, mock_client: Any) -> Any:
    def factory(config: SessionConfig) -> AsyncMongoSessionHandler:
        if mongo_backend == "mongomock":
            client: Any = AsyncMongomockClient(mock_client)
            return AsyncMongoSessionHandler.from_config(config, client=client)
        return AsyncMongoSessionHandler.from_config(config)

    return factory
