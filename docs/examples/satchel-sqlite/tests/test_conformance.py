"""satchel's conformance suite, run on the sqlite driver as on every built-in one."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from satchel_sqlite import SqliteSessionHandler

from satchel import ConfigError, SessionConfig, SessionManager
from satchel.testing import LOCK, SYNC, WRITE_EXISTING, DriverConformance
from satchel.testing.plugin import check_driver_listed


class TestSqliteConformance(DriverConformance):
    # No async twin: satchel runs the handler in threads. The suite checks the declaration.
    capabilities = frozenset({SYNC, LOCK, WRITE_EXISTING})

    @pytest.fixture
    def satchel_handler_factory(self) -> Any:
        return SqliteSessionHandler.from_config

    @pytest.fixture
    def satchel_base_config(self, tmp_path: Path) -> Mapping[str, Any]:
        return {"driver": "sqlite", "connection": str(tmp_path / "sessions.sqlite3")}


def test_the_driver_is_listed(satchel_drivers_listing: subprocess.CompletedProcess[str]) -> None:
    check_driver_listed(satchel_drivers_listing, "sqlite", "satchel-sqlite", twin=False)


def test_a_session_round_trips_by_driver_name(tmp_path: Path) -> None:
    manager = SessionManager(
        SessionConfig(driver="sqlite", connection=str(tmp_path / "app.sqlite3"))
    )
    session = manager.start(None)
    session.put("cart", ["apple"])
    session.save()
    assert manager.start(session.cookie_value()).get("cart") == ["apple"]


def test_a_bad_option_is_named() -> None:
    config = SessionConfig(driver="sqlite", options={"busy_timeout": 0})
    with pytest.raises(ConfigError) as caught:
        SqliteSessionHandler.from_config(config)
    assert caught.value.key == "options.busy_timeout"
