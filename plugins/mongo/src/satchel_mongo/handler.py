"""``MongoSessionHandler``: sessions in MongoDB (and its async twin).

One document per session::

    {"_id": <SHA-256 hex of the cookie id>, "payload": <str>,
     "last_activity": <date>, "expires_at": <date>}

Session blocking locks are documents ``{"_id": <id>, "token", "expires_at"}``
in ``<collection>_locks``: taking one is an upsert that matches only an
expired lock, so a held one makes it fail with a duplicate key.

A save of a session loaded from the store goes through ``write_existing``: an
``update_one`` matching only a live document, never an upsert, so a logout
cannot be undone by a slower request.

A TTL index on ``expires_at`` lets MongoDB delete expired sessions by itself.
Its monitor runs only every 60 seconds, so reads check ``expires_at`` too, and
the index fires ``ttl_grace_seconds`` late: expiry is decided by the
application's clock, and a database server whose clock runs ahead must never
end a session early. When ``ttl_grace_seconds`` changes, the existing index is
changed in place with ``collMod``. An index on ``last_activity`` serves ``gc``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collection import Collection
from pymongo.errors import (
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    WaitQueueTimeoutError,
)

from satchel import (
    AsyncSessionHandler,
    RequestMetadata,
    SessionBackendError,
    SessionConfig,
    SessionHandler,
)
from satchel.toolkit import AsyncTokenLock, StoreErrors, TokenLock, decode_payload
from satchel_mongo.connection import DRIVER_NAME, open_client

TTL_INDEX_NAME = "satchel_expires_at_ttl"
ACTIVITY_INDEX_NAME = "satchel_last_activity"
# MongoDB's codes for create_index meeting an index of that name or key with other options.
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
LOCKS_SUFFIX = "_locks"  # session locks live in "<collection>_locks"
Document = dict[str, Any]


class _Documents:
    """What both handlers share: the clock, the queries and the error wrapping."""

    def __init__(
        self, lifetime_seconds: int, address: str, clock: Callable[[], float], ttl_grace: int
    ) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.ttl_grace = ttl_grace
        self.address = address
        self.clock = clock
        self._errors = StoreErrors(
            DRIVER_NAME,
            address,
            (PyMongoError,),
            # Every pooled connection stayed in use for pool_timeout: busy, not failing.
            busy=lambda exc: isinstance(exc, WaitQueueTimeoutError),
        )

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def live(self, session_id: str) -> Document:
        """The query for a session that has not expired yet."""
        return {"_id": session_id, "expires_at": {"$gt": self.now()}}

    def stamp(self, **fields: Any) -> Document:
        """A ``$set`` of ``fields`` with fresh ``last_activity`` and ``expires_at``."""
        now = self.now()
        expires_at = now + timedelta(seconds=self.lifetime_seconds)
        return {"$set": {**fields, "last_activity": now, "expires_at": expires_at}}

    def lock_query(self, session_id: str) -> Document:
        """Matches the lock of ``session_id`` only when it has expired (or is absent)."""
        return {"_id": session_id, "expires_at": {"$lte": self.now()}}

    def lock_claim(self, token: str, lock_seconds: float) -> Document:
        expires_at = self.now() + timedelta(seconds=lock_seconds)
        return {"$set": {"token": token, "expires_at": expires_at}}

    def idle_since(self, lifetime: int) -> Document:
        return {"last_activity": {"$lt": self.now() - timedelta(seconds=lifetime)}}

    def ttl_coll_mod(self, collection_name: str) -> Document:
        """The ``collMod`` that sets the TTL index's ``expireAfterSeconds`` to the grace."""
        return {
            "collMod": collection_name,
            "index": {"keyPattern": {"expires_at": 1}, "expireAfterSeconds": self.ttl_grace},
        }

    def duplicate_again(self, exc: DuplicateKeyError) -> SessionBackendError:
        """The error for an upsert whose retry collided with a duplicate key once more.

        A lost insert race resolves on the retry, which finds the winner's
        document; a second collision means something else (a unique index
        besides ``_id``) refuses the document.
        """
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        return SessionBackendError(
            DRIVER_NAME,
            self.address,
            f"DuplicateKeyError: the session's upsert collided again after a retry "
            f"(is there a unique index besides _id?): {detail}",
        )

    def errors(self) -> StoreErrors:
        """Turns pymongo's errors into ``SessionBackendError`` (``PoolExhausted`` for a busy pool)."""
        return self._errors


def payload_of(found: Mapping[str, Any] | None) -> str:
    """The stored payload, or ``""`` (no session) when it is missing or not text."""
    return decode_payload(found.get("payload") if found else None)


