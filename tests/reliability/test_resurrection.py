"""No resurrection: a request that loaded a session before another request ended it
(logout, ``regenerate(destroy=True)``) must not bring it back when it saves.

Rack CVE-2025-46336. Request A loads; request B ends the session and saves; A
then saves — changed data, or only a refresh — and the old id must still give
an empty session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from satchel import SaveOutcome, Session, SessionConfig, SessionManager
from satchel.drivers import ArraySessionHandler
from satchel.handler import SupportsWriteExisting


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CheckThenWriteArray(ArraySessionHandler):
    """An array store without ``write_existing``: core's read-then-write fallback."""

    write_existing = None  # type: ignore[assignment]


def make_manager(kind: str, tmp_path: Path, clock: Clock) -> SessionManager:
    config = SessionConfig(driver=kind, files=str(tmp_path / "sessions"), touch_interval=60)
    manager = SessionManager(config, clock=clock)
    if kind == "fallback":
        store = CheckThenWriteArray(config.lifetime_seconds)
        assert not isinstance(store, SupportsWriteExisting)
        manager.extend("fallback", lambda config: store)
    return manager


DRIVERS = ["array", "file", "fallback"]
ENDINGS: dict[str, Callable[[Session], None]] = {
    "invalidate": lambda session: session.invalidate(),
    "regenerate-destroy": lambda session: session.regenerate(destroy=True),
}


def logged_in(manager: SessionManager) -> str:
    session = manager.start(None)
    session.put("user_id", 42)
    session.save()
    return session.cookie_value()


@pytest.mark.parametrize("kind", DRIVERS)
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_late_write_does_not_resurrect(tmp_path: Path, kind: str, ending: str) -> None:
    clock = Clock()
    manager = make_manager(kind, tmp_path, clock)
    cookie = logged_in(manager)
    slow = manager.start(cookie)  # request A: loaded before the logout
    quick = manager.start(cookie)  # request B: logs out
    ENDINGS[ending](quick)
    quick.save()
    slow.put("cart", ["apple"])
    assert slow.save() is SaveOutcome.ENDED
    assert slow.cookie_action() is None  # never clobber the cookie B just sent
    revived = manager.start(cookie)
    assert revived.all() == {}
    assert revived.id != cookie


@pytest.mark.parametrize("kind", DRIVERS)
def test_a_late_refresh_does_not_resurrect(tmp_path: Path, kind: str) -> None:
    clock = Clock()
    manager = make_manager(kind, tmp_path, clock)
    cookie = logged_in(manager)
    clock.now += 120  # past touch_interval: A's save would be a refresh
    slow = manager.start(cookie)
    slow.get("user_id")
    quick = manager.start(cookie)
    quick.invalidate()
    quick.save()
    assert slow.save() is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}


@pytest.mark.parametrize("kind", DRIVERS)
def test_async_late_write_does_not_resurrect(tmp_path: Path, kind: str) -> None:
    clock = Clock()
    manager = make_manager(kind, tmp_path, clock)
    cookie = logged_in(manager)

    async def race() -> SaveOutcome:
        slow = await manager.astart(cookie)
        quick = await manager.astart(cookie)
        quick.invalidate()
        await quick.asave()
        slow.put("cart", ["pear"])
        return await slow.asave()

    assert asyncio.run(race()) is SaveOutcome.ENDED
    assert manager.start(cookie).all() == {}


@pytest.mark.parametrize("kind", DRIVERS)
def test_ordinary_saves_of_a_live_session_still_write(tmp_path: Path, kind: str) -> None:
    clock = Clock()
    manager = make_manager(kind, tmp_path, clock)
    cookie = logged_in(manager)
    first = manager.start(cookie)
    second = manager.start(cookie)
    first.put("a", 1)
    assert first.save() is SaveOutcome.WRITTEN
    second.put("b", 2)
    assert second.save() is SaveOutcome.WRITTEN  # last writer wins without blocking or merging
    assert manager.start(cookie).get("b") == 2
