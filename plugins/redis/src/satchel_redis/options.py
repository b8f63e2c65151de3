"""The ``redis`` driver's settings, read from ``SessionConfig.options``."""

from __future__ import annotations

from typing import Any

import attrs

from satchel.errors import ConfigError

SSL_CERT_REQS = ("none", "optional", "required")


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
        max_connections: Upper bound of the connection pool; ``None`` for redis-py's default.
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
    max_connections: int | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = attrs.field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True

    def check(self) -> RedisOptions:
        """Refuse values no Redis connection can use; the error names the option."""
        for name in ("client", "async_client"):
            value = getattr(self, name)
            if value is not None and not all(
                callable(getattr(value, command, None))
                for command in ("get", "set", "expire", "eval")
            ):
                raise ConfigError(
                    f"options.{name}", f"expected a redis-py client, got {type(value).__name__}"
                )
        for name in ("socket_timeout", "socket_connect_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"options.{name}", f"must be greater than 0, got {value!r}")
        if self.retries < 0:
            raise ConfigError("options.retries", f"must not be negative, got {self.retries!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError(
                "options.max_connections", f"must be at least 1, got {self.max_connections!r}"
            )
        if self.ssl_cert_reqs not in SSL_CERT_REQS:
            raise ConfigError(
                "options.ssl_cert_reqs",
                f"must be one of {', '.join(SSL_CERT_REQS)}, got {self.ssl_cert_reqs!r}",
            )
        return self
