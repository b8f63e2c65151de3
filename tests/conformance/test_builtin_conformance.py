"""The conformance suite on the built-in drivers, sync and through core's threaded async twin."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from satchel.drivers import ArraySessionHandler, FileSessionHandler, NullSessionHandler
from satchel.testing import ASYNC, LOCK, SYNC, WRITE_EXISTING, DriverConformance, MovingClock
from satchel.testing.conformance import AsyncFactory, SyncFactory
from satchel.threaded import ThreadedAsyncHandler


def threaded(factory: SyncFactory) -> AsyncFactory:
    """What core gives a driver that registered no async twin."""
    return lambda config: ThreadedAsyncHandler(factory(config))


class TestFileConformance(DriverConformance):
    capabilities = frozenset({SYNC, ASYNC, LOCK, WRITE_EXISTING})

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return FileSessionHandler.from_config

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return threaded(FileSessionHandler.from_config)

    @pytest.fixture
    def satchel_base_config(self, tmp_path: Path) -> Mapping[str, Any]:
        return {"driver": "file", "files": str(tmp_path / "sessions")}


class TestArrayConformance(DriverConformance):
    """On a moving clock: the expiry tests move it instead of sleeping."""

    capabilities = frozenset({SYNC, ASYNC, LOCK, WRITE_EXISTING})

    @pytest.fixture
    def satchel_clock(self) -> MovingClock:
        return MovingClock()

    @pytest.fixture
    def satchel_handler_factory(self, satchel_clock: MovingClock) -> SyncFactory:
        return lambda config: ArraySessionHandler(config.lifetime_seconds, clock=satchel_clock)

    @pytest.fixture
    def satchel_async_handler_factory(self, satchel_handler_factory: SyncFactory) -> AsyncFactory:
        return threaded(satchel_handler_factory)

    @pytest.fixture
    def satchel_base_config(self) -> Mapping[str, Any]:
        return {"driver": "array"}


class TestNullConformance(DriverConformance):
    """``null`` keeps nothing, by design: every read is empty, the rest of the contract holds."""

    capabilities = frozenset({SYNC, ASYNC})
    keeps_nothing = True
    gc_removes_expired = False

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return NullSessionHandler.from_config

    @pytest.fixture
    def satchel_async_handler_factory(self) -> AsyncFactory:
        return threaded(NullSessionHandler.from_config)

    @pytest.fixture
    def satchel_base_config(self) -> Mapping[str, Any]:
        return {"driver": "null"}
