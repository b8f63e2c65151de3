"""A small RESP2 client for one Redis server, blocking and asyncio: the commands the driver sends.

redis-py's command path (pool checkout, connection health checks, its parser,
response callbacks) costs more than the round trip to a local server. For one
server over TCP or a unix socket without TLS, the handlers use these clients
instead: a command is packed once, written, and its reply parsed from the
bytes the socket gave. They offer the part of redis-py's client interface
the handlers call (``execute_command``, ``set``, ``delete``, ``eval``), with
replies as RESP2 gives them (bytes, integers, ``None``), and raise redis-py's
own exceptions with redis-py's wording, so a failure reads as it always has.

Each client keeps idle connections for reuse. A connection whose command
failed in any way, or was cancelled midway, is closed, never reused, so no
later command can read a stale reply. A connection made before a ``fork`` is
never used in the child, nor an asyncio one outside the loop that made it.
A kept connection the server closed since (a restart, its idle timeout) is
replaced by a new one without counting as a retry; ``retries`` more attempts,
``RETRY_BACKOFF_SECONDS`` apart, follow a connection error or timeout, as
redis-py's ``Retry`` does. How many commands run at once is bounded by the
handler's :class:`satchel.toolkit.ConnectionSlots`; the client keeps at most
``max_connections`` idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
import sys
import time
from typing import Any

import redis.exceptions

Arg = str | bytes | int
RETRY_BACKOFF_SECONDS = 0.05
READ_SIZE = 65536
# The event loop may run a timer this much before its time.
DEADLINE_SLACK_SECONDS = 0.001
_CRLF = b"\r\n"
_INCOMPLETE: Any = object()
_EXTRA_REPLY = "the server sent more than the one reply to a command"


def pack_command(args: tuple[Arg, ...]) -> bytes:
    """The RESP2 request for one command."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        data = (
            arg.encode("utf-8")
            if isinstance(arg, str)
            else (b"%d" % arg if isinstance(arg, int) else arg)
        )
        append(b"$%d\r\n" % len(data))
        append(data)  # a value is copied once, by the join
        append(b"\r\n")
    return b"".join(parts)


_E = redis.exceptions
# The error codes one server answers the driver's commands with, mapped to the
# exceptions redis-py raises for them (its mapping lives in a private module).
_ERROR_CODES: dict[str, type[redis.exceptions.RedisError]] = {
    "NOAUTH": _E.AuthenticationError,
    "WRONGPASS": _E.AuthenticationError,
    "NOPERM": _E.NoPermissionError,
    "NOSCRIPT": _E.NoScriptError,
    "READONLY": _E.ReadOnlyError,
    "LOADING": _E.BusyLoadingError,
    "OOM": _E.OutOfMemoryError,
    "MASTERDOWN": _E.MasterDownError,
    "EXECABORT": _E.ExecAbortError,
}
_ERR_MESSAGES: dict[str, type[redis.exceptions.RedisError]] = {
    "max number of clients reached": _E.ConnectionError,
    "invalid password": _E.AuthenticationError,
    "Client sent AUTH, but no password is set": _E.AuthenticationError,
    "AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?": _E.AuthenticationError,
}


def error_reply(text: str) -> redis.exceptions.RedisError:
    """The exception redis-py raises for the error reply ``text`` (returned, not raised)."""
    code, _, message = text.partition(" ")
    if code == "ERR":
        return _ERR_MESSAGES.get(message, _E.ResponseError)(message)
    error_class = _ERROR_CODES.get(code)
    return error_class(message) if error_class is not None else _E.ResponseError(text)


def parse_reply(buffer: bytes | bytearray, start: int) -> tuple[Any, int]:
    """The reply that starts at ``start`` and the offset past it; ``_INCOMPLETE`` if cut short.

    An error reply is returned (not raised) as redis-py's exception for it:
    the reply was read whole, so the connection stays usable.
    """
    end = buffer.find(_CRLF, start)
    if end < 0:
        return _INCOMPLETE, start
    marker = buffer[start]
    if marker == 36:  # $: bulk string
        length = int(buffer[start + 1 : end])
        if length < 0:
            return None, end + 2
        stop = end + 2 + length
        if len(buffer) < stop + 2:
            return _INCOMPLETE, start
        return bytes(buffer[end + 2 : stop]), stop + 2
    if marker == 43:  # +: simple string
        return bytes(buffer[start + 1 : end]), end + 2
    if marker == 58:  # :: integer
        return int(buffer[start + 1 : end]), end + 2
    if marker == 45:  # -: error
        text = bytes(buffer[start + 1 : end]).decode("utf-8", "replace")
        return error_reply(text), end + 2
    if marker == 42:  # *: array
        count = int(buffer[start + 1 : end])
        if count < 0:
            return None, end + 2
        items: list[Any] = []
        offset = end + 2
        for _ in range(count):
            item, offset = parse_reply(buffer, offset)
            if item is _INCOMPLETE:
                return _INCOMPLETE, start
            items.append(item)
        return items, offset
    raise redis.exceptions.InvalidResponse(f"Protocol Error: {bytes(buffer[start:end])!r}")


