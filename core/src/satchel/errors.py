"""Every error satchel raises on purpose, importable from ``satchel``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from satchel.registry import PluginFailure


class SatchelError(Exception):
    """Base class of every error satchel raises on purpose."""


class ConfigError(SatchelError, ValueError):
    """A configuration key is unknown or has a bad value; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.reason = message
        super().__init__(f"session config key {key!r}: {message}")


class UnknownDriverError(SatchelError, LookupError):
    """No driver is registered under the requested name.

    The message lists the available drivers and the plugins that failed
    (``failed_plugins``): the driver may have been one of theirs.
    """

    def __init__(
        self, name: str, available: list[str], failed_plugins: Sequence[PluginFailure] = ()
    ) -> None:
        self.name = name
        self.available = sorted(available)
        self.failed_plugins = list(failed_plugins)
        listing = ", ".join(self.available) or "none"
        message = f"unknown session driver {name!r}; available drivers: {listing}"
        if self.failed_plugins:
            failures = "; ".join(str(failure) for failure in self.failed_plugins)
            message += f"; it may belong to a plugin that failed: {failures}"
        super().__init__(message)


class DuplicateDriverError(SatchelError):
    """Two plugins tried to register the same driver name."""


class SessionTooLarge(SatchelError):
    """A save would pass a size limit, so nothing was saved; the message names the limit.

    ``limit_name`` says which limit: ``"cookie"``, the 4096 bytes (name and
    value) browsers keep of a cookie, or ``"max_payload_bytes"``, the config key
    that caps the payload a driver is handed.
    """

    def __init__(self, size: int, limit: int = 4096, limit_name: str = "cookie") -> None:
        self.size = size
        self.limit = limit
        self.limit_name = limit_name
        if limit_name == "cookie":
            message = (
                f"the session cookie would be {size} bytes, over the {limit}-byte limit browsers "
                "keep; store less in the session or use a server-side driver"
            )
        else:
            message = (
                f"the session payload would be {size} bytes, over the {limit} bytes that "
                f"{limit_name} allows; store less in the session or raise {limit_name}"
            )
        super().__init__(message)


class SessionBusy(SatchelError):
    """The store could not serve this request in time; the same request shortly after may succeed.

    The web glue answers it with HTTP 503 and ``Retry-After``, never a 500.
    """


class LockTimeout(SessionBusy):
    """A session lock could not be had within ``block_wait_seconds`` (answer with HTTP 503)."""


class SessionBackendError(SatchelError):
    """The driver's store failed; the message names the driver and its address."""

    def __init__(self, driver: str, address: str, message: str) -> None:
        self.driver = driver
        self.address = address
        super().__init__(f"session driver {driver!r} at {address}: {message}")


class PoolExhausted(SessionBusy, SessionBackendError):
    """Every connection of the driver's pool stayed in use for the whole pool timeout.

    A burst of requests, not a failed store: the web glue answers it as it
    answers a :class:`LockTimeout`, with HTTP 503 and ``Retry-After``.
    """
