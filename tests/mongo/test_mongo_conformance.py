"""The shared conformance suite on the mongo driver (mongomock, and a real server when set)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from satchel.testing import DriverConformance
from satchel.testing.conformance import AsyncFactory, SyncFactory


class TestMongoConformance(DriverConformance):
    @pytest.fixture
    def satchel_handler_factory(self, sync_factory: Any) -> SyncFactory:
        return sync_factory  # type: ignore[no-any-return]

    @pytest.fixture
    def satchel_async_handler_factory(self, async_factory: Any) -> AsyncFactory:
        return async_factory  # type: ignore[no-any-return]

    @pytest.fixture
    def satchel_base_config(self, mongo_config: dict[str, Any]) -> Mapping[str, Any]:
        return mongo_config
