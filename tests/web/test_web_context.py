"""The global helper ``satchel.session``: a context-local proxy to the request's session."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

import satchel
from satchel import SessionConfig, SessionManager, context


def test_the_proxy_forwards_the_whole_session_api() -> None:
    session = SessionManager(SessionConfig(driver="array")).lazy(None)
    token = context.bind(session)
    try:
        satchel.session["plain"] = 1
        satchel.session.put("user.name", "Ada")
        assert satchel.session.get("user.name") == "Ada"
        assert "plain" in satchel.session
        assert sorted(satchel.session) == ["plain", "user"]
        assert len(satchel.session) == 2
        assert bool(satchel.session)
        assert satchel.session == {"plain": 1, "user": {"name": "Ada"}}
        del satchel.session["plain"]
        satchel.session.permanent = False
        assert session.permanent is False
        assert context.current_session() is session
    finally:
        context.unbind(token)
    assert not context.has_session()


def test_outside_a_request_every_use_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session.get("x")
    with pytest.raises(RuntimeError, match="outside a request"):
        _ = "x" in satchel.session
    with pytest.raises(RuntimeError, match="outside a request"):
        satchel.session["x"] = 1
    assert "unbound" in repr(satchel.session)


def test_tasks_see_their_own_request_session() -> None:
    manager = SessionManager(SessionConfig(driver="array"))

    async def request(name: str) -> str:
        context.bind(manager.lazy(None))  # each task runs in its own copy of the context
        satchel.session.put("name", name)
        await asyncio.sleep(0.01)

        async def child() -> str:
            return str(satchel.session.get("name"))

        return await asyncio.create_task(child())

    async def main() -> list[str]:
        return await asyncio.gather(*(request(str(n)) for n in range(10)))

    assert asyncio.run(main()) == [str(n) for n in range(10)]


def test_unbind_from_another_context_still_clears() -> None:
    session = SessionManager(SessionConfig(driver="array")).lazy(None)
    token = contextvars.copy_context().run(context.bind, session)
    context.bind(session)
    context.unbind(token)  # made in another context: the binding is cleared anyway
    assert not context.has_session()
