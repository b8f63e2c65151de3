"""The driver contract: what every session store implements.

After PHP's ``SessionHandlerInterface``: six methods over strings. Core does
the serialising, encrypting, expiry and id hashing; a driver only stores the
string it is handed under the key it is handed. The ``session_id`` a
server-side driver sees is a digest of the cookie's id, 64 lowercase hex
characters (:meth:`satchel.SessionManager.storage_key`).

Optional capabilities, detected by core with ``isinstance`` on the
``Supports*`` protocols below:

* ``lock(session_id, lock_seconds=..., wait_seconds=...)``: a context manager
  holding a per-session lock for session blocking, raising
  :class:`satchel.LockTimeout` when the wait runs out;
* ``write_with_metadata(session_id, data, metadata)``: store request
  metadata (client address, user agent, the session's values) beside the
  payload, as the database driver does;
* ``write_existing(session_id, data, metadata)``: write only if a record
  still exists, atomically, and say whether it did. Core saves a session it
  loaded from the store this way, so a request that started before another
  one ended the session (logout, ``regenerate(destroy=True)``) can never
  bring it back. Without it, core reads the record first (one more round
  trip, and a small race window).

A driver whose store no other process can reach (``array``, ``null``) sets
the class attribute ``process_local = True``; core then does not warn that
applications sharing the store without a ``secret_key`` share sessions.

An async twin implements :class:`AsyncSessionHandler` with the same methods as
coroutines (``lock`` then returns an async context manager).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import attrs

if TYPE_CHECKING:  # for mypy only: no runtime dependency on typing_extensions
    from typing_extensions import TypeIs


@attrs.frozen
class RequestMetadata:
    """What the web glue knows about the request that writes a session.

    Attributes:
        ip_address: The client's address, as the server saw it.
        user_agent: The ``User-Agent`` header, if any.
        values: The application's session values at save time, so a driver
            can index one of them (the database driver's ``user_id``); always
            empty with ``encrypt = true``, so no plaintext reaches the store.
    """

    ip_address: str | None = None
    user_agent: str | None = None
    values: Mapping[str, Any] = attrs.field(factory=dict)


class SessionHandler(abc.ABC):
    """A synchronous session store."""

    def open(self, save_path: str, session_name: str) -> bool:
        """Prepare the store; most drivers need nothing here."""
        return True

    def close(self) -> bool:
        """Release what ``open`` took; most drivers need nothing here."""
        return True

    @abc.abstractmethod
    def read(self, session_id: str) -> str:
        """Return the stored payload, or ``""`` when there is none or it expired."""

    @abc.abstractmethod
    def write(self, session_id: str, data: str) -> bool:
        """Store the payload string under ``session_id``."""

    @abc.abstractmethod
    def destroy(self, session_id: str) -> bool:
        """Remove one session; removing a missing one is not an error."""

    @abc.abstractmethod
    def gc(self, lifetime: int) -> int:
        """Remove sessions idle for more than ``lifetime`` seconds; return how many."""


class AsyncSessionHandler(abc.ABC):
    """The async twin of :class:`SessionHandler`, awaited by the ASGI middleware."""

    async def open(self, save_path: str, session_name: str) -> bool:
        """Prepare the store; most drivers need nothing here."""
        return True

    async def close(self) -> bool:
        """Release what ``open`` took; most drivers need nothing here."""
        return True

    @abc.abstractmethod
    async def read(self, session_id: str) -> str:
        """Return the stored payload, or ``""`` when there is none or it expired."""

    @abc.abstractmethod
    async def write(self, session_id: str, data: str) -> bool:
        """Store the payload string under ``session_id``."""

    @abc.abstractmethod
    async def destroy(self, session_id: str) -> bool:
        """Remove one session; removing a missing one is not an error."""

    @abc.abstractmethod
    async def gc(self, lifetime: int) -> int:
        """Remove sessions idle for more than ``lifetime`` seconds; return how many."""


@runtime_checkable
class SupportsLock(Protocol):
    """A store that can hold a per-session lock for session blocking.

    The lock expires by itself after ``lock_seconds`` (a holder that died
    never blocks forever); waiting longer than ``wait_seconds`` raises
    :class:`satchel.LockTimeout`. Releasing never frees a lock another holder
    took after this one expired. Once released, a lock on an id with no session
    leaves no record in the store: core locks every request that carries a
    well-formed id, made-up ones included.
    """

    def lock(
        self, session_id: str, *, lock_seconds: float, wait_seconds: float
    ) -> AbstractContextManager[None]: ...


@runtime_checkable
class SupportsMetadata(Protocol):
    """A store that keeps request metadata beside the payload."""

    def write_with_metadata(
        self, session_id: str, data: str, metadata: RequestMetadata
    ) -> bool: ...


@runtime_checkable
class SupportsWriteExisting(Protocol):
    """A store that can write a session only if its record still exists (atomically).

    Returns False, writing nothing, when the record is gone (destroyed or
    expired). ``metadata`` is handed over as to ``write_with_metadata``, for
    the drivers that keep it.
    """

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool: ...


@runtime_checkable
class AsyncSupportsLock(Protocol):
    """The async form of :class:`SupportsLock`."""

    def lock(
        self, session_id: str, *, lock_seconds: float, wait_seconds: float
    ) -> AbstractAsyncContextManager[None]: ...


@runtime_checkable
class AsyncSupportsWriteExisting(Protocol):
    """The async form of :class:`SupportsWriteExisting`."""

    async def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool: ...


@runtime_checkable
class AsyncSupportsMetadata(Protocol):
    """The async form of :class:`SupportsMetadata`."""

    async def write_with_metadata(
        self, session_id: str, data: str, metadata: RequestMetadata
    ) -> bool: ...


@runtime_checkable
class SupportsBatchedGc(Protocol):
    """A store that prunes in bounded batches, so ``satchel gc`` can show progress.

    ``count_expired`` gives the total to expect (or ``None`` when unknown);
    ``gc_batches`` removes in batches and yields the number removed by each.
    """

    def count_expired(self, lifetime: int) -> int | None: ...

    def gc_batches(self, lifetime: int) -> Iterator[int]: ...


Capability = TypeVar("Capability")
_known_capabilities: dict[tuple[type, type], bool] = {}


def supports(handler: object, capability: type[Capability]) -> TypeIs[Capability]:
    """``isinstance(handler, capability)`` for the ``Supports*`` protocols, remembered per class.

    A runtime protocol check looks up every member of the protocol, and the
    web glue asks on every request. A class that makes attributes up in
    ``__getattr__`` is asked each time.
    """
    kind = type(handler)
    if hasattr(kind, "__getattr__"):
        return isinstance(handler, capability)
    key = (kind, capability)
    found = _known_capabilities.get(key)
    if found is None:
        found = _known_capabilities[key] = isinstance(handler, capability)
    return found
