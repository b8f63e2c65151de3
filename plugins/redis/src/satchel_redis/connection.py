"""Turning a ``connection`` URL and the options into redis-py clients.

URL forms (credentials are optional everywhere; ``rediss`` means TLS):

* ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://…``: one server;
* ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``: one server on a socket;
* ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]``
  (and ``rediss+sentinel://``): the master Sentinel names ``service``; the
  credentials are the master's (``sentinel_password`` in the options for the
  Sentinels' own);
* ``redis+cluster://[[user]:password@]host:port[,host:port…]`` (and
  ``rediss+cluster://``): seed nodes of a Redis Cluster.

One server without TLS whose URL sets nothing but the place, the database
and the credentials is reached through satchel-redis's own RESP2 clients
(:mod:`satchel_redis.native`); every other form, and any URL query setting
(``protocol=3``, ``client_name``, ...), through redis-py.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.backoff
import redis.cluster
import redis.connection
import redis.retry
import redis.sentinel

from satchel import ConfigError
from satchel.toolkit import format_hosts, parse_hosts
from satchel_redis.native import AsyncNativeRedisClient, NativeRedisClient
from satchel_redis.options import RedisOptions

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
RETRY_BACKOFF_SECONDS = 0.05
SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# What redis-py's URL parser gives for a URL the native clients can serve.
NATIVE_URL_SETTINGS = frozenset(
    {"host", "port", "path", "db", "username", "password", "connection_class"}
)


@attrs.frozen
class RedisTarget:
    """Where the sessions live, parsed from the ``connection`` URL.

    Attributes:
        kind: ``single``, ``sentinel`` or ``cluster``.
        url: The URL as given (it may hold a password: never show it).
        hosts: ``(host, port)`` of the server, the Sentinels or the cluster seed nodes.
        tls: Whether connections use TLS.
        db: The database number (a cluster has only 0).
        username: The server's username, if any.
        password: The server's password, if any.
        service: The master's name, for Sentinel.
        address: The location without credentials, for error messages.
    """

    kind: str
    url: str = attrs.field(repr=False)
    hosts: tuple[tuple[str, int], ...]
    tls: bool
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    service: str | None = None
    address: str = ""


def parse_connection(url: str | None, *, cluster: bool = False) -> RedisTarget:
    """Parse a ``connection`` URL; a malformed one is a ``ConfigError`` on ``connection``."""
    url = url or DEFAULT_URL
    try:
        return _parse(url, cluster=cluster)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(
            "connection", f"not a Redis URL the redis driver understands: {exc}"
        ) from None


def _parse(url: str, *, cluster: bool) -> RedisTarget:
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(
            "expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
        )
    if scheme in SINGLE_SCHEMES:
        kwargs = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        if scheme == "unix":
            path = kwargs.get("path")
            if not path:
                raise ValueError("a unix:// URL needs the socket's path")
            hosts: tuple[tuple[str, int], ...] = ()
            address = f"unix://{path}"
        else:
            host = str(kwargs.get("host", "127.0.0.1"))
            hosts = ((host, int(kwargs.get("port", DEFAULT_PORT))),)
            address = f"{scheme}://{format_hosts(hosts)}"
        db = int(kwargs.get("db", 0))
        if cluster:
            if scheme == "unix":
                raise ValueError("a Redis Cluster is reached over TCP, not a unix:// socket")
            return RedisTarget(
                "cluster",
                url,
                hosts,
                tls=scheme == "rediss",
                username=kwargs.get("username"),
                password=kwargs.get("password"),
                address=f"{scheme}+cluster://{format_hosts(hosts)}",
            )
        return RedisTarget(
            "single",
            url,
            hosts,
            tls=scheme == "rediss",
            db=db,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            address=address + (f"/{db}" if scheme != "unix" else ""),
        )
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError(
            f"unknown scheme {scheme!r}; expected redis, rediss, unix, redis+sentinel, "
            "rediss+sentinel, redis+cluster or rediss+cluster"
        )
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, _, host_list = netloc.rpartition("@")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if not userinfo:
        username = password = None
    is_sentinel = scheme in SENTINEL_SCHEMES
    default_port = DEFAULT_SENTINEL_PORT if is_sentinel else DEFAULT_PORT
    hosts = parse_hosts(host_list, default_port=default_port)
    tls = scheme.startswith("rediss")
    if not is_sentinel:
        return RedisTarget(
            "cluster",
            url,
            hosts,
            tls=tls,
            username=username,
            password=password,
            address=f"{scheme}://{format_hosts(hosts)}",
        )
    segments = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not segments:
        raise ValueError("a Sentinel URL needs the master's service name: .../service[/db]")
    service = segments[0]
    db = int(segments[1]) if len(segments) > 1 else 0
    return RedisTarget(
        "sentinel",
        url,
        hosts,
        tls=tls,
        db=db,
        username=username,
        password=password,
        service=service,
        address=f"{scheme}://{format_hosts(hosts)}/{service}/{db}",
    )


def _ssl_kwargs(options: RedisOptions) -> dict[str, Any]:
    cert_reqs = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[options.ssl_cert_reqs]
    kwargs: dict[str, Any] = {
        "ssl_cert_reqs": cert_reqs,
        "ssl_check_hostname": options.ssl_check_hostname and cert_reqs != ssl.CERT_NONE,
    }
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        value = getattr(options, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


def _common_kwargs(target: RedisTarget, options: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.socket_connect_timeout,
    }
    if target.username is not None:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    kwargs["max_connections"] = options.max_connections
    return kwargs


def native_settings(target: RedisTarget, options: RedisOptions) -> dict[str, Any] | None:
    """The settings of a native client for ``target``; None where redis-py is needed.

    The native clients serve one server over TCP or a unix socket, without
    TLS, with a database number, a username and password, the timeouts,
    retries and pool size: a URL that asks for anything more (a query
    setting such as ``protocol=3``) goes to redis-py.
    """
    if target.kind != "single" or target.tls:
        return None
    parsed = redis.connection.parse_url(target.url)  # type: ignore[no-untyped-call]
    if not NATIVE_URL_SETTINGS.issuperset(parsed):
        return None
    place: dict[str, Any] = (
        {"path": parsed["path"]}
        if "path" in parsed
        else {"host": target.hosts[0][0], "port": target.hosts[0][1]}
    )
    return {
        **place,
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.socket_connect_timeout,
        "retries": options.retries,
        "max_connections": options.max_connections,
    }


def build_sync_client(target: RedisTarget, options: RedisOptions) -> Any:
    """The client for ``target``: a :class:`~satchel_redis.native.NativeRedisClient` where
    it serves, else redis-py's ``Redis``, ``RedisCluster`` or a Sentinel master."""
    settings = native_settings(target, options)
    if settings is not None:
        return NativeRedisClient(**settings)
    retry = redis.retry.Retry(redis.backoff.ConstantBackoff(RETRY_BACKOFF_SECONDS), options.retries)
    kwargs = _common_kwargs(target, options)
    if target.kind == "single":
        if target.tls:
            kwargs.update(_ssl_kwargs(options))
        return redis.Redis.from_url(target.url, retry=retry, **kwargs)
    if target.kind == "cluster":
        if target.tls:
            kwargs.update(ssl=True, **_ssl_kwargs(options))
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in target.hosts]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster(startup_nodes=nodes, retry=retry, **kwargs)
    sentinel_kwargs = _sentinel_kwargs(target, options)
    if target.tls:
        kwargs.update(ssl=True, **_ssl_kwargs(options))
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts), sentinel_kwargs=sentinel_kwargs, db=target.db, retry=retry, **kwargs
    )
    return sentinel.master_for(str(target.service))  # type: ignore[no-untyped-call]


