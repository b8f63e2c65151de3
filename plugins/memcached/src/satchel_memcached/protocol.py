"""memcached's text protocol without I/O: what the driver's own clients send and read.

The sync client (:mod:`satchel_memcached.client`) and the asyncio one
(:mod:`satchel_memcached.aio`) differ only in how bytes travel; the requests
they send, how an answer is recognised as complete, and what a failure on a
connection means are all here. Values are bytes stored with flags 0, as
pymemcache stores them by default, so every client of the driver shares a store.
"""

from __future__ import annotations

Answer = tuple[bytes, "bytes | None"]

# Past this many bytes without a line end, the peer is not a memcached.
MAX_LINE_BYTES = 4096
END = b"END\r\n"
STORED = b"STORED\r\n"
DELETED = b"DELETED\r\n"
_VALUE_END = b"\r\nEND\r\n"
_ANSWERS = frozenset({STORED, b"NOT_STORED\r\n", b"EXISTS\r\n", b"NOT_FOUND\r\n", DELETED, END})


class MemcachedServerError(Exception):
    """The server answered with an error (``ERROR``, ``CLIENT_ERROR``, ``SERVER_ERROR``)
    or with something this client does not understand."""


class MemcachedConnectionError(OSError):
    """A connection could not be made, broke, or gave no answer in time."""


class StaleConnection(Exception):
    """A kept connection turned out closed before the server answered anything:
    the command may be sent once more, on a new connection."""


# -- requests ------------------------------------------------------------------------------


def key_request(command: bytes, key: str) -> bytes:
    """A command on ``key`` alone: ``get``, ``gets``, ``delete``."""
    return command + key.encode("ascii") + b"\r\n"


def storage(command: bytes, key: str, value: bytes, expire: int, cas: int | None = None) -> bytes:
    """``set``/``add``/``replace``/``cas`` of ``value`` (flags 0) under ``key``."""
    header = b"%s %s 0 %d %d" % (command, key.encode("ascii"), expire, len(value))
    if cas is not None:
        header += b" %d" % cas
    return header + b"\r\n" + value + b"\r\n"


GET = b"get "
GETS = b"gets "
DELETE = b"delete "


def cas_token(line: bytes) -> int:
    """The cas token of a ``gets`` answer's ``VALUE`` line."""
    return int(line.split()[4])


# -- answers -------------------------------------------------------------------------------


def parse_answer(buffer: bytes, value: bool) -> Answer | int:
    """One command's whole answer, as its first line and, for a retrieval, the value;
    or, while ``buffer`` holds only part of it, the size it needs at least.

    Raises:
        MemcachedServerError: An error answer, or bytes no memcached would send.
    """
    end = buffer.find(b"\r\n")
    if end < 0:
        if len(buffer) > MAX_LINE_BYTES:
            raise MemcachedServerError("an answer line too long to be memcached's")
        return len(buffer) + 1
    start = end + 2  # where the value begins, if any
    if value and buffer.startswith(b"VALUE "):
        try:  # VALUE <key> <flags> <bytes> [<cas unique>]
            size = int(buffer[6:end].split(b" ")[2])
        except (IndexError, ValueError):
            raise MemcachedServerError("a malformed value line in the answer") from None
        total = start + size + len(_VALUE_END)
        length = len(buffer)
        if length < total:
            return total
        if length > total or not buffer.endswith(_VALUE_END):
            raise MemcachedServerError("a malformed value in the answer")
        return buffer[:start], buffer[start : start + size]
    line = buffer[:start]
    if line not in _ANSWERS:
        text = line.decode("ascii", "replace").strip()[:200]
        raise MemcachedServerError(f"the server answered {text!r}")
    if len(buffer) > start:
        raise MemcachedServerError("more in the answer than one command's")
    return line, None


class AnswerReader:
    """Gathers one command's answer from the bytes as they arrive, in any pieces."""

    __slots__ = ("_needed", "_pieces", "_size", "value")

    def __init__(self, value: bool) -> None:
        self.value = value
        self._pieces: list[bytes] = []
        self._size = 0
        self._needed = 0

    @property
    def received(self) -> bool:
        """Whether part of an answer came in (then the connection was not merely stale)."""
        return bool(self._pieces)

    def feed(self, data: bytes) -> Answer | None:
        """The answer once ``data`` completes it, else None (more is to come)."""
        if self._pieces:
            self._pieces.append(data)
            self._size += len(data)
            if self._size < self._needed:
                return None
            data = b"".join(self._pieces)
        answer = parse_answer(data, self.value)
        if isinstance(answer, int):
            self._pieces = [data]
            self._size = len(data)
            self._needed = answer
            return None
        self._pieces = []
        return answer


def connection_failure(exc: BaseException | None, reused: bool, received: bool) -> BaseException:
    """What a connection's failure during a command is raised as.

    ``exc`` is None when the server closed the connection. A kept connection
    (``reused``) that failed before any answer came in was closed by the server
    while idle (a restart, an idle timeout): a :class:`StaleConnection`.
    """
    if exc is None:
        message = "the server closed the connection"
        if reused and not received:
            return StaleConnection(message)
        return MemcachedConnectionError(message)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) and reused and not received:
        return StaleConnection(f"{type(exc).__name__}: {exc}")
    return exc
