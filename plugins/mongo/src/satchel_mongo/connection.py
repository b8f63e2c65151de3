"""Turning ``config.connection`` and the options into pymongo clients, for both handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pymongo.errors import ConfigurationError

from satchel import ConfigError, SessionConfig
from satchel.toolkit import redact_url, structure_options
from satchel_mongo.options import MongoOptions

DRIVER_NAME = "mongo"
Client = TypeVar("Client")


def mongo_settings(config: SessionConfig) -> tuple[str, MongoOptions, dict[str, Any]]:
    """The URL, the options and the client keyword arguments for ``config``."""
    if not config.connection:
        raise ConfigError("connection", "the mongo driver needs a mongodb:// URL")
    options = structure_options(config, MongoOptions, driver=DRIVER_NAME)
    for name in ("timeout", "pool_timeout"):
        value = getattr(options, name)
        if not value > 0:
            raise ConfigError(f"options.{name}", f"must be greater than 0, got {value!r}")
    if options.max_pool_size < 1:
        raise ConfigError(
            "options.max_pool_size", f"must be at least 1, got {options.max_pool_size!r}"
        )
    if options.ttl_grace_seconds < 0:
        raise ConfigError(
            "options.ttl_grace_seconds", f"must not be negative, got {options.ttl_grace_seconds!r}"
        )
    milliseconds = int(options.timeout * 1000)
    client_arguments = {
        "serverSelectionTimeoutMS": milliseconds,
        "connectTimeoutMS": milliseconds,
        "socketTimeoutMS": milliseconds,
        "maxPoolSize": options.max_pool_size,
        "waitQueueTimeoutMS": int(options.pool_timeout * 1000),
        "tz_aware": True,
        "appname": "satchel",
    }
    return config.connection, options, client_arguments


def open_client(
    config: SessionConfig, client_class: Callable[..., Client], client: Client | None
) -> tuple[Client, Client | None, MongoOptions, str]:
    """The client for ``config`` (``client`` when one is handed in), the one the handler owns
    (``None`` for a client handed in: its owner closes it), the options and the address.

    ``client_class`` is ``MongoClient`` or ``AsyncMongoClient``: the sync handler and its
    async twin are built alike.
    """
    url, options, client_arguments = mongo_settings(config)
    address = redact_url(url)
    if client is not None:
        return client, None, options, address
    try:
        built = client_class(url, **client_arguments)
    except ConfigurationError as exc:
        raise ConfigError("connection", f"not a usable MongoDB URL: {exc}") from None
    return built, built, options, address
