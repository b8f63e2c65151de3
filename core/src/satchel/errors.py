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
    """A session cookie would exceed what browsers keep (4096 bytes)."""

    def __init__(self, size: int, limit: int = 4096) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the session cookie would be {size} bytes, over the {limit}-byte limit browsers keep; "
            "store less in the session or use a server-side driver"
        )


class LockTimeout(SatchelError):
    """A session lock could not be had within ``block_wait_seconds`` (answer with HTTP 503)."""


class SessionBackendError(SatchelError):
    """The driver's store failed; the message names the driver and its address."""

    def __init__(self, driver: str, address: str, message: str) -> None:
        self.driver = driver
        self.address = address
        super().__init__(f"session driver {driver!r} at {address}: {message}")
