"""Every error satchel raises on purpose, importable from ``satchel``."""

from __future__ import annotations


class SatchelError(Exception):
    """Base class of every error satchel raises on purpose."""


class ConfigError(SatchelError, ValueError):
    """A configuration key is unknown or has a bad value; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.reason = message
        super().__init__(f"session config key {key!r}: {message}")


class UnknownDriverError(SatchelError, LookupError):
    """No driver is registered under the requested name."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = sorted(available)
        listing = ", ".join(self.available) or "none"
        super().__init__(f"unknown session driver {name!r}; available drivers: {listing}")


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
