"""Session records: what a driver stores for a session, and under which key.

:class:`RecordCodec` turns a session id into its storage key and a payload
text into the record a driver keeps (the text itself, or its AES-GCM sealing
under ``encrypt``), and back; the cookie driver's cookie value is sealed
here too. The write helpers hand a record to a driver with the request's
metadata when the driver keeps it.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
from collections.abc import Generator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, TypeVar

import attrs

from satchel.config import SessionConfig
from satchel.crypto import STORAGE_KEY_INFO, Encrypter, derive_key
from satchel.errors import SessionTooLarge
from satchel.handler import (
    AsyncSessionHandler,
    AsyncSupportsLock,
    AsyncSupportsMetadata,
    AsyncSupportsWriteExisting,
    RequestMetadata,
    SessionHandler,
    SupportsLock,
    SupportsMetadata,
    SupportsWriteExisting,
    supports,
)
from satchel.ids import storage_digest

T = TypeVar("T")
# One driver call, by the name of the DriverCalls method that makes it, and its arguments.
Step = tuple[Any, ...]
MAX_COOKIE_BYTES = 4096  # name plus value: what browsers keep (RFC 6265bis)


class RecordCodec:
    """Storage keys and sealed records for one config; every key is derived once, here.

    ``encrypter`` is ``None`` without a ``secret_key``.
    """

    __slots__ = (
        "_cookie_context",
        "_digest_keys",
        "_keyed_digest",
        "_limit",
        "cookie_name",
        "encrypter",
        "encrypts",
        "keyed",
    )

    def __init__(self, config: SessionConfig) -> None:
        secret = config.secret_key
        fallbacks = config.secret_key_fallbacks
        self.encrypter = Encrypter(secret, fallbacks) if secret is not None else None
        # The digest keys of storage_key: the current secret's, then each fallback's.
        self._digest_keys: tuple[bytes, ...] = (
            tuple(derive_key(key, STORAGE_KEY_INFO) for key in (secret, *fallbacks))
            if secret is not None
            else ()
        )
        # HMAC-SHA256 under the current digest key with its padded key blocks hashed once,
        # here: a storage key then costs two hash updates, not a whole HMAC set-up.
        self._keyed_digest = _PreparedHmac(self._digest_keys[0]) if self._digest_keys else None
        #: Whether storage keys are keyed by a secret (apps with other secrets never meet).
        self.keyed = bool(self._digest_keys)
        #: Whether records are sealed (``encrypt``): otherwise a record is its payload text.
        self.encrypts = config.encrypt and self.encrypter is not None
        self._limit = config.max_payload_bytes
        self.cookie_name = config.cookie
        self._cookie_context = b"satchel cookie:" + config.cookie.encode("ascii")

    def storage_key(self, session_id: str) -> str:
        """See :meth:`satchel.SessionManager.storage_key`."""
        keyed = self._keyed_digest
        if keyed is None:
            return storage_digest(session_id, None)
        return keyed.hexdigest(session_id.encode("ascii"))

    def fallback_storage_keys(self, session_id: str) -> list[str]:
        """See :meth:`satchel.SessionManager.fallback_storage_keys`."""
        return [storage_digest(session_id, key) for key in self._digest_keys[1:]]

    def seal(self, text: str, key: str) -> str:
        """What a driver stores for a payload: the text itself, or under ``encrypt`` its
        AES-GCM sealing, bound to the storage key so a record cannot be moved to another."""
        if not self.encrypts:
            return text
        assert self.encrypter is not None
        return self.encrypter.encrypt(text.encode("utf-8"), key.encode("ascii"))

    def open(self, record: str, key: str) -> tuple[str, bool]:
        """The payload text of a stored record, and whether it was sealed under a fallback key.

        Raises :class:`satchel.crypto.DecryptError` when an encrypted record fails to
        authenticate (tampered, moved from another key, or sealed under an unknown secret).
        """
        if not self.encrypts:
            return record, False
        assert self.encrypter is not None
        plaintext, stale_key = self.encrypter.decrypt(record, key.encode("ascii"))
        return plaintext.decode("utf-8", "replace"), stale_key

    def seal_cookie(self, text: str, *, limited: bool) -> str:
        """The cookie driver's cookie value for a payload (``SessionTooLarge`` past 4096 bytes).

        ``limited``: also hold it to ``max_payload_bytes`` (a write; a refresh is not).
        """
        assert self.encrypter is not None
        value = self.encrypter.encrypt(text.encode("utf-8"), self._cookie_context)
        if limited:
            self.check_size(value)
        size = len(self.cookie_name) + 1 + len(value)
        if size > MAX_COOKIE_BYTES:
            raise SessionTooLarge(size, MAX_COOKIE_BYTES)
        return value

    def open_cookie(self, value: str) -> tuple[str, bool]:
        """The payload text of a cookie driver's cookie, and whether a fallback key sealed it.

        Raises :class:`satchel.crypto.DecryptError` for a cookie that fails to authenticate.
        """
        assert self.encrypter is not None
        plaintext, stale_key = self.encrypter.decrypt(value, self._cookie_context)
        return plaintext.decode("utf-8", "replace"), stale_key

    def check_size(self, record: str) -> None:
        """``SessionTooLarge`` when ``record``, as handed to the driver, passes ``max_payload_bytes``."""
        limit = self._limit
        if limit is None:
            return
        size = len(record) if record.isascii() else len(record.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise SessionTooLarge(size, limit, "max_payload_bytes")


class _PreparedHmac:
    """HMAC-SHA256 (RFC 2104) under one key, its inner and outer key blocks hashed once.

    The digests equal :func:`hmac.digest`'s (and so :func:`satchel.ids.storage_digest`'s).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def hexdigest(self, message: bytes) -> str:
        """The HMAC of ``message``, as 64 lowercase hex characters."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def client_address(host: object) -> str | None:
    """The client's IP address as the server reported it, or ``None`` when it is not one.

    Forwarding headers (``X-Forwarded-For``, ``Forwarded``) are never read
    here: the server (uvicorn's ``--proxy-headers``, werkzeug's ``ProxyFix``)
    is the one to decide which proxies to trust.
    """
    if not isinstance(host, str):
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def request_metadata(host: object, user_agent: str | None) -> RequestMetadata:
    """What a driver that wants it (the database driver) is told about the request."""
    return RequestMetadata(ip_address=client_address(host), user_agent=user_agent or None)


def record_metadata(
    config: SessionConfig, values: Mapping[str, Any], request: RequestMetadata | None = None
) -> RequestMetadata:
    """What a driver that keeps metadata is handed with a write: the request's, plus the values.

    Encrypted sessions hand drivers none of their values, or the database
    driver would store user_id in plaintext beside the ciphertext.
    """
    copied = {} if config.encrypt else copy.deepcopy(dict(values))
    return attrs.evolve(request or RequestMetadata(), values=copied)


class DriverCalls:
    """The driver calls a session's load and save make, through a sync handler.

    :class:`AsyncDriverCalls` is the same through an async one; the steps of a
    load or save are written once (generators yielding calls) and either runs them.
    """

    __slots__ = ("handler", "keeps_metadata", "writes_existing")

    def __init__(self, handler: SessionHandler) -> None:
        self.handler = handler
        self.keeps_metadata = supports(handler, SupportsMetadata)
        self.writes_existing = supports(handler, SupportsWriteExisting)

    def run(self, steps: Generator[Step, Any, T]) -> T:
        """Carry out the driver calls ``steps`` yields, sending each one's result back.

        ``("lock", key, lock_seconds, wait_seconds)`` takes the driver's lock
        and ``("unlock",)`` releases it; a lock still held is released however
        the steps end.
        """
        result: Any = None
        held: list[AbstractContextManager[None]] = []
        send = steps.send
        try:
            while True:
                try:
                    step = send(result)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                name = step[0]
                if name == "lock":
                    result = None
                    assert supports(self.handler, SupportsLock)
                    held.append(
                        self.handler.lock(step[1], lock_seconds=step[2], wait_seconds=step[3])
                    )
                    held[-1].__enter__()
                elif name == "unlock":
                    result = None
                    held.pop().__exit__(None, None, None)
                else:
                    result = getattr(self, name)(*step[1:])
        finally:
            while held:
                held.pop().__exit__(None, None, None)

    def read(self, key: str) -> str:
        """The stored record, or ``""``."""
        return self.handler.read(key)

    def destroy(self, key: str) -> None:
        """Remove a record."""
        self.handler.destroy(key)

    def write(self, key: str, data: str, metadata: RequestMetadata | None) -> None:
        """Write a record, with the metadata when there is some and the driver keeps it."""
        handler = self.handler
        if metadata is not None and self.keeps_metadata:
            handler.write_with_metadata(key, data, metadata)  # type: ignore[attr-defined]
        else:
            handler.write(key, data)

    def write_if_present(self, key: str, data: str, metadata: RequestMetadata | None) -> bool:
        """Write a record only if it still exists; False, writing nothing, when it is gone.

        Atomic with a driver that offers ``write_existing``; otherwise a read, then
        the write (one more round trip, and a small race window).
        """
        if not self.writes_existing and self.handler.read(key) == "":
            return False
        return self.write_locked(key, data, metadata)

    def write_locked(self, key: str, data: str, metadata: RequestMetadata | None) -> bool:
        """Write a record found under the lock just now (False: it is gone after all)."""
        handler = self.handler
        if self.writes_existing:
            return handler.write_existing(key, data, metadata)  # type: ignore[attr-defined,no-any-return]
        self.write(key, data, metadata)
        return True


class AsyncDriverCalls:
    """:class:`DriverCalls` through an async handler.

    ``local``: the same driver's sync calls, made instead of awaiting the async
    handler's when its class says its calls never wait
    (``runs_on_event_loop = True``: a dict, a local file); locks still go
    through the async handler, as waiting for one must not block the loop.
    """

    __slots__ = ("handler", "keeps_metadata", "local", "writes_existing")

    def __init__(self, handler: AsyncSessionHandler, local: DriverCalls | None = None) -> None:
        self.handler = handler
        self.keeps_metadata = supports(handler, AsyncSupportsMetadata)
        self.writes_existing = supports(handler, AsyncSupportsWriteExisting)
        self.local = local

    async def run(self, steps: Generator[Step, Any, T]) -> T:
        """The async form of :meth:`DriverCalls.run`."""
        result: Any = None
        held: list[AbstractAsyncContextManager[None]] = []
        try:
            while True:
                try:
                    step = steps.send(result)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                result = None
                if step[0] == "lock":
                    assert supports(self.handler, AsyncSupportsLock)
                    held.append(
                        self.handler.lock(step[1], lock_seconds=step[2], wait_seconds=step[3])
                    )
                    await held[-1].__aenter__()
                elif step[0] == "unlock":
                    await held.pop().__aexit__(None, None, None)
                elif self.local is not None:
                    result = getattr(self.local, step[0])(*step[1:])
                else:
                    result = await getattr(self, step[0])(*step[1:])
        finally:
            while held:
                await held.pop().__aexit__(None, None, None)

    async def read(self, key: str) -> str:
        """The stored record, or ``""``."""
        return await self.handler.read(key)

    async def destroy(self, key: str) -> None:
        """Remove a record."""
        await self.handler.destroy(key)

    async def write(self, key: str, data: str, metadata: RequestMetadata | None) -> None:
        """The async form of :meth:`DriverCalls.write`."""
        handler = self.handler
        if metadata is not None and self.keeps_metadata:
            await handler.write_with_metadata(key, data, metadata)  # type: ignore[attr-defined]
        else:
            await handler.write(key, data)

    async def write_if_present(self, key: str, data: str, metadata: RequestMetadata | None) -> bool:
        """The async form of :meth:`DriverCalls.write_if_present`."""
        if not self.writes_existing and await self.handler.read(key) == "":
            return False
        return await self.write_locked(key, data, metadata)

    async def write_locked(self, key: str, data: str, metadata: RequestMetadata | None) -> bool:
        """The async form of :meth:`DriverCalls.write_locked`."""
        handler = self.handler
        if self.writes_existing:
            return await handler.write_existing(key, data, metadata)  # type: ignore[attr-defined,no-any-return]
        await self.write(key, data, metadata)
        return True
