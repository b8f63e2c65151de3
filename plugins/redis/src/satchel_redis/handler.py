"""The ``redis`` session handlers: sync and asyncio, on satchel-redis's own RESP2
clients for one plain server (:mod:`satchel_redis.native`), on redis-py otherwise.

One round trip per operation: ``GET`` to read, ``SET … EX`` to write (``SET
… EX … XX`` to write only over a record that still exists),
``DEL`` to destroy. Redis expires keys itself, so ``gc``
has nothing to do. The session lock is ``SET NX PX`` with a random token,
released by a Lua script that deletes the key only while it still holds that
token, so a holder whose lock expired never frees the next holder's lock.

Behind Sentinel, a master set up with ``min-replicas-to-write`` refuses writes
(``NOREPLICAS``) as soon as a Sentinel promotes its replica; the handler then
asks the Sentinels for the new master and sends the refused command there.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    nullcontext,
)
from typing import Any, TypeVar

import redis
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.exceptions
import redis.sentinel

from satchel import (
    AsyncSessionHandler,
    ConfigError,
    RequestMetadata,
    SessionBackendError,
    SessionConfig,
    SessionHandler,
)
from satchel.toolkit import (
    AsyncConnectionSlots,
    AsyncTokenLock,
    ConnectionSlots,
    StoreErrors,
    ThreadedAsyncHandler,
    TokenLock,
    decode_payload,
)
from satchel_redis.connection import (
    build_async_client,
    build_sync_client,
    describe_client,
    parse_connection,
)
from satchel_redis.native import NativeRedisClient
from satchel_redis.options import RedisOptions

DRIVER = "redis"
LOCK_INFIX = "lock:"
T = TypeVar("T")

# Delete the lock only while it still holds this holder's token: a holder whose
# lock expired and was taken by another request must not free that request's lock.
RELEASE_SCRIPT = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"""

# Failures of the store itself; anything else is a bug and propagates as it is.
STORE_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
# What a master configured with min-replicas-to-write answers once its replica is
# gone, as when a Sentinel has just promoted that replica. The write was refused.
NO_REPLICAS = "NOREPLICAS"
# What redis-py's BlockingConnectionPool raises once its timeout passed without a free connection.
POOL_WAIT_TIMED_OUT = "No connection available."


def _pool_ran_out(exc: BaseException) -> bool:
    """True when the client's own pool had no connection to give (a client handed in)."""
    return isinstance(exc, redis.exceptions.MaxConnectionsError) or (
        isinstance(exc, redis.exceptions.ConnectionError) and str(exc) == POOL_WAIT_TIMED_OUT
    )


def _refused_for_lack_of_replicas(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(NO_REPLICAS)


class _RedisKeys:
    """Key naming and error wrapping shared by the sync and async handlers."""

    prefix: str
    address: str
    errors: StoreErrors
    lifetime_seconds: int

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}{session_id}"

    def _lock_key(self, session_id: str) -> str:
        # Session keys are hex digests, so the "lock:" infix never meets one.
        return f"{self.prefix}{LOCK_INFIX}{session_id}"

    def _error(self, action: str, exc: BaseException) -> SessionBackendError:
        return self.errors.error(exc, action)

    # The session commands go to ``execute_command`` with their arguments ready:
    # redis-py's ``get``/``set`` wrappers check and rebuild the same arguments on
    # every call. The replies pass through the same response callbacks.

    def _get_args(self, session_id: str) -> tuple[tuple[str, ...], dict[str, Any]]:
        key = self._key(session_id)
        return ("GET", key), {"keys": [key]}

    def _set_args(self, session_id: str, data: str, *, existing: bool) -> tuple[Any, ...]:
        command = ("SET", self._key(session_id), data, "EX", self.lifetime_seconds)
        return (*command, "XX") if existing else command


def _slot_settings(options: RedisOptions, address: str) -> dict[str, Any]:
    """The slots of a pool the driver builds: as many as its connections."""
    return {
        "size": options.max_connections,
        "timeout": options.pool_timeout,
        "driver": DRIVER,
        "address": address,
    }


def _resolve_options(config: SessionConfig) -> RedisOptions:
    return config.structure_options(RedisOptions, driver=DRIVER).check()


