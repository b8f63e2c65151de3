"""``ThreadedAsyncHandler``: any sync driver, awaited without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

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


class ThreadedAsyncHandler(AsyncSessionHandler):
    """A sync handler as an async twin: each call runs in a worker thread.

    Core wraps a driver that registered no async twin in it, and drivers whose
    client has no asyncio form subclass it for their own twin. The optional
    capabilities (``lock``, ``write_existing``,
    ``write_with_metadata``) exist on the twin exactly when the sync handler
    has them, so core's capability checks see the truth.
    """

    def __init__(self, handler: SessionHandler) -> None:
        self.handler = handler
        self.stores_in_cookie = bool(getattr(handler, "stores_in_cookie", False))

    async def open(self, save_path: str, session_name: str) -> bool:
        return await asyncio.to_thread(self.handler.open, save_path, session_name)

    async def close(self) -> bool:
        return await asyncio.to_thread(self.handler.close)

    async def read(self, session_id: str) -> str:
        return await asyncio.to_thread(self.handler.read, session_id)

    async def write(self, session_id: str, data: str) -> bool:
        return await asyncio.to_thread(self.handler.write, session_id, data)

    async def destroy(self, session_id: str) -> bool:
        return await asyncio.to_thread(self.handler.destroy, session_id)

    async def gc(self, lifetime: int) -> int:
        return await asyncio.to_thread(self.handler.gc, lifetime)

    def __getattr__(self, name: str) -> Any:
        # Optional capabilities exist on the twin exactly when the sync handler has them.
        if name == "write_with_metadata" and isinstance(self.handler, SupportsMetadata):
            return self._write_with_metadata
        if name == "lock" and isinstance(self.handler, SupportsLock):
            return self._lock
        if name == "write_existing" and isinstance(self.handler, SupportsWriteExisting):
            return self._write_existing
        raise AttributeError(name)

    async def _write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        assert isinstance(self.handler, SupportsWriteExisting)
        return await asyncio.to_thread(self.handler.write_existing, session_id, data, metadata)

    async def _write_with_metadata(
        self, session_id: str, data: str, metadata: RequestMetadata
    ) -> bool:
        assert isinstance(self.handler, SupportsMetadata)
        return await asyncio.to_thread(self.handler.write_with_metadata, session_id, data, metadata)

    @contextlib.asynccontextmanager
    async def _lock(
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
            return await asyncio.to_thread(try_once)

        await await_lock(try_acquire, wait_seconds=wait_seconds, description="a session")
        try:
            yield
        finally:
            await asyncio.to_thread(holder[0].__exit__, None, None, None)
