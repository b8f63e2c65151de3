"""Parsing ``connection`` (``host:port[,host:port…]``) and building pymemcache clients."""

from __future__ import annotations

import ssl
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheError

from satchel import ConfigError
from satchel.toolkit import format_hosts, parse_hosts
from satchel_memcached.options import MemcachedOptions

DEFAULT_CONNECTION = "127.0.0.1:11211"
DEFAULT_PORT = 11211


class PoolServerError(Exception):
    """A server of a pool failed, or is failing and was skipped; names the server."""


class StrictHashClient(HashClient):  # type: ignore[misc]
    """pymemcache's ``HashClient``, except that a command it would skip fails loudly.

    While a server is failing (before it is taken out of the pool), ``HashClient``
    answers commands for its keys with a default value without asking it: a read
    would look like a missing session and a write like a refused one. Sessions
    must fail closed, so a skipped command raises instead.
    """

    def _safely_run_func(
        self, client: Any, func: Any, default_val: Any, *args: Any, **kwargs: Any
    ) -> Any:
        skipped = object()
        host, port = client.server
        try:
            result = super()._safely_run_func(client, func, skipped, *args, **kwargs)
        except (OSError, MemcacheError) as exc:  # HashClient has counted it before re-raising
            raise PoolServerError(f"server {host}:{port}: {type(exc).__name__}: {exc}") from exc
        if result is skipped:
            raise PoolServerError(
                f"server {host}:{port} is failing; it is tried again after retry_timeout "
                "and taken out of the pool after retry_attempts failures"
            )
        return result


def parse_servers(connection: str | None) -> tuple[tuple[str, int], ...]:
    """``host:port`` pairs from ``connection``; a malformed one is a ``ConfigError``."""
    text = connection if connection is not None else DEFAULT_CONNECTION
    return parse_hosts(text, default_port=DEFAULT_PORT)


def _tls_context(options: MemcachedOptions) -> ssl.SSLContext:
    """The TLS settings of every connection; an unreadable file is a ``ConfigError`` naming its option."""
    try:
        context = ssl.create_default_context(cafile=options.tls_ca_certs)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("options.tls_ca_certs", f"cannot load the CA bundle: {exc}") from None
    if not options.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.tls_certfile is not None:
        try:
            context.load_cert_chain(options.tls_certfile, options.tls_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "options.tls_certfile", f"cannot load the client certificate and key: {exc}"
            ) from None
    return context


def build_client(servers: tuple[tuple[str, int], ...], options: MemcachedOptions) -> Any:
    """A thread-safe pymemcache client: ``PooledClient`` for one server, else a hashing pool."""
    kwargs: dict[str, Any] = {
        "connect_timeout": options.connect_timeout,
        "timeout": options.timeout,
        "no_delay": True,
        "default_noreply": False,  # every write waits for the server's answer
    }
    if options.max_pool_size is not None:
        kwargs["max_pool_size"] = options.max_pool_size
    if options.tls:
        kwargs["tls_context"] = _tls_context(options)
    if len(servers) == 1:
        return PooledClient(servers[0], **kwargs)
    return StrictHashClient(
        list(servers),
        use_pooling=True,
        retry_attempts=options.retry_attempts,
        retry_timeout=options.retry_timeout,
        dead_timeout=options.dead_timeout,
        ignore_exc=False,
        **kwargs,
    )


def describe_client(client: Any) -> str:
    """Where a ready client points, for error messages."""
    server = getattr(client, "server", None)
    if isinstance(server, tuple) and len(server) == 2:
        return format_hosts((server,))
    clients = getattr(client, "clients", None)
    if isinstance(clients, dict) and clients:
        return ",".join(sorted(str(name) for name in clients))
    return f"a ready {type(client).__name__} client"


class PymemcacheCommands:
    """The driver's commands (those of :class:`~satchel_memcached.client.MemcachedClient`)
    on a pymemcache client. Every write waits for the server's answer, whatever the
    client's ``default_noreply``: a write must know whether it was stored."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)  # type: ignore[no-any-return]

    def gets(self, key: str) -> tuple[bytes | None, int | None]:
        return self.client.gets(key)  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes, expire: int) -> bool:
        return bool(self.client.set(key, value, expire=expire, noreply=False))

    def add(self, key: str, value: bytes, expire: int) -> bool:
        return bool(self.client.add(key, value, expire=expire, noreply=False))

    def replace(self, key: str, value: bytes, expire: int) -> bool:
        return bool(self.client.replace(key, value, expire=expire, noreply=False))

    def cas(self, key: str, value: bytes, cas: int, expire: int) -> bool:
        return bool(self.client.cas(key, value, cas, expire=expire, noreply=False))

    def delete(self, key: str) -> bool:
        return bool(self.client.delete(key, noreply=False))

    def close(self) -> None:
        self.client.close()
