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
can lock, :class:`TouchConformance` / :class:`AsyncTouchConformance` for one
that can ``touch`` and
:class:`WriteExistingConformance` / :class:`AsyncWriteExistingConformance`
for one with ``write_existing``.

The reliability suite (:mod:`satchel.testing.reliability`) runs on a
``SessionManager`` rather than a handler: :class:`ResurrectionConformance`
and :class:`AsyncResurrectionConformance` (a late save never brings back an
ended session) and :class:`ConcurrencyConformance` (40 overlapping requests
lose no write with ``block`` or ``merge_on_save``), driven by a
``satchel_manager_factory`` fixture::

    class TestMongoReliability(ResurrectionConformance, ConcurrencyConformance):
        @pytest.fixture
        def satchel_manager_factory(self, mongo_url):
            def make(clock=None, **overrides):
                config = {"driver": "mongo", "connection": mongo_url, **overrides}
                return SessionManager(SessionConfig.from_dict(config), clock=clock)

            return make
"""

from satchel.testing.conformance import (
    AsyncHandlerConformance,
    AsyncLockConformance,
    AsyncTouchConformance,
    AsyncWriteExistingConformance,
    HandlerConformance,
    LockConformance,
    TouchConformance,
    WriteExistingConformance,
    new_storage_id,
)
from satchel.testing.reliability import (
    AsyncResurrectionConformance,
    ConcurrencyConformance,
    ResurrectionConformance,
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
    "AsyncResurrectionConformance",
    "AsyncTouchConformance",
    "AsyncWriteExistingConformance",
    "ConcurrencyConformance",
    "HandlerConformance",
    "LockConformance",
    "ResurrectionConformance",
    "TouchConformance",
    "WriteExistingConformance",
    "free_port",
    "new_storage_id",
    "required_services",
    "service_missing",
    "start_server_process",
    "wait_for_port",
]
