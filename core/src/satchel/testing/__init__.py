"""satchel's conformance suite for drivers, and helpers for tests that need real servers.

A driver package runs the suite against its handler with a few lines::

    import pytest
    from satchel.testing import HandlerConformance

    class TestMongoConformance(HandlerConformance):
        @pytest.fixture
        def satchel_handler_factory(self):
            return MongoSessionHandler.from_config

        @pytest.fixture
        def satchel_base_config(self, mongo_url):
            return {"driver": "mongo", "connection": mongo_url}

Add :class:`AsyncHandlerConformance` for an async twin,
:class:`LockConformance` / :class:`AsyncLockConformance` for a driver that
can lock, :class:`TouchConformance` for one that can ``touch`` and
:class:`WriteExistingConformance` / :class:`AsyncWriteExistingConformance`
for one with ``write_existing``.
"""

from satchel.testing.conformance import (
    AsyncHandlerConformance,
    AsyncLockConformance,
    AsyncWriteExistingConformance,
    HandlerConformance,
    LockConformance,
    TouchConformance,
    WriteExistingConformance,
    new_storage_id,
)
from satchel.testing.services import (
    free_port,
    required_services,
    service_missing,
    start_server_process,
    wait_for_port,
)

__all__ = [
    "AsyncHandlerConformance",
    "AsyncLockConformance",
    "AsyncWriteExistingConformance",
    "HandlerConformance",
    "LockConformance",
    "TouchConformance",
    "WriteExistingConformance",
    "free_port",
    "new_storage_id",
    "required_services",
    "service_missing",
    "start_server_process",
    "wait_for_port",
]
