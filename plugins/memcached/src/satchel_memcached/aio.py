"""A small asyncio memcached client: the text protocol's commands the driver uses.

pymemcache has no asyncio form, and running each command in a worker thread
costs several times the round trip itself. This client speaks ``get``,
``gets``, ``set``, ``add``, ``replace``, ``cas`` and ``delete`` to one server
through an asyncio protocol, which parses the answer as it arrives
(:mod:`satchel_memcached.protocol`, shared with the sync client). Idle
connections are kept for reuse per event loop: a connection never outlives
the loop it was opened on. A connection that failed in any way, or whose
command was cancelled midway, is closed, never reused, so no later command
can read a stale answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable
from typing import TypeVar, cast

from satchel.toolkit import AsyncConnectionSlots
from satchel_memcached.protocol import (
    DELETE,
    DELETED,
    GET,
    GETS,
    STORED,
    Answer,
    AnswerReader,
    MemcachedConnectionError,
    MemcachedServerError,
    StaleConnection,
    cas_token,
    connection_failure,
    key_request,
    storage,
)

T = TypeVar("T")
# A timer may fire this much before its time; a deadline that close counts as reached.
_TIMER_SLACK = 0.001

__all__ = ["AsyncMemcachedClient", "MemcachedConnectionError", "MemcachedServerError"]


class _Connection(asyncio.Protocol):
    """One connection to the server: one command at a time, its answer parsed as it comes.

    Each command's time limit is kept by one timer per connection, set again
    only when it fires while a command is still running, rather than by a
    timer per command.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._used = False
        self._reused = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._reader = AnswerReader(False)
        self._timeout = 0.0
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, value: bool, timeout: float) -> asyncio.Future[Answer]:
        """Send ``request``; the future holds its answer."""
        loop = self.loop
        self._reused, self._used = self._used, True
        self._reader = AnswerReader(value)
        self._waiter = waiter = loop.create_future()
        self._timeout = timeout
        self._deadline = loop.time() + timeout
        if self._watchdog is None:
            self._watchdog = loop.call_at(self._deadline, self._watch)
        assert self.transport is not None
        self.transport.write(request)
        return waiter

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nothing asked for: the connection is out of step
            return
        try:
            answer = self._reader.feed(data)
        except MemcachedServerError as exc:
            self._fail(exc)
            return
        if answer is not None:
            self._waiter = None
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(connection_failure(exc, self._reused, self._reader.received))

    def _watch(self) -> None:
        self._watchdog = None
        if self._waiter is None:
            return  # idle: the next command sets the timer again
        if self._deadline - self.loop.time() > _TIMER_SLACK:
            self._watchdog = self.loop.call_at(self._deadline, self._watch)
            return
        self._fail(MemcachedConnectionError(f"no answer within {self._timeout:g} seconds"))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        """Close at once; its state is unknown or it is not needed any more."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _LoopConnections:
    """The idle connections of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: list[_Connection] = []


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

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            _, connection = await _within(
                loop.create_connection(lambda: _Connection(loop), self.host, self.port),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise MemcachedConnectionError(
                f"no connection within {self.connect_timeout:g} seconds"
            ) from None
        return connection

    async def close(self) -> None:
        """Close the idle connections (new ones are opened on the next command)."""
        pool, self._connections = self._connections, None
        if pool is not None:
            _abandon(pool)

    # -- one command -----------------------------------------------------------------------

    async def _exchange(self, request: bytes, value: bool) -> Answer:
        """Send ``request``; return the answer's first line and, for a retrieval, the value.

        A kept connection the server closed since (a restart, an idle timeout)
        fails before any answer: the idle ones are then dropped and the command
        is sent once more on a new connection.
        """
        # Written out rather than with context managers and helpers: this runs for every command.
        slots = self.slots
        if slots is not None:
            await slots.__aenter__()
        try:
            pool = self._pool()
            idle = pool.idle
            retried = False
            while True:
                connection = None
                while idle:
                    connection = idle.pop()
                    if not connection.closed:  # else the server closed it while idle
                        break
                    connection = None
                if connection is None:
                    connection = await self._connect(pool.loop)
                try:
                    answer = await connection.send(request, value, self.timeout)
                except StaleConnection as exc:
                    connection.close()
                    if retried:
                        raise MemcachedConnectionError(str(exc)) from None
                    retried = True
                    _abandon(pool)  # closed by the server like this one, most likely
                    continue
                except BaseException:
                    connection.close()  # failed, timed out or cancelled midway: never reused
                    raise
                idle.append(connection)
                return answer
        finally:
            if slots is not None:
                await slots.__aexit__(None, None, None)

    # -- commands ----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when there is none."""
        return (await self._exchange(key_request(GET, key), True))[1]

    async def gets(self, key: str) -> tuple[bytes | None, int | None]:
        """The value of ``key`` and its cas token, or ``(None, None)``."""
        line, data = await self._exchange(key_request(GETS, key), True)
        if data is None:
            return None, None
        return data, cas_token(line)

    async def set(self, key: str, value: bytes, expire: int) -> bool:
        return (await self._exchange(storage(b"set", key, value, expire), False))[0] == STORED

    async def add(self, key: str, value: bytes, expire: int) -> bool:
        return (await self._exchange(storage(b"add", key, value, expire), False))[0] == STORED

    async def replace(self, key: str, value: bytes, expire: int) -> bool:
        return (await self._exchange(storage(b"replace", key, value, expire), False))[0] == STORED

    async def cas(self, key: str, value: bytes, cas: int, expire: int) -> bool:
        answer = await self._exchange(storage(b"cas", key, value, expire, cas), False)
        return answer[0] == STORED

    async def delete(self, key: str) -> bool:
        return (await self._exchange(key_request(DELETE, key), False))[0] == DELETED


def _abandon(pool: _LoopConnections) -> None:
    for connection in pool.idle:
        with contextlib.suppress(Exception):  # its loop may be closed already
            connection.close()
    pool.idle.clear()


if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[T], seconds: float) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _within(awaitable: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(awaitable, seconds)
