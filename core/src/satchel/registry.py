"""The driver registry: driver names mapped to the factories that build them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from satchel.errors import DuplicateDriverError, UnknownDriverError
from satchel.handler import AsyncSessionHandler, SessionHandler

if TYPE_CHECKING:
    from satchel.config import SessionConfig

RUNTIME = "<runtime>"  # the distribution of a driver added with SessionManager.extend

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
    distribution: str = RUNTIME
    version: str | None = None

    @property
    def provider(self) -> str:
        """The distribution and version, for messages and ``satchel drivers``."""
        return f"{self.distribution} {self.version}" if self.version else self.distribution

    def build(self, config: SessionConfig) -> SessionHandler:
        """The sync handler from :attr:`factory`; a ``TypeError`` naming the driver if it is none."""
        handler = self.factory(config)
        if not isinstance(handler, SessionHandler):
            raise self._not_a_handler(handler, "factory", "SessionHandler")
        return handler

    def build_async(self, config: SessionConfig) -> AsyncSessionHandler:
        """The async twin from :attr:`async_factory`, checked as :meth:`build` checks."""
        assert self.async_factory is not None
        handler = self.async_factory(config)
        if not isinstance(handler, AsyncSessionHandler):
            raise self._not_a_handler(handler, "async_factory", "AsyncSessionHandler")
        return handler

    def _not_a_handler(self, made: object, role: str, expected: str) -> TypeError:
        # Raised at the driver's first use rather than left to surface as an
        # AttributeError on the first write, far from the factory that is wrong.
        origin = (
            "registered with SessionManager.extend"
            if self.distribution == RUNTIME
            else f"registered by {self.provider}"
        )
        hint = ""
        if inspect.iscoroutine(made):
            made.close()  # never to be awaited: said here rather than in a RuntimeWarning
            hint = " (the factory must be a plain function that returns the handler)"
        return TypeError(
            f"session driver {self.name!r} ({origin}): its {role} returned "
            f"{type(made).__qualname__}, not a satchel.{expected}{hint}"
        )


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded, or whose hook failed, with the reason.

    Attributes:
        distribution: The distribution that lists the entry point.
        entry_point: The entry point, as ``name = module``.
        error: What went wrong, in one line.
        hook: The hook that raised, or ``None`` when the plugin failed to load
            (an import error, a hook satchel does not define, no hook at all).
    """

    distribution: str
    entry_point: str
    error: str
    hook: str | None = None

    def __str__(self) -> str:
        what = "failed to load" if self.hook is None else f"failed in its {self.hook} hook"
        return f"plugin {self.entry_point!r} of distribution {self.distribution!r} {what}: {self.error}"


@attrs.define
class DriverRegistry:
    """Driver specs keyed by name; refuses duplicates, names what is available.

    Attributes:
        drivers: The usable drivers by name.
        conflicts: Each name claimed more than once, with every spec that claimed
            it; such a name is in no one's hands until all but one are removed.
    """

    drivers: dict[str, DriverSpec] = attrs.field(factory=dict)
    conflicts: dict[str, list[DriverSpec]] = attrs.field(factory=dict)

    def add(self, spec: DriverSpec, *, replace: bool = False) -> None:
        """Register ``spec``; a second driver of the same name is refused unless ``replace``.

        A refused name becomes unusable: asking for it raises the same
        ``DuplicateDriverError``, rather than silently using whichever plugin
        happened to load first. Every other name is untouched.
        """
        if replace:
            self.conflicts.pop(spec.name, None)
            self.drivers[spec.name] = spec
            return
        contenders = self.conflicts.get(spec.name)
        if contenders is not None:
            contenders.append(spec)
        elif spec.name in self.drivers:
            self.conflicts[spec.name] = [self.drivers.pop(spec.name), spec]
        else:
            self.drivers[spec.name] = spec
            return
        raise DuplicateDriverError(self.conflict_message(spec.name))

    def conflict_message(self, name: str) -> str:
        """Why ``name`` is unusable, naming every distribution that claims it."""
        providers = [spec.provider for spec in self.conflicts[name]]
        times = "twice" if len(providers) == 2 else f"{len(providers)} times"
        claimants = " and by ".join([", by ".join(providers[:-1]), providers[-1]])
        return (
            f"session driver {name!r} is registered {times}: by {claimants}; uninstall all but "
            "one of them or disable the others with SATCHEL_DISABLE_PLUGINS"
        )

    def get(self, name: str) -> DriverSpec:
        """The spec registered under ``name``, or ``UnknownDriverError`` listing the others.

        A name claimed by more than one plugin raises ``DuplicateDriverError``.
        """
        if name in self.conflicts:
            raise DuplicateDriverError(self.conflict_message(name))
        try:
            return self.drivers[name]
        except KeyError:
            raise UnknownDriverError(name, list(self.drivers)) from None

    def names(self) -> list[str]:
        """Every usable name, sorted (conflicted names are in :attr:`conflicts`)."""
        return sorted(self.drivers)