def _parse_whole(data: bytes | bytearray) -> Any:
    """The one reply ``data`` holds; ``_INCOMPLETE`` while it is cut short."""
    try:
        value, end = parse_reply(data, 0)
    except (ValueError, IndexError):
        raise redis.exceptions.InvalidResponse("Protocol Error: a malformed reply") from None
    if value is not _INCOMPLETE and end != len(data):
        raise redis.exceptions.InvalidResponse(_EXTRA_REPLY)
    return value


def _reply(value: Any) -> Any:
    # An error reply, parsed as redis-py's exception for it (NOAUTH is no ResponseError).
    if isinstance(value, redis.exceptions.RedisError):
        raise value
    return value


class _StaleConnection(Exception):
    """A kept connection turned out closed before the server answered anything."""


def _connect_error(where: str, exc: OSError) -> redis.exceptions.RedisError:
    if isinstance(exc, TimeoutError):
        return redis.exceptions.TimeoutError("Timeout connecting to server")
    if not exc.args:
        return redis.exceptions.ConnectionError(f"Error connecting to {where}.")
    if len(exc.args) == 1:
        return redis.exceptions.ConnectionError(f"Error {exc.args[0]} connecting to {where}.")
    return redis.exceptions.ConnectionError(
        f"Error {exc.args[0]} connecting to {where}. {exc.args[1]}."
    )


def _closed_error() -> redis.exceptions.ConnectionError:
    return redis.exceptions.ConnectionError("Connection closed by server.")


