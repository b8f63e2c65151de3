"""``ThreadedAsyncHandler``: which calls hop to a worker thread, and which capabilities a twin has."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from satchel import SessionConfig, SessionManager
from satchel.asgi import SessionMiddleware
from satchel.drivers import ArraySessionHandler, FileSessionHandler, NullSessionHandler
from satchel.handler import (
    AsyncSupportsLock,
    AsyncSupportsMetadata,
    AsyncSupportsWriteExisting,
    SessionHandler,
    supports,
)
from satchel.testing.concurrency import call_asgi, seed_session
from satchel.threaded import ThreadedAsyncHandler

Message = MutableMapping[str, Any]


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function handed to ``asyncio.to_thread`` while the test runs."""
    hops: list[str] = []
    real = asyncio.to_thread

    async def spy(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(function, "__name__", repr(function)))
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    return hops


def counting_app(kind: str) -> Callable[..., Awaitable[None]]:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        session = scope["session"]
        if kind == "modified":
            session.put("hits", int(session.get("hits", 0)) + 1)
        else:
            session.get("hits")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize("kind", ["read-only", "modified"])
@pytest.mark.parametrize("block", [False, True])
def test_a_file_session_over_asgi_never_hops_to_a_thread(
    tmp_path: Path, thread_hops: list[str], kind: str, block: bool
) -> None:
    # The gc lottery off: a won draw prunes in a worker thread, as it should.
    config = SessionConfig(driver="file", files=str(tmp_path / "s"), block=block, lottery=(0, 1))
    manager = SessionManager(config)
    cookie = seed_session(manager, {"hits": 1})
    app = SessionMiddleware(counting_app(kind), manager)
    header = [(b"cookie", f"{manager.config.cookie}={cookie}".encode())]

    async def two_requests() -> list[int]:
        return [await call_asgi(app, header), await call_asgi(app, header)]

    assert asyncio.run(two_requests()) == [200, 200]
    assert thread_hops == []
    if kind == "modified":
        assert manager.lazy(cookie).get("hits") == 3


def test_a_remote_driver_still_hops_to_a_thread(thread_hops: list[str]) -> None:
    class Remote(ArraySessionHandler):
        runs_on_event_loop = False

    twin = ThreadedAsyncHandler(Remote(lifetime_seconds=60))

    async def calls() -> str:
        await twin.write("a" * 64, "payload")
        return await twin.read("a" * 64)

    assert asyncio.run(calls()) == "payload"
    assert thread_hops == ["write", "read"]


def test_gc_of_a_local_driver_runs_in_a_thread(tmp_path: Path, thread_hops: list[str]) -> None:
    twin = ThreadedAsyncHandler(FileSessionHandler(tmp_path, lifetime_seconds=60))
    assert asyncio.run(twin.gc(60)) == 0
    assert thread_hops == ["gc"]


def capability_flags(handler: object) -> tuple[bool, bool, bool]:
    return (
        supports(handler, AsyncSupportsLock),
        supports(handler, AsyncSupportsMetadata),
        supports(handler, AsyncSupportsWriteExisting),
    )


@pytest.mark.parametrize(
    "sync",
    [ArraySessionHandler(lifetime_seconds=60), NullSessionHandler()],
    ids=["array", "null"],
)
def test_a_twin_has_exactly_the_capabilities_of_its_handler(sync: SessionHandler) -> None:
    twin = ThreadedAsyncHandler(sync)
    expected = tuple(
        hasattr(sync, name) for name in ("lock", "write_with_metadata", "write_existing")
    )
    assert capability_flags(twin) == expected
    assert not hasattr(type(twin), "__getattr__")  # answered once per class, then remembered


def test_a_subclass_keeps_its_own_methods_and_its_class() -> None:
    class Custom(ThreadedAsyncHandler):
        def __init__(self, handler: SessionHandler, label: str) -> None:
            super().__init__(handler)
            self.label = label

        async def read(self, session_id: str) -> str:
            return "custom"

    twin = Custom(ArraySessionHandler(lifetime_seconds=60), "x")
    assert isinstance(twin, Custom)
    assert twin.label == "x"
    assert asyncio.run(twin.read("a" * 64)) == "custom"
    assert supports(twin, AsyncSupportsLock)
    again = type(twin)(NullSessionHandler(), "y")
    assert isinstance(again, Custom)
    assert not supports(again, AsyncSupportsLock)
