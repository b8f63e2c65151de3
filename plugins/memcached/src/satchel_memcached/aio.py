"""A small asyncio memcached client: the text protocol's commands the driver uses.

pymemcache has no asyncio form, and running each command in a worker thread
costs several times the round trip itself. This client speaks ``get``,
``gets``, ``set``, ``add``, ``replace``, ``cas`` and ``delete`` over
asyncio streams to one server, keeping idle connections for reuse (per event
loop: a connection never outlives the loop it was opened on). A connection
that failed in any way, or whose command was cancelled midway, is closed,
never reused, so no later command can read a stale answer.

Values are bytes stored with flags 0, as the sync driver stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Awaitable
from typing import TypeVar

from satchel.toolkit import AsyncConnectionSlots

T = TypeVar("T")
_WRITE_BUFFER_LIMIT = 64 * 1024
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class MemcachedServerError(Exception):
    """The server answered with an error (``ERROR``, ``CLIENT_ERROR``, ``SERVER_ERROR``)
    or with something this client does not understand."""


class MemcachedConnectionError(OSError):
    """A connection could not be made, broke, or gave no answer in time."""


class _StaleConnection(Exception):
    """A kept connection turned out closed before the server answered anything."""


class _LoopConnections:
    """The idle connections of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: list[Connection] = []


