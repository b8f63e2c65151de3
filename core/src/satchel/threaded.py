"""``ThreadedAsyncHandler``: any sync driver, awaited without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

from satchel.errors import LockTimeout
from satchel.handler import (
    AsyncSessionHandler,
    RequestMetadata,
    SessionHandler,
    SupportsLock,
    SupportsMetadata,
    SupportsWriteExisting,
)
from satchel.locking import await_lock

T = TypeVar("T")
Twin = TypeVar("Twin", bound="ThreadedAsyncHandler")


class ThreadedAsyncHandler(AsyncSessionHandler):
    """A sync handler as an async twin: each call runs in a worker thread.

    Core wraps a driver that registered no async twin in it, and drivers whose
    client has no asyncio form subclass it for their own twin. The optional
    capabilities (``lock``, ``write_existing``,
    ``write_with_metadata``) exist on the twin exactly when the sync handler
    has them, so core's capability checks see the truth: building a twin picks
    (once per combination) a subclass that has just those methods.

    A sync handler whose class sets ``runs_on_event_loop = True`` (its calls are
    local and brief: a small file, process memory, nothing at all) is called
    inline on the event loop instead, since handing such a call to a worker
    thread costs more than the call itself; ``gc``, which may walk a whole
    store, still runs in a worker thread.
    """

    runs_on_event_loop: ClassVar[bool] = False
    _variants: ClassVar[dict[tuple[type, frozenset[str], bool], type]] = {}

    def __new__(cls: type[Twin], handler: SessionHandler, *args: Any, **kwargs: Any) -> Twin:
        declared: type = getattr(cls, "_declared", cls)  # a variant built again: its own class
        inline = bool(getattr(handler, "runs_on_event_loop", False))
        present = frozenset(
            name for name, capability in _CAPABILITIES.items() if isinstance(handler, capability)
        )
        key = (declared, present, inline)
        variant = ThreadedAsyncHandler._variants.get(key)
        if variant is None:
            bases = [_MIXINS[name] for name in _CAPABILITIES if name in present]
            if inline:
                bases.insert(0, _Inline)
            # A subclass goes first, so its own methods win over the mixins'.
            order: tuple[type, ...] = (
                (*bases, declared) if declared is ThreadedAsyncHandler else (declared, *bases)
            )
            namespace = {"__module__": declared.__module__, "_declared": declared}
            variant = type(declared.__name__, order, namespace)
            ThreadedAsyncHandler._variants[key] = variant
        twin: Twin = object.__new__(variant)
        return twin

    def __init__(self, handler: SessionHandler) -> None:
        self.handler = handler
        self.stores_in_cookie = bool(getattr(handler, "stores_in_cookie", False))

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Run one sync call: in a worker thread here, inline on the loop for local drivers."""
        return await asyncio.to_thread(function, *args)

    async def open(self, save_path: str, session_name: str) -> bool:
        return await self._run(self.handler.open, save_path, session_name)

    async def close(self) -> bool:
        return await self._run(self.handler.close)

    async def read(self, session_id: str) -> str:
        return await self._run(self.handler.read, session_id)

    async def write(self, session_id: str, data: str) -> bool:
        return await self._run(self.handler.write, session_id, data)

    async def destroy(self, session_id: str) -> bool:
        return await self._run(self.handler.destroy, session_id)

    async def gc(self, lifetime: int) -> int:
        # Always a worker thread: gc may walk the whole store.
        return await asyncio.to_thread(self.handler.gc, lifetime)


class _Inline(ThreadedAsyncHandler):
    """Calls the sync handler on the event loop itself (``runs_on_event_loop``)."""

    runs_on_event_loop = True

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return function(*args)


class _WriteExisting(ThreadedAsyncHandler):
    async def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        handler = self.handler
        assert isinstance(handler, SupportsWriteExisting)
        return await self._run(handler.write_existing, session_id, data, metadata)


class _WriteWithMetadata(ThreadedAsyncHandler):
    async def write_with_metadata(
        self, session_id: str, data: str, metadata: RequestMetadata
    ) -> bool:
        handler = self.handler
        assert isinstance(handler, SupportsMetadata)
        return await self._run(handler.write_with_metadata, session_id, data, metadata)


class _Lock(ThreadedAsyncHandler):
    @contextlib.asynccontextmanager
    async def lock(
        self, session_id: str, *, lock_seconds: float, wait_seconds: float
    ) -> AsyncIterator[None]:
        sync = self.handler
        assert isinstance(sync, SupportsLock)
        holder: list[AbstractContextManager[None]] = []

        def try_once() -> bool:
            # Each attempt waits zero seconds, so no worker thread sits blocked
            # while another request holds the lock: with a small thread pool,
            # blocked waiters would starve the holder's own I/O.
            attempt = sync.lock(session_id, lock_seconds=lock_seconds, wait_seconds=0)
            try:
                attempt.__enter__()
            except LockTimeout:
                return False
            holder.append(attempt)
            return True

        async def try_acquire() -> bool:
            return await self._run(try_once)

        await await_lock(try_acquire, wait_seconds=wait_seconds, description="a session")
        try:
            yield
        finally:
            await self._run(holder[0].__exit__, None, None, None)


# Each optional capability of a sync handler, and the mixin that gives a twin its async form.
_CAPABILITIES: dict[str, type] = {
    "write_existing": SupportsWriteExisting,
    "write_with_metadata": SupportsMetadata,
    "lock": SupportsLock,
}
_MIXINS: dict[str, type[ThreadedAsyncHandler]] = {
    "write_existing": _WriteExisting,
    "write_with_metadata": _WriteWithMetadata,
    "lock": _Lock,
}
