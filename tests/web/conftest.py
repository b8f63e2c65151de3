"""Fixtures of the web glue tests; the helpers they use live in ``web_support``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from web_support import (
    FRAMEWORKS,
    SECRET,
    FakeClock,
    Harness,
    HarnessFactory,
    ManagerFactory,
    SpyHandler,
)

from satchel import SessionConfig, SessionManager


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spy() -> SpyHandler:
    return SpyHandler(7200)


@pytest.fixture
def make_manager(clock: FakeClock, spy: SpyHandler, tmp_path: Any) -> ManagerFactory:
    """A manager on the spy driver (or any driver), the GC lottery off unless asked for."""

    def make(**config: Any) -> SessionManager:
        settings: dict[str, Any] = {
            "driver": "spy",
            "lottery": (0, 100),
            "files": str(tmp_path / "sessions"),
            "secret_key": SECRET,
        }
        settings.update(config)
        manager = SessionManager(SessionConfig(**settings), clock=clock)
        manager.extend("spy", lambda _config: spy)
        return manager

    return make


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def harness(framework: str, make_manager: ManagerFactory) -> HarnessFactory:
    """``harness(**config)`` for the parametrized framework; middleware options via ``options=``."""

    def make(*, options: Mapping[str, Any] | None = None, **config: Any) -> Harness:
        return Harness(framework, make_manager(**config), **(options or {}))

    return make
