"""The ``memcached`` driver's settings, read from ``SessionConfig.options``."""

from __future__ import annotations

from typing import Any

import attrs
from pymemcache.serde import LegacyWrappingSerde

from satchel import ConfigError

CLIENT_COMMANDS = ("get", "set", "add", "gets", "cas", "delete")


def deserializing_serde(client: Any) -> str | None:
    """The name of a serde ``client`` runs on the values it reads, or None when it
    hands back the raw bytes (pymemcache's default).

    Anyone who can reach memcached can store an item with any flags; a serde
    such as ``pickle_serde`` would unpickle it on the next read and run its code.
    """
    serdes = [getattr(client, "serde", None)]
    serdes += [getattr(inner, "serde", None) for inner in getattr(client, "clients", {}).values()]
    for serde in serdes:
        if not callable(getattr(serde, "deserialize", None)):
            continue  # no pymemcache serde to be seen (a proxy in front of a client, say)
        raw = isinstance(serde, LegacyWrappingSerde) and (
            serde.deserialize == serde._default_deserialize
        )
        if not raw:
            return type(serde).__name__
    return None


@attrs.frozen(kw_only=True)
class MemcachedOptions:
    """Settings of the ``memcached`` driver (``SessionConfig.options``).

    Attributes:
        client: A ready pymemcache client (``PooledClient``, ``HashClient``; a plain
            ``Client`` only for single-threaded apps), used as it is instead of one
            built from ``connection``, with pymemcache's default serde (raw bytes:
            one that deserializes, ``pickle_serde`` above all, is refused). The
            driver never closes it.
        connect_timeout: Seconds a connection attempt may take.
        timeout: Seconds a command may take before the store counts as failed.
        retry_attempts: Pool only: failed attempts after which a server is taken
            out of the pool (its keys then hash to the other servers).
        retry_timeout: Pool only: seconds before a failing server is tried again.
        dead_timeout: Pool only: seconds a server taken out stays out before it is tried again.
        max_pool_size: Connections the driver's pool may open per server; ``None`` for
            no limit (pymemcache's default). With a limit, a request that finds them
            all in use waits for one, up to ``pool_timeout``.
        pool_timeout: Seconds a command waits for a free connection when
            ``max_pool_size`` is set; past that it fails with ``PoolExhausted``, which
            the web glue answers with 503 and ``Retry-After``.
        tls: Connect with TLS.
        tls_ca_certs: CA bundle that verifies the servers (the system's when unset).
        tls_certfile: Client certificate, for servers that ask for one.
        tls_keyfile: Key of the client certificate.
        tls_verify: Check the server's certificate and host name.
    """

    client: Any = attrs.field(default=None, repr=False)
    connect_timeout: float = 2.0
    timeout: float = 2.0
    retry_attempts: int = 2
    retry_timeout: float = 1.0
    dead_timeout: float = 30.0
    max_pool_size: int | None = None
    pool_timeout: float = 10.0
    tls: bool = False
    tls_ca_certs: str | None = None
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_verify: bool = True

    def check(self) -> MemcachedOptions:
        """Refuse values no memcached connection can use; the error names the option."""
        if self.client is not None:
            if not all(callable(getattr(self.client, name, None)) for name in CLIENT_COMMANDS):
                raise ConfigError(
                    "options.client",
                    f"expected a pymemcache client, got {type(self.client).__name__}",
                )
            serde = deserializing_serde(self.client)
            if serde is not None:
                raise ConfigError(
                    "options.client",
                    f"the client deserializes what it reads ({serde}), so a value planted "
                    "in memcached could run code (a pickle) or break reads; the driver "
                    "stores text itself: hand in a client made without serde, serializer "
                    "or deserializer",
                )
        for name in ("connect_timeout", "timeout", "pool_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"options.{name}", f"must be greater than 0, got {value!r}")
        for name in ("retry_attempts", "retry_timeout", "dead_timeout"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"options.{name}", f"must not be negative, got {value!r}")
        if self.max_pool_size is not None and self.max_pool_size < 1:
            raise ConfigError(
                "options.max_pool_size", f"must be at least 1, got {self.max_pool_size!r}"
            )
        if self.tls_keyfile is not None and self.tls_certfile is None:
            raise ConfigError("options.tls_certfile", "is needed when tls_keyfile is set")
        return self