def ensure_ttl_index(collection: Collection[Document], documents: _Documents) -> None:
    """Create the TTL index on ``expires_at``, or bring an existing one to the grace."""
    try:
        collection.create_index(
            "expires_at", expireAfterSeconds=documents.ttl_grace, name=TTL_INDEX_NAME
        )
    except OperationFailure as exc:
        if exc.code == INDEX_OPTIONS_CONFLICT:
            # Made with another ttl_grace_seconds: change it in place, no rebuild, no gap.
            collection.database.command(documents.ttl_coll_mod(collection.name))
        elif exc.code == INDEX_KEY_SPECS_CONFLICT:
            # Our name on another key: the index is not ours to keep.
            collection.drop_index(TTL_INDEX_NAME)
            collection.create_index(
                "expires_at", expireAfterSeconds=documents.ttl_grace, name=TTL_INDEX_NAME
            )
        else:
            raise


def ensure_activity_index(collection: Collection[Document]) -> None:
    """Index ``last_activity`` for ``gc``; an index on it under another name serves as well."""
    try:
        collection.create_index("last_activity", name=ACTIVITY_INDEX_NAME)
    except OperationFailure as exc:
        if exc.code != INDEX_OPTIONS_CONFLICT:
            raise


async def async_ensure_ttl_index(
    collection: AsyncCollection[Document], documents: _Documents
) -> None:
    """:func:`ensure_ttl_index` on an ``AsyncCollection``."""
    try:
        await collection.create_index(
            "expires_at", expireAfterSeconds=documents.ttl_grace, name=TTL_INDEX_NAME
        )
    except OperationFailure as exc:
        if exc.code == INDEX_OPTIONS_CONFLICT:
            await collection.database.command(documents.ttl_coll_mod(collection.name))
        elif exc.code == INDEX_KEY_SPECS_CONFLICT:
            await collection.drop_index(TTL_INDEX_NAME)
            await collection.create_index(
                "expires_at", expireAfterSeconds=documents.ttl_grace, name=TTL_INDEX_NAME
            )
        else:
            raise


async def async_ensure_activity_index(collection: AsyncCollection[Document]) -> None:
    """:func:`ensure_activity_index` on an ``AsyncCollection``."""
    try:
        await collection.create_index("last_activity", name=ACTIVITY_INDEX_NAME)
    except OperationFailure as exc:
        if exc.code != INDEX_OPTIONS_CONFLICT:
            raise


class MongoSessionHandler(SessionHandler):
    """Sessions as MongoDB documents, through pymongo's ``MongoClient``."""

    def __init__(
        self,
        collection: Collection[Document],
        *,
        lifetime_seconds: int,
        address: str = "mongodb",
        client: MongoClient[Document] | None = None,
        clock: Callable[[], float] = time.time,
        ttl_grace_seconds: int = 60,
    ) -> None:
        self.collection = collection
        self.client = client
        self.documents = _Documents(lifetime_seconds, address, clock, ttl_grace_seconds)
        self._indexed = False
        self._locks_indexed = False

    @classmethod
    def from_config(
        cls, config: SessionConfig, *, client: MongoClient[Document] | None = None
    ) -> MongoSessionHandler:
        """The handler for ``config``; ``client`` replaces the one built from the URL.

        The handler closes only a client it built itself.
        """
        connected, owned, options, address = open_client(config, MongoClient, client)
        return cls(
            connected[options.database][options.collection],
            lifetime_seconds=config.lifetime_seconds,
            address=address,
            client=owned,
            ttl_grace_seconds=options.ttl_grace_seconds,
        )

    def _ready(self) -> Collection[Document]:
        # Created on first use rather than in the factory, so building a
        # handler never needs the server; create_index is idempotent.
        if not self._indexed:
            ensure_ttl_index(self.collection, self.documents)
            ensure_activity_index(self.collection)
            self._indexed = True
        return self.collection

    def close(self) -> bool:
        if self.client is not None:
            self.client.close()
        return True

    def read(self, session_id: str) -> str:
        with self.documents.errors():
            found = self._ready().find_one(self.documents.live(session_id), {"payload": 1})
        return payload_of(found)

    def write(self, session_id: str, data: str) -> bool:
        update = self.documents.stamp(payload=data)
        with self.documents.errors():
            collection = self._ready()
            try:
                collection.update_one({"_id": session_id}, update, upsert=True)
            except DuplicateKeyError:
                # Two first writes raced to insert; the loser updates the winner's document.
                try:
                    collection.update_one({"_id": session_id}, update, upsert=True)
                except DuplicateKeyError as again:
                    raise self.documents.duplicate_again(again) from again
        return True

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a document that has not expired; False (nothing written) otherwise.

        One ``update_one`` without upsert, so a request that loaded the
        session before a logout or a ``regenerate(destroy=True)`` cannot bring
        it back when it saves. The mongo driver keeps no request metadata.
        """
        with self.documents.errors():
            result = self._ready().update_one(
                self.documents.live(session_id), self.documents.stamp(payload=data)
            )
        return result.matched_count == 1

    def destroy(self, session_id: str) -> bool:
        with self.documents.errors():
            self._ready().delete_one({"_id": session_id})
        return True

    def gc(self, lifetime: int) -> int:
        # The TTL index does this continuously; gc catches what its monitor has not reached.
        with self.documents.errors():
            return self._ready().delete_many(self.documents.idle_since(lifetime)).deleted_count

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> TokenLock:
        """Hold the session's lock; it expires by itself after ``lock_seconds``."""
        locks = self.collection.database[self.collection.name + LOCKS_SUFFIX]

        def try_acquire(token: str) -> bool:
            with self.documents.errors():
                if not self._locks_indexed:
                    ensure_ttl_index(locks, self.documents)
                    self._locks_indexed = True
                try:
                    claim = self.documents.lock_claim(token, lock_seconds)
                    locks.update_one(self.documents.lock_query(session_id), claim, upsert=True)
                except DuplicateKeyError:
                    return False  # someone holds it and it has not expired
                return True

        def release(token: str) -> None:
            with self.documents.errors():
                # Only our own token: a lock that expired and was taken over stays the new holder's.
                locks.delete_one({"_id": session_id, "token": token})

        return TokenLock(
            try_acquire, release, wait_seconds=wait_seconds, description="a mongo session"
        )


