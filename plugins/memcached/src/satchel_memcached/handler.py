"""The ``memcached`` session handlers.

For one server without TLS the driver speaks memcached's text protocol itself
(:mod:`satchel_memcached.client`, :mod:`satchel_memcached.aio`); for a pool of
servers, TLS or a client handed in, it uses pymemcache.

Keys are the prefix plus the session id, always valid memcached keys. Writes
are one ``set`` (``replace`` to write only over a record that still exists)
with the lifetime as expiry (sent as an absolute Unix time when
it passes 30 days, as memcached requires), reads one ``get``, destroys one
``delete``. The lock for session blocking is an ``add`` of a
random token; its release swaps the token, with ``gets``/``cas``, for a
"released" marker that expires at once, so a holder whose lock expired and
was taken by another request can never free that request's lock.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from pymemcache.exceptions import MemcacheError

from satchel import (
    AsyncSessionHandler,
    ConfigError,
    PoolExhausted,
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
    format_hosts,
)
from satchel_memcached.aio import AsyncMemcachedClient
from satchel_memcached.client import MemcachedClient
from satchel_memcached.connection import (
    PoolServerError,
    PymemcacheCommands,
    build_client,
    describe_client,
    parse_servers,
)
from satchel_memcached.options import MemcachedOptions
from satchel_memcached.protocol import MemcachedServerError

DRIVER = "memcached"
T = TypeVar("T")
P = ParamSpec("P")

MAX_KEY_BYTES = 250
MAX_PREFIX_BYTES = 100
# memcached reads an expiry above 30 days as an absolute Unix time.
RELATIVE_EXPIRY_LIMIT = 30 * 24 * 60 * 60
# memcached's clock ticks in whole seconds, so an item set to live N seconds may
# die up to a second early; one second more keeps every TTL at least what was asked.
CLOCK_SLACK_SECONDS = 1
LOCK_INFIX = "lock:"
RELEASED = b"released"
# A negative expiry makes memcached drop the item at once: the released lock is
# gone, so the next request takes it with one ``add``.
RELEASED_EXPIRY = -1

# Ids that go into a key as they are: what core hands drivers (SHA-256 hex) and
# the like. Anything else is hashed, behind a "~" no safe id contains, so a
# hashed key can never equal a raw one.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
HASHED_MARK = "~"

STORE_ERRORS: tuple[type[BaseException], ...] = (
    MemcacheError,
    OSError,
    PoolServerError,
    MemcachedServerError,
)
ASYNC_STORE_ERRORS: tuple[type[BaseException], ...] = (OSError, MemcachedServerError)
# How pymemcache's pool (max_pool_size) says every connection is in use: a bare RuntimeError.
POOL_FULL = "Too many objects"


def is_valid_key(key: str) -> bool:
    """True for a key memcached's text protocol takes: ASCII, no spaces or control
    characters, at most 250 bytes."""
    return 0 < len(key) <= MAX_KEY_BYTES and key.isascii() and all(32 < ord(ch) < 127 for ch in key)


def key_id(session_id: str) -> str:
    """The part of the key that names the session: the id itself when it is safe,
    else a digest of it, so no id whatever can make an invalid or colliding key."""
    if _SAFE_ID.fullmatch(session_id):
        return session_id
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()
    return HASHED_MARK + digest


def check_prefix(prefix: str) -> str:
    """Refuse a prefix that could not start a valid memcached key."""
    if not is_valid_key(prefix or "x") or len(prefix) > MAX_PREFIX_BYTES:
        raise ConfigError(
            "prefix",
            f"the memcached driver needs at most {MAX_PREFIX_BYTES} printable ASCII characters "
            f"without spaces, got {prefix!r}",
        )
    return prefix


def memcached_expiry(seconds: int, now: float | None = None) -> int:
    """The exptime to send for a TTL of ``seconds``: relative up to 30 days, absolute beyond."""
    seconds = max(1, int(seconds))
    if seconds > RELATIVE_EXPIRY_LIMIT:
        return int(time.time() if now is None else now) + seconds
    return seconds


Slots = TypeVar("Slots", ConnectionSlots, AsyncConnectionSlots)


def pool_slots(kind: type[Slots], options: MemcachedOptions, address: str) -> Slots | None:
    """The bounded wait for one of ``options.max_pool_size`` connections; None without a bound."""
    if options.max_pool_size is None:
        return None
    return kind(
        size=options.max_pool_size,
        timeout=options.pool_timeout,
        driver=DRIVER,
        address=address,
        size_option="max_pool_size",
    )


class MemcachedSessionHandler(SessionHandler):
    """Sessions in memcached: one server or a consistent-hashing pool.

    Build it from a config with :meth:`from_config`, or hand it a ready client
    (a :class:`~satchel_memcached.client.MemcachedClient` or a pymemcache one):
    ``MemcachedSessionHandler(client, lifetime_seconds=7200)``. A client handed
    in is used as it is and never closed by the driver. ``slots`` (made for the
    connections the driver opens, with ``max_pool_size``) make a command wait
    for a free connection instead of failing when they are all in use.
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
            raise TypeError("MemcachedSessionHandler needs a pymemcache client")
        self.client = client
        # One set of commands whatever the client: pymemcache's behind an adapter.
        self._commands: MemcachedClient | PymemcacheCommands = (
            client if isinstance(client, MemcachedClient) else PymemcacheCommands(client)
        )
        self.lifetime_seconds = max(1, int(lifetime_seconds))
        self.prefix = check_prefix(prefix)
        self.address = address or describe_client(client)
        self.errors = StoreErrors(DRIVER, self.address, STORE_ERRORS)
        self.owns_client = owns_client
        self.slots = slots

    @classmethod
    def from_config(cls, config: SessionConfig) -> MemcachedSessionHandler:
        """Build from ``config``: ``options.client`` if given, else a client for
        ``connection`` (the driver's own for one server without TLS, else pymemcache's)."""
        options = config.structure_options(MemcachedOptions, driver=DRIVER).check()
        if options.client is not None:
            return cls(
                options.client, lifetime_seconds=config.lifetime_seconds, prefix=config.prefix
            )
        servers = parse_servers(config.connection)
        check_prefix(config.prefix)
        address = format_hosts(servers)
        # A command waits for a connection past max_pool_size (pymemcache's pool would refuse).
        slots = pool_slots(ConnectionSlots, options, address)
        client: Any
        if options.tls or len(servers) != 1:
            client = build_client(servers, options)
        else:
            (host, port), *_ = servers
            client = MemcachedClient(
                host, port, connect_timeout=options.connect_timeout, timeout=options.timeout
            )
        return cls(
            client,
            lifetime_seconds=config.lifetime_seconds,
            prefix=config.prefix,
            address=address,
            owns_client=True,
            slots=slots,
        )

    def _key(self, session_id: str) -> str:
        return self.prefix + key_id(session_id)

    def _lock_key(self, session_id: str) -> str:
        # ":" never occurs in a safe id nor after the hashed mark, so no session key meets it.
        return self.prefix + LOCK_INFIX + key_id(session_id)

    def _call(self, action: str, command: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            if self.slots is None:
                return command(*args, **kwargs)
            with self.slots:
                return command(*args, **kwargs)
        except STORE_ERRORS as exc:
            raise self.errors.error(exc, action) from exc
        except RuntimeError as exc:
            if not str(exc).startswith(POOL_FULL):
                raise
            # A client handed in, whose own pool is full.
            raise PoolExhausted(
                DRIVER, self.address, f"{action} failed: the client's connection pool: {exc}"
            ) from exc

    def _expiry(self) -> int:
        return memcached_expiry(self.lifetime_seconds + CLOCK_SLACK_SECONDS)

    def read(self, session_id: str) -> str:
        return decode_payload(self._call("get", self._commands.get, self._key(session_id)))

    def write(self, session_id: str, data: str) -> bool:
        stored = self._call(
            "set", self._commands.set, self._key(session_id), data.encode("utf-8"), self._expiry()
        )
        if not stored:
            raise SessionBackendError(
                DRIVER, self.address, "set failed: the server did not store it"
            )
        return True

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a record that still exists (memcached's ``replace``): one
        atomic round trip, so a session destroyed by another request is never brought back."""
        return self._call(
            "replace",
            self._commands.replace,
            self._key(session_id),
            data.encode("utf-8"),
            self._expiry(),
        )

    def destroy(self, session_id: str) -> bool:
        self._call("delete", self._commands.delete, self._key(session_id))
        return True

    def gc(self, lifetime: int) -> int:
        return 0  # memcached expires items itself

    def close(self) -> bool:
        # Only the sockets of a client the driver built; it reconnects on next use.
        if self.owns_client:
            self._call("close", self._commands.close)
        return True

    def try_lock(self, session_id: str, token: str, lock_seconds: float) -> bool:
        """One attempt to take the session's lock for ``token``."""
        key = self._lock_key(session_id)
        value = token.encode("ascii")
        expire = memcached_expiry(math.ceil(lock_seconds) + CLOCK_SLACK_SECONDS)
        commands = self._commands
        if self._call("add", commands.add, key, value, expire):
            return True
        current, cas_id = self._call("gets", commands.gets, key)
        if current == RELEASED and cas_id is not None:
            # Freed by its last holder: take it over, unless someone else just did.
            return self._call("cas", commands.cas, key, value, cas_id, expire)
        return False

    def release_lock(self, session_id: str, token: str) -> None:
        """Free the lock if, and only if, it still holds ``token``."""
        key = self._lock_key(session_id)
        current, cas_id = self._call("gets", self._commands.gets, key)
        if current == token.encode("ascii") and cas_id is not None:
            # cas fails if the lock changed hands since the gets: then it is not ours to free.
            self._call("cas", self._commands.cas, key, RELEASED, cas_id, RELEASED_EXPIRY)

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> TokenLock:
        """Hold the session's lock (``add`` of a token), released only by its holder."""
        return TokenLock(
            lambda token: self.try_lock(session_id, token, lock_seconds),
            lambda token: self.release_lock(session_id, token),
            wait_seconds=wait_seconds,
            description="a memcached session",
        )


class ThreadedMemcachedSessionHandler(ThreadedAsyncHandler):
    """The async twin for a pool of servers, TLS or a client handed in: each call
    runs the sync handler (pymemcache) in a worker thread, so the event loop never
    blocks on a socket."""

    handler: MemcachedSessionHandler


class AsyncMemcachedSessionHandler(AsyncSessionHandler):
    """The asyncio twin for one server (:class:`~satchel_memcached.aio.AsyncMemcachedClient`).

    Keys, values, expiries and the lock are those of
    :class:`MemcachedSessionHandler`, so the two share a store. Built by
    :meth:`from_config`, which falls back to :class:`ThreadedMemcachedSessionHandler`
    where this client does not go: a pool of servers, TLS, a client handed in.
    """

    def __init__(
        self,
        client: AsyncMemcachedClient,
        *,
        lifetime_seconds: int,
        prefix: str = "satchel:",
        address: str,
    ) -> None:
        self.client = client
        self.lifetime_seconds = max(1, int(lifetime_seconds))
        self.prefix = check_prefix(prefix)
        self.address = address
        self.errors = StoreErrors(DRIVER, address, ASYNC_STORE_ERRORS)

    @classmethod
    def from_config(cls, config: SessionConfig) -> AsyncSessionHandler:
        """The asyncio handler for one server without TLS; else the threaded twin."""
        options = config.structure_options(MemcachedOptions, driver=DRIVER).check()
        servers = parse_servers(config.connection)
        if options.client is not None or options.tls or len(servers) != 1:
            return ThreadedMemcachedSessionHandler(MemcachedSessionHandler.from_config(config))
        address = format_hosts(servers)
        slots = pool_slots(AsyncConnectionSlots, options, address)
        (host, port), *_ = servers
        client = AsyncMemcachedClient(
            host,
            port,
            connect_timeout=options.connect_timeout,
            timeout=options.timeout,
            slots=slots,
        )
        return cls(
            client,
            lifetime_seconds=config.lifetime_seconds,
            prefix=config.prefix,
            address=address,
        )

    def _key(self, session_id: str) -> str:
        return self.prefix + key_id(session_id)

    def _lock_key(self, session_id: str) -> str:
        return self.prefix + LOCK_INFIX + key_id(session_id)

    def _expiry(self) -> int:
        return memcached_expiry(self.lifetime_seconds + CLOCK_SLACK_SECONDS)

    async def read(self, session_id: str) -> str:
        try:
            return decode_payload(await self.client.get(self._key(session_id)))
        except ASYNC_STORE_ERRORS as exc:
            raise self.errors.error(exc, "get") from exc

    async def write(self, session_id: str, data: str) -> bool:
        try:
            stored = await self.client.set(
                self._key(session_id), data.encode("utf-8"), self._expiry()
            )
        except ASYNC_STORE_ERRORS as exc:
            raise self.errors.error(exc, "set") from exc
        if not stored:
            raise SessionBackendError(
                DRIVER, self.address, "set failed: the server did not store it"
            )
        return True

    async def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a record that still exists (``replace``), as the sync handler does."""
        try:
            return await self.client.replace(
                self._key(session_id), data.encode("utf-8"), self._expiry()
            )
        except ASYNC_STORE_ERRORS as exc:
            raise self.errors.error(exc, "replace") from exc

    async def destroy(self, session_id: str) -> bool:
        try:
            await self.client.delete(self._key(session_id))
        except ASYNC_STORE_ERRORS as exc:
            raise self.errors.error(exc, "delete") from exc
        return True

    async def gc(self, lifetime: int) -> int:
        return 0  # memcached expires items itself

    async def close(self) -> bool:
        await self.client.close()
        return True

    async def try_lock(self, session_id: str, token: str, lock_seconds: float) -> bool:
        """One attempt to take the session's lock for ``token`` (as the sync handler's)."""
        key = self._lock_key(session_id)
        value = token.encode("ascii")
        expire = memcached_expiry(math.ceil(lock_seconds) + CLOCK_SLACK_SECONDS)
        try:
            if await self.client.add(key, value, expire):
                return True
            current, cas_id = await self.client.gets(key)
            if current == RELEASED and cas_id is not None:
                return await self.client.cas(key, value, cas_id, expire)
        except ASYNC_STORE_ERRORS as exc:
            raise self.errors.error(exc, "lock") from exc
        return False

    async def release_lock(self, session_id: str, token: str) -> None:
        """Free the lock if, and only if, it still holds ``token``."""
        key = self._lock_key(session_id)
        try:
            current, cas_id = await self.client.gets(key)
            if current == token.encode("ascii") and cas_id is not None:
                await self.client.cas(key, RELEASED, cas_id, RELEASED_EXPIRY)
        except ASYNC_STORE_ERRORS as exc:
            raise self.errors.error(exc, "unlock") from exc

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> AsyncTokenLock:
        """Hold the session's lock (``add`` of a token), released only by its holder."""
        return AsyncTokenLock(
            lambda token: self.try_lock(session_id, token, lock_seconds),
            lambda token: self.release_lock(session_id, token),
            wait_seconds=wait_seconds,
            description="a memcached session",
        )
