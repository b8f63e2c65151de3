"""satchel's conformance suite for drivers, and helpers for tests that need real servers.

A driver package runs the suite against its handlers with one class::

    import pytest
    from satchel.testing import DriverConformance

    class TestMongoConformance(DriverConformance):
        @pytest.fixture
        def satchel_handler_factory(self):
            return MongoSessionHandler.from_config

        @pytest.fixture
        def satchel_async_handler_factory(self):
            return AsyncMongoSessionHandler.from_config

        @pytest.fixture
        def satchel_base_config(self, mongo_url):
            return {"driver": "mongo", "connection": mongo_url}

It runs every test the driver's capabilities allow (:data:`SYNC`,
:data:`ASYNC`, :data:`LOCK`, :data:`WRITE_EXISTING`), detected from the
handlers; declare ``capabilities = {SYNC, LOCK, ...}`` on the class to pin them.

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

It runs on pytest: ``pip install "satchel[testing]"``.
"""

try:
    import pytest  # noqa: F401  # the kit's fixtures and tests are pytest's
except ImportError as missing:
    raise ImportError(
        'satchel.testing runs on pytest, which is not installed: pip install "satchel[testing]"'
    ) from missing

from satchel.testing.conformance import (
    ASYNC,
    CAPABILITIES,
    LOCK,
    SYNC,
    WRITE_EXISTING,
    DriverConformance,
    MovingClock,
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
    "ASYNC",
    "CAPABILITIES",
    "LOCK",
    "SYNC",
    "WRITE_EXISTING",
    "AsyncResurrectionConformance",
    "ConcurrencyConformance",
    "DriverConformance",
    "MovingClock",
    "ResurrectionConformance",
    "free_port",
    "new_storage_id",
    "required_services",
    "service_missing",
    "start_server_process",
    "wait_for_port",
]
