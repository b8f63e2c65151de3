"""The ``mongo`` driver's settings, read from ``SessionConfig.options``."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class MongoOptions:
    """Settings of the ``mongo`` driver (``SessionConfig.options``).

    Attributes:
        database: The database that holds the sessions collection.
        collection: The collection of session documents.
        timeout: Seconds to wait for a server (selection, connection, each
            operation) before the store counts as down.
        ttl_grace_seconds: How long after ``expires_at`` the TTL index deletes
            a document (reads ignore it from ``expires_at`` on).
        max_pool_size: Connections the client may open per server (pymongo's
            ``maxPoolSize``). A request that finds them all in use waits for one,
            up to ``pool_timeout``.
        pool_timeout: Seconds a request waits for a free connection (pymongo's
            ``waitQueueTimeoutMS``, which otherwise waits for ever); past that it
            fails with ``PoolExhausted``, which the web glue answers with 503 and
            ``Retry-After``.
    """

    database: str = "satchel"
    collection: str = "sessions"
    timeout: float = 5.0
    ttl_grace_seconds: int = 60
    max_pool_size: int = 100
    pool_timeout: float = 10.0
