"""``SessionManager``: resolves the configured driver by name and makes sessions."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

from satchel.config import SessionConfig
from satchel.errors import ConfigError
from satchel.handler import (
    AsyncSessionHandler,
    AsyncSupportsLock,
    RequestMetadata,
    SessionHandler,
    SupportsBatchedGc,
    SupportsLock,
    supports,
)
from satchel.ids import is_valid_id
from satchel.lifecycle import Expiry
from satchel.plugins import LoadedPlugins, installed_plugins
from satchel.records import AsyncDriverCalls, DriverCalls, RecordCodec
from satchel.registry import AsyncHandlerFactory, DriverSpec, HandlerFactory
from satchel.store import Session
from satchel.threaded import ThreadedAsyncHandler

Clock = Callable[[], float]
GcProgress = Callable[[int, "int | None"], None]
logger = logging.getLogger("satchel")


class _HeldLock:
    """A request lock (``block = true``) the current context holds, until it is released.

    Released is a flag rather than a context variable reset, because the lock
    may be let go in another task than the one that took it (an ASGI app can
    send its response from a task of its own); tasks copied from this context
    see the flag change too.
    """

    def __init__(self, manager: SessionManager, key: str) -> None:
        self.manager = manager
        self.key = key
        self.held = True


# The request locks held by this thread or task (and the tasks it started). Session
# saves look here so merge_on_save does not take a lock its own request already holds:
# the driver locks are not reentrant.
_held_locks: contextvars.ContextVar[tuple[_HeldLock, ...]] = contextvars.ContextVar(
    "satchel_held_locks", default=()
)


class SessionManager:
    """Builds the configured driver on first use and makes :class:`Session` objects.

    ``clock`` (a callable returning Unix seconds) decides every expiry, so
    tests can move time without sleeping.
    """

    def __init__(
        self,
        config: SessionConfig | None = None,
        clock: Clock | None = None,
        *,
        plugins: LoadedPlugins | None = None,
    ) -> None:
        self.config = config if config is not None else SessionConfig()
        self.clock: Clock = clock or time.time
        self._plugins = plugins
        self._extensions: dict[str, DriverSpec] = {}
        self._handler: SessionHandler | None = None
        self._async_handler: AsyncSessionHandler | None = None
        self._mutex = threading.Lock()
        self._warned_unkeyed = False
        self._driver_calls: DriverCalls | None = None
        self._async_driver_calls: AsyncDriverCalls | None = None
        self._stores_in_cookie: bool | None = None
        # Storage keys and sealing, every key derived once, here.
        self.codec = RecordCodec(self.config)
        self.expiry = Expiry.from_config(self.config)
        chances, out_of = self.config.lottery
        self._lottery_odds = chances / out_of if out_of else 0.0
        self.encrypter = self.codec.encrypter

    # -- storage keys ----------------------------------------------------------------

    def storage_key(self, session_id: str) -> str:
        """The key the driver stores the session of ``session_id`` under (64 hex characters).

        With ``secret_key``, HMAC-SHA256 of the id under a key derived from the
        secret, so apps with different secrets never read each other's
        sessions from one store; without one, the plain SHA-256 of the id.
        Either way a dump of the store holds no id that could be replayed as a
        cookie. Every piece of satchel that names a session to a driver uses this.
        """
        return self.codec.storage_key(session_id)

    def fallback_storage_keys(self, session_id: str) -> list[str]:
        """Where the session may still be stored under a ``secret_key_fallbacks`` key, in order.

        Read only when :meth:`storage_key` holds nothing; a session found there
        is moved to :meth:`storage_key` at its next save.
        """
        return self.codec.fallback_storage_keys(session_id)

    # -- drivers -----------------------------------------------------------------

    def extend(
        self,
        name: str,
        factory: HandlerFactory,
        async_factory: AsyncHandlerFactory | None = None,
    ) -> None:
        """Register a driver at run time; it wins over a plugin of the same name.

        ``factory(config)`` must return a :class:`SessionHandler` (and
        ``async_factory(config)`` an :class:`AsyncSessionHandler`): anything
        else is a ``TypeError`` naming the driver when it is first used.
        """
        with self._mutex:
            self._extensions[name] = DriverSpec(name, factory, async_factory)
            if name == self.config.driver:
                self._handler = None
                self._async_handler = None
                self._driver_calls = None
                self._async_driver_calls = None
                self.__dict__.pop("stores_in_cookie", None)  # the next driver decides

    def driver_spec(self) -> DriverSpec:
        """The spec of the configured driver (``UnknownDriverError`` when there is none)."""
        name = self.config.driver
        if name in self._extensions:
            return self._extensions[name]
        plugins = self._plugins if self._plugins is not None else installed_plugins()
        return plugins.driver_spec(name)

    def handler(self) -> SessionHandler:
        """The configured driver's sync handler, built on first use."""
        handler = self._handler
        if handler is None:
            with self._mutex:
                if self._handler is None:
                    self._handler = self._checked(self.driver_spec().build(self.config))
                handler = self._handler
        return handler

    def async_handler(self) -> AsyncSessionHandler:
        """The async twin, or the sync handler run in worker threads."""
        handler = self._async_handler
        if handler is None:
            spec = self.driver_spec()
            with self._mutex:
                if self._async_handler is None:
                    if spec.async_factory is not None:
                        twin = spec.build_async(self.config)
                        if self.config.merge_on_save and not supports(twin, AsyncSupportsLock):
                            raise ConfigError(
                                "merge_on_save",
                                f"driver {self.config.driver!r} offers no async lock to merge under",
                            )
                        self._async_handler = twin
                    else:
                        sync = self._handler or self._checked(spec.build(self.config))
                        self._handler = sync
                        self._async_handler = ThreadedAsyncHandler(sync)
                handler = self._async_handler
        return handler

    def driver_calls(self) -> DriverCalls:
        """The sync handler's calls, as a session's load and save make them."""
        calls = self._driver_calls
        if calls is None or calls.handler is not self._handler:
            calls = self._driver_calls = DriverCalls(self.handler())
        return calls

    def async_driver_calls(self) -> AsyncDriverCalls:
        """The async handler's calls, as a session's load and save make them."""
        calls = self._async_driver_calls
        if calls is None or calls.handler is not self._async_handler:
            handler = self.async_handler()
            # A driver whose calls never wait is called directly, without a coroutine each.
            local = self.driver_calls() if getattr(handler, "runs_on_event_loop", False) else None
            calls = self._async_driver_calls = AsyncDriverCalls(handler, local)
        return calls

    def _checked(self, handler: SessionHandler) -> SessionHandler:
        # Merging re-reads and writes under the driver's lock; without one it
        # would lose the very writes it exists to keep.
        if self.config.merge_on_save and not supports(handler, SupportsLock):
            raise ConfigError(
                "merge_on_save", f"driver {self.config.driver!r} offers no lock to merge under"
            )
        return handler

    def warn_if_shared_store(self) -> None:
        """Warn once when sessions go to a store other apps may share, keyed by no secret.

        Called as sessions load, so commands that only prune or migrate stay quiet.
        """
        if self._warned_unkeyed or self.codec.keyed:
            return
        self._warned_unkeyed = True
        handler: object = self._async_handler if self._handler is None else self._handler
        if handler is None:
            handler = self.handler()
        if _unshared(handler):
            return
        logger.warning(
            "satchel: driver %r stores sessions without a secret_key: another application that "
            "uses the same store (the same Redis database and prefix, table or folder) would "
            "share its sessions. Set secret_key (make one with `satchel key:generate`), or give "
            "each application its own prefix, table or files folder.",
            self.config.driver,
        )

    # Cached in the instance once the driver is built: every load and save asks.
    @functools.cached_property
    def stores_in_cookie(self) -> bool:
        """Whether the configured driver keeps the payload in the cookie itself."""
        return bool(getattr(self.handler(), "stores_in_cookie", False))

    # -- sessions ------------------------------------------------------------------

    def lazy(self, cookie: str | None, *, metadata: RequestMetadata | None = None) -> Session:
        """A session for the request's cookie value that reads nothing until first used."""
        return Session(self, cookie, metadata=metadata)

    def start(self, cookie: str | None, *, metadata: RequestMetadata | None = None) -> Session:
        """A session read now through the sync driver.

        ``None``, an unknown, expired or malformed id gives a new session with a fresh id.
        """
        session = self.lazy(cookie, metadata=metadata)
        session.load()
        return session

    async def astart(
        self, cookie: str | None, *, metadata: RequestMetadata | None = None
    ) -> Session:
        """A session read now through the async driver."""
        session = self.lazy(cookie, metadata=metadata)
        await session.aload()
        return session

    # -- locks -----------------------------------------------------------------------

    def _blocks(self, block: bool | None) -> bool:
        return self.config.block if block is None else block

    def check_blocking(self, block: bool | None = None) -> None:
        """Refuse ``block = true`` with a driver that cannot lock (at start-up, not per request).

        ``block`` overrides the config's for one app (the middlewares' ``block`` argument).
        """
        if not self._blocks(block):
            return
        if not supports(self.handler(), SupportsLock):
            raise ConfigError(
                "block", f"driver {self.config.driver!r} offers no lock for session blocking"
            )

    @contextlib.contextmanager
    def lock(self, cookie: str | None, *, block: bool | None = None) -> Iterator[None]:
        """Hold the session's lock (when ``block`` and the cookie carries a valid id).

        ``block`` overrides the config's for one app.
        """
        if not is_valid_id(cookie):
            yield
            return
        assert cookie is not None
        with self.lock_record(self.storage_key(cookie), block=block):
            yield

    @contextlib.asynccontextmanager
    async def alock(self, cookie: str | None, *, block: bool | None = None) -> AsyncIterator[None]:
        """The async form of :meth:`lock`."""
        if not is_valid_id(cookie):
            yield
            return
        assert cookie is not None
        async with self.alock_record(self.storage_key(cookie), block=block):
            yield

    @contextlib.contextmanager
    def lock_record(self, key: str, *, block: bool | None = None) -> Iterator[None]:
        """Hold the lock on the stored record ``key`` (when ``block`` and the driver can lock).

        For glue whose session ids are not satchel's (the Django engine): it
        checks its own ids and hands the storage key.
        """
        if not self._blocks(block):
            yield
            return
        handler = self.handler()
        if not supports(handler, SupportsLock):
            yield
            return
        with (
            handler.lock(
                key,
                lock_seconds=self.config.block_lock_seconds,
                wait_seconds=self.config.block_wait_seconds,
            ),
            self._holding(key),
        ):
            yield

    @contextlib.asynccontextmanager
    async def alock_record(self, key: str, *, block: bool | None = None) -> AsyncIterator[None]:
        """The async form of :meth:`lock_record`."""
        if not self._blocks(block):
            yield
            return
        handler = self.async_handler()
        if not supports(handler, AsyncSupportsLock):
            yield
            return
        async with handler.lock(
            key,
            lock_seconds=self.config.block_lock_seconds,
            wait_seconds=self.config.block_wait_seconds,
        ):
            with self._holding(key):
                yield

    @contextlib.contextmanager
    def _holding(self, key: str) -> Iterator[None]:
        """Mark the lock on ``key`` as held by this context while the block runs."""
        held = _HeldLock(self, key)
        _held_locks.set((*(lock for lock in _held_locks.get() if lock.held), held))
        try:
            yield
        finally:
            held.held = False

    def holds_lock(self, key: str) -> bool:
        """Whether this thread or task holds the request lock (:meth:`lock`) on ``key``."""
        return any(
            lock.held and lock.manager is self and lock.key == key for lock in _held_locks.get()
        )

    # -- garbage collection ------------------------------------------------------------

    def lottery_wins(self) -> bool:
        """Draw the GC lottery: ``chances`` in ``out_of``.

        ``random``, not ``secrets``: the draw decides only when housekeeping runs.
        """
        return random.random() < self._lottery_odds  # noqa: S311

    def collect_garbage(self, progress: GcProgress | None = None) -> int:
        """Remove the sessions idle for longer than the lifetime; return how many."""
        handler = self.handler()
        lifetime = self.config.lifetime_seconds
        if progress is None or not supports(handler, SupportsBatchedGc):
            removed = handler.gc(lifetime)
            if progress is not None:
                progress(removed, removed)
            return removed
        total = handler.count_expired(lifetime)
        removed = 0
        for batch in handler.gc_batches(lifetime):
            removed += batch
            progress(removed, total)
        return removed

    async def acollect_garbage(self) -> int:
        """The async form of :meth:`collect_garbage` (without progress).

        A driver whose calls never wait and whose store is this process's memory
        or the cookie (``array``, ``null``, ``cookie``) collects right here: a
        worker thread would cost more than the collection.
        """
        local = self.async_driver_calls().local
        if local is not None and _unshared(local.handler):
            return local.handler.gc(self.config.lifetime_seconds)
        return await self.async_handler().gc(self.config.lifetime_seconds)


def _unshared(handler: object) -> bool:
    """Whether ``handler``'s store is this process's memory or the cookie itself: no other
    application reaches it, and nothing in it waits on I/O."""
    return bool(
        getattr(handler, "process_local", False) or getattr(handler, "stores_in_cookie", False)
    )