class RedisSessionHandler(_RedisKeys, SessionHandler):
    """Sessions in Redis (one server, Sentinel or Cluster), through the native client
    (:class:`~satchel_redis.native.NativeRedisClient`) or a redis-py client.

    Build it from a config with :meth:`from_config`, or hand it a ready client:
    ``RedisSessionHandler(client, lifetime_seconds=7200)``. A client handed in is
    used as it is and never closed by the driver. ``slots`` (made for the pool
    of a client the driver built) make a command wait for a free connection
    instead of failing when the pool is in use.
    """

    def __init__(
        self,
        client: Any,
        *,
        lifetime_seconds: int,
        prefix: str = "satchel:",
        address: str | None = None,
        owns_client: bool = False,
        slots: ConnectionSlots | None = None,
    ) -> None:
        if client is None:
            raise TypeError("RedisSessionHandler needs a redis-py client")
        self.client = client
        self.lifetime_seconds = max(1, int(lifetime_seconds))
        self.prefix = prefix
        self.address = address or describe_client(client)
        self.errors = StoreErrors(DRIVER, self.address, STORE_ERRORS, busy=_pool_ran_out)
        self.owns_client = owns_client
        self.slots = slots
        self._slot: AbstractContextManager[None] = slots if slots is not None else nullcontext()

    @classmethod
    def from_config(cls, config: SessionConfig) -> RedisSessionHandler:
        """Build from ``config``: ``options.client`` if given, else a client for ``connection``."""
        options = _resolve_options(config)
        if options.client is not None:
            return cls(
                options.client, lifetime_seconds=config.lifetime_seconds, prefix=config.prefix
            )
        if options.async_client is not None and config.connection is None:
            raise ConfigError(
                "options.client",
                "the redis driver's synchronous handler needs a redis.Redis client or a "
                "connection URL; only options.async_client was given",
            )
        target = parse_connection(config.connection, cluster=options.cluster)
        client = build_sync_client(target, options)
        return cls(
            client,
            lifetime_seconds=config.lifetime_seconds,
            prefix=config.prefix,
            address=target.address,
            owns_client=True,
            slots=ConnectionSlots(**_slot_settings(options, target.address)),
        )

    def _call(self, action: str, command: Callable[[], T]) -> T:
        try:
            with self._slot:
                try:
                    return command()
                except redis.exceptions.ResponseError as exc:
                    if not self._follow_new_master(exc):
                        raise
                    return command()  # refused, so not applied: safe to send again
        except STORE_ERRORS as exc:
            raise self._error(action, exc) from exc

    def _follow_new_master(self, exc: BaseException) -> bool:
        """After ``NOREPLICAS`` from a Sentinel-managed master, ask the Sentinels again.

        The idle connections (the one just refused among them) are dropped, so
        the command, sent once more, goes to whichever master the Sentinels name
        now. Without this a failover reaches the client only when the old master
        is demoted (READONLY), seconds later. True when the command may be resent.
        """
        pool = getattr(self.client, "connection_pool", None)
        if not _refused_for_lack_of_replicas(exc) or not isinstance(
            pool, redis.sentinel.SentinelConnectionPool
        ):
            return False
        pool.get_master_address()  # type: ignore[no-untyped-call]
        pool.disconnect(inuse_connections=False)
        return True

    def read(self, session_id: str) -> str:
        args, options = self._get_args(session_id)
        try:
            return decode_payload(
                self._call("GET", lambda: self.client.execute_command(*args, **options))
            )
        except UnicodeDecodeError:
            return ""  # a decode_responses client met bytes core never wrote: no session

    def write(self, session_id: str, data: str) -> bool:
        args = self._set_args(session_id, data, existing=False)
        self._call("SET", lambda: self.client.execute_command(*args))
        return True

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a record that still exists (``SET … EX … XX``): one atomic
        round trip, so a session destroyed by another request is never brought back."""
        args = self._set_args(session_id, data, existing=True)
        return bool(self._call("SET XX", lambda: self.client.execute_command(*args)))

    def destroy(self, session_id: str) -> bool:
        self._call("DEL", lambda: self.client.delete(self._key(session_id)))
        return True

    def gc(self, lifetime: int) -> int:
        return 0  # Redis expires session keys itself

    def close(self) -> bool:
        # Only the connections of a pool the driver built; the pool reconnects on next use.
        if self.owns_client:
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None:
                self._call("disconnect", pool.disconnect)
            elif isinstance(self.client, NativeRedisClient):
                self.client.close()
        return True

    def try_lock(self, session_id: str, token: str, lock_seconds: float) -> bool:
        """One attempt to take the session's lock for ``token`` (``SET NX PX``)."""
        key = self._lock_key(session_id)
        milliseconds = max(1, math.ceil(lock_seconds * 1000))
        return bool(
            self._call("SET NX", lambda: self.client.set(key, token, nx=True, px=milliseconds))
        )

    def release_lock(self, session_id: str, token: str) -> None:
        """Free the lock if, and only if, it still holds ``token`` (one Lua call)."""
        key = self._lock_key(session_id)
        self._call("lock release", lambda: self.client.eval(RELEASE_SCRIPT, 1, key, token))

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> TokenLock:
        """Hold the session's lock: ``SET NX PX`` with a token, released only by its holder."""
        return TokenLock(
            lambda token: self.try_lock(session_id, token, lock_seconds),
            lambda token: self.release_lock(session_id, token),
            wait_seconds=wait_seconds,
            description="a redis session",
        )