class AsyncMemcachedClient:
    """One memcached server over asyncio; safe for any number of concurrent tasks.

    Args:
        host: The server's host.
        port: The server's port.
        connect_timeout: Seconds a connection attempt may take.
        timeout: Seconds a command may take once connected.
        slots: Bounds the connections in use at once (a command waits for a
            free one, then fails with :class:`satchel.PoolExhausted`); ``None``
            for no bound.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        timeout: float,
        slots: AsyncConnectionSlots | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.slots = slots
        self._connections: _LoopConnections | None = None

    # -- connections ---------------------------------------------------------------------

    def _pool(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        pool = self._connections
        if pool is None or pool.loop is not loop:
            if pool is not None:
                _abandon(pool)  # opened on a loop that is gone or another one
            pool = self._connections = _LoopConnections(loop)
        return pool

    async def _connect(self) -> Connection:
        try:
            reader, writer = await _within(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except asyncio.TimeoutError:
            raise MemcachedConnectionError(
                f"no connection within {self.connect_timeout:g} seconds"
            ) from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def close(self) -> None:
        """Close the idle connections (new ones are opened on the next command)."""
        pool, self._connections = self._connections, None
        if pool is not None:
            _abandon(pool)

    # -- one command -----------------------------------------------------------------------

    async def _exchange(self, request: bytes, *, value: bool) -> tuple[bytes, bytes | None]:
        """Send ``request``; return the answer's first line and, for a retrieval, the value.

        A kept connection the server closed since (a restart, an idle timeout)
        fails before any answer: the idle ones are then dropped and the command
        is sent once more on a new connection.
        """
        try:
            return await self._exchange_once(request, value)
        except _StaleConnection:
            pool = self._connections
            if pool is not None:
                _abandon(pool)
            try:
                return await self._exchange_once(request, value)
            except _StaleConnection as exc:
                raise MemcachedConnectionError(str(exc)) from None

    async def _exchange_once(self, request: bytes, value: bool) -> tuple[bytes, bytes | None]:
        # Written out rather than as context managers: this runs for every command.
        slots = self.slots
        if slots is not None:
            await slots.__aenter__()
        try:
            pool = self._pool()
            reused = bool(pool.idle)
            reader, writer = pool.idle.pop() if reused else await self._connect()
            # Past the timeout the connection is aborted, which ends the pending read;
            # cheaper than cancelling the task, and the connection is done for anyway.
            expired: list[bool] = []
            timer = pool.loop.call_later(self.timeout, _expire, writer, expired)
            try:
                answer = await self._answer(reader, writer, request, value)
            except BaseException as exc:
                writer.close()  # its state is unknown: never reused
                if expired:
                    raise MemcachedConnectionError(
                        f"no answer within {self.timeout:g} seconds"
                    ) from None
                failure = _failure(exc, reused)
                if failure is exc:
                    raise  # cancelled, or an error of its own (refused, reset)
                raise failure from None
            finally:
                timer.cancel()
            if not expired:  # aborted just as the answer came in: not kept
                pool.idle.append((reader, writer))
            return answer
        finally:
            if slots is not None:
                await slots.__aexit__(None, None, None)

    @staticmethod
    async def _answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, value: bool
    ) -> tuple[bytes, bytes | None]:
        writer.write(request)
        if writer.transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
            await writer.drain()  # a large value the socket has not taken yet
        line = await reader.readuntil(b"\r\n")
        if not value or not line.startswith(b"VALUE "):
            _check_answer(line)
            return line, None
        parts = line.split()
        size = int(parts[3])
        data = await reader.readexactly(size + 2)
        end = await reader.readuntil(b"\r\n")
        if end != b"END\r\n" or data[-2:] != b"\r\n":
            raise MemcachedServerError("a malformed value in the answer")
        return line, data[:-2]

    # -- commands ----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when there is none."""
        _, data = await self._exchange(b"get " + key.encode("ascii") + b"\r\n", value=True)
        return data

    async def gets(self, key: str) -> tuple[bytes | None, int | None]:
        """The value of ``key`` and its cas token, or ``(None, None)``."""
        line, data = await self._exchange(b"gets " + key.encode("ascii") + b"\r\n", value=True)
        if data is None:
            return None, None
        return data, int(line.split()[4])

    async def _store(
        self, command: bytes, key: str, value: bytes, expire: int, cas: int | None = None
    ) -> bytes:
        header = b"%s %s 0 %d %d" % (command, key.encode("ascii"), expire, len(value))
        if cas is not None:
            header += b" %d" % cas
        line, _ = await self._exchange(header + b"\r\n" + value + b"\r\n", value=False)
        return line

    async def set(self, key: str, value: bytes, expire: int) -> bool:
        return await self._store(b"set", key, value, expire) == b"STORED\r\n"

    async def add(self, key: str, value: bytes, expire: int) -> bool:
        return await self._store(b"add", key, value, expire) == b"STORED\r\n"

    async def replace(self, key: str, value: bytes, expire: int) -> bool:
        return await self._store(b"replace", key, value, expire) == b"STORED\r\n"

    async def cas(self, key: str, value: bytes, cas: int, expire: int) -> bool:
        return await self._store(b"cas", key, value, expire, cas) == b"STORED\r\n"

    async def delete(self, key: str) -> bool:
        line, _ = await self._exchange(b"delete " + key.encode("ascii") + b"\r\n", value=False)
        return line == b"DELETED\r\n"


_ANSWERS = frozenset(
    {b"STORED\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n", b"NOT_FOUND\r\n", b"DELETED\r\n", b"END\r\n"}
)


def _failure(exc: BaseException, reused: bool) -> BaseException:
    """What a command's failure on a connection is raised as."""
    if isinstance(exc, asyncio.IncompleteReadError):
        message = "the server closed the connection"
        if reused and not exc.partial:
            return _StaleConnection(message)
        return MemcachedConnectionError(message)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) and reused:
        return _StaleConnection(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, asyncio.LimitOverrunError):
        return MemcachedServerError("an answer line too long to be memcached's")
    return exc


def _expire(writer: asyncio.StreamWriter, expired: list[bool]) -> None:
    expired.append(True)
    writer.transport.abort()


def _check_answer(line: bytes) -> None:
    if line not in _ANSWERS:
        text = line.decode("ascii", "replace").strip()[:200]
        raise MemcachedServerError(f"the server answered {text!r}")


def _abandon(pool: _LoopConnections) -> None:
    for _, writer in pool.idle:
        with contextlib.suppress(Exception):  # its loop may be closed already
            writer.close()
    pool.idle.clear()


if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[T], seconds: float) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _within(awaitable: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(awaitable, seconds)