def build_async_client(target: RedisTarget, options: RedisOptions) -> Any:
    """The asyncio form of :func:`build_sync_client` (native, else ``redis.asyncio``)."""
    import redis.asyncio.retry  # noqa: PLC0415 - the asyncio retry class lives apart

    settings = native_settings(target, options)
    if settings is not None:
        return AsyncNativeRedisClient(**settings)

    retry = redis.asyncio.retry.Retry(
        redis.backoff.ConstantBackoff(RETRY_BACKOFF_SECONDS), options.retries
    )
    kwargs = _common_kwargs(target, options)
    if target.kind == "single":
        if target.tls:
            kwargs.update(_ssl_kwargs(options))
        return redis.asyncio.Redis.from_url(target.url, retry=retry, **kwargs)
    if target.kind == "cluster":
        if target.tls:
            kwargs.update(ssl=True, **_ssl_kwargs(options))
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.hosts]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, retry=retry, **kwargs)
    sentinel_kwargs = _sentinel_kwargs(target, options)
    if target.tls:
        kwargs.update(ssl=True, **_ssl_kwargs(options))
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts), sentinel_kwargs=sentinel_kwargs, db=target.db, retry=retry, **kwargs
    )
    return sentinel.master_for(str(target.service))


def _sentinel_kwargs(target: RedisTarget, options: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.socket_connect_timeout,
    }
    if options.sentinel_username is not None:
        kwargs["username"] = options.sentinel_username
    if options.sentinel_password is not None:
        kwargs["password"] = options.sentinel_password
    if target.tls:
        kwargs.update(ssl=True, **_ssl_kwargs(options))
    return kwargs


def describe_client(client: Any) -> str:
    """Where a ready client points, without credentials, for error messages."""
    if isinstance(client, (NativeRedisClient, AsyncNativeRedisClient)):
        return client.where
    try:
        nodes = getattr(client, "startup_nodes", None) or getattr(
            getattr(client, "nodes_manager", None), "startup_nodes", None
        )
        if nodes:
            names = (
                nodes.keys()
                if isinstance(nodes, dict)
                else [getattr(n, "name", "?") for n in nodes]
            )
            return "redis cluster " + ",".join(sorted(str(name) for name in names))
        pool = getattr(client, "connection_pool", None)
        service = getattr(pool, "service_name", None)
        if service:
            return f"redis sentinel service {service}"
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        if "host" in kwargs:
            return f"{kwargs['host']}:{kwargs.get('port', DEFAULT_PORT)}/{kwargs.get('db', 0)}"
    except Exception:  # noqa: S110 - describing must never fail
        pass
    return f"a ready {type(client).__name__} client"