class _LoopClient:
    """An asyncio client, the slots of its pool, and what it needs before its first command."""

    def __init__(self, client: Any, slots: AsyncConnectionSlots | None = None) -> None:
        self.client = client
        self.slot: AbstractAsyncContextManager[None] = slots if slots is not None else nullcontext()
        # redis.asyncio's RedisCluster, when its very first commands run
        # concurrently, can lose some of them ("Connection closed", a None
        # writer) while it discovers the slots; they are discovered once first.
        self.needs_initialize = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self.init_lock = asyncio.Lock()

    async def ready(self) -> Any:
        if self.needs_initialize:
            async with self.init_lock:
                if self.needs_initialize:
                    await self.client.initialize()
                    self.needs_initialize = False
        return self.client


class AsyncRedisSessionHandler(_RedisKeys, AsyncSessionHandler):
    """The async twin of :class:`RedisSessionHandler`, on the native asyncio client
    (:class:`~satchel_redis.native.AsyncNativeRedisClient`) or a ``redis.asyncio`` client.

    asyncio connections belong to the event loop that opened them. A client
    the driver built from ``connection`` is therefore made once per event loop
    (an app whose loop is restarted, or a test client that runs a loop per
    request, keeps working); a client handed in is used as it is, in the loop
    its owner runs it in. ``slots_factory`` makes the slots of each such
    client's pool, so a command waits for a free connection instead of failing.
    """

    def __init__(
        self,
        client: Any,
        *,
        lifetime_seconds: int,
        prefix: str = "satchel:",
        address: str | None = None,
        owns_client: bool = False,
        client_factory: Callable[[], Any] | None = None,
        slots_factory: Callable[[], AsyncConnectionSlots] | None = None,
    ) -> None:
        if client is None:
            raise TypeError("AsyncRedisSessionHandler needs a redis.asyncio client")
        self.client = client
        self.lifetime_seconds = max(1, int(lifetime_seconds))
        self.prefix = prefix
        self.address = address or describe_client(client)
        self.errors = StoreErrors(DRIVER, self.address, STORE_ERRORS, busy=_pool_ran_out)
        self.owns_client = owns_client
        self._client_factory = client_factory
        self._slots_factory = slots_factory
        self._given = _LoopClient(client, self._new_slots())
        self._given_claimed = False
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_config(cls, config: SessionConfig) -> AsyncSessionHandler:
        """Build from ``config``: ``options.async_client``, else ``options.client`` in a
        worker thread, else an asyncio client for ``connection`` (native or ``redis.asyncio``)."""
        options = _resolve_options(config)
        if options.async_client is not None:
            return cls(
                options.async_client, lifetime_seconds=config.lifetime_seconds, prefix=config.prefix
            )
        if options.client is not None:
            # Never swap the user's client for a default one: run it in a thread instead.
            return ThreadedRedisSessionHandler(RedisSessionHandler.from_config(config))
        target = parse_connection(config.connection, cluster=options.cluster)
        return cls(
            build_async_client(target, options),
            lifetime_seconds=config.lifetime_seconds,
            prefix=config.prefix,
            address=target.address,
            owns_client=True,
            client_factory=lambda: build_async_client(target, options),
            slots_factory=lambda: AsyncConnectionSlots(**_slot_settings(options, target.address)),
        )

    def _new_slots(self) -> AsyncConnectionSlots | None:
        return None if self._slots_factory is None else self._slots_factory()

    def _loop_client(self) -> _LoopClient:
        if self._client_factory is None:
            return self._given
        loop = asyncio.get_running_loop()
        entry = self._per_loop.get(loop)
        if entry is None:
            # The first loop gets the client made with the handler; later ones their own.
            if self._given_claimed:
                entry = _LoopClient(self._client_factory(), self._new_slots())
            else:
                entry, self._given_claimed = self._given, True
            self._per_loop[loop] = entry
        self.client = entry.client
        return entry

    async def _call(self, action: str, command: Callable[[Any], Awaitable[T]]) -> T:
        try:
            entry = self._loop_client()
            client = await entry.ready() if entry.needs_initialize else entry.client
            async with entry.slot:
                try:
                    return await command(client)
                except redis.exceptions.ResponseError as exc:
                    if not await self._follow_new_master(client, exc):
                        raise
                    return await command(client)  # refused, so not applied: safe to send again
        except STORE_ERRORS as exc:
            raise self._error(action, exc) from exc

    async def _follow_new_master(self, client: Any, exc: BaseException) -> bool:
        """The async form of :meth:`RedisSessionHandler._follow_new_master`."""
        pool = getattr(client, "connection_pool", None)
        if not _refused_for_lack_of_replicas(exc) or not isinstance(
            pool, redis.asyncio.sentinel.SentinelConnectionPool
        ):
            return False
        await pool.get_master_address()  # type: ignore[no-untyped-call]
        # redis.asyncio keeps a released connection to the old master (the sync
        # pool drops it): drop every idle one.
        await pool.disconnect(inuse_connections=False)
        return True

    async def read(self, session_id: str) -> str:
        args, options = self._get_args(session_id)
        try:
            return decode_payload(
                await self._call("GET", lambda client: client.execute_command(*args, **options))
            )
        except UnicodeDecodeError:
            return ""  # a decode_responses client met bytes core never wrote: no session

    async def write(self, session_id: str, data: str) -> bool:
        args = self._set_args(session_id, data, existing=False)
        await self._call("SET", lambda client: client.execute_command(*args))
        return True

    async def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a record that still exists (``SET … EX … XX``)."""
        args = self._set_args(session_id, data, existing=True)
        return bool(await self._call("SET XX", lambda client: client.execute_command(*args)))

    async def destroy(self, session_id: str) -> bool:
        key = self._key(session_id)
        await self._call("DEL", lambda client: client.delete(key))
        return True

    async def gc(self, lifetime: int) -> int:
        return 0  # Redis expires session keys itself

    async def close(self) -> bool:
        # Only the connections of a client the driver built, in the running loop;
        # they are remade on next use.
        if self.owns_client:
            entry = self._loop_client()
            pool = getattr(entry.client, "connection_pool", None)
            if pool is not None:
                await self._call("disconnect", lambda _: pool.disconnect())
            else:  # the native client; RedisCluster keeps one pool per node
                await self._call("disconnect", lambda client: client.aclose())
                entry.needs_initialize = isinstance(
                    entry.client, redis.asyncio.cluster.RedisCluster
                )
        return True

    async def try_lock(self, session_id: str, token: str, lock_seconds: float) -> bool:
        """One attempt to take the session's lock for ``token`` (``SET NX PX``)."""
        key = self._lock_key(session_id)
        milliseconds = max(1, math.ceil(lock_seconds * 1000))
        return bool(
            await self._call(
                "SET NX", lambda client: client.set(key, token, nx=True, px=milliseconds)
            )
        )

    async def release_lock(self, session_id: str, token: str) -> None:
        """Free the lock if, and only if, it still holds ``token`` (one Lua call)."""
        key = self._lock_key(session_id)
        await self._call("lock release", lambda client: client.eval(RELEASE_SCRIPT, 1, key, token))

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> AsyncTokenLock:
        """Hold the session's lock: ``SET NX PX`` with a token, released only by its holder."""
        return AsyncTokenLock(
            lambda token: self.try_lock(session_id, token, lock_seconds),
            lambda token: self.release_lock(session_id, token),
            wait_seconds=wait_seconds,
            description="a redis session",
        )


class ThreadedRedisSessionHandler(ThreadedAsyncHandler):
    """The async face of a sync handler whose client the user handed in: each call
    runs in a worker thread, so the event loop never blocks on the socket."""

    handler: RedisSessionHandler
