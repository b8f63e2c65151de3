"""``SqliteSessionHandler``: sessions in a table of one SQLite file.

One row per session (``id``, ``payload``, ``last_activity`` in Unix seconds)
and one per held lock (``id``, ``token``, ``expires_at``). Every call opens
its own connection, so the handler is safe to share between threads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

from satchel import RequestMetadata, SessionConfig, SessionHandler
from satchel.toolkit import StoreErrors, TokenLock, structure_options
from satchel_sqlite.options import SqliteOptions

DRIVER = "sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, payload TEXT NOT NULL, last_activity REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_last_activity ON sessions (last_activity);
CREATE TABLE IF NOT EXISTS session_locks (
    id TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL);
"""


class SqliteSessionHandler(SessionHandler):
    """Sessions in the SQLite file at ``path``, idle ones expiring after ``lifetime_seconds``."""

    def __init__(
        self,
        path: str,
        *,
        lifetime_seconds: int,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.lifetime_seconds = lifetime_seconds
        self.busy_timeout = busy_timeout
        self.clock = clock
        # sqlite3's errors become satchel.SessionBackendError naming the driver and the file.
        self.errors = StoreErrors(DRIVER, path, (sqlite3.Error,))
        with self._connection() as connection:
            connection.executescript(SCHEMA)

    @classmethod
    def from_config(cls, config: SessionConfig) -> SqliteSessionHandler:
        """The driver's factory: ``connection`` is the file's path."""
        options = structure_options(config, SqliteOptions, driver=DRIVER)
        return cls(
            config.connection or "sessions.sqlite3",
            lifetime_seconds=config.lifetime_seconds,
            busy_timeout=options.busy_timeout,
        )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connect = sqlite3.connect(self.path, timeout=self.busy_timeout)
        # One transaction per statement (``with db``), the connection closed after it.
        with self.errors, closing(connect) as db, db:
            yield db

    def _execute(self, sql: str, *parameters: object) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement in its own transaction: the rows it returned, the rows it changed."""
        with self._connection() as connection:
            cursor = connection.execute(sql, parameters)
            return cursor.fetchall(), cursor.rowcount

    def _cutoff(self) -> float:
        return self.clock() - self.lifetime_seconds

    # --- the contract ---

    def read(self, session_id: str) -> str:
        rows, _ = self._execute(
            "SELECT payload FROM sessions WHERE id = ? AND last_activity >= ?",
            session_id,
            self._cutoff(),
        )
        return str(rows[0][0]) if rows else ""  # expired rows read as nothing, even before gc

    def write(self, session_id: str, data: str) -> bool:
        self._execute(
            "INSERT INTO sessions (id, payload, last_activity) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, "
            "last_activity = excluded.last_activity",
            session_id,
            data,
            self.clock(),
        )
        return True

    def destroy(self, session_id: str) -> bool:
        self._execute("DELETE FROM sessions WHERE id = ?", session_id)
        return True

    def gc(self, lifetime: int) -> int:
        cutoff = self.clock() - lifetime
        return self._execute("DELETE FROM sessions WHERE last_activity < ?", cutoff)[1]

    # --- optional capabilities, found by satchel on the class ---

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a live row, in one statement: a logout is never undone."""
        return bool(
            self._execute(
                "UPDATE sessions SET payload = ?, last_activity = ? "
                "WHERE id = ? AND last_activity >= ?",
                data,
                self.clock(),
                session_id,
                self._cutoff(),
            )[1]
        )

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> TokenLock:
        """Hold the session's lock for session blocking (``block = true``)."""

        def try_acquire(token: str) -> bool:
            now = time.time()
            # Take the lock if it is free or expired; rowcount says whether we did.
            _, claimed = self._execute(
                "INSERT INTO session_locks (id, token, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET token = excluded.token, "
                "expires_at = excluded.expires_at WHERE session_locks.expires_at <= ?",
                session_id,
                token,
                now + lock_seconds,
                now,
            )
            return claimed == 1

        def release(token: str) -> None:
            # Only our own token: a lock that expired and was taken over is not ours.
            self._execute("DELETE FROM session_locks WHERE id = ? AND token = ?", session_id, token)

        return TokenLock(
            try_acquire, release, wait_seconds=wait_seconds, description="an sqlite session"
        )
