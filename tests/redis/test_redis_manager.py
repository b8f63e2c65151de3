"""The redis driver under core's SessionManager: found by name, sessions kept, blocking, asyncio."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from satchel import LockTimeout, SessionConfig
from satchel.manager import SessionManager
from satchel_redis import AsyncRedisSessionHandler, RedisSessionHandler


@pytest.fixture
def manager(redis_url: str, unique_prefix: str) -> SessionManager:
    return SessionManager(
        SessionConfig(
            driver="redis",
            connection=redis_url,
            prefix=unique_prefix,
            block=True,
            block_lock_seconds=5,
            block_wait_seconds=0.3,
        )
    )


def test_manager_finds_the_driver_by_name_and_keeps_sessions(
    manager: SessionManager, redis_url: str, unique_prefix: str
) -> None:
    assert isinstance(manager.handler(), RedisSessionHandler)
    session = manager.start(None)
    session.put("cart", ["apple", "pear"])
    session.save()
    # Another web server: a manager of its own with the same config.
    other = SessionManager(manager.config)
    again = other.start(session.id)
    assert again.id == session.id
    assert again.get("cart") == ["apple", "pear"]


def test_blocking_holds_the_session_lock_across_a_request(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("n", 1)
    session.save()
    manager.check_blocking()  # the driver offers a lock
    with manager.lock(session.id), pytest.raises(LockTimeout), manager.lock(session.id):
        pass
    with manager.lock(session.id):  # released by the first request
        pass


def test_async_sessions_through_the_twin_in_successive_event_loops(
    manager: SessionManager,
) -> None:
    assert isinstance(manager.async_handler(), AsyncRedisSessionHandler)

    async def first() -> str:
        session = await manager.astart(None)
        session.put("seen", 1)
        await session.asave()
        return session.id

    async def later(session_id: str, value: int) -> int:
        session = await manager.astart(session_id)
        seen = int(session.get("seen"))
        session.put("seen", value)
        await session.asave()
        return seen

    # Each asyncio.run is a new event loop, as a test client may start per request.
    session_id = asyncio.run(first())
    assert asyncio.run(later(session_id, 2)) == 1
    assert asyncio.run(later(session_id, 3)) == 2


def test_async_blocking_excludes_a_second_request(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("n", 1)
    session.save()
    order: list[str] = []
    held = threading.Event()

    def first_request() -> None:
        async def run() -> None:
            async with manager.alock(session.id):
                held.set()
                await asyncio.sleep(0.6)
                order.append("first done")

        asyncio.run(run())

    thread = threading.Thread(target=first_request)
    thread.start()
    assert held.wait(5)
    started = time.monotonic()

    async def second() -> None:
        with pytest.raises(LockTimeout):
            async with manager.alock(session.id):
                order.append("second in")

    asyncio.run(second())
    assert time.monotonic() - started >= 0.25
    thread.join()
    assert order == ["first done"]