class _Settings:
    """Where the server is and how to talk to it; what both clients share."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        retries: int = 1,
        max_connections: int = 100,
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.db = db
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout
        self.retries = retries
        self.max_connections = max_connections
        # redis-py names the server so in its errors: the path, or host:port.
        self.where = path if path is not None else f"{host}:{port}"
        self._handshake: list[bytes] = []
        if password is not None:
            auth: tuple[Arg, ...] = ("AUTH", password)
            self._handshake.append(
                pack_command(auth if username is None else ("AUTH", username, password))
            )
        if db:
            self._handshake.append(pack_command(("SELECT", db)))
        self._script_hashes: dict[str, str] = {}
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where} db={self.db}>"

    def _set_args(self, name: Arg, value: Arg, nx: bool, px: int | None) -> tuple[Arg, ...]:
        args: tuple[Arg, ...] = ("SET", name, value)
        if px is not None:
            args += ("PX", px)
        return (*args, "NX") if nx else args

    def _script_hash(self, script: str) -> str:
        digest = self._script_hashes.get(script)
        if digest is None:
            digest = self._script_hashes[script] = hashlib.sha1(  # noqa: S324 - Redis's script id
                script.encode("utf-8")
            ).hexdigest()
        return digest


# --- blocking -------------------------------------------------------------------------------


def _bound_each_call(sock: socket.socket, seconds: float) -> None:
    """Make each send and receive on ``sock`` fail after ``seconds``.

    On Linux the kernel keeps the bound (``SO_RCVTIMEO``, ``SO_SNDTIMEO``): a
    Python socket timeout would poll the socket before every call, one system
    call more for every read and every write. A call past the bound raises
    ``BlockingIOError`` there, ``TimeoutError`` elsewhere.
    """
    if not sys.platform.startswith("linux"):
        sock.settimeout(seconds)
        return
    whole = int(seconds)
    micro = int((seconds - whole) * 1_000_000)
    if not whole and not micro:
        micro = 1  # a zero bound would be no bound at all
    timeval = struct.pack("ll", whole, micro)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class _Connection:
    """One blocking socket to the server."""

    __slots__ = ("sock", "where")

    def __init__(self, sock: socket.socket, where: str) -> None:
        self.sock = sock
        self.where = where

    def exchange(self, request: bytes, *, reused: bool) -> Any:
        """Send ``request``; the one reply to it."""
        sock = self.sock
        try:
            sock.sendall(request)
        except (TimeoutError, BlockingIOError):
            raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            if reused and isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                raise _StaleConnection(str(exc)) from None
            errno, message = exc.args if len(exc.args) == 2 else ("UNKNOWN", exc.args[0])
            raise redis.exceptions.ConnectionError(
                f"Error {errno} while writing to socket. {message}."
            ) from None
        data = self._receive(reused=reused)
        value = _parse_whole(data)
        if value is _INCOMPLETE:
            buffer = bytearray(data)
            while value is _INCOMPLETE:
                buffer += self._receive(reused=False)
                value = _parse_whole(buffer)
        return value

    def _receive(self, *, reused: bool) -> bytes:
        try:
            data = self.sock.recv(READ_SIZE)
        except (TimeoutError, BlockingIOError):
            raise redis.exceptions.TimeoutError(f"Timeout reading from {self.where}") from None
        except OSError as exc:
            if reused and isinstance(exc, ConnectionResetError):
                raise _StaleConnection(str(exc)) from None
            raise redis.exceptions.ConnectionError(
                f"Error while reading from {self.where} : {exc.args}"
            ) from None
        if not data:
            if reused:
                raise _StaleConnection("closed")
            raise _closed_error()
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class NativeRedisClient(_Settings):
    """One Redis server over blocking sockets; safe for any number of threads.

    Keyword arguments: ``host`` and ``port``, or ``path`` for a unix socket;
    ``db``, ``username``, ``password``; ``socket_timeout`` and
    ``socket_connect_timeout`` in seconds; ``retries`` after a connection
    error or timeout; ``max_connections`` kept idle at most.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._idle: list[_Connection] = []

    def _connect(self) -> _Connection:
        try:
            if self.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.socket_connect_timeout)
                    sock.connect(self.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(
                    (self.host, self.port), timeout=self.socket_connect_timeout
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise _connect_error(self.where, exc) from None
        _bound_each_call(sock, self.socket_timeout)
        connection = _Connection(sock, self.where)
        try:
            for request in self._handshake:
                _reply(connection.exchange(request, reused=False))
        except BaseException:
            connection.close()
            raise
        return connection

    def _request(self, request: bytes) -> Any:
        retries_left = self.retries
        stale_allowed = True
        while True:
            if self._pid != os.getpid():
                self._after_fork()
            idle = self._idle
            connection: _Connection | None = None
            try:
                reused = bool(idle)
                try:
                    connection = idle.pop() if reused else None
                except IndexError:  # another thread took the last one
                    reused = False
                if connection is None:
                    connection = self._connect()
                value = connection.exchange(request, reused=reused)
            except _StaleConnection:
                assert connection is not None
                connection.close()
                self.close()  # the other kept ones are likely closed too
                if stale_allowed:
                    stale_allowed = False
                    continue
                raise _closed_error() from None
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                if connection is not None:
                    connection.close()
                if retries_left <= 0:
                    raise
                retries_left -= 1
                self.close()
                time.sleep(RETRY_BACKOFF_SECONDS)
                continue
            except BaseException:
                if connection is not None:
                    connection.close()  # its state is unknown: never reused
                raise
            if len(idle) < self.max_connections:
                idle.append(connection)
            else:
                connection.close()
            return _reply(value)

    def _after_fork(self) -> None:
        # The parent's sockets are the parent's: dropped here, never closed.
        self._idle = []
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the idle connections (new ones are made by the next command)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def execute_command(self, *args: Arg, **options: Any) -> Any:
        """Send one command; its RESP2 reply (``options`` are redis-py's, not needed here)."""
        return self._request(pack_command(args))

    def set(self, name: Arg, value: Arg, *, nx: bool = False, px: int | None = None) -> bool | None:
        """``SET`` with ``PX``/``NX``: True when set, None when ``NX`` found the key."""
        return self._request(pack_command(self._set_args(name, value, nx, px))) == b"OK" or None

    def delete(self, *names: Arg) -> int:
        return int(self._request(pack_command(("DEL", *names))))

    def eval(self, script: str, numkeys: int, *keys_and_args: Arg) -> Any:
        """Run ``script`` by its hash (``EVALSHA``), sending it whole only once per server."""
        try:
            return self.execute_command(
                "EVALSHA", self._script_hash(script), numkeys, *keys_and_args
            )
        except redis.exceptions.NoScriptError:
            return self.execute_command("EVAL", script, numkeys, *keys_and_args)


# --- asyncio ----------------------------------------------------------------------------------


class _Protocol(asyncio.Protocol):
    """One asyncio connection: a command is written, and its reply awaited in ``waiter``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, where: str) -> None:
        self.loop = loop
        self.where = where
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Any] | None = None
        self.received = False
        self.lost = False
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.abort()  # a reply to no command: the connection is out of step
            return
        buffer = self.buffer
        if buffer:
            buffer += data
            whole: bytes | bytearray = buffer
        else:
            whole = data
        try:
            value = _parse_whole(whole)
        except redis.exceptions.InvalidResponse as exc:
            waiter.set_exception(exc)
            self.abort()
            return
        if value is _INCOMPLETE:
            if not buffer:
                buffer += data
            return
        buffer.clear()
        waiter.set_result(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_exception(_closed_error())
            else:
                waiter.set_exception(
                    redis.exceptions.ConnectionError(
                        f"Error while reading from {self.where} : {exc.args}"
                    )
                )

    async def exchange(self, request: bytes, timeout: float, *, reused: bool) -> Any:
        """Send ``request``; the one reply to it, within ``timeout`` seconds."""
        if self.lost or self.transport is None:
            raise _StaleConnection("closed") if reused else _closed_error()
        loop = self.loop
        waiter = self.waiter = loop.create_future()
        self.received = False
        self.deadline = loop.time() + timeout
        if self.timer is None:
            self.timer = loop.call_at(self.deadline, self._check_deadline)
        self.transport.write(request)
        try:
            return await waiter
        except redis.exceptions.ConnectionError:
            if reused and not self.received:
                raise _StaleConnection("closed") from None
            raise
        finally:
            self.waiter = None

    def _check_deadline(self) -> None:
        # One timer per connection, moved on lazily: a timer made and cancelled for
        # every command would cost more than the rest of the command's own work.
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done() or self.lost:
            return
        if self.loop.time() < self.deadline - DEADLINE_SLACK_SECONDS:
            self.timer = self.loop.call_at(self.deadline, self._check_deadline)
            return
        waiter.set_exception(redis.exceptions.TimeoutError(f"Timeout reading from {self.where}"))
        self.abort()

    def abort(self) -> None:
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            with contextlib.suppress(Exception):  # its loop may be closed already
                self.transport.abort()


class AsyncNativeRedisClient(_Settings):
    """The asyncio form of :class:`NativeRedisClient`, for one event loop at a time.

    Connections are kept per event loop: a command in another loop than the
    last one drops the connections of that one.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._idle: list[_Protocol] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        def protocol() -> _Protocol:
            return _Protocol(loop, self.where)

        try:
            if self.path is not None:
                opening = loop.create_unix_connection(protocol, self.path)
            else:
                opening = loop.create_connection(protocol, self.host, self.port)
            _, connection = await asyncio.wait_for(opening, self.socket_connect_timeout)
        except asyncio.TimeoutError:
            raise redis.exceptions.TimeoutError("Timeout connecting to server") from None
        except OSError as exc:
            raise _connect_error(self.where, exc) from None
        try:
            for request in self._handshake:
                _reply(await connection.exchange(request, self.socket_timeout, reused=False))
        except BaseException:
            connection.abort()
            raise
        return connection

    def _checkout(self) -> tuple[asyncio.AbstractEventLoop, _Protocol | None]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._pid != os.getpid():
            self._drop_idle()
            self._loop, self._pid = loop, os.getpid()
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.lost:  # closed while idle: the loop has seen it go
                return loop, connection
        return loop, None

    async def _request(self, request: bytes) -> Any:
        retries_left = self.retries
        stale_allowed = True
        while True:
            connection: _Protocol | None = None
            try:
                loop, connection = self._checkout()
                reused = connection is not None
                if connection is None:
                    connection = await self._connect(loop)
                value = await connection.exchange(request, self.socket_timeout, reused=reused)
            except _StaleConnection:
                assert connection is not None
                connection.abort()
                self._drop_idle()
                if stale_allowed:
                    stale_allowed = False
                    continue
                raise _closed_error() from None
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                if connection is not None:
                    connection.abort()
                if retries_left <= 0:
                    raise
                retries_left -= 1
                self._drop_idle()
                await asyncio.sleep(RETRY_BACKOFF_SECONDS)
                continue
            except BaseException:
                if connection is not None:
                    connection.abort()  # cancelled or failed midway: never reused
                raise
            if len(self._idle) < self.max_connections:
                self._idle.append(connection)
            else:
                connection.abort()
            return _reply(value)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        if self._pid == os.getpid():  # a parent's connections are left to the parent
            for connection in idle:
                connection.abort()

    async def aclose(self) -> None:
        """Close the idle connections (new ones are made by the next command)."""
        self._drop_idle()

    async def execute_command(self, *args: Arg, **options: Any) -> Any:
        """Send one command; its RESP2 reply (``options`` are redis-py's, not needed here)."""
        return await self._request(pack_command(args))

    async def set(
        self, name: Arg, value: Arg, *, nx: bool = False, px: int | None = None
    ) -> bool | None:
        """``SET`` with ``PX``/``NX``: True when set, None when ``NX`` found the key."""
        reply = await self._request(pack_command(self._set_args(name, value, nx, px)))
        return reply == b"OK" or None

    async def delete(self, *names: Arg) -> int:
        return int(await self._request(pack_command(("DEL", *names))))

    async def eval(self, script: str, numkeys: int, *keys_and_args: Arg) -> Any:
        """Run ``script`` by its hash (``EVALSHA``), sending it whole only once per server."""
        try:
            return await self.execute_command(
                "EVALSHA", self._script_hash(script), numkeys, *keys_and_args
            )
        except redis.exceptions.NoScriptError:
            return await self.execute_command("EVAL", script, numkeys, *keys_and_args)
