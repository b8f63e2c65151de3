"""The conformance suite on the built-in drivers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from satchel.drivers import ArraySessionHandler, FileSessionHandler, NullSessionHandler
from satchel.testing import (
    HandlerConformance,
    LockConformance,
    TouchConformance,
    WriteExistingConformance,
)
from satchel.testing.conformance import SyncFactory


class TestFileConformance(
    HandlerConformance, TouchConformance, LockConformance, WriteExistingConformance
):
    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return FileSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(self, tmp_path: Path) -> Mapping[str, Any]:
        return {"driver": "file", "files": str(tmp_path / "sessions")}


class TestArrayConformance(
    HandlerConformance, TouchConformance, LockConformance, WriteExistingConformance
):
    # One handler per config, like the manager keeps one per app.
    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        return ArraySessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(self) -> Mapping[str, Any]:
        return {"driver": "array"}


class TestNullDriver:
    """``null`` keeps nothing, by design, so it meets only the parts of the contract that fit."""

    def test_reads_nothing_and_accepts_everything(self) -> None:
        handler = NullSessionHandler()
        assert handler.write("abc", "data") is True
        assert handler.read("abc") == ""
        assert handler.destroy("abc") is True
        assert handler.gc(0) == 0
        assert handler.open("", "x") is True
        assert handler.close() is True
