"""The conformance suite on the built-in drivers, sync and through core's threaded async twin."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from satchel.drivers import ArraySessionHandler, FileSessionHandler, NullSessionHandler
from satchel.handler import SessionHandler
from satchel.testing import (
    AsyncHandlerConformance,
    AsyncLockConformance,
    AsyncTouchConformance,
    AsyncWriteExistingConformance,
    HandlerConformance,
    LockConformance,
    TouchConformance,
    WriteExistingConformance,
)
from satchel.testing.conformance import AsyncFactory, SyncFactory
from satchel.threaded import ThreadedAsyncHandler


class _Builtin:
    """The factories and config of one built-in driver; listed first, so they win."""

    driver: ClassVar[str]
    handler_class: ClassVar[type[SessionHandler]]

    @pytest.fixture
    def satchel_handler_factory(self) -> SyncFactory:
        # One handler per config, like the manager keeps one per app.
        return self.handler_class.from_config  # type: ignore[attr-defined,no-any-return]

    @pytest.fixture
    def satchel_async_handler_factory(self, satchel_handler_factory: SyncFactory) -> AsyncFactory:
        # What core gives a driver that registered no async twin.
        return lambda config: ThreadedAsyncHandler(satchel_handler_factory(config))

    @pytest.fixture
    def satchel_base_config(self, tmp_path: Path) -> Mapping[str, Any]:
        if self.driver == "file":
            return {"driver": "file", "files": str(tmp_path / "sessions")}
        return {"driver": self.driver}


class _File(_Builtin):
    driver = "file"
    handler_class = FileSessionHandler


class _Array(_Builtin):
    driver = "array"
    handler_class = ArraySessionHandler


class _Null(_Builtin):
    """``null`` keeps nothing, by design: every read is empty, the rest of the contract holds."""

    driver = "null"
    handler_class = NullSessionHandler
    keeps_nothing = True
    gc_removes_expired = False


class TestFileConformance(
    _File, HandlerConformance, TouchConformance, LockConformance, WriteExistingConformance
):
    pass


class TestArrayConformance(
    _Array, HandlerConformance, TouchConformance, LockConformance, WriteExistingConformance
):
    pass


class TestNullConformance(_Null, HandlerConformance):
    pass


class TestAsyncFileConformance(
    _File,
    AsyncHandlerConformance,
    AsyncLockConformance,
    AsyncTouchConformance,
    AsyncWriteExistingConformance,
):
    pass


class TestAsyncArrayConformance(
    _Array,
    AsyncHandlerConformance,
    AsyncLockConformance,
    AsyncTouchConformance,
    AsyncWriteExistingConformance,
):
    pass


class TestAsyncNullConformance(_Null, AsyncHandlerConformance):
    pass
