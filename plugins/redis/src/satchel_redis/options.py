"""The ``redis`` driver's settings, read from ``SessionConfig.options``."""

from __future__ import annotations

from typing import Any

import attrs
import redis.asyncio
import redis.asyncio.cluster

from satchel import ConfigError

SSL_CERT_REQS = ("none", "optional", "required")
CLIENT_COMMANDS = ("get", "set", "eval")
# The clients whose commands return coroutines. Handed to the sync handler, each
# command would only make a coroutine nobody awaits: writes silently lost.
ASYNCIO_CLIENTS: tuple[type, ...] = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)


def _check_client(name: str, value: Any, *, asyncio_client: bool) -> None:
    """Refuse ``value`` as ``options.<name>`` unless it is a client of the right kind."""
    if value is None:
        return
    kind = type(value).__name__
    if not all(callable(getattr(value, command, None)) for command in CLIENT_COMMANDS):
        raise ConfigError(f"options.{name}", f"expected a redis-py client, got {kind}")
    is_asyncio = isinstance(value, ASYNCIO_CLIENTS)
    if asyncio_client and not is_asyncio:
        raise ConfigError(
            f"options.{name}",
            f"expected a redis.asyncio client (redis.asyncio.Redis or "
            f"redis.asyncio.cluster.RedisCluster), got the synchronous {kind}; "
            "hand a synchronous client in as options.client",
        )
    if not asyncio_client and is_asyncio:
        raise ConfigError(
            f"options.{name}",
            f"expected a synchronous redis-py client (redis.Redis, redis.RedisCluster), "
            f"got the asyncio {type(value).__module__}.{kind}; "
            "hand a redis.asyncio client in as options.async_client",
        )


@attrs.frozen(kw_only=True)
class RedisOptions:
    """Settings of the ``redis`` driver (``SessionConfig.options``).

    Attributes:
        client: A ready redis-py client (``redis.Redis``, ``redis.RedisCluster``
            or a Sentinel master from ``Sentinel.master_for``), used as it is
            instead of one built from ``connection``. The driver never closes it.
        async_client: The same for the async twin (``redis.asyncio.Redis``,
            ``redis.asyncio.RedisCluster`` or an async Sentinel master). When
            only ``client`` is given, the async twin runs it in a worker thread.
        cluster: Treat a ``redis://``/``rediss://`` connection as a seed node of a
            Redis Cluster (the same as the ``redis+cluster://`` URL form).
        socket_timeout: Seconds a command may take before the store counts as failed.
        socket_connect_timeout: Seconds a connection attempt may take.
        retries: How many times a command that failed on a connection error is
            retried on a fresh connection (so a restarted server is picked up by
            the next request without an error).
        max_connections: Connections the driver's pool may open (per event loop for the
            async twin, per node in a Cluster). A request that finds them all in use
            waits for one, up to ``pool_timeout``.
        pool_timeout: Seconds a command waits for a free connection of the pool; past
            that it fails with ``PoolExhausted``, which the web glue answers with 503
            and ``Retry-After``.
        sentinel_username: Username for the Sentinel servers themselves (the URL's
            credentials are for the master).
        sentinel_password: Password for the Sentinel servers themselves.
        ssl_ca_certs: CA bundle that verifies the server, for ``rediss`` URLs.
        ssl_certfile: Client certificate, for servers that ask for one.
        ssl_keyfile: Key of the client certificate.
        ssl_cert_reqs: Whether the server's certificate is checked: ``none``,
            ``optional`` or ``required``.
        ssl_check_hostname: Whether the certificate must name the host connected to.
    """

    client: Any = attrs.field(default=None, repr=False)
    async_client: Any = attrs.field(default=None, repr=False)
    cluster: bool = False
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0
    retries: int = 1
    max_connections: int = 100
    pool_timeout: float = 10.0
    sentinel_username: str | None = None
    sentinel_password: str | None = attrs.field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True

    def check(self) -> RedisOptions:
        """Refuse values no Redis connection can use; the error names the option."""
        _check_client("client", self.client, asyncio_client=False)
        _check_client("async_client", self.async_client, asyncio_client=True)
        for name in ("socket_timeout", "socket_connect_timeout", "pool_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"options.{name}", f"must be greater than 0, got {value!r}")
        if self.retries < 0:
            raise ConfigError("options.retries", f"must not be negative, got {self.retries!r}")
        if self.max_connections < 1:
            raise ConfigError(
                "options.max_connections", f"must be at least 1, got {self.max_connections!r}"
            )
        if self.ssl_cert_reqs not in SSL_CERT_REQS:
            raise ConfigError(
                "options.ssl_cert_reqs",
                f"must be one of {', '.join(SSL_CERT_REQS)}, got {self.ssl_cert_reqs!r}",
            )
        return self
