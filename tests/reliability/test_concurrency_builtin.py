"""40 overlapping requests of one session through WSGI and ASGI, on the built-in drivers.

With ``block = true`` every increment survives; with ``merge_on_save`` every
request's own key survives. The control cases show the same load loses writes
without either, so these tests can fail. Requests with made-up ids under
``block = true`` leave the sessions folder (or the array's memory) as it was. The tests are
``satchel.testing.reliability``'s ``ConcurrencyConformance``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from satchel import ConfigError, SessionConfig, SessionManager
from satchel.drivers import ArraySessionHandler
from satchel.testing import ConcurrencyConformance


class BuiltinConcurrency(ConcurrencyConformance):
    driver: ClassVar[str]

    @pytest.fixture
    def satchel_manager_factory(self, tmp_path: Path) -> Callable[..., SessionManager]:
        def make(clock: Callable[[], float] | None = None, **config: Any) -> SessionManager:
            return SessionManager(
                SessionConfig.from_dict(
                    {
                        "driver": self.driver,
                        "files": str(tmp_path / "sessions"),
                        "lottery": [0, 1],
                        **config,
                    }
                ),
                clock=clock,
            )

        return make


class TestFile(BuiltinConcurrency):
    driver = "file"

    def stored_state(self, manager: SessionManager) -> object:
        """Every name in the sessions folder: session files and lock files."""
        folder = Path(manager.config.files)
        return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


class TestArray(BuiltinConcurrency):
    driver = "array"

    def stored_state(self, manager: SessionManager) -> object:
        """The ids of the stored sessions and of the held locks."""
        handler = manager.handler()
        assert isinstance(handler, ArraySessionHandler)
        return sorted(handler._entries), sorted(handler._locks)


def test_merge_on_save_needs_a_driver_that_can_lock(tmp_path: Path) -> None:
    manager = SessionManager(
        SessionConfig.from_dict(
            {
                "driver": "null",
                "files": str(tmp_path / "sessions"),
                "lottery": [0, 1],
                "merge_on_save": True,
            }
        )
    )
    with pytest.raises(ConfigError, match=r"merge_on_save.*'null'"):
        manager.start(None)
