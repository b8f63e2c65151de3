"""Session locks with tokens and expiry: the one lock helper every driver uses.

A store lock is two operations on the store: one attempt to take the lock for a
random token (``try_acquire(token) -> bool``, the record expiring by itself
after ``lock_seconds``), and a release that frees it only while it still holds
that token (``release(token)``). :class:`TokenLock` and :class:`AsyncTokenLock`
turn those into the context manager ``SessionHandler.lock`` returns: they make
the token, poll until the lock is taken or ``wait_seconds`` run out
(:class:`satchel.LockTimeout`), and release on the way out.

They are classes, not ``@contextmanager`` generators, for these reasons:

* A generator suspended at its ``yield`` is finalised when it is garbage
  collected: ``close()`` throws ``GeneratorExit`` into it and its ``finally``
  releases the lock then, in whatever thread (an event loop's, say) and at
  whatever moment (interpreter shutdown) the collector runs, with network I/O.
  An async generator is worse off: its ``finally`` may only run on the event
  loop's own schedule, or not at all once the loop is closed. A lock that is
  entered and never exited here is simply left to expire after
  ``lock_seconds``, like the lock of a holder that died.
* An attempt that fails half-way (the store took the lock but the reply was
  lost: a timeout, a dropped connection, a cancelled task) may leave the lock
  held; the failure is re-raised after a token-checked release, which frees
  the lock only if that attempt did take it. A generator gets no such chance:
  its ``finally`` is only entered after the ``yield``.
* The async release runs shielded in its own task: a cancellation of the
  request (asyncio's, or anyio's cancel scope that cancels again at every
  ``await``) cannot cut it off half-way, and the lock is freed for the next
  request instead of blocking it for ``lock_seconds``.
* When the block raised and the release fails too, the block's error is the
  one raised (the release's is logged): it says what went wrong first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

from satchel.errors import LockTimeout

Acquired = TypeVar("Acquired")
Released = TypeVar("Released")

POLL_SECONDS = 0.05  # Laravel polls its cache lock every 50 ms as well

logger = logging.getLogger("satchel.locking")

# Releases still running after their waiter was cancelled: kept referenced until done.
_releases_in_flight: set[asyncio.Future[object]] = set()


def new_lock_token() -> str:
    """A random token naming one holder of a lock, so only it can release it."""
    return secrets.token_hex(16)


def wait_for_lock(
    try_acquire: Callable[[], bool], *, wait_seconds: float, description: str
) -> None:
    """Call ``try_acquire`` until it returns True or ``wait_seconds`` run out (``LockTimeout``)."""
    deadline = time.monotonic() + wait_seconds
    while not try_acquire():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(f"could not lock {description} within {wait_seconds:g} seconds")
        time.sleep(min(POLL_SECONDS, remaining))


async def await_lock(
    try_acquire: Callable[[], Awaitable[bool]], *, wait_seconds: float, description: str
) -> None:
    """The async form of :func:`wait_for_lock`."""
    deadline = time.monotonic() + wait_seconds
    while not await try_acquire():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(f"could not lock {description} within {wait_seconds:g} seconds")
        await asyncio.sleep(min(POLL_SECONDS, remaining))


def _log_release_failure(description: str, error: BaseException) -> None:
    logger.warning(
        "could not release the lock of %s (it expires by itself): %s: %s",
        description,
        type(error).__name__,
        error,
    )


class _TokenLockBase(Generic[Acquired, Released]):
    def __init__(
        self,
        try_acquire: Callable[[str], Acquired],
        release: Callable[[str], Released],
        *,
        wait_seconds: float,
        description: str,
    ) -> None:
        self.token = new_lock_token()
        self._try_acquire = try_acquire
        self._release = release
        self._wait_seconds = wait_seconds
        self._description = description


class TokenLock(_TokenLockBase[bool, object]):
    """The lock of one session, held for a ``with`` block: ``with TokenLock(...):``.

    Args:
        try_acquire: One attempt to take the lock for the token it is given;
            True when the token holds it now. The store record must expire by
            itself after the lock's ``lock_seconds``.
        release: Frees the lock if, and only if, it still holds the token it
            is given (never another holder's); a missing lock is no error.
        wait_seconds: How long to keep trying before :class:`satchel.LockTimeout`.
        description: What is locked, for the timeout's message ("a redis session").

    Attributes:
        token: This holder's random token (:func:`new_lock_token`).
    """

    def __enter__(self) -> None:
        try:
            wait_for_lock(
                lambda: self._try_acquire(self.token),
                wait_seconds=self._wait_seconds,
                description=self._description,
            )
        except LockTimeout:
            raise  # every attempt was refused: nothing of ours is held
        except BaseException:
            # The failed attempt may have taken the lock before it failed.
            try:
                self._release(self.token)
            except Exception as error:  # the attempt's own error is the one raised
                _log_release_failure(self._description, error)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._release(self.token)
        except Exception as error:
            if exc is None:
                raise
            _log_release_failure(self._description, error)


class AsyncTokenLock(_TokenLockBase[Awaitable[bool], Awaitable[object]]):
    """The async form of :class:`TokenLock`: ``async with AsyncTokenLock(...):``.

    ``try_acquire`` and ``release`` are coroutine functions; the release runs
    shielded in its own task, so a cancelled request still frees its lock.
    """

    async def __aenter__(self) -> None:
        try:
            await await_lock(
                lambda: self._try_acquire(self.token),
                wait_seconds=self._wait_seconds,
                description=self._description,
            )
        except LockTimeout:
            raise
        except BaseException:
            try:
                await self._shielded_release()
            except Exception as error:  # the attempt's own error is the one raised
                _log_release_failure(self._description, error)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self._shielded_release()
        except Exception as error:
            if exc is None:
                raise
            _log_release_failure(self._description, error)

    async def _shielded_release(self) -> None:
        task = asyncio.ensure_future(self._release(self.token))
        _releases_in_flight.add(task)
        task.add_done_callback(_releases_in_flight.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # This waiter is cancelled; the release goes on, and says if it fails.
            task.add_done_callback(self._log_late_failure)
            raise

    def _log_late_failure(self, task: asyncio.Future[object]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            _log_release_failure(self._description, error)
