"""Counting what a request costs its backend, from the backend's side where it can.

Each counter's :meth:`~Counter.snapshot` returns the calls and writes so far;
the difference of two snapshots is what the requests between them cost.

- Redis: ``INFO commandstats`` of a private server; a command is a write when
  Redis's own ``COMMAND INFO`` flags it ``write``.
- memcached: ``stats`` of a private server (``cmd_get`` reads; sets, touches,
  deletes, increments and CAS writes).
- SQL: every statement a cursor executes plus every COMMIT, seen by SQLAlchemy's
  engine events, Django's execute wrappers or the raw floor's counting cursor;
  INSERT, UPDATE, DELETE and REPLACE are writes. An implicit BEGIN (sent by the
  DB-API driver itself) is not seen.
- file: Python's audit events under the session folder: each ``open`` (a write
  when opened for writing), ``os.rename``/``os.replace`` and ``os.remove``.
- cookie: no backend; nothing to count.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import redis


@dataclass(frozen=True)
class Counts:
    """Backend calls and, of those, writes."""

    calls: int = 0
    writes: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.calls - other.calls, self.writes - other.writes)


class Counter(Protocol):
    def snapshot(self) -> Counts: ...


class NoBackend:
    """The cookie "backend": there is nothing to call."""

    def snapshot(self) -> Counts:
        return Counts()


class RedisCounter:
    """Commands as a private Redis server counts them."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self._writes: dict[str, bool] = {}

    def _is_write(self, command: str) -> bool:
        if command not in self._writes:
            base = command.split("|", maxsplit=1)[0]
            info = self.client.execute_command("COMMAND", "INFO", base)
            flags = info.get(base, {}).get("flags", []) if isinstance(info, dict) else []
            self._writes[command] = "write" in {str(flag) for flag in flags}
        return self._writes[command]

    def snapshot(self) -> Counts:
        stats: dict[str, dict[str, Any]] = self.client.info("commandstats")  # type: ignore[assignment]
        calls = writes = 0
        for name, entry in stats.items():
            command = name.removeprefix("cmdstat_")
            if command in ("info", "command", "command|info"):
                continue  # the counting itself
            calls += int(entry["calls"])
            writes += int(entry["calls"]) if self._is_write(command) else 0
        return Counts(calls, writes)


MEMCACHED_READS = ("cmd_get",)
MEMCACHED_WRITES = (
    "cmd_set",
    "cmd_touch",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
)


class MemcachedCounter:
    """Commands as a private memcached server's ``stats`` counts them."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)

    def stats(self) -> dict[str, int]:
        with socket.create_connection(self.address) as sock:
            sock.sendall(b"stats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                data += sock.recv(65536)
        values = {}
        for line in data.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "STAT" and parts[2].isdigit():
                values[parts[1]] = int(parts[2])
        return values

    def snapshot(self) -> Counts:
        stats = self.stats()
        writes = sum(stats.get(name, 0) for name in MEMCACHED_WRITES)
        return Counts(writes + sum(stats.get(name, 0) for name in MEMCACHED_READS), writes)


SQL_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class SqlCounter:
    """Statements and COMMITs, reported by whichever layer ran them (:meth:`statement`)."""

    def __init__(self) -> None:
        self.calls = 0
        self.writes = 0
        self.lock = threading.Lock()

    def statement(self, sql: str) -> None:
        with self.lock:
            self.calls += 1
            if sql.lstrip().split(None, 1)[0].upper() in SQL_WRITES:
                self.writes += 1

    def commit(self) -> None:
        with self.lock:
            self.calls += 1

    @contextlib.contextmanager
    def watching_sqlalchemy(self) -> Iterator[None]:
        """Count what every SQLAlchemy engine in the process executes, inside the block.

        Only while counting: a driver may take a different (instrumented) path
        while anything listens to its engine's statement events, and the timed
        requests of a real application have no such listener.
        """
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def before_cursor_execute(*args: Any) -> None:
            self.statement(args[2])

        def commit(connection: Any) -> None:
            self.commit()

        event.listen(Engine, "before_cursor_execute", before_cursor_execute)
        event.listen(Engine, "commit", commit)
        try:
            yield
        finally:
            event.remove(Engine, "before_cursor_execute", before_cursor_execute)
            event.remove(Engine, "commit", commit)

    def watch_django(self) -> None:
        """Count what Django's database connections execute, from the next one opened on."""
        from django.db.backends.signals import connection_created

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            self.statement(sql)
            return execute(sql, params, many, context)

        def watch(sender: Any, connection: Any, **kwargs: Any) -> None:
            connection.execute_wrappers.append(wrapper)

        connection_created.connect(watch, weak=False)

    def snapshot(self) -> Counts:
        with self.lock:
            return Counts(self.calls, self.writes)


def watching(counter: Any) -> contextlib.AbstractContextManager[None]:
    """The block in which ``counter`` counts a row's requests (all the time for most)."""
    if isinstance(counter, SqlCounter):
        return counter.watching_sqlalchemy()
    return contextlib.nullcontext()


class FileCounter:
    """File operations under one folder, seen by an audit hook (which stays installed)."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.realpath(folder)
        self.calls = 0
        self.writes = 0
        sys.addaudithook(self._hook)

    def _inside(self, path: Any) -> bool:
        if isinstance(path, int):
            return False
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return isinstance(path, str) and os.path.realpath(path).startswith(self.folder)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and self._inside(args[0]):
            self.calls += 1
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            ):
                self.writes += 1
        elif event in ("os.rename", "os.remove") and self._inside(args[0]):
            self.calls += 1

    def snapshot(self) -> Counts:
        return Counts(self.calls, self.writes)
