"""A small sync memcached client: the text protocol's commands the driver uses, to one server.

pymemcache's ``PooledClient`` spends more time on its pool, checks and
options than the round trip takes on a local network; this client sends a
command and reads its answer over a plain socket. It keeps idle connections
for reuse by any thread (taking and returning one is a single list operation,
atomic in CPython) and opens one when none is idle; the driver's
``ConnectionSlots`` bound how many are in use at once. A connection that
failed in any way is closed, never reused, so no later command can read a
stale answer; a process forked from one using the client opens its own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys

from satchel_memcached.protocol import (
    DELETE,
    DELETED,
    GET,
    GETS,
    STORED,
    Answer,
    AnswerReader,
    MemcachedConnectionError,
    StaleConnection,
    cas_token,
    connection_failure,
    key_request,
    parse_answer,
    storage,
)

# What one recv asks for: a session's answer in one go, mostly.
RECV_BYTES = 65536
# A socket timeout set in Python makes every send and recv poll() first; the kernel's
# own (SO_RCVTIMEO, SO_SNDTIMEO: a struct timeval) spares that system call.
_TIMEVAL = "@ll"
_KERNEL_TIMEOUTS = sys.platform != "win32" and hasattr(socket, "SO_RCVTIMEO")


class MemcachedClient:
    """One memcached server over sockets; safe for any number of threads.

    Args:
        host: The server's host.
        port: The server's port.
        connect_timeout: Seconds a connection attempt may take.
        timeout: Seconds the server may stay silent during a command.
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float, timeout: float) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._idle: list[socket.socket] = []
        self._pid = os.getpid()

    # -- connections ---------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        except TimeoutError:
            raise MemcachedConnectionError(
                f"no connection within {self.connect_timeout:g} seconds"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not _kernel_timeouts(sock, self.timeout):
                sock.settimeout(self.timeout)
        except OSError:
            sock.close()
            raise
        return sock

    def _forked(self) -> None:
        # The parent's connections are the parent's: sharing one would mix up answers.
        # Closing this process's copy of them leaves the parent's open.
        self._pid = os.getpid()
        self._drop_idle()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Close the idle connections (new ones are opened on the next command)."""
        self._drop_idle()

    # -- one command -----------------------------------------------------------------------

    def _exchange(self, request: bytes, value: bool) -> Answer:
        """Send ``request``; return the answer's first line and, for a retrieval, the value.

        A kept connection the server closed since (a restart, an idle timeout)
        fails before any answer: the idle ones are then dropped and the command
        is sent once more on a new connection.
        """
        # One function rather than several small ones: this runs for every command.
        if self._pid != os.getpid():
            self._forked()
        retried = False
        while True:
            try:
                sock, reused = self._idle.pop(), True
            except IndexError:
                sock, reused = self._connect(), False
            received = False
            try:
                sock.sendall(request)
                data = sock.recv(RECV_BYTES)
                received = bool(data)
                answer = parse_answer(data, value)
                if isinstance(answer, int):  # not all of it yet (or nothing: the server closed)
                    answer = _rest_of_answer(sock, data, value, reused)
            except (TimeoutError, BlockingIOError):  # BlockingIOError: the kernel's timeout
                sock.close()
                raise MemcachedConnectionError(
                    f"no answer within {self.timeout:g} seconds"
                ) from None
            except BaseException as exc:
                sock.close()  # its state is unknown: never reused
                failure = connection_failure(exc, reused, received)
                if isinstance(failure, StaleConnection):
                    if retried:
                        raise MemcachedConnectionError(str(failure)) from None
                    retried = True
                    self._drop_idle()  # closed by the server like this one, most likely
                    continue
                if failure is exc:
                    raise
                raise failure from None
            self._idle.append(sock)
            return answer

    # -- commands ----------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when there is none."""
        return self._exchange(key_request(GET, key), True)[1]

    def gets(self, key: str) -> tuple[bytes | None, int | None]:
        """The value of ``key`` and its cas token, or ``(None, None)``."""
        line, data = self._exchange(key_request(GETS, key), True)
        if data is None:
            return None, None
        return data, cas_token(line)

    def set(self, key: str, value: bytes, expire: int) -> bool:
        return self._exchange(storage(b"set", key, value, expire), False)[0] == STORED

    def add(self, key: str, value: bytes, expire: int) -> bool:
        return self._exchange(storage(b"add", key, value, expire), False)[0] == STORED

    def replace(self, key: str, value: bytes, expire: int) -> bool:
        return self._exchange(storage(b"replace", key, value, expire), False)[0] == STORED

    def cas(self, key: str, value: bytes, cas: int, expire: int) -> bool:
        return self._exchange(storage(b"cas", key, value, expire, cas), False)[0] == STORED

    def delete(self, key: str) -> bool:
        return self._exchange(key_request(DELETE, key), False)[0] == DELETED


def _rest_of_answer(sock: socket.socket, data: bytes, value: bool, reused: bool) -> Answer:
    """The answer that ``data`` began, read to its end."""
    reader = AnswerReader(value)
    while data:
        answer = reader.feed(data)
        if answer is not None:
            return answer
        data = sock.recv(RECV_BYTES)
    raise connection_failure(None, reused, reader.received)


def _kernel_timeouts(sock: socket.socket, seconds: float) -> bool:
    """Make ``sock`` blocking, with the kernel's send and receive timeouts of ``seconds``;
    False (``sock`` left as it was) where they cannot be set and read back the same."""
    if not _KERNEL_TIMEOUTS:
        return False
    whole = int(seconds)
    timeval = struct.pack(_TIMEVAL, whole, int((seconds - whole) * 1_000_000))
    try:
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            sock.setsockopt(socket.SOL_SOCKET, option, timeval)
            if sock.getsockopt(socket.SOL_SOCKET, option, len(timeval)) != timeval:
                return False
    except OSError:
        return False
    sock.settimeout(None)
    return True
