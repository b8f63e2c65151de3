"""Bounded waits for a pooled connection, for drivers whose client fails instead of waiting.

redis-py's pools (sync and asyncio; one server, Sentinel and Cluster alike)
and pymemcache's raise as soon as every connection is in use, so a burst of
requests turns into errors. A driver puts each command through slots sized
as its pool: a command then waits, at most ``timeout`` seconds, for one of
the pool's connections to come free, and past that raises
:class:`satchel.PoolExhausted`, which the web glue answers with 503 and
``Retry-After``. The pool itself can then never run out.

::

    slots = ConnectionSlots(
        size=100, timeout=10, driver="redis", address="redis://127.0.0.1:6379/0"
    )
    with slots:
        client.get(key)
"""

from __future__ import annotations

import asyncio
import collections
import queue

import attrs

from satchel.errors import PoolExhausted


@attrs.define(kw_only=True)
class _Slots:
    """What both forms share: the size, the wait and the error past it.

    Attributes:
        size: How many commands may run at once: the pool's number of connections.
        timeout: Seconds a command waits for a free slot.
        driver: The driver's name, for the error.
        address: The store's address (never with a password), for the error.
        size_option: The option that sets ``size``, for the error.
    """

    size: int = attrs.field(validator=attrs.validators.ge(1))
    timeout: float
    driver: str
    address: str
    size_option: str = "max_connections"

    def exhausted(self) -> PoolExhausted:
        """The error for a command that waited the whole timeout for a connection."""
        return PoolExhausted(
            self.driver,
            self.address,
            f"no connection came free within {self.timeout:g} seconds: all {self.size} "
            f"were in use (options.{self.size_option}, options.pool_timeout)",
        )


@attrs.define(kw_only=True)
class ConnectionSlots(_Slots):
    """At most ``size`` commands at once across threads; ``with slots:`` waits for a free one.

    Raises :class:`satchel.PoolExhausted` naming the driver and its address
    when none came free within ``timeout`` seconds.
    """

    # One token per slot. SimpleQueue is C code: taking a free slot costs about what a
    # lock does, where threading.Semaphore's Python-level Condition costs ten times that.
    _tokens: queue.SimpleQueue[None] = attrs.field(init=False)

    @_tokens.default
    def _all_tokens(self) -> queue.SimpleQueue[None]:
        tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(self.size):
            tokens.put(None)
        return tokens

    def __enter__(self) -> None:
        try:
            self._tokens.get(timeout=self.timeout)
        except queue.Empty:
            raise self.exhausted() from None

    def __exit__(self, *exc_info: object) -> None:
        self._tokens.put(None)


# Its count changes on every command: no converter or validator runs on a set.
@attrs.define(kw_only=True, on_setattr=attrs.setters.NO_OP)
class AsyncConnectionSlots(_Slots):
    """The asyncio form (``async with slots:``), for the connections of one event loop.

    Waiters are served in arrival order, and a slot freed while its waiter is
    being cancelled goes to the next one, so no slot is ever lost.
    """

    _free: int = attrs.field(init=False)
    # Futures of the waiting commands: True once handed a slot, False once timed out.
    _waiters: collections.deque[asyncio.Future[bool]] = attrs.field(
        init=False, factory=collections.deque
    )

    @_free.default
    def _all_free(self) -> int:
        return self.size

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.timeout, _expire, waiter)
        try:
            granted = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release()  # handed a slot just as the task was cancelled: pass it on
            raise
        finally:
            timer.cancel()
        if not granted:
            raise self.exhausted()

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # not timed out nor cancelled: it takes this slot
                waiter.set_result(True)
                return
        self._free += 1


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
