"""The ``array`` driver: sessions in this process's memory (tests, single-process apps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

from satchel.config import SessionConfig
from satchel.handler import RequestMetadata, SessionHandler
from satchel.locking import TokenLock


@attrs.define
class _Entry:
    data: str
    written_at: float


class ArraySessionHandler(SessionHandler):
    """In-memory sessions that honour the lifetime, with an in-process lock for blocking."""

    process_local = True  # no other application can reach this store
    runs_on_event_loop = True  # a dict lookup: no worker thread for the async twin

    def __init__(self, lifetime_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._mutex = threading.Lock()

    @classmethod
    def from_config(cls, config: SessionConfig) -> ArraySessionHandler:
        return cls(config.lifetime_seconds)

    def read(self, session_id: str) -> str:
        with self._mutex:
            entry = self._entries.get(session_id)
        if entry is None or entry.written_at < self.clock() - self.lifetime_seconds:
            return ""
        return entry.data

    def write(self, session_id: str, data: str) -> bool:
        with self._mutex:
            self._entries[session_id] = _Entry(data, self.clock())
        return True

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        now = self.clock()
        with self._mutex:
            entry = self._entries.get(session_id)
            if entry is None or entry.written_at < now - self.lifetime_seconds:
                return False
            self._entries[session_id] = _Entry(data, now)
        return True

    def destroy(self, session_id: str) -> bool:
        with self._mutex:
            self._entries.pop(session_id, None)
        return True

    def gc(self, lifetime: int) -> int:
        cutoff = self.clock() - lifetime
        with self._mutex:
            expired = [key for key, entry in self._entries.items() if entry.written_at < cutoff]
            for key in expired:
                del self._entries[key]
        return len(expired)

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> TokenLock:
        def try_acquire(token: str) -> bool:
            now = time.monotonic()
            with self._mutex:
                holder = self._locks.get(session_id)
                if holder is not None and holder[1] > now:
                    return False
                self._locks[session_id] = (token, now + lock_seconds)
                return True

        def release(token: str) -> None:
            with self._mutex:
                holder = self._locks.get(session_id)
                if holder is not None and holder[0] == token:
                    del self._locks[session_id]

        return TokenLock(
            try_acquire, release, wait_seconds=wait_seconds, description="an array session"
        )
