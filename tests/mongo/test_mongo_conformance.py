"""The shared conformance suite on the mongo driver (mongomock, and a real server when set)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from satchel.testing import DriverConformance, MovingClock
from satchel.testing.conformance import AsyncFactory, SyncFactory


class TestMongoConformance(DriverConformance):
    """On a moving clock: the application's clock decides expiry, never the server's."""

    @pytest.fixture
    def satchel_clock(self) -> MovingClock:
        return MovingClock()

    @pytest.fixture
    def satchel_handler_factory(self, sync_factory: Any, satchel_clock: MovingClock) -> SyncFactory:
        def factory(config: Any) -> Any:
            handler = sync_factory(config)
            handler.documents.clock = satchel_clock
            return handler

        return factory

    @pytest.fixture
    def satchel_async_handler_factory(
        self, async_factory: Any, satchel_clock: MovingClock
    ) -> AsyncFactory:
        def factory(config: Any) -> Any:
            handler = async_factory(config)
            handler.documents.clock = satchel_clock
            return handler

        return factory

    @pytest.fixture
    def satchel_base_config(self, mongo_config: dict[str, Any]) -> Mapping[str, Any]:
        return mongo_config
