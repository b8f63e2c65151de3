"""The memcached driver under core's SessionManager: found by name, sessions kept, blocking, asyncio."""

from __future__ import annotations

import asyncio

import pytest

from satchel import LockTimeout, SessionConfig
from satchel.manager import SessionManager
from satchel_memcached import AsyncMemcachedSessionHandler, MemcachedSessionHandler


@pytest.fixture
def manager(memcached_connection: str, unique_prefix: str) -> SessionManager:
    return SessionManager(
        SessionConfig(
            driver="memcached",
            connection=memcached_connection,
            prefix=unique_prefix,
            block=True,
            block_lock_seconds=5,
            block_wait_seconds=0.3,
        )
    )


def test_manager_finds_the_driver_by_name_and_keeps_sessions(manager: SessionManager) -> None:
    assert isinstance(manager.handler(), MemcachedSessionHandler)
    session = manager.start(None)
    session.put("cart", ["apple", "pear"])
    session.save()
    other = SessionManager(manager.config)  # another web server, same config
    again = other.start(session.id)
    assert again.id == session.id
    assert again.get("cart") == ["apple", "pear"]


def test_blocking_holds_the_session_lock_across_a_request(manager: SessionManager) -> None:
    session = manager.start(None)
    session.put("n", 1)
    session.save()
    manager.check_blocking()
    with manager.lock(session.id), pytest.raises(LockTimeout), manager.lock(session.id):
        pass
    with manager.lock(session.id):
        pass


def test_async_sessions_through_the_twin(manager: SessionManager) -> None:
    assert isinstance(manager.async_handler(), AsyncMemcachedSessionHandler)

    async def first() -> str:
        session = await manager.astart(None)
        session.put("seen", 1)
        await session.asave()
        return session.id

    async def later(session_id: str) -> int:
        session = await manager.astart(session_id)
        async with manager.alock(session_id):
            return int(session.get("seen"))

    session_id = asyncio.run(first())
    assert asyncio.run(later(session_id)) == 1
