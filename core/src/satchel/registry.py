"""The driver registry: driver names mapped to the factories that build them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from satchel.errors import DuplicateDriverError, UnknownDriverError

if TYPE_CHECKING:
    from satchel.config import SessionConfig
    from satchel.handler import AsyncSessionHandler, SessionHandler

HandlerFactory = Callable[["SessionConfig"], "SessionHandler"]
AsyncHandlerFactory = Callable[["SessionConfig"], "AsyncSessionHandler"]


class DriverRegistrar(Protocol):
    """The ``register`` callable handed to the ``register_drivers`` hook."""

    def __call__(
        self, name: str, factory: HandlerFactory, async_factory: AsyncHandlerFactory | None = None
    ) -> None: ...


@attrs.frozen
class DriverSpec:
    """One registered driver.

    Attributes:
        name: The name users put in ``SessionConfig.driver``.
        factory: Builds the synchronous handler from the config.
        async_factory: Builds the async twin, or ``None`` (core then runs the
            sync handler in a worker thread).
        distribution: The distribution that registered it (``"<runtime>"`` for ``extend``).
        version: That distribution's version, when known.
    """

    name: str
    factory: HandlerFactory
    async_factory: AsyncHandlerFactory | None = None
    distribution: str = "<runtime>"
    version: str | None = None

    @property
    def provider(self) -> str:
        """The distribution and version, for messages and ``satchel drivers``."""
        return f"{self.distribution} {self.version}" if self.version else self.distribution


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded, with the reason.

    Attributes:
        distribution: The distribution that lists the entry point.
        entry_point: The entry point, as ``name = module``.
        error: What went wrong, in one line.
    """

    distribution: str
    entry_point: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.entry_point!r} of distribution {self.distribution!r} failed to load: {self.error}"


@attrs.define
class DriverRegistry:
    """Driver specs keyed by name; refuses duplicates, names what is available."""

    drivers: dict[str, DriverSpec] = attrs.field(factory=dict)
    conflicts: dict[str, str] = attrs.field(factory=dict)

    def add(self, spec: DriverSpec, *, replace: bool = False) -> None:
        """Register ``spec``; a second driver of the same name is refused unless ``replace``.

        A refused name stays ambiguous: asking for it raises the same error,
        rather than silently using whichever plugin happened to load first.
        """
        existing = self.drivers.get(spec.name)
        if existing is not None and not replace:
            message = (
                f"session driver {spec.name!r} is registered twice: by {existing.provider} "
                f"and by {spec.provider}; uninstall one of them or disable it with "
                "SATCHEL_DISABLE_PLUGINS"
            )
            self.conflicts[spec.name] = message
            raise DuplicateDriverError(message)
        self.conflicts.pop(spec.name, None)
        self.drivers[spec.name] = spec

    def get(self, name: str) -> DriverSpec:
        """The spec registered under ``name``, or ``UnknownDriverError`` listing the others."""
        if name in self.conflicts:
            raise DuplicateDriverError(self.conflicts[name])
        try:
            return self.drivers[name]
        except KeyError:
            raise UnknownDriverError(name, list(self.drivers)) from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self.drivers)
