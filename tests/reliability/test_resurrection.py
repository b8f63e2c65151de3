"""No resurrection: a request that loaded a session before another request ended it
(logout, ``regenerate(destroy=True)``) must not bring it back when it saves.

Rack CVE-2025-46336. Request A loads; request B ends the session and saves; A
then saves — changed data, or only a refresh — and the old id must still give
an empty session. The tests are ``satchel.testing.reliability``'s, here on the
built-in drivers: array, file, and an array store without ``write_existing``
(core's read-then-write fallback).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from satchel import SessionConfig, SessionManager
from satchel.drivers import ArraySessionHandler
from satchel.handler import SupportsWriteExisting
from satchel.testing import AsyncResurrectionConformance, ResurrectionConformance


class CheckThenWriteArray(ArraySessionHandler):
    """An array store without ``write_existing``: core's read-then-write fallback."""

    write_existing = None  # type: ignore[assignment]


class BuiltinResurrection(ResurrectionConformance, AsyncResurrectionConformance):
    driver: ClassVar[str]
    clock_start = 1_000_000.0

    @pytest.fixture
    def satchel_manager_factory(self, tmp_path: Path) -> Callable[..., SessionManager]:
        def make(clock: Callable[[], float] | None = None, **config: Any) -> SessionManager:
            settings = SessionConfig.from_dict(
                {"driver": self.driver, "files": str(tmp_path / "sessions"), **config}
            )
            manager = SessionManager(settings, clock=clock)
            if self.driver == "fallback":
                store = CheckThenWriteArray(settings.lifetime_seconds)
                assert not isinstance(store, SupportsWriteExisting)
                manager.extend("fallback", lambda config: store)
            return manager

        return make


class TestArray(BuiltinResurrection):
    driver = "array"


class TestFile(BuiltinResurrection):
    driver = "file"


class TestFallback(BuiltinResurrection):
    driver = "fallback"