class AsyncMongoSessionHandler(AsyncSessionHandler):
    """The async twin, on pymongo's ``AsyncMongoClient``."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        lifetime_seconds: int,
        address: str = "mongodb",
        client: AsyncMongoClient[Document] | None = None,
        clock: Callable[[], float] = time.time,
        ttl_grace_seconds: int = 60,
    ) -> None:
        self.collection = collection
        self.client = client
        self.documents = _Documents(lifetime_seconds, address, clock, ttl_grace_seconds)
        self._indexed = False
        self._locks_indexed = False

    @classmethod
    def from_config(
        cls, config: SessionConfig, *, client: AsyncMongoClient[Document] | None = None
    ) -> AsyncMongoSessionHandler:
        """The handler for ``config``; ``client`` replaces the one built from the URL.

        The handler closes only a client it built itself.
        """
        connected, owned, options, address = open_client(config, AsyncMongoClient, client)
        return cls(
            connected[options.database][options.collection],
            lifetime_seconds=config.lifetime_seconds,
            address=address,
            client=owned,
            ttl_grace_seconds=options.ttl_grace_seconds,
        )

    async def _ready(self) -> AsyncCollection[Document]:
        if not self._indexed:
            await async_ensure_ttl_index(self.collection, self.documents)
            await async_ensure_activity_index(self.collection)
            self._indexed = True
        return self.collection

    async def close(self) -> bool:
        if self.client is not None:
            await self.client.close()
        return True

    async def read(self, session_id: str) -> str:
        with self.documents.errors():
            collection = await self._ready()
            found: Mapping[str, Any] | None = await collection.find_one(
                self.documents.live(session_id), {"payload": 1}
            )
        return payload_of(found)

    async def write(self, session_id: str, data: str) -> bool:
        update = self.documents.stamp(payload=data)
        with self.documents.errors():
            collection = await self._ready()
            try:
                await collection.update_one({"_id": session_id}, update, upsert=True)
            except DuplicateKeyError:
                try:
                    await collection.update_one({"_id": session_id}, update, upsert=True)
                except DuplicateKeyError as again:
                    raise self.documents.duplicate_again(again) from again
        return True

    async def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        """Write only over a document that has not expired; False (nothing written) otherwise."""
        with self.documents.errors():
            collection = await self._ready()
            result = await collection.update_one(
                self.documents.live(session_id), self.documents.stamp(payload=data)
            )
        return result.matched_count == 1

    async def destroy(self, session_id: str) -> bool:
        with self.documents.errors():
            collection = await self._ready()
            await collection.delete_one({"_id": session_id})
        return True

    async def gc(self, lifetime: int) -> int:
        with self.documents.errors():
            collection = await self._ready()
            result = await collection.delete_many(self.documents.idle_since(lifetime))
        return result.deleted_count

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> AsyncTokenLock:
        """Hold the session's lock; it expires by itself after ``lock_seconds``."""
        locks = self.collection.database[self.collection.name + LOCKS_SUFFIX]

        async def try_acquire(token: str) -> bool:
            with self.documents.errors():
                if not self._locks_indexed:
                    await async_ensure_ttl_index(locks, self.documents)
                    self._locks_indexed = True
                try:
                    claim = self.documents.lock_claim(token, lock_seconds)
                    await locks.update_one(
                        self.documents.lock_query(session_id), claim, upsert=True
                    )
                except DuplicateKeyError:
                    return False
                return True

        async def release(token: str) -> None:
            with self.documents.errors():
                await locks.delete_one({"_id": session_id, "token": token})

        return AsyncTokenLock(
            try_acquire, release, wait_seconds=wait_seconds, description="a mongo session"
        )
